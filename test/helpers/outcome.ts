/**
 * The outcome fields every result carries (`reason`, `usage`, `descendantsStopped`), for
 * tests that compare whole results: `withoutUsage(x)` checks that `usage` has its shape —
 * null, or CPU and memory fields that are null or whole non-negative numbers and a wall
 * time — and returns the rest, which is deterministic, for a `deepEqual`.
 */
import { strict as assert } from 'node:assert';
import { reaperAvailable } from '../../src/channel/contain.js';
import type { ResourceUsage } from '../../src/channel/usage.js';
import type { ExecResult } from '../../src/client/execute.js';
import type { ProcsockError } from '../../src/errors.js';

/**
 * `descendantsStopped` of a run through a daemon with its default options: contained where
 * procsock_reaper is built (0 when nothing had to be stopped), else null.
 */
export const DAEMON_DESCENDANTS_STOPPED: number | null = reaperAvailable() ? 0 : null;

export function withoutUsage<T extends { usage: ResourceUsage | null }>(
  value: T | null | undefined,
): Omit<T, 'usage'> {
  assert.ok(value, 'an outcome');
  const { usage, ...rest } = value;
  if (usage !== null) assertUsageShape(usage);
  return rest;
}

export function assertUsageShape(usage: ResourceUsage): void {
  assert.deepEqual(Object.keys(usage).sort(), [
    'maxRSS',
    'memoryPeak',
    'systemCPUTime',
    'userCPUTime',
    'wallTime',
  ]);
  for (const [key, value] of Object.entries(usage)) {
    if (value === null && key !== 'wallTime') continue;
    assert.ok(Number.isInteger(value) && value >= 0, `usage.${key} is ${value}`);
  }
}

/** What a call rejected with, and the result its error carries (asserted to be there). */
export async function failure(call: Promise<unknown>): Promise<[ProcsockError, ExecResult]> {
  const error = await call.then(
    () => assert.fail('the call should have failed'),
    (error: ProcsockError) => error,
  );
  assert.ok(error.result, `${error.code} carries a result`);
  return [error, error.result as ExecResult];
}
