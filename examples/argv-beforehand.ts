/**
 * ez-mode: set the argv beforehand, then call with nothing (lua-resty-exec: `prog.argv = {...}; prog()`).
 *
 *   node --import tsx examples/argv-beforehand.ts      (PROCSOCK_SOCKET=path to use a daemon)
 */
import { createExec } from 'procsock';

const exec = createExec(process.env.PROCSOCK_SOCKET || 'local');

exec.argv = ['uname', '-a'];
const result = await exec();
process.stdout.write(result.stdout); // Linux myhost 6.1.0 #1 SMP ... x86_64 GNU/Linux
