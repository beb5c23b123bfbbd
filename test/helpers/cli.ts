/**
 * The built `procsock` command (`dist/cli/main.js`) as a separate process, for the CLI tests
 * of `run` and `shell`. It runs from dist, not through tsx, so the CLI has no helper process
 * of its own (tsx starts esbuild) and its children are the program's alone. `npm test` builds
 * first; alone: `npm run build && node scripts/run-tests.mjs test/cli/run.test.ts`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { childrenOf, type ProcessInfo } from './process.js';

export const DIST_CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** Starts `procsock ARGS…`; stdin, stdout and stderr are pipes. PROCSOCK_SOCKET is unset. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  if (!existsSync(DIST_CLI)) throw new Error(`${DIST_CLI} is missing: run npm run build first`);
  const childEnv = { ...process.env, ...env };
  if (env.PROCSOCK_SOCKET === undefined) delete childEnv.PROCSOCK_SOCKET;
  return spawn(process.execPath, [DIST_CLI, ...args], { env: childEnv });
}

export interface CliResult {
  /** Exit code, or the signal's name when the CLI itself was killed. */
  status: number | string;
  stdout: string;
  stderr: string;
}

/** Collects a started CLI's output and resolves when it has exited and its pipes closed. */
export function finished(child: ChildProcess): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ status: code ?? signal ?? -1, stdout, stderr }));
  });
}

/** Runs `procsock ARGS…` with `input` on its stdin (none: stdin closed at once) to the end. */
export function runCli(
  args: string[],
  { input, env }: { input?: string | Buffer; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  const child = spawnCli(args, env);
  const result = finished(child);
  child.stdin!.on('error', () => {}); // the CLI may exit before reading it all
  child.stdin!.end(input);
  return result;
}

/**
 * Resolves once `text` has appeared on a started CLI's stdout, with what was read meanwhile.
 * Call `finished(child)` first if the whole output is wanted too.
 */
export function stdoutUntil(child: ChildProcess, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer | string) => {
      seen += chunk.toString();
      if (!seen.includes(text)) return;
      child.stdout!.off('data', onData);
      resolve(seen);
    };
    child.stdout!.on('data', onData);
    child.once('close', () =>
      reject(new Error(`exited before printing ${JSON.stringify(text)}: ${seen}`)),
    );
  });
}

/**
 * This test process's children (zombies included), but for tsx's esbuild service, which tsx
 * may start at any time: the CLIs, daemons' programs and shells that a test must not leak.
 */
export function testChildren(): ProcessInfo[] {
  return childrenOf().filter((child) => child.command !== 'esbuild');
}
