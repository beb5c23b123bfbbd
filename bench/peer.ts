/**
 * Peers compiled here from their source in bench/ (a C loop, a Go program), each into a
 * temporary directory, when the toolchain is installed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BuiltPeer {
  /** The built binary; null (see `why`) when the compiler is missing or fails. */
  path: string | null;
  why: string;
  cleanup(): void;
}

/** A source file of bench/, by its path below it. */
export function peerSource(path: string): string {
  return join(dirname(fileURLToPath(import.meta.url)), path);
}

/**
 * Builds `name` with `compile(out, dir)`: the compiler's argv writing the binary to `out`, and
 * any environment it needs (`dir` is the temporary directory, removed by `cleanup()`).
 */
export function buildPeer(
  name: string,
  compile: (out: string, dir: string) => { argv: string[]; env?: NodeJS.ProcessEnv },
): BuiltPeer {
  const dir = mkdtempSync(join(tmpdir(), 'procsock-bench-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const path = join(dir, name);
  const { argv, env } = compile(path, dir);
  const built = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  if (built.error || built.status !== 0) {
    return { path: null, why: built.error?.message ?? built.stderr.trim(), cleanup };
  }
  return { path, why: '', cleanup };
}
