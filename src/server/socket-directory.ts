/**
 * The directory the daemon's socket lives in, checked before anything is created in it.
 * Whoever can rename entries of that directory — or of any directory above it, or swap a
 * symlink on the way — can move the daemon's socket aside, bind their own in its place, and
 * read every client's argv and stdin. So every directory from `/` down to the socket's is
 * required to be
 *
 *   - owned by root or by the daemon's user, and
 *   - not writable by group or others, unless sticky (as /tmp is: nobody can then rename
 *     or remove an entry they do not own),
 *
 * and a symlink met on the way is followed only when root or the daemon's user owns it.
 *
 * Once that holds, nobody else can change what the path names, so checking it and then
 * using it is not a race against another user. The socket's own entry is then examined and
 * removed through the opened directory (`/proc/self/fd/N/NAME`, which the kernel resolves
 * from the descriptor like unlinkat(2) would, since Node has no *at calls), and after the
 * bind — which goes by the path as given, so that `ss -x` and /proc/net/unix show it — the
 * path's directory is checked to still be the opened one.
 */
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readlinkSync,
  type Stats,
  statSync,
} from 'node:fs';
import { basename, dirname, isAbsolute } from 'node:path';
import { describeError, SocketPathError } from '../errors.js';

/** Most bytes of a Unix socket path: sockaddr_un's sun_path holds 108 with the final NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;
const MAX_SYMLINKS = 40; // as the kernel allows in one lookup (MAXSYMLINKS)
const S_ISVTX = 0o1000; // the sticky bit (not in fs.constants)

export class SocketDirectory {
  /** The socket's directory, symlinks resolved. */
  readonly realPath: string;
  /** The socket file's name in it. */
  readonly name: string;
  readonly #socketPath: string;
  #fd: number | null;
  readonly #identity: Stats;

  private constructor(socketPath: string, realPath: string, fd: number, identity: Stats) {
    this.#socketPath = socketPath;
    this.realPath = realPath;
    this.name = basename(socketPath);
    this.#fd = fd;
    this.#identity = identity;
  }

  /**
   * Checks the path (length, every directory and symlink on the way) and opens the socket's
   * directory; throws `SocketPathError` saying what is wrong and what to do.
   */
  static open(socketPath: string, trustedUids = defaultTrustedUids()): SocketDirectory {
    const length = Buffer.byteLength(socketPath);
    if (length > MAX_SOCKET_PATH_BYTES) {
      throw new SocketPathError(
        `the socket path ${socketPath} is ${length} bytes long; a Unix socket path holds at most ${MAX_SOCKET_PATH_BYTES} (sun_path): pick a shorter one`,
        socketPath,
      );
    }
    if (basename(socketPath) === '' || socketPath.endsWith('/')) {
      throw new SocketPathError(`${socketPath} names a directory, not a socket file`, socketPath);
    }
    const realPath = resolveTrusted(dirname(socketPath), socketPath, trustedUids);
    let fd: number;
    try {
      fd = openSync(realPath, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    } catch (error) {
      throw new SocketPathError(
        `cannot open the socket's directory ${realPath}: ${describeError(error)}`,
        socketPath,
        { cause: error },
      );
    }
    // What was opened is what was checked: same file, still trusted (fstat is of the object itself).
    const identity = fstatSync(fd);
    const checked = lstatSync(realPath);
    try {
      if (identity.dev !== checked.dev || identity.ino !== checked.ino) {
        throw new SocketPathError(`${realPath} changed while it was being checked`, socketPath);
      }
      checkDirectory(realPath, identity, socketPath, trustedUids);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    return new SocketDirectory(socketPath, realPath, fd, identity);
  }

  /**
   * A path to the socket's entry that goes through the open directory, not through the path
   * the daemon was given.
   */
  get entry(): string {
    if (this.#fd === null) throw new Error('the socket directory is closed');
    return `/proc/self/fd/${this.#fd}/${this.name}`;
  }

  /** After the bind: the path's directory must still be the one opened and checked. */
  verify(): void {
    let now: Stats;
    try {
      now = statSync(dirname(this.#socketPath));
    } catch (error) {
      throw new SocketPathError(
        `the socket's directory vanished while the daemon started: ${describeError(error)}`,
        this.#socketPath,
      );
    }
    if (now.dev !== this.#identity.dev || now.ino !== this.#identity.ino) {
      throw new SocketPathError(
        `the socket's directory ${dirname(this.#socketPath)} was replaced while the daemon started`,
        this.#socketPath,
      );
    }
  }

  close(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
  }
}

function defaultTrustedUids(): ReadonlySet<number> {
  return new Set([0, process.geteuid?.() ?? 0]);
}

/**
 * Resolves `dir` component by component as the kernel would (symlinks followed, `..`
 * taken physically), checking each directory and symlink on the way; returns the real path.
 */
function resolveTrusted(dir: string, socketPath: string, trusted: ReadonlySet<number>): string {
  const pending = splitPath(isAbsolute(dir) ? dir : `${process.cwd()}/${dir}`);
  let current = '/';
  checkDirectory('/', lstatSync('/'), socketPath, trusted);
  let symlinks = 0;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      current = dirname(current); // `current` is real: its parent is physical
      continue;
    }
    const next = current === '/' ? `/${name}` : `${current}/${name}`;
    let stats: Stats;
    try {
      stats = lstatSync(next);
    } catch (error) {
      throw new SocketPathError(
        (error as NodeJS.ErrnoException).code === 'ENOENT'
          ? `the directory ${dir} does not exist (there is no ${next})`
          : `cannot examine ${next}: ${describeError(error)}`,
        socketPath,
        { cause: error },
      );
    }
    if (stats.isSymbolicLink()) {
      if (!trusted.has(stats.uid)) {
        throw new SocketPathError(
          `refusing to follow ${next}: a symbolic link owned by uid ${stats.uid}, not by root or the daemon's user (its owner could point it elsewhere); use a path without it`,
          socketPath,
        );
      }
      if (++symlinks > MAX_SYMLINKS) {
        throw new SocketPathError(`too many symbolic links on the way to ${dir}`, socketPath);
      }
      const target = readlinkSync(next);
      pending.unshift(...splitPath(target));
      if (isAbsolute(target)) current = '/';
      continue;
    }
    if (!stats.isDirectory()) {
      throw new SocketPathError(`${next} is not a directory`, socketPath);
    }
    checkDirectory(next, stats, socketPath, trusted);
    current = next;
  }
  return current;
}

function checkDirectory(
  path: string,
  stats: Stats,
  socketPath: string,
  trusted: ReadonlySet<number>,
): void {
  if (!trusted.has(stats.uid)) {
    throw new SocketPathError(
      `refusing to create the socket under ${path}: it is owned by uid ${stats.uid}, not by root or the daemon's user, who could replace the socket; use a directory of your own (e.g. under /run)`,
      socketPath,
    );
  }
  const sticky = (stats.mode & S_ISVTX) !== 0;
  if ((stats.mode & 0o022) !== 0 && !sticky) {
    throw new SocketPathError(
      `refusing to create the socket under ${path}: mode 0${(stats.mode & 0o7777).toString(8)} lets ${stats.mode & 0o002 ? 'anyone' : 'its group'} replace the socket; remove group/other write permission (or set the sticky bit)`,
      socketPath,
    );
  }
}

function splitPath(path: string): string[] {
  return path.split('/').filter((part) => part !== '');
}
