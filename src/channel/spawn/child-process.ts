/** The `child_process` backend: Node's own spawn (a fork of the whole Node process). */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { ArgumentError, UnsupportedOptionError } from '../../errors.js';
import { nativeUnavailableReason } from '../../native/locate.js';
import type { ChildOutput, SpawnBackend, SpawnedChild, SpawnRequest } from './backend.js';
import { armWorkerGuard, guardWorkerChild } from './native.js';

/**
 * Children that must not outlive us. child_process gives no hook between fork and exec, so
 * no parent-death signal: the best it can do is KILL them when this process exits
 * normally, by process.exit() or an uncaught exception. A SIGKILLed Node leaves them; a
 * contained run (LocalChannel `contain`) does not, as procsock's reaper sets the signal.
 */
const attached = new Set<ChildProcess>();
let exitHooked = false;

function killAttached(): void {
  for (const child of attached) child.kill('SIGKILL');
}

function attach(child: ChildProcess): void {
  if (child.pid === undefined) return;
  if (!exitHooked) {
    process.on('exit', killAttached);
    exitHooked = true;
  }
  attached.add(child);
  child.once('exit', () => attached.delete(child));
}

export const childProcessBackend: SpawnBackend = {
  name: 'child_process',
  spawn(request: SpawnRequest): SpawnedChild {
    if (request.rlimits && Object.keys(request.rlimits).length > 0) {
      throw new ArgumentError(
        `resource limits need the native spawn backend: ${nativeUnavailableReason()}`,
      );
    }
    if (request.terminal) {
      // Node's spawn has no hook between fork and exec: no setsid + TIOCSCTTY for the child.
      throw new UnsupportedOptionError(
        `pty cannot be honoured by a local child process on the child_process spawn backend: a terminal needs the native backend (${nativeUnavailableReason()}); or run it through a procsock daemon that has it`,
        'pty',
        'a local child process',
      );
    }
    const [program, ...args] = [...(request.argvPrefix ?? []), ...request.argv] as [
      string,
      ...string[],
    ];
    armWorkerGuard();
    const child = spawn(request.file ?? program, args, {
      argv0: program,
      cwd: request.cwd,
      env: request.env,
      detached: request.processGroup,
      stdio: request.report ? ['pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'],
      uid: request.uid,
      gid: request.gid,
    });
    // Node keeps a copy of the whole argv as `spawnargs` for the child's life (it only puts it
    // on spawn errors, which procsock reports from its own argv): a daemon running programs
    // with 65,536 arguments would hold 512 KB more per connection until the reap.
    (child as { spawnargs: string[] }).spawnargs = [];
    // In a worker, the addon stops and reaps it should the worker be terminated first.
    if (child.pid !== undefined) child.once('exit', guardWorkerChild(child.pid, request));
    if (!request.detached) attach(child);
    if (!request.report) return child;
    return Object.assign(child, {
      report: (child.stdio?.[3] ?? null) as Readable | null as unknown as ChildOutput | null,
    });
  },
};
