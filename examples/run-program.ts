/**
 * ez-mode: run a program with no arguments and print its output (lua-resty-exec: `prog('uname')`).
 *
 *   node --import tsx examples/run-program.ts                 # a local child
 *   PROCSOCK_SOCKET=/tmp/procsock.sock node --import tsx examples/run-program.ts   # via the daemon
 */
import { createExec } from 'procsock';

const exec = createExec(process.env.PROCSOCK_SOCKET || 'local');

const result = await exec('uname');
// { argv: ['uname'], stdout: 'Linux\n', stderr: '', unknown: '', exitCode: 0, termSignal: null }
process.stdout.write(result.stdout);
