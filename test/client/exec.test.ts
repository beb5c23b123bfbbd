/**
 * ez-mode: the call forms, defaults and per-call overrides, callbacks versus collection,
 * encodings, timeouts, and the errors — on a local child and through a real daemon.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createExec, run } from '../../src/client/exec.js';
import { AbortError, ArgumentError, TimeoutError } from '../../src/errors.js';
import { openTarget, TARGET_KINDS, type TestTarget } from '../channel/targets.js';
import { withoutUsage } from '../helpers/outcome.js';

for (const kind of TARGET_KINDS) {
  describe(`ez-mode exec: ${kind}`, () => {
    let target: TestTarget;
    before(async () => {
      target = await openTarget(kind);
    });
    after(() => target.close());

    test('a single string runs a program with no arguments', async () => {
      const result = await createExec(target.target)('uname');
      assert.deepEqual(withoutUsage(result), {
        argv: ['uname'],
        stdout: 'Linux\n',
        stderr: '',
        unknown: '',
        exitCode: 0,
        termSignal: null,
        reason: 'exit',
        descendantsStopped: null,
      });
    });

    test('several strings are the argv; an array is the argv; options may follow', async () => {
      const exec = createExec(target.target);
      assert.equal((await exec('printf', '%s|', 'a b', '$HOME')).stdout, 'a b|$HOME|');
      assert.equal((await exec(['printf', '%s|', 'x'])).stdout, 'x|');
      assert.equal((await exec(['cat'], { stdin: 'piped' })).stdout, 'piped');
      assert.equal((await exec('cat', { stdin: 'one' })).stdout, 'one');
      assert.equal((await exec({ argv: ['echo', 'opts'] })).stdout, 'opts\n');
    });

    test('defaults set beforehand are used, and each call may override them', async () => {
      const exec = createExec(target.target, { stdin: 'default input' });
      exec.argv = ['cat'];
      assert.equal((await exec()).stdout, 'default input');
      exec.stdin = 'changed';
      assert.equal((await exec()).stdout, 'changed');
      assert.equal((await exec({ stdin: 'per call' })).stdout, 'per call');
      assert.equal((await exec('tr', 'a-z', 'A-Z')).stdout, 'CHANGED');
      assert.equal((await exec({ stdin: null })).stdout, '');
      assert.deepEqual(exec.argv, ['cat'], 'a call does not change the defaults');
    });

    test('a non-zero exit is a result, not an error', async () => {
      const result = await run(['sh', '-c', 'echo out; echo err >&2; exit 3'], socketOf(target));
      assert.deepEqual(
        [result.stdout, result.stderr, result.exitCode, result.termSignal],
        ['out\n', 'err\n', 3, null],
      );
    });

    test('callbacks receive the output, which is then not collected', async () => {
      const out: string[] = [];
      const err: string[] = [];
      const exec = createExec(target.target, { stderr: (chunk) => void err.push(chunk) });
      const result = await exec({
        argv: ['sh', '-c', 'echo one; echo two >&2; echo three'],
        stdout: (chunk) => void out.push(chunk),
      });
      assert.equal(out.join(''), 'one\nthree\n');
      assert.equal(err.join(''), 'two\n');
      assert.equal(result.stdout, '');
      assert.equal(result.stderr, '');
      assert.equal(result.exitCode, 0);
      const collected = await exec({ argv: ['sh', '-c', 'echo e >&2'], stderr: null });
      assert.equal(collected.stderr, 'e\n', 'null turns a default callback off');
    });

    test('a callback never gets half a UTF-8 character', async () => {
      const chunks: string[] = [];
      // 'é' is two bytes; printf writes them in two separate writes.
      await createExec(target.target)({
        argv: ['sh', '-c', "printf '\\303'; sleep 0.05; printf '\\251\\n'"],
        stdout: (chunk) => void chunks.push(chunk),
      });
      assert.deepEqual(chunks.join(''), 'é\n');
      assert.ok(chunks.every((chunk) => !chunk.includes('\uFFFD')));
    });

    test("encoding 'buffer' returns the bytes as they are", async () => {
      const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const result = await createExec(target.target)({
        argv: ['cat'],
        stdin: bytes,
        encoding: 'buffer',
      });
      assert.ok(Buffer.isBuffer(result.stdout));
      assert.ok(result.stdout.equals(bytes));
      assert.ok(Buffer.isBuffer(result.stderr) && result.stderr.length === 0);
    });

    test('stdin given up front reaches the program whole, at every size', async () => {
      // Through a daemon, stdin written with the request leaves in its first write: joined
      // when small, as separate buffers above that, past the socket's high-water mark too.
      const protocols = target.socket ? (['auto', 'procsock'] as const) : (['auto'] as const);
      for (const protocol of protocols) {
        for (const size of [1, 4000, 5000, 100_000, 3 * 1024 * 1024]) {
          const bytes = Buffer.alloc(size);
          for (let i = 0; i < size; i += 997) bytes[i] = (i / 997) & 0xff;
          const result = await createExec(target.target)({
            argv: ['cat'],
            stdin: bytes,
            encoding: 'buffer',
            protocol,
          });
          assert.ok(result.stdout.equals(bytes), `${size} bytes, ${protocol}`);
        }
      }
    });

    test('stdin may be streamed from an async iterable, with back-pressure', async () => {
      const hash = createHash('sha256');
      async function* source() {
        for (let i = 0; i < 64; i++) {
          const chunk = Buffer.alloc(256 * 1024, i);
          hash.update(chunk);
          yield chunk;
        }
      }
      const received = createHash('sha256');
      let bytes = 0;
      const result = await createExec(target.target)({
        argv: ['cat'],
        stdin: source(),
        encoding: 'buffer',
        stdout: (chunk) => {
          received.update(chunk);
          bytes += chunk.length;
        },
      });
      assert.equal(result.exitCode, 0);
      assert.equal(bytes, 64 * 256 * 1024);
      assert.equal(received.digest('hex'), hash.digest('hex'));
    });

    test('an async callback holds the program back until it settles', async () => {
      let inFlight = 0;
      let maxInFlight = 0;
      let chunks = 0;
      await createExec(target.target)({
        argv: ['head', '-c', String(4 * 1024 * 1024), '/dev/zero'],
        encoding: 'buffer',
        stdout: async () => {
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          chunks++;
          await new Promise((resolve) => setImmediate(resolve));
          inFlight--;
        },
      });
      assert.ok(chunks > 1);
      // Chunks already read may still arrive while paused, but never an unbounded number.
      assert.ok(maxInFlight <= 4, `${maxInFlight} callbacks were running at once`);
    });

    test('a callback that throws stops the program and fails the call', async () => {
      const exec = createExec(target.target);
      await assert.rejects(
        exec({
          argv: ['sh', '-c', 'echo hi; exec sleep 30'],
          stdout: () => {
            throw new Error('sink broke');
          },
        }),
        /sink broke/,
      );
    });

    test('a callback that throws or rejects with nothing still fails the call (never a result)', async () => {
      const exec = createExec(target.target);
      const argv = ['sh', '-c', 'echo hi; exec sleep 30'];
      for (const stdout of [
        () => Promise.reject(),
        () => Promise.reject(null),
        () => {
          throw 0;
        },
      ]) {
        await assert.rejects(exec({ argv, stdout }), /threw or rejected with (undefined|null|0)/);
      }
      const stdin = (async function* () {
        yield 'x';
        throw undefined;
      })();
      await assert.rejects(exec({ argv: ['cat'], stdin }), /rejected with undefined/);
    });

    test('a stream the program did not read to its end is let go, not destroyed: the next run gets all of it', async () => {
      const exec = createExec(target.target);
      const source = new PassThrough();
      assert.equal((await exec({ argv: ['true'], stdin: source })).exitCode, 0);
      assert.equal(source.destroyed, false);
      // The first run is over: nothing of its own may take what is written from now on.
      const next = exec({ argv: ['cat'], stdin: source });
      source.write('hello ');
      source.end('world');
      assert.equal((await next).stdout, 'hello world');
    });

    test('stdin that yields anything but strings and bytes is an ArgumentError; the program is stopped', async () => {
      const exec = createExec(target.target);
      for (const piece of [42, { a: 1 }, null]) {
        const stdin = (async function* () {
          yield piece as unknown as string;
        })();
        await assert.rejects(exec({ argv: ['cat'], stdin }), (error: unknown) => {
          assert.ok(error instanceof ArgumentError, String(error));
          assert.match(error.message, /must yield strings or Buffers/);
          return true;
        });
      }
    });

    test("idleTimeout is the longest wait between pieces of data (lua-resty-exec's timeout)", async () => {
      const exec = createExec(target.target, { idleTimeout: 300 });
      // 5 pieces 100 ms apart: 500 ms in all, never 300 ms without data.
      const result = await exec('sh', '-c', 'for i in 1 2 3 4 5; do echo $i; sleep 0.1; done');
      assert.equal(result.stdout, '1\n2\n3\n4\n5\n');
      await assert.rejects(exec('sh', '-c', 'echo start; sleep 5'), (error: TimeoutError) => {
        assert.ok(error instanceof TimeoutError);
        assert.equal(error.code, 'PROCSOCK_TIMEOUT');
        assert.equal(error.timeout, 300);
        assert.equal(error.option, 'idleTimeout');
        return true;
      });
    });

    test('streamed stdin the program accepts counts as data for idleTimeout', async () => {
      const exec = createExec(target.target, { idleTimeout: 300 });
      async function* slowly() {
        for (let i = 0; i < 6; i++) {
          yield `line ${i}\n`;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      // wc prints only at the end, 600 ms in; the input kept coming every 100 ms.
      const result = await exec({ argv: ['wc', '-l'], stdin: slowly() });
      assert.equal(result.stdout.trim(), '6');
    });

    test('with timeoutFatal false a timeout just means keep waiting', async () => {
      const exec = createExec(target.target, { idleTimeout: 50, timeoutFatal: false });
      const result = await exec('sh', '-c', 'sleep 0.3; echo late');
      assert.equal(result.stdout, 'late\n');
      assert.equal(result.exitCode, 0);
    });

    test('an already aborted signal runs nothing', async () => {
      const exec = createExec(target.target);
      await assert.rejects(exec({ argv: ['true'], signal: AbortSignal.abort() }), AbortError);
    });
  });
}

describe('ez-mode arguments', () => {
  const exec = createExec();

  test('bad arguments reject with ArgumentError, never throw, and run nothing', async () => {
    const bad: [string, () => unknown][] = [
      ['no argv', () => exec()],
      ['empty argv', () => exec([])],
      ['empty program', () => exec('')],
      ['non-string argument', () => exec(['echo', 1 as unknown as string])],
      ['argv twice', () => exec(['echo'], { argv: ['echo'] })],
      ['negative timeout', () => exec('true', { timeout: -1 })],
      ['bad encoding', () => exec('true', { encoding: 'latin1' as 'utf8' })],
      ['callback not a function', () => exec('true', { stdout: 'x' as unknown as () => void })],
      ['bad stdin', () => exec('true', { stdin: 42 as unknown as string })],
      ['unknown option', () => exec('true', { timout: 5 } as never)],
      ['mixed call form', () => exec('a', ['b'] as unknown as string)],
    ];
    for (const [what, call] of bad) {
      let promise: unknown;
      assert.doesNotThrow(() => {
        promise = call();
      }, what);
      await assert.rejects(promise as Promise<unknown>, ArgumentError, what);
    }
    assert.throws(() => createExec({ socket: '' }), ArgumentError);
    assert.throws(() => createExec('local', { timeout: Number.NaN }), ArgumentError);
  });

  test('a default set by assignment is checked at call time', async () => {
    const custom = createExec('local', { argv: ['true'] });
    custom.timeout = -5;
    await assert.rejects(custom(), ArgumentError);
  });

  test('defaults are checked again whenever one changes, and only where a call uses them', async () => {
    const custom = createExec('local', { argv: ['true'] });
    assert.equal((await custom()).exitCode, 0);
    custom.idleTimeout = Number.NaN;
    await assert.rejects(custom(), /idleTimeout/);
    // A call that sets the option itself does not use the bad default.
    assert.equal((await custom({ idleTimeout: 5000 })).exitCode, 0);
    custom.idleTimeout = 5000;
    assert.equal((await custom()).exitCode, 0);
    custom.encoding = 'latin1' as 'utf8';
    await assert.rejects(custom(), /encoding/);
    custom.encoding = 'utf8';
    assert.equal((await custom()).stdout, '');
    // An object default changed in place is checked too.
    const terminal = { columns: 80, rows: 24 };
    const withPty = createExec('local', { argv: ['true'], pty: terminal });
    terminal.columns = 0;
    await assert.rejects(withPty(), ArgumentError);
  });
});

function socketOf(target: TestTarget): { socket?: string } {
  return target.socket ? { socket: target.socket } : {};
}
