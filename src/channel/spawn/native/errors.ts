/** How the native backend reports failures: as Node's child_process does, or a SpawnError. */
import { getSystemErrorName } from 'node:util';
import { SpawnError } from '../../../errors.js';

/** What the addon's spawn() could not do before the child existed (`out[0]` then). */
const FAILED_SYSCALL = ['', 'malloc', 'pipe2', 'clone', 'openpty'] as const;

/** The system call a failed spawn() names in `out[0]`. */
export function failedSyscall(stage: number): string {
  return FAILED_SYSCALL[stage] || 'spawn';
}

/** `errno` is negative, as the addon returns it. */
export function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  const code = getSystemErrorName(errno);
  return Object.assign(new Error(`${syscall} ${code}`), { errno, code, syscall });
}

/** As child_process reports a program it could not start (`errno` negative). */
export function execError(errno: number, file: string, argv: readonly string[]): Error {
  return Object.assign(errnoError(errno, `spawn ${file}`), {
    path: file,
    spawnargs: argv.slice(1),
  });
}

/** There never was a child (no descriptors, no memory): procsock's own failure. */
export function startError(
  errno: number,
  syscall: string,
  file: string,
  argv: readonly string[],
): SpawnError {
  return new SpawnError(argv[0] ?? file, getSystemErrorName(errno), syscall, errno);
}

/** As Node throws for a string argument with a NUL byte in it. */
export function invalidArgument(name: string, value: string): Error {
  const error = new TypeError(
    `The argument '${name}' must be a string without null bytes. Received ${JSON.stringify(value)}`,
  ) as TypeError & { code: string };
  error.code = 'ERR_INVALID_ARG_VALUE';
  return error;
}
