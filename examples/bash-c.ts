/**
 * "But I actually want a shell!": run bash yourself, with the script as an argument
 * (lua-resty-exec: `prog('bash', '-c', 'echo $PATH')`). Each string is one argv entry;
 * nothing is parsed or expanded on the way to bash.
 *
 *   node --import tsx examples/bash-c.ts               (PROCSOCK_SOCKET=path to use a daemon)
 */
import { createExec } from 'procsock';

const exec = createExec(process.env.PROCSOCK_SOCKET || 'local');

const result = await exec('bash', '-c', 'echo $PATH');
process.stdout.write(result.stdout); // /usr/local/bin:/usr/bin:/bin...
