/**
 * An in-process daemon on a socket in a fresh temp directory, for tests:
 *
 *   const daemon = await startDaemon({ timeout: 300, killTimeout: 200 });
 *   ... connect to daemon.path ...
 *   await daemon.close();   // closes the server (reaps everything) and removes the directory
 */
import { type ServeOptions, type Server, serve } from '../../src/server/index.js';
import { tempDir } from './process.js';

export interface TestDaemon {
  /** Socket path. */
  path: string;
  server: Server;
  /** Debug log lines collected so far (when `collectLog` was set). */
  log: string[];
  close(): Promise<void>;
}

export async function startDaemon(
  options: Partial<ServeOptions> & { collectLog?: boolean } = {},
): Promise<TestDaemon> {
  const dir = tempDir('procsock-daemon-');
  const log: string[] = [];
  const { collectLog, ...serveOptions } = options;
  const path = serveOptions.path ?? dir.path('daemon.sock');
  let server: Server;
  try {
    server = await serve({
      log: collectLog ? (line) => log.push(line) : undefined,
      ...serveOptions,
      path,
    });
  } catch (error) {
    dir.cleanup();
    throw error;
  }
  return {
    path,
    server,
    log,
    async close() {
      await server.close();
      dir.cleanup();
    },
  };
}
