/**
 * lua-resty-exec's plain-Lua (LuaSocket) ez-mode against the daemons: how many calls of
 * `echo hello` fail with a spurious `timeout` (test/helpers/luasocket_client.py models the
 * client; see the README's "lua-resty-exec outside nginx"). Rounds interleave the daemons,
 * so load on the machine falls on all of them alike.
 *
 *   node --import tsx bench/lua-timing.ts [calls=5000]
 *
 * SOCKEXEC=/path/to/sockexec adds the C daemon; PROCSOCK_BEFORE=/path/to/dist/cli/main.js adds
 * another procsock build (say, from before a change), run by this same node.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isListening } from '../test/helpers/daemon.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const client = join(root, 'test/helpers/luasocket_client.py');
const calls = Number(process.argv[2] ?? 5000);
const ROUND = 250;

const dir = mkdtempSync(join(tmpdir(), 'procsock-lua-timing-'));
const daemons: { name: string; path: string; child: ChildProcess; failed: number; done: number }[] =
  [];
function start(name: string, command: string, args: string[]): void {
  const path = join(dir, `${name}.sock`);
  daemons.push({
    name,
    path,
    child: spawn(command, [...args, path], { stdio: 'ignore' }),
    failed: 0,
    done: 0,
  });
}
start('procsock', process.execPath, [join(root, 'dist/cli/main.js'), 'serve', '--allow-root']);
if (process.env.PROCSOCK_BEFORE) {
  start('before', process.execPath, [process.env.PROCSOCK_BEFORE, 'serve', '--allow-root']);
}
if (process.env.SOCKEXEC) start('sockexec', process.env.SOCKEXEC, []);
try {
  for (const daemon of daemons) {
    while (!isListening(daemon.path)) await delay(20);
  }
  while (daemons[0]!.done < calls) {
    for (const daemon of daemons) {
      const out = spawnSync('python3', [client, daemon.path, String(ROUND)], { encoding: 'utf8' });
      const [done, failed] = out.stdout.trim().split(' ').map(Number);
      daemon.done += done!;
      daemon.failed += failed!;
    }
  }
  for (const daemon of daemons) {
    const rate = ((100 * daemon.failed) / daemon.done).toFixed(1);
    console.log(
      `${daemon.name.padEnd(9)} ${daemon.failed} of ${daemon.done} calls failed (${rate}%)`,
    );
  }
} finally {
  for (const daemon of daemons) daemon.child.kill('SIGTERM');
  await delay(500);
  rmSync(dir, { recursive: true, force: true });
}
