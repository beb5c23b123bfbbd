/**
 * Binding the daemon's socket path safely:
 *
 *   nothing there                      → bind
 *   a socket nobody answers on (stale) → remove it, bind
 *   a socket a daemon answers on       → SocketPathError (never steal a live daemon's path)
 *   anything else (file, dir, symlink) → SocketPathError; never deleted, never chmod-ed
 *
 * The socket is created with its final permissions: the umask is narrowed around the
 * synchronous bind inside `server.listen`, so there is no moment at which the file has
 * wider permissions than asked for (a chmod after bind would leave such a window).
 */
import { existsSync, lstatSync, type Stats, unlinkSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { dirname } from 'node:path';
import { describeError, SocketPathError } from '../errors.js';

/** Makes `path` free for a bind, or throws `SocketPathError` saying why it cannot be used. */
export async function prepareSocketPath(path: string): Promise<void> {
  const stats = lstatOrNull(path);
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
  const answer = await probe(path);
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
  const again = lstatOrNull(path);
  if (again === null) return;
  if (!again.isSocket() || again.ino !== stats.ino || again.dev !== stats.dev) {
    throw new SocketPathError(`${path} changed while it was being checked; try again`, path);
  }
  try {
    unlinkSync(path);
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
 * Binds and listens on `path` with exactly `mode`; resolves with the socket file's
 * identity (to remove only that file later), rejects with `SocketPathError`.
 */
export async function listenOnPath(
  server: Server,
  path: string,
  mode: number,
  backlog: number,
): Promise<Stats> {
  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      const why =
        error.code === 'EADDRINUSE'
          ? 'the path was taken while starting (another daemon?)'
          : !existsSync(dirname(path))
            ? `the directory ${dirname(path)} does not exist`
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
  const stats = lstatOrNull(path);
  if (stats === null || !stats.isSocket()) {
    server.close();
    throw new SocketPathError(`the socket ${path} vanished right after it was created`, path);
  }
  const actual = stats.mode & 0o777;
  if (actual !== mode) {
    server.close();
    throw new SocketPathError(
      `the socket ${path} got mode ${octal(actual)} instead of ${octal(mode)}`,
      path,
    );
  }
  return stats;
}

/** Removes the socket file if it is still the one this daemon created. */
export function removeSocketFile(path: string, created: Stats): void {
  const stats = lstatOrNull(path);
  if (stats === null || !stats.isSocket()) return;
  if (stats.ino !== created.ino || stats.dev !== created.dev) return;
  try {
    unlinkSync(path);
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

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
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
