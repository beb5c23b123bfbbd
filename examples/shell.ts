/**
 * Script one long-lived bash: state (cwd, variables, functions) survives between
 * commands, each result carries its own output and exit status.
 *
 *   node --import tsx examples/shell.ts             (PROCSOCK_SOCKET=path to use a daemon)
 */
import { LabellingCommander, RecallCommander, Shell } from 'procsock';

const socket = process.env.PROCSOCK_SOCKET;
const shell = Shell.posix({ program: 'bash', transport: socket ? { socket } : 'local' });
await shell.start(5000);

await shell.run('cd /tmp && greeting="hello from $(pwd)"');
const { stdout, exitCode } = await shell.run('echo "$greeting"');
console.log(stdout.trim(), `(exit ${exitCode})`); // hello from /tmp (exit 0)

// A failing command is a result, not an error; the next command sees its $?.
console.log((await shell.run('grep -q nothing /etc/hostname')).exitCode); // 1
console.log((await shell.run('echo "previous: $?"')).stdout.trim()); // previous: 1

// Commanders pair a command with the code that reads its output.
const files = new RecallCommander('ls /; echo "to stderr" >&2');
await shell.run(files);
console.log(`${files.stdoutLines.length} entries in /, stderr: ${files.stderrLines}`);
await shell.run(new LabellingCommander('echo out; echo err >&2')); // out: out / err: err

// Calls made together run one after another, in order.
const results = await Promise.all([1, 2, 3].map((n) => shell.run(`echo ${n}`)));
console.log(results.map((result) => result.stdout.trim()).join(' ')); // 1 2 3

await shell.stop(5000);
