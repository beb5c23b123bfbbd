/**
 * ez-mode time limits. `idleTimeout` is the longest wait for the next piece of output
 * (lua-resty-exec's `timeout`): by default it stops the program and rejects with
 * TimeoutError; with `timeoutFatal: false` it just means "keep waiting" (lua-resty-exec's
 * `timeout_fatal = false`). `timeout` is the whole run's wall-clock limit, as in Node.
 *
 *   node --import tsx examples/timeout-nonfatal.ts     (PROCSOCK_SOCKET=path to use a daemon)
 */
import { createExec, TimeoutError } from 'procsock';

const exec = createExec(process.env.PROCSOCK_SOCKET || 'local', { idleTimeout: 100 });
const slow = ['sh', '-c', 'sleep 0.3; echo finally'];

try {
  await exec(slow);
} catch (error) {
  if (!(error instanceof TimeoutError)) throw error;
  console.log(`fatal: ${error.option} after ${error.timeout} ms`); // fatal: idleTimeout after 100 ms
}

// Set it on the exec...
exec.timeoutFatal = false;
console.log((await exec(slow)).stdout.trim()); // finally

// ...or per call.
exec.timeoutFatal = true;
console.log((await exec({ argv: slow, timeoutFatal: false })).stdout.trim()); // finally

// A chatty program is stopped by the wall-clock timeout, whatever it prints (idleTimeout: 0
// turns the idle limit off for this call, so only the wall clock can end it).
const chatty = ['sh', '-c', 'while :; do echo tick; sleep 0.05; done'];
await exec({ argv: chatty, timeout: 300, idleTimeout: 0 }).catch((error: TimeoutError) => {
  console.log(`fatal: ${error.option} after ${error.timeout} ms`); // fatal: timeout after 300 ms
});
