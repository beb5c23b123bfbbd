/**
 * The daemon's descriptor budget. At the limit (RLIMIT_NOFILE) accept(2) fails with EMFILE,
 * and libuv then accepts and closes the pending clients itself (its reserve-descriptor
 * trick, which is also why the daemon does not spin) without telling Node: those failures
 * cannot be seen. What can be seen is the daemon's own descriptor count, so it is read when
 * a connection comes or goes — only near the limit, where it matters — and the daemon says
 * once when it reaches the limit and once when it is below it again.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Descriptors a connection holds at most: its socket, three pipes, a pidfd, one spare. */
const PER_CONNECTION = 6;
/**
 * Fewer free than this (counted after a client's socket was accepted) and that client's
 * program may not start: its spawn needs both ends of three pipes at once, a pidfd and an
 * exec-error pipe — up to 9 more. (With 6, a daemon whose count fell just between could fail
 * every spawn with EMFILE and never say so: which depended on how many descriptors it held
 * before its first client.)
 */
const HEADROOM = 9;

export class DescriptorWatch {
  /** The soft limit, or null when it cannot be read (then nothing is watched). */
  readonly limit: number | null;
  readonly #log: (line: string) => void;
  readonly #base: number;
  #atLimit = false;

  constructor(log: (line: string) => void) {
    this.#log = log;
    this.limit = softLimit();
    this.#base = this.limit === null ? 0 : openDescriptors();
  }

  /** After a connection was accepted or closed: `connections` are held now (served and waiting). */
  check(connections: number): void {
    const limit = this.limit;
    if (limit === null) return;
    if (!this.#atLimit && this.#base + connections * PER_CONNECTION < limit - HEADROOM) return;
    const open = openDescriptors();
    const atLimit = open > limit - HEADROOM;
    if (atLimit === this.#atLimit) return;
    this.#atLimit = atLimit;
    this.#log(
      atLimit
        ? `descriptor limit reached (${open} of ${limit} open, ${connections} connections): until connections close, new clients are reset by the kernel and programs may fail to start (EMFILE); raise the limit (ulimit -n) or lower -m and -q`
        : `below the descriptor limit again (${open} of ${limit} open): accepting clients`,
    );
  }
}

function openDescriptors(): number {
  try {
    return readdirSync('/proc/self/fd').length - 1; // the listing's own descriptor
  } catch {
    return 0;
  }
}

function softLimit(): number | null {
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line ? Number(line[1]) : null;
  } catch {
    return null;
  }
}
