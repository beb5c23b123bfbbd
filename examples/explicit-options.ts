/**
 * ez-mode: one options object with argv, stdin data and stdout/stderr callbacks. Output
 * that goes to a callback is not collected (lua-resty-exec: `prog({argv = 'cat', stdin = 'fun!', ...})`).
 *
 *   node --import tsx examples/explicit-options.ts     (PROCSOCK_SOCKET=path to use a daemon)
 */
import { createExec } from 'procsock';

const exec = createExec(process.env.PROCSOCK_SOCKET || 'local');

const result = await exec({
  argv: 'cat', // a single string: a program with no arguments
  stdin: 'fun!',
  stdout: (data) => console.log(data),
  stderr: (data) => console.log('error:', data),
});
// fun!
console.log(result); // stdout and stderr are '' (they went to the callbacks), exitCode 0, reason 'exit'

// The same with a program that writes to both streams:
await exec({
  argv: ['sh', '-c', 'echo to stdout; echo to stderr >&2'],
  stdout: (data) => process.stdout.write(data),
  stderr: (data) => process.stdout.write(`error: ${data}`),
});
