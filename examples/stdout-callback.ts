/**
 * ez-mode: a stdout callback set on the exec streams each chunk as it arrives, here from
 * a program that prints slowly (lua-resty-exec's `slow-print` example). Chunk boundaries
 * carry no meaning; a callback that returns a promise holds the program back until it settles.
 *
 *   node --import tsx examples/stdout-callback.ts      (PROCSOCK_SOCKET=path to use a daemon)
 */
import { createExec } from 'procsock';

const exec = createExec(process.env.PROCSOCK_SOCKET || 'local');

const started = Date.now();
exec.stdout = (data) => {
  process.stdout.write(`[+${Date.now() - started} ms] ${data}`);
};

const slowPrint = 'for i in 1 2 3 4 5; do echo "line $i"; sleep 0.1; done';
const result = await exec('sh', '-c', slowPrint);
console.log(`exit ${result.exitCode}`);
