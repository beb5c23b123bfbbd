/**
 * The `native` backend: `native/spawn.c` (loaded through the front door, src/native/addon.ts)
 * starts the child sharing our memory until it execs, hands back its pid and three pipe
 * descriptors (four with `report`), and calls back when the child has exited and been reaped. The addon also
 * reads the output pipes (`NativeOutput`: a poll and one read per wake-up, into one shared
 * buffer), which costs a fraction of a `net.Socket` per pipe; stdin becomes a `net.Socket`
 * only when something is written to it (`NativeInput`). In PTY mode stdin and stdout are a
 * pseudo-terminal's master (`TerminalInput` writes it; see native/pty.c).
 *
 * The parts, one job each: native/arguments.ts packs a request into spawn()'s arguments,
 * native/child.ts is the child, native/output.ts and native/input.ts its pipes (and
 * native/terminal.ts stdin in PTY mode),
 * native/errors.ts maps errno to the errors child_process would give; src/native/exits.ts
 * and src/native/reads.ts are the registries the addon calls back into.
 */
import { isMainThread } from 'node:worker_threads';
import { addonLoadError, loadAddon } from '../../native/addon.js';
import { watchExit } from '../../native/exits.js';
import type { SpawnBackend, SpawnedChild, SpawnRequest } from './backend.js';
import { killGrace, packSpawn, windowSize } from './native/arguments.js';
import { NativeChild } from './native/child.js';
import { failedSyscall } from './native/errors.js';
import { NativeInput } from './native/input.js';
import { NativeOutput } from './native/output.js';
import { TerminalInput } from './native/terminal.js';

/** spawn()'s `out`: pid, stdin, stdout, stderr, report; or, when it failed, the stage in [0]. */
const spawned = new Int32Array(5);

/**
 * In a worker thread, makes the addon stop and reap a child started by someone else
 * (child_process) should the worker be terminated before the child exits: nothing in
 * JavaScript runs then, and nobody would ever reap it. Returns the function to call at the
 * child's exit (a no-op in the main thread, or without the addon).
 */
export function guardWorkerChild(pid: number, request: SpawnRequest): () => void {
  if (isMainThread) return noop;
  const native = loadAddon();
  if (!native?.guard(pid, request.processGroup, killGrace(request))) return noop;
  return () => native.unguard(pid);
}

function noop(): void {}

/**
 * Before a worker's child_process spawn: loads the addon, so its teardown hook is in place
 * when the child is born. A worker terminated before `guardWorkerChild` ran (anywhere in
 * Node's spawn JavaScript) then still has its child reaped — the hook adopts every child of
 * the worker's thread (native/spawn.c, adopt_thread_children); loaded only after the spawn,
 * as before, the first child of a worker terminated that early stayed a zombie.
 */
export function armWorkerGuard(): void {
  if (!isMainThread) loadAddon();
}

export const nativeBackend: SpawnBackend = {
  name: 'native',
  spawn(request: SpawnRequest): SpawnedChild {
    const native = loadAddon();
    if (!native) throw addonLoadError() ?? new Error('the native spawn addon is not available');
    const { argv, argvPrefix } = request;
    const file = request.file ?? argvPrefix?.[0] ?? argv[0]!;
    const errno = native.spawn(
      ...packSpawn(request, file),
      spawned,
      killGrace(request),
      windowSize(request),
    );
    if (errno !== 0) {
      // Nothing was started: out of descriptors for the pipes, of memory, of processes.
      const child = new NativeChild(undefined, file, argv, argvPrefix);
      const syscall = failedSyscall(spawned[0]!);
      process.nextTick(() => child.failed(-errno, syscall));
      return child;
    }
    // Started; whether it could exec is known when it is reaped (see native/spawn.c).
    const child = new NativeChild(spawned[0]!, file, argv, argvPrefix);
    const lend = request.lendOutput ?? false;
    const terminal = request.terminal !== undefined;
    // PTY mode: stdin and stdout are the terminal's master; stderr too, then with no pipe (-1).
    child.stdin = terminal
      ? new TerminalInput(native, spawned[1]!)
      : new NativeInput(native, spawned[1]!);
    child.stdout = new NativeOutput(native, spawned[2]!, lend, terminal);
    child.stderr = spawned[3]! >= 0 ? new NativeOutput(native, spawned[3]!, lend) : null;
    // The reaper's few bytes: always copied (the channel keeps them).
    if (request.report) child.report = new NativeOutput(native, spawned[4]!, false);
    watchExit(spawned[0]!, child);
    return child;
  },
};
