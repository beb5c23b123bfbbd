/**
 * Run a whole script: feed it to bash on stdin, roughly `bash < script` on the command
 * line (lua-resty-exec: `prog.stdin = script_data; prog('bash')`).
 *
 *   node --import tsx examples/bash-script.ts          (PROCSOCK_SOCKET=path to use a daemon)
 */
import { createExec } from 'procsock';

const exec = createExec(process.env.PROCSOCK_SOCKET || 'local');

exec.stdin = `
set -x
greeting=hello
echo "$greeting from bash"
exit 0
`;
const result = await exec('bash');
process.stdout.write(result.stdout); // hello from bash
for (const line of result.stderr.trimEnd().split('\n')) console.log(`trace: ${line}`); // trace: + greeting=hello
console.log(`exit ${result.exitCode}`); // exit 0
