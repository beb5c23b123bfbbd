// Instructions per local native spawn, deterministic under load (bench/README.md, local-spawn
// note): N LocalChannel(['/bin/true']) runs after WARM of warm-up, with callgrind's
// instrumentation switched on around the measured runs only. Needs a built dist/ and addon.
//   cc -O2 -shared -fPIC -o /tmp/clone-vfork-shim.so bench/c/clone-vfork-shim.c -ldl
//   LD_PRELOAD=/tmp/clone-vfork-shim.so valgrind --tool=callgrind --instr-atstart=no \
//     --callgrind-out-file=/tmp/spawn.%p node bench/spawn-callgrind.mjs
//   callgrind_annotate /tmp/spawn.<pid>.1     (PROGRAM TOTALS ÷ N; leave out V8's compiler)
import { spawnSync } from 'node:child_process';
import { LocalChannel } from '../dist/channel/local.js';

const N = Number(process.env.N ?? 1000);
const WARM = Number(process.env.WARM ?? 1500);
const control = (...args) => {
  const result = spawnSync('callgrind_control', [...args, String(process.pid)]);
  if (result.status !== 0) throw new Error(`callgrind_control ${args.join(' ')} failed`);
};
async function runs(count) {
  for (let i = 0; i < count; i++) {
    await new LocalChannel(['/bin/true'], { spawnBackend: 'native' }).done();
  }
}
await runs(WARM);
control('-i', 'on');
await runs(N);
control('-d', 'measured');
control('-i', 'off');
