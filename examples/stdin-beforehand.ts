/**
 * ez-mode: set stdin beforehand; every call feeds it to the program
 * (lua-resty-exec: `prog.stdin = 'this is neat!'; prog('cat')`).
 *
 *   node --import tsx examples/stdin-beforehand.ts     (PROCSOCK_SOCKET=path to use a daemon)
 */
import { createExec } from 'procsock';

const exec = createExec(process.env.PROCSOCK_SOCKET || 'local');

exec.stdin = 'this is neat!';
const result = await exec('cat');
console.log(result.stdout); // this is neat!
