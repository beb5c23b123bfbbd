/**
 * Memory per connection is bounded by the request limits, per-argument overhead included —
 * while the request arrives and while its program runs (the second test).
 * 100 clients each announcing argc = 65536 and sending 65,535 arguments, all empty but the program (196 KB each
 * on the wire, one argument short of a request) took the daemon from ~50 MB to 1.3 GB when
 * every argument was a Buffer of its own. Stored in one buffer plus offsets, they cost
 * 256 KB a connection (bench/argv-memory.ts has the figures).
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { ARG_OVERHEAD, DEFAULT_REQUEST_LIMITS } from '../../src/protocol/request.js';
import { daemonChildren, startDaemonProcess } from '../helpers/daemon.js';
import { waitUntil } from '../helpers/process.js';

const CLIENTS = 100;
/** Fewer for the running case: a child_process spawn forks the whole daemon, 0.5 s each under load. */
const RUNNING = 50;
const ARGC = 65_536;

function rssMB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

/** Bytes the process has read with read(2): its sockets' included. */
function bytesRead(pid: number): number {
  return Number(/rchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1]);
}

test(`${CLIENTS} clients × 65,535 (empty) arguments: the daemon grows by tens of MB, not a GB`, async () => {
  const daemon = await startDaemonProcess(['-t', '0', '-m', String(CLIENTS)]);
  const sockets: Socket[] = [];
  try {
    const request = Buffer.from(`5:${ARGC},4:true,${'0:,'.repeat(ARGC - 2)}`);
    // The daemon is idle from here on: its resident size has settled enough to compare.
    const idle = rssMB(daemon.pid);
    const readBefore = bytesRead(daemon.pid);
    for (let i = 0; i < CLIENTS; i++) {
      const socket = connect({ path: daemon.path });
      socket.on('error', () => {});
      socket.write(request);
      sockets.push(socket);
    }
    await waitUntil(
      () => bytesRead(daemon.pid) - readBefore >= CLIENTS * request.length,
      'the daemon has read every request',
      60_000,
    );
    const grown = rssMB(daemon.pid) - idle;
    // Offsets: 100 × 256 KB; plus the socket chunks read (20 MB, garbage by now) and heap slack.
    assert.ok(grown < 100, `the daemon grew by ${grown.toFixed(0)} MB`);
    assert.equal(daemon.stderr(), '');
  } finally {
    for (const socket of sockets) socket.destroy();
    assert.equal(await daemon.stop(), 0);
    daemon.cleanup();
  }
});

test(`${RUNNING} running programs with 65,536 arguments each: the daemon holds what the limits count`, async () => {
  const daemon = await startDaemonProcess(['-t', '0', '-m', String(RUNNING)]);
  const sockets: Socket[] = [];
  try {
    const program = ['sh', '-c', 'exec sleep 1000'];
    const ns = (text: string) => `${text.length}:${text},`;
    const request = Buffer.from(
      ns(String(ARGC)) + program.map(ns).join('') + '0:,'.repeat(ARGC - program.length),
    );
    // What the request counts against maxArgBytes: its bytes, and ARG_OVERHEAD per argument.
    const counted = ARGC * ARG_OVERHEAD + program.join('').length;
    assert.ok(
      counted <= DEFAULT_REQUEST_LIMITS.maxArgBytes,
      'the request is within the default limits',
    );
    const idle = rssMB(daemon.pid);
    for (let i = 0; i < RUNNING; i++) {
      const socket = connect({ path: daemon.path });
      socket.on('error', () => {});
      socket.write(request);
      sockets.push(socket);
    }
    // Every program has been started (sh exec'd sleep: the spawn's plan is held until the reap).
    await waitUntil(
      () =>
        daemonChildren(daemon.pid).filter((child) => child.command === 'sleep').length === RUNNING,
      `${RUNNING} programs run`,
      120_000,
    );
    const grown = rssMB(daemon.pid) - idle;
    // Each connection holds its argv (an array slot per argument) and the spawn's copy until
    // the reap: ARG_OVERHEAD covers both. Beyond that, the heap's slack and the 20 MB of
    // request chunks read (garbage by now, perhaps not yet collected).
    const bound = (RUNNING * counted) / 2 ** 20 + 40;
    assert.ok(
      grown < bound,
      `the daemon grew by ${grown.toFixed(0)} MB (bound ${bound.toFixed(0)} MB)`,
    );
    console.log(`# ${RUNNING} running: grew ${grown.toFixed(0)} MB, bound ${bound.toFixed(0)} MB`);
  } finally {
    for (const socket of sockets) socket.destroy();
    assert.equal(await daemon.stop(), 0);
    daemon.cleanup();
  }
});
