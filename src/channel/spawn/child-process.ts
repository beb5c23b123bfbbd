/** The `child_process` backend: Node's own spawn (a fork of the whole Node process). */
import { spawn } from 'node:child_process';
import { ArgumentError } from '../../errors.js';
import type { SpawnBackend, SpawnedChild, SpawnRequest } from './backend.js';
import { nativeUnavailableReason } from './locate.js';
import { guardWorkerChild } from './native.js';

export const childProcessBackend: SpawnBackend = {
  name: 'child_process',
  spawn(request: SpawnRequest): SpawnedChild {
    if (request.rlimits && Object.keys(request.rlimits).length > 0) {
      throw new ArgumentError(
        `resource limits need the native spawn backend: ${nativeUnavailableReason()}`,
      );
    }
    const [program, ...args] = request.argv as [string, ...string[]];
    const child = spawn(request.file ?? program, args, {
      argv0: program,
      cwd: request.cwd,
      env: request.env,
      detached: request.processGroup,
      stdio: ['pipe', 'pipe', 'pipe'],
      uid: request.uid,
      gid: request.gid,
    });
    // In a worker, the addon stops and reaps it should the worker be terminated first.
    if (child.pid !== undefined) child.once('exit', guardWorkerChild(child.pid, request));
    return child;
  },
};
