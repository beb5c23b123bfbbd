/**
 * The floor for spawning on this machine: bench/c/spawn-loop.c (posix_spawn + waitpid in a
 * loop), compiled here with `cc` (or $CC) and run as a peer.
 */
import { spawnSync } from 'node:child_process';
import { type BuiltPeer, buildPeer, peerSource } from './peer.js';

export type CLoop = BuiltPeer;

export function buildCLoop(): CLoop {
  return buildPeer('spawn-loop', (out) => ({
    argv: [process.env.CC ?? 'cc', '-O2', '-o', out, peerSource('c/spawn-loop.c')],
  }));
}

/** Spawns per second of `program`, `count` in all, `concurrency` in flight. */
export function cLoopRate(
  path: string,
  concurrency: number,
  count: number,
  program: string,
): number {
  const out = spawnSync(path, [String(count), String(concurrency), program], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`spawn-loop failed: ${out.stderr}`);
  return Number(out.stdout);
}
