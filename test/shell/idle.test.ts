/**
 * An idle Shell that nobody stopped does not keep the Node process alive (as an unref'd
 * socket), while a pending run does — locally (both spawn backends) and through a daemon.
 * The script is a node process of its own: that it ends at all is the test (bounded by the
 * test timeout, not by a clock threshold), and the shell it left goes with it.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { isAlive, waitUntil } from '../helpers/process.js';

const SCRIPT = fileURLToPath(new URL('../fixtures/idle-shell.ts', import.meta.url));
const BOUNDED = { timeout: 60_000 };

/** Runs the script to its own end; its JSON lines. */
async function script(
  mode: 'idle' | 'pending',
  socket?: string,
): Promise<Record<string, unknown>[]> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', SCRIPT, mode, ...(socket ? [socket] : [])],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    out += text;
  });
  const [code] = await once(child, 'close');
  assert.equal(code, 0);
  return out
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

for (const kind of ['local', 'daemon'] as const) {
  describe(`an unstopped Shell (${kind})`, () => {
    let daemon: TestDaemon | undefined;
    before(async () => {
      if (kind === 'daemon') daemon = await startDaemon({ timeout: 0 });
    });
    after(async () => {
      await daemon?.close();
    });

    test('idle, it lets the process end; the shell ends with it', BOUNDED, async () => {
      const [started, ran] = await script('idle', daemon?.path);
      assert.deepEqual(ran, { stdout: 'hi\n' });
      if (kind === 'local') {
        const pid = started!.pid as number;
        await waitUntil(() => !isAlive(pid), 'the shell is gone');
      }
    });

    test('a pending run keeps the process alive until it is done', BOUNDED, async () => {
      const lines = await script('pending', daemon?.path);
      assert.deepEqual(lines.at(-1), { stdout: 'done\n' });
    });
  });
}
