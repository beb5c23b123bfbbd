/**
 * A test scenario run as a node process of its own (test/fixtures/*.mjs), for what must not
 * happen in the test runner: a crash is then that process's exit status, a full descriptor
 * table or a terminated worker nobody else's problem. The fixtures import the build (dist/:
 * worker threads do not get tsx's loader); `npm test` builds first.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
}

export interface Scenario {
  status: number | string;
  stdout: string;
  stderr: string;
}

/** Runs `node ARGS…` to its end (PROCSOCK_NATIVE_PATH and the like are inherited). */
export function scenario(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Scenario> {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ status: code ?? signal ?? -1, stdout, stderr }));
  });
}

/** The scenario's JSON line, after checking that it exited 0 and wrote nothing to stderr. */
export function report<T>(result: Scenario): T {
  // A crash (SIGSEGV), a warning ("closed but not opened in unmanaged mode"), anything.
  assert.equal(result.status, 0, `the scenario ended with ${result.status}: ${result.stderr}`);
  assert.equal(result.stderr, '', 'the scenario wrote to stderr');
  return JSON.parse(result.stdout) as T;
}

/**
 * The backends a heavy file runs: each pass of the suite (PROCSOCK_SPAWN set by
 * scripts/run-tests.mjs) its own only; alone, both.
 */
export function backendsToRun(): ('native' | 'child_process')[] {
  const chosen = process.env.PROCSOCK_SPAWN;
  return (['native', 'child_process'] as const).filter(
    (name) => (chosen !== 'native' && chosen !== 'child_process') || name === chosen,
  );
}
