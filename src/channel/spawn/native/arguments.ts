/** A `SpawnRequest` packed into the flat arguments of the addon's spawn() (native/spawn.c). */
import { isMainThread } from 'node:worker_threads';
import { DEFAULT_KILL_TIMEOUT } from '../../../core/limits.js';
import type { PackedSpawn } from '../../../native/addon.js';
import type { SpawnLimits, SpawnRequest } from '../backend.js';
import { invalidArgument } from './errors.js';

const FLAG_PROCESS_GROUP = 1;
const FLAG_SET_UID = 2;
const FLAG_SET_GID = 4;
/** A fourth pipe, the child's descriptor 3 (`SpawnRequest.report`). */
const FLAG_REPORT_PIPE = 8;
/** The kernel KILLs the child when the thread that started it ends (PR_SET_PDEATHSIG). */
const FLAG_DIE_WITH_PARENT = 16;
/** PTY mode: a terminal on stdin and stdout, and on stderr too (native/spawn.c). */
const FLAG_TERMINAL = 32;
const FLAG_TERMINAL_STDERR = 64;
const FLAG_TERMINAL_RAW = 128;

/** Linux resource numbers (the same on every architecture Node runs on). */
const RLIMIT = { cpuSeconds: 0, processes: 6, openFiles: 7, addressSpace: 9 } as const;

function checkNul(name: string, value: string): string {
  if (value.includes('\0')) throw invalidArgument(name, value);
  return value;
}

function rlimitTriples(limits: SpawnLimits | undefined): number[] | null {
  if (!limits) return null;
  const triples: number[] = [];
  for (const [key, resource] of Object.entries(RLIMIT)) {
    const value = limits[key as keyof SpawnLimits];
    if (value === undefined) continue;
    const limit = value === Number.POSITIVE_INFINITY ? -1 : Math.floor(value);
    triples.push(resource, limit, limit);
  }
  return triples.length > 0 ? triples : null;
}

/** Throws as child_process does for a NUL byte in the file, an argument, env or cwd. */
export function packSpawn(request: SpawnRequest, file: string): PackedSpawn {
  const { argv, argvPrefix = [] } = request;
  let fileAndArgv = checkNul('file', file);
  for (const arg of argvPrefix) fileAndArgv += `\0${checkNul('args', arg)}`;
  for (const arg of argv) fileAndArgv += `\0${checkNul('args', arg)}`;
  let envText: string | null = null;
  let envCount = 0;
  // Without an env the addon copies the C library's environ. That is the main thread's
  // process.env; a worker's is a copy of its own (and the main thread may be rewriting
  // environ meanwhile): a worker passes it, as child_process would.
  const env = request.env ?? (isMainThread ? undefined : process.env);
  if (env) {
    // As child_process does: every defined variable, in the object's order.
    const pairs: string[] = [];
    for (const key of Object.keys(env)) {
      const value = env[key];
      if (value === undefined) continue;
      pairs.push(`${checkNul('options.env', key)}=${checkNul('options.env', String(value))}`);
    }
    envText = pairs.join('\0');
    envCount = pairs.length;
  }
  const cwd = request.cwd === undefined ? null : checkNul('options.cwd', request.cwd);
  const flags =
    (request.processGroup ? FLAG_PROCESS_GROUP : 0) |
    (request.uid !== undefined ? FLAG_SET_UID : 0) |
    (request.gid !== undefined ? FLAG_SET_GID : 0) |
    (request.report ? FLAG_REPORT_PIPE : 0) |
    (request.terminal ? FLAG_TERMINAL : 0) |
    (request.terminal?.stderr === 'pty' ? FLAG_TERMINAL_STDERR : 0) |
    (request.terminal?.raw ? FLAG_TERMINAL_RAW : 0) |
    // The death signal follows the thread that started the child: a worker's children are
    // stopped by the addon's orphanage when the worker ends instead (TERM, KILL after killGrace).
    (request.detached || !isMainThread ? 0 : FLAG_DIE_WITH_PARENT);
  return [
    fileAndArgv,
    argvPrefix.length + argv.length,
    envText,
    envCount,
    cwd,
    flags,
    request.uid ?? -1,
    request.gid ?? -1,
    rlimitTriples(request.rlimits),
  ];
}

/** spawn()'s last argument: the terminal's window size, in PTY mode. */
export function windowSize(request: SpawnRequest): [columns: number, rows: number] | undefined {
  return request.terminal ? [request.terminal.columns, request.terminal.rows] : undefined;
}

/** The request's kill grace for the addon (an unsigned 32-bit count of milliseconds). */
export function killGrace(request: SpawnRequest): number {
  const grace = request.killGrace ?? DEFAULT_KILL_TIMEOUT;
  return Number.isFinite(grace) ? Math.min(Math.max(Math.floor(grace), 0), 0xffffffff) : 0xffffffff;
}
