/**
 * Binding the daemon's socket path safely, once its directory passed the checks of
 * socket-directory.ts (length, owners and modes of every directory on the way, symlinks):
 *
 *   nothing there                      → bind
 *   a socket nobody answers on (stale) → remove it, bind
 *   a socket a daemon answers on       → SocketPathError (never steal a live daemon's path)
 *   anything else (file, dir, symlink) → SocketPathError; never deleted, never chmod-ed
 *
 * The socket is created with its final permissions: the umask is narrowed around the
 * synchronous bind inside `server.listen`, so there is no moment at which the file has
 * wider permissions than asked for (a chmod after bind would leave such a window).
 *
 * The socket's entry is examined, probed and removed through the open directory
 * (`SocketDirectory.entry`); only the bind goes by the path as given.
 */
import { closeSync, lstatSync, type Stats, unlinkSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { describeError, SocketPathError } from '../errors.js';
import { SocketDirectory } from './socket-directory.js';

/**
 * Checks the socket's directory and makes `path` free for a bind; returns the open
 * directory (close it when done), or throws `SocketPathError` saying why it cannot be used.
 */
export async function prepareSocketPath(path: string): Promise<SocketDirectory> {
  const directory = SocketDirectory.open(path);
  try {
    await freeSocketEntry(path, directory.entry);
  } catch (error) {
    directory.close();
    throw error;
  }
  return directory;
}

async function freeSocketEntry(path: string, entry: string): Promise<void> {
  const stats = lstatOrNull(entry, path);
  if (stats === null) return;
  if (stats.isSymbolicLink()) {
    throw new SocketPathError(
      `${path} is a symbolic link; refusing to use it as the daemon's socket (remove it or pick another path)`,
      path,
    );
  }
  if (!stats.isSocket()) {
    throw new SocketPathError(
      `${path} exists and is not a socket; refusing to replace it (remove it or pick another path)`,
      path,
    );
  }
  const answer = await probe(entry);
  if (answer === 'live') {
    throw new SocketPathError(
      `another daemon is already listening on ${path}; stop it first or pick another path`,
      path,
    );
  }
  if (answer !== 'stale') {
    throw new SocketPathError(
      `cannot tell whether the socket ${path} is in use (${answer}); remove it or pick another path`,
      path,
    );
  }
  // Stale: nobody listens. Check it is still the same file before removing it.
  const again = lstatOrNull(entry, path);
  if (again === null) return;
  if (!again.isSocket() || again.ino !== stats.ino || again.dev !== stats.dev) {
    throw new SocketPathError(`${path} changed while it was being checked; try again`, path);
  }
  try {
    unlinkSync(entry);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new SocketPathError(
        `cannot remove the stale socket ${path}: ${describeError(error)}`,
        path,
        {
          cause: error,
        },
      );
    }
  }
}

/**
 * Binds and listens on `path` (in `directory`) with exactly `mode`; resolves with the socket
 * file's identity (to remove only that file later), rejects with `SocketPathError`.
 */
export async function listenOnPath(
  server: Server,
  path: string,
  directory: SocketDirectory,
  mode: number,
  backlog: number,
): Promise<Stats> {
  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      const why =
        error.code === 'EADDRINUSE'
          ? 'the path was taken while starting (another daemon?)'
          : describeError(error);
      reject(new SocketPathError(`cannot listen on ${path}: ${why}`, path, { cause: error }));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // bind(2) creates the file with 0777 & ~umask, and runs synchronously inside listen().
    const previous = process.umask(~mode & 0o777);
    try {
      server.listen({ path, backlog });
    } finally {
      process.umask(previous);
    }
  });
  return checkCreated(path, directory, mode, () => server.close());
}

/**
 * `listenOnPath` for a listening socket the native addon makes (`bindAndListen`: the
 * descriptor or -errno; bind(2) runs inside it, under the narrowed umask): the descriptor.
 */
export function listenOnPathNatively(
  bindAndListen: (path: string, backlog: number) => number,
  path: string,
  directory: SocketDirectory,
  mode: number,
  backlog: number,
): { fd: number; stats: Stats } {
  const previous = process.umask(~mode & 0o777);
  let fd: number;
  try {
    fd = bindAndListen(path, backlog);
  } finally {
    process.umask(previous);
  }
  if (fd < 0) {
    const code = getSystemErrorName(fd);
    const why =
      code === 'EADDRINUSE' ? 'the path was taken while starting (another daemon?)' : code;
    throw new SocketPathError(`cannot listen on ${path}: ${why}`, path, {
      cause: Object.assign(new Error(`listen ${code} ${path}`), { code, errno: fd }),
    });
  }
  const stats = checkCreated(path, directory, mode, () => closeSync(fd));
  return { fd, stats };
}

/**
 * `listenOnPath` through a descriptor the addon bound (see listenOnPathNatively), which `server`
 * then listens on: a listener libuv opened from a descriptor has no path of its own, so it does
 * not unlink one at close. One bound by path does, by name — a socket that replaced ours since
 * (another daemon's, after ours was removed) would go with it; removeSocketFile checks first.
 */
export async function listenOnPathByFd(
  server: Server,
  bindAndListen: (path: string, backlog: number) => number,
  path: string,
  directory: SocketDirectory,
  mode: number,
  backlog: number,
): Promise<Stats> {
  const { fd, stats } = listenOnPathNatively(bindAndListen, path, directory, mode, backlog);
  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      closeSync(fd);
      reject(new SocketPathError(`cannot listen on ${path}: ${describeError(error)}`, path));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ fd, backlog });
  });
  return stats;
}

/** The socket file just bound is there, a socket, with exactly `mode`; else `close()` and throw. */
function checkCreated(
  path: string,
  directory: SocketDirectory,
  mode: number,
  close: () => void,
): Stats {
  let stats: Stats | null;
  try {
    directory.verify();
    stats = lstatOrNull(directory.entry, path);
  } catch (error) {
    close();
    throw error;
  }
  if (stats === null || !stats.isSocket()) {
    close();
    throw new SocketPathError(`the socket ${path} vanished right after it was created`, path);
  }
  const actual = stats.mode & 0o777;
  if (actual !== mode) {
    close();
    throw new SocketPathError(
      `the socket ${path} got mode ${octal(actual)} instead of ${octal(mode)}`,
      path,
    );
  }
  return stats;
}

/** Removes the socket file if it is still the one this daemon created. */
export function removeSocketFile(directory: SocketDirectory, created: Stats): void {
  try {
    const stats = lstatSync(directory.entry);
    if (!stats.isSocket() || stats.ino !== created.ino || stats.dev !== created.dev) return;
    unlinkSync(directory.entry);
  } catch {
    // Gone already, or not ours to remove any more.
  }
}

function probe(path: string): Promise<'live' | 'stale' | string> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve('live');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(error.code === 'ECONNREFUSED' ? 'stale' : (error.code ?? error.message));
    });
  });
}

/** lstat of `entry`; errors name `path`, the socket path as the user gave it. */
function lstatOrNull(entry: string, path: string): Stats | null {
  try {
    return lstatSync(entry);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new SocketPathError(`cannot examine ${path}: ${describeError(error)}`, path, {
      cause: error,
    });
  }
}

export function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}
