/**
 * Memory per connection is bounded by the request limits, per-argument overhead included:
 * 100 clients each announcing argc = 65536 and sending 65,535 arguments, all empty but the program (196 KB each
 * on the wire, one argument short of a request) took the daemon from ~50 MB to 1.3 GB when
 * every argument was a Buffer of its own. Stored in one buffer plus offsets, they cost
 * 256 KB a connection (bench/argv-memory.ts has the figures).
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { startDaemonProcess } from '../helpers/daemon.js';
import { waitUntil } from '../helpers/process.js';

const CLIENTS = 100;
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
