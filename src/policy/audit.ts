/**
 * The audit log: one JSON object per line and per connection, on stderr or appended to a
 * file, so it can be shipped and queried as it is. `-d` keeps its own human-readable log.
 */
import {
  closeSync,
  constants,
  createWriteStream,
  fstatSync,
  openSync,
  type Stats,
  type WriteStream,
} from 'node:fs';
import type { ResourceUsage } from '../channel/usage.js';
import type { PeerCredentials } from '../native/addon.js';

export type { PeerCredentials };

export interface AuditRecord {
  /** ISO 8601 time the connection was accepted. */
  time: string;
  /** The connecting process, where the OS tells it (SO_PEERCRED); null otherwise. */
  peer: PeerCredentials | null;
  argv: string[];
  /** pid of the program (not of its reaper, when contained), null when it did not start. */
  pid: number | null;
  /**
   * How it ended: its exit code or the signal that killed it — also after a hang-up or a
   * protocol violation, when no client was left to tell — or both null when it never ran.
   */
  exitCode: number | null;
  termSignal: string | null;
  refused: string | null;
  error: string | null;
  /**
   * Why the run ended: exit, signal, deadline, timeout, output-limit, stdin-limit, hangup,
   * shutdown, spawn-failure, policy-refused, unsupported, protocol-violation; null when no
   * request came.
   */
  reason: string | null;
  /**
   * What the run cost, as the client of an extended connection is told (`ResourceUsage`: CPU
   * µs and maxRSS KiB where the spawn backend measures them, else null; wall time ms); null
   * when nothing ran.
   */
  usage: ResourceUsage | null;
  /** Descendants stopped with the run (contained runs); null where not tracked. */
  descendantsStopped: number | null;
  /** From accept to close, ms. */
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
}

export interface AuditLog {
  write(record: AuditRecord): void;
  close(): Promise<void>;
}

/**
 * `'-'` writes to stderr; any other string is a file opened for appending — opened here,
 * synchronously, so a bad path fails at start-up rather than at the first connection. A
 * symlink there is not followed (O_NOFOLLOW): whoever could plant one would choose which
 * file a root daemon appends to.
 */
export function openAuditLog(target: string): AuditLog {
  if (target === '-') {
    return {
      write: (record) => process.stderr.write(`${JSON.stringify(record)}\n`),
      close: async () => {},
    };
  }
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted at the path (no reader) fails at once instead of blocking the
    // daemon's start for ever — where even SIGTERM is not handled (no effect on a regular file).
    fd = openSync(
      target,
      constants.O_WRONLY |
        constants.O_APPEND |
        constants.O_CREAT |
        constants.O_NOFOLLOW |
        constants.O_NONBLOCK,
      0o640,
    );
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENXIO') throw new Error(`${target} is a FIFO, not a file: give a regular file`);
    if (code !== 'ELOOP') throw error;
    throw new Error(`${target} is a symbolic link: not followed (give the file itself)`);
  }
  try {
    checkAuditFile(target, fstatSync(fd));
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  const stream: WriteStream = createWriteStream('', { fd });
  stream.on('error', (error) => {
    process.stderr.write(`procsock: cannot write the audit log ${target}: ${error.message}\n`);
  });
  return {
    write: (record) => stream.write(`${JSON.stringify(record)}\n`),
    close: () => new Promise((resolve) => stream.end(resolve)),
  };
}

/**
 * The audit log holds every client's argv: it must be a regular file that root or the
 * daemon's user owns, which nobody else may write. A file someone else made at the path first
 * (in /tmp, say) would give them every record, and one they may write lets them forge them.
 */
function checkAuditFile(target: string, stats: Stats): void {
  if (!stats.isFile()) throw new Error(`${target} is not a regular file: give a file`);
  const self = process.geteuid?.() ?? 0;
  if (stats.uid !== 0 && stats.uid !== self) {
    throw new Error(
      `${target} is owned by uid ${stats.uid}, not by root or the daemon's user: its owner could read every record; remove it or give a file of your own`,
    );
  }
  if ((stats.mode & 0o022) !== 0) {
    throw new Error(
      `${target} has mode 0${(stats.mode & 0o777).toString(8)}: others may write it and forge records; chmod go-w it`,
    );
  }
}
