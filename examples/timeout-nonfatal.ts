/**
 * ez-mode: the timeout is the longest wait for the next piece of output. By default a
 * timeout stops the program and rejects with TimeoutError; with `timeoutFatal: false` it
 * just means "keep waiting" (lua-resty-exec's `timeout_fatal = false`).
 *
 *   node --import tsx examples/timeout-nonfatal.ts     (PROCSOCK_SOCKET=path to use a daemon)
 */
import { createExec, TimeoutError } from 'procsock';

const exec = createExec(process.env.PROCSOCK_SOCKET ?? 'local', { timeout: 100 });
const slow = ['sh', '-c', 'sleep 0.3; echo finally'];

try {
  await exec(slow);
} catch (error) {
  if (!(error instanceof TimeoutError)) throw error;
  console.log(`fatal: ${error.code} after ${error.timeout} ms`); // fatal: PROCSOCK_TIMEOUT after 100 ms
}

// Set it on the exec...
exec.timeoutFatal = false;
console.log((await exec(slow)).stdout.trim()); // finally

// ...or per call.
exec.timeoutFatal = true;
console.log((await exec({ argv: slow, timeoutFatal: false })).stdout.trim()); // finally
