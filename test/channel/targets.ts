/**
 * The two places a program can run, for suites that must behave the same on both: a
 * local child, and a real procsock daemon (in this process, on a Unix socket in a temp
 * dir). Its programs are children of this process too, so the /proc checks see them.
 * Each is a transport (src/channel/transport.ts), exactly as the client API takes it.
 */
import { readFileSync } from 'node:fs';
import type { ProcessChannel } from '../../src/channel/channel.js';
import { localTransport } from '../../src/channel/local.js';
import { daemonTransport } from '../../src/channel/socket.js';
import { openChannel, type Transport } from '../../src/channel/transport.js';
import { startDaemon } from '../helpers/daemon.js';
import { childrenOf, processInfo, waitUntil } from '../helpers/process.js';

export const TARGET_KINDS = ['local', 'socket'] as const;
export type TargetKind = (typeof TARGET_KINDS)[number];

/** Short grace in tests: a stopped program gets KILL this soon after TERM. */
export const TEST_KILL_TIMEOUT = 300;

export interface TestTarget {
  kind: TargetKind;
  /** What the client API takes: a local transport with the short grace, or the daemon's. */
  target: Transport;
  /** The daemon's socket path (undefined for local). */
  socket: string | undefined;
  /** Starts argv on this target as a bare channel. */
  open(argv: readonly string[]): Promise<ProcessChannel>;
  close(): Promise<void>;
}

export async function openTarget(kind: TargetKind): Promise<TestTarget> {
  const daemon =
    kind === 'socket' ? await startDaemon({ timeout: 0, killTimeout: TEST_KILL_TIMEOUT }) : null;
  const target = daemon
    ? daemonTransport(daemon.path)
    : localTransport({ killTimeout: TEST_KILL_TIMEOUT });
  return {
    kind,
    target,
    socket: daemon?.path,
    open: (argv) => openChannel(target, { argv }),
    close: async () => daemon?.close(),
  };
}

/** Live or zombie children of this process (and so of the in-process daemon) running `command`. */
export function childrenNamed(command: string) {
  return childrenOf(process.pid).filter((child) => child.command === command);
}

/** Bytes a process has written so far (/proc/PID/io `wchar`). */
export function bytesWritten(pid: number): number {
  const io = readProc(pid, 'io');
  return Number(/wchar:\s*(\d+)/.exec(io)?.[1] ?? Number.NaN);
}

/**
 * True while the process sleeps in a write to a full pipe — a real pipe (`pipe_write`),
 * or the Unix socketpair libuv gives child_process children (`sock_alloc_send_pskb`).
 */
export function blockedOnPipeWrite(pid: number): boolean {
  return (
    processInfo(pid)?.state === 'S' &&
    /pipe_write|sock_alloc_send|unix_stream_sendmsg/.test(readProc(pid, 'wchan'))
  );
}

function readProc(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Waits until the one child named `command` is stuck writing to a full pipe — blocked
 * there, and still blocked with nothing more written at the next look (stuck, not just
 * slow) — and returns how many bytes it had managed to write.
 */
export async function stuckProducer(command: string): Promise<number> {
  await waitUntil(() => childrenNamed(command).length === 1, `${command} has started`, 5000);
  const { pid } = childrenNamed(command)[0]!;
  let stuckAt = -1;
  try {
    await waitUntil(
      () => {
        const written = bytesWritten(pid);
        const blocked = blockedOnPipeWrite(pid);
        const stuck = blocked && written === stuckAt;
        stuckAt = blocked ? written : -1;
        return stuck;
      },
      `${command} is blocked on a full pipe`,
      10_000,
    );
  } catch (error) {
    const info = processInfo(pid);
    throw new Error(
      `${(error as Error).message}: pid ${pid} state ${info?.state ?? 'gone'}, wchan ${readProc(pid, 'wchan') || '-'}, wrote ${bytesWritten(pid)}`,
    );
  }
  return stuckAt;
}
