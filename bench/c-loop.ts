/**
 * The floor for spawning on this machine: bench/c/spawn-loop.c (posix_spawn + waitpid in a
 * loop), compiled here with `cc` (or $CC) and run as a peer.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export interface CLoop {
  /** The built binary; null (see `why`) when there is no compiler. */
  path: string | null;
  why: string;
  cleanup(): void;
}

export function buildCLoop(): CLoop {
  const dir = mkdtempSync(join(tmpdir(), 'procsock-bench-'));
  const path = join(dir, 'spawn-loop');
  const cc = process.env.CC ?? 'cc';
  const built = spawnSync(cc, ['-O2', '-o', path, join(here, 'c', 'spawn-loop.c')], {
    encoding: 'utf8',
  });
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  if (built.error || built.status !== 0) {
    return { path: null, why: built.error?.message ?? built.stderr.trim(), cleanup };
  }
  return { path, why: '', cleanup };
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
