/**
 * The daemon's memory under many-argument requests (issue 13, item 2): N clients each
 * announce argc = 65536 and send 65,535 empty arguments (3 bytes each on the wire) — one
 * short of complete, so the daemon holds every argument received while it waits for the
 * last. Prints the daemon's RSS idle, with the requests held, and after the clients left;
 * then the same with complete requests whose programs run (`sleep` with the empty
 * arguments), the other place a request's argv lives.
 *
 *   node --import tsx bench/argv-memory.ts [clients=100] [daemon flags…]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isListening } from '../test/helpers/daemon.js';

const ARGC = 65_536;

/** argc, argv[0..program.length), then empty arguments up to `sent` in all. */
export function manyArgsRequest(program: string[], sent: number): Buffer {
  const ns = (text: string) => `${Buffer.byteLength(text)}:${text},`;
  return Buffer.from(
    ns(String(ARGC)) + program.map(ns).join('') + '0:,'.repeat(sent - program.length),
  );
}

function status(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)?.[1]) / 1024;
}

/** Bytes the process has read (read(2) on its sockets included). */
function bytesRead(pid: number): number {
  return Number(/rchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1]);
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await delay(20);
  }
}

function open(path: string, bytes: Buffer): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    socket.on('error', reject);
    socket.on('data', () => {});
    socket.write(bytes, () => resolve(socket));
  });
}

/** Sends `request` on `clients` connections and waits until the daemon has read all of it. */
async function hold(daemon: ChildProcess, path: string, clients: number, request: Buffer) {
  const before = bytesRead(daemon.pid!);
  const sockets = await Promise.all(Array.from({ length: clients }, () => open(path, request)));
  await until(
    () => bytesRead(daemon.pid!) - before >= clients * request.length,
    'the daemon has read every request',
  );
  await delay(500); // RSS settles (nothing to wait on: the daemon is idle now)
  return sockets;
}

async function release(sockets: Socket[]): Promise<void> {
  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          socket.once('close', () => resolve());
          socket.destroy();
        }),
    ),
  );
}

async function main(): Promise<void> {
  const clients = Number(process.argv[2] ?? 100);
  const flags = process.argv.slice(3);
  const root = fileURLToPath(new URL('..', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'procsock-argv-memory-'));
  const path = join(dir, 'daemon.sock');
  const args = [join(root, 'dist/cli/main.js'), 'serve', '--allow-root', '-t', '0', ...flags];
  const daemon = spawn(process.execPath, [...args, path], { stdio: 'inherit' });
  try {
    await until(() => isListening(path), 'the daemon listens');
    const pid = daemon.pid!;
    const idle = status(pid, 'VmRSS');
    console.log(`daemon: node ${args.join(' ')} SOCKET`);
    console.log(`${clients} clients, argc ${ARGC}, 65,535 empty arguments each`);
    console.log(`idle RSS                                  ${idle.toFixed(1)} MB`);

    const incomplete = manyArgsRequest(['true'], ARGC - 1);
    let sockets = await hold(daemon, path, clients, incomplete);
    console.log(
      `requests held (one argument short)        ${status(pid, 'VmRSS').toFixed(1)} MB  (${((clients * incomplete.length) / 1e6).toFixed(1)} MB sent)`,
    );
    await release(sockets);
    await delay(1000);
    console.log(`after those clients left                  ${status(pid, 'VmRSS').toFixed(1)} MB`);

    const complete = manyArgsRequest(['sh', '-c', 'exec sleep 1000'], ARGC);
    sockets = await hold(daemon, path, clients, complete);
    console.log(`complete requests, programs running       ${status(pid, 'VmRSS').toFixed(1)} MB`);
    await release(sockets);
    await delay(1000);
    console.log(`after those clients left                  ${status(pid, 'VmRSS').toFixed(1)} MB`);
    console.log(`peak RSS (VmHWM)                          ${status(pid, 'VmHWM').toFixed(1)} MB`);
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.once('exit', resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
