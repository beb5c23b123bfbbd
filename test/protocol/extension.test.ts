import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import fc from 'fast-check';
import type { ExitStatus } from '../../src/core/output.js';
import { LimitError, ProtocolError } from '../../src/errors.js';
import {
  type ExtendedRequest,
  encodeExtendedRequest,
  encodeHello,
  encodeRunEnd,
  encodeSignalMessage,
  encodeStdinMessage,
  encodeStopMessage,
  encodeStopping,
  encodeWindowMessage,
  openingVersion,
  STDIN_END_MESSAGE,
  type WireReason,
  type WireUsage,
} from '../../src/protocol/extension.js';
import { encodeExit, encodeOutput, ReplyDecoder } from '../../src/protocol/reply.js';
import { RequestDecoder, type RequestLimits } from '../../src/protocol/request.js';
import { args, extendedRequest, ns } from '../helpers/raw-client.js';

interface Seen {
  version: number | null;
  request: ExtendedRequest | null;
  stdin: Buffer;
  events: string[];
  plainArgs: string[] | null;
}

function decoder(limits: Partial<RequestLimits> = {}): { decoder: RequestDecoder; seen: Seen } {
  const seen: Seen = {
    version: null,
    request: null,
    stdin: Buffer.alloc(0),
    events: [],
    plainArgs: null,
  };
  const decoder = new RequestDecoder(
    {
      onArgs: (argv) => {
        seen.plainArgs = argv.map(String);
      },
      onStdin: () => assert.fail('plain stdin'),
      onStdinEnd: () => assert.fail('plain stdin end'),
      onExtended: (version) => {
        seen.version = version;
        seen.events.push('hello');
        return {
          onHeader: (request) => {
            seen.request = request;
            seen.events.push('header');
          },
          onStdin: (data) => {
            assert.ok(data.length > 0, 'empty stdin piece');
            seen.stdin = Buffer.concat([seen.stdin, data]);
            if (seen.events.at(-1) !== 'stdin') seen.events.push('stdin');
          },
          onStdinEnd: () => seen.events.push('end'),
          onSignal: (name) => seen.events.push(`signal ${name}`),
          onWindow: (columns, rows) => seen.events.push(`window ${columns}x${rows}`),
          onStop: (cause) => seen.events.push(`stop ${cause}`),
        };
      },
    },
    limits,
  );
  return { decoder, seen };
}

const FULL = extendedRequest(
  [
    ...args(['sh', '-c', 'pwd; echo $FOO']),
    ['cwd', '/usr'],
    ['env-mode', 'merge'],
    ['env', 'FOO=bar'],
    ['env', 'EMPTY='],
    ['env', 'EQ=a=b'],
    ['timeout', '1500'],
    ['kill-timeout', '200'],
    ['max-output', '0'],
    ['kill-group', '1'],
    ['contain', '1'],
    ['exit-grace', '0'],
  ],
  [
    ['stdin', 'abc'],
    ['signal', 'INT'],
    ['stdin', 'def'],
    ['stdin', ''],
    ['signal', 'TERM'],
    ['stop', 'idle-timeout'],
  ],
);

const FULL_REQUEST: ExtendedRequest = {
  argv: ['sh', '-c', 'pwd; echo $FOO'],
  cwd: '/usr',
  env: {
    mode: 'merge',
    vars: [
      ['FOO', 'bar'],
      ['EMPTY', ''],
      ['EQ', 'a=b'],
    ],
  },
  timeout: 1500,
  killTimeout: 200,
  maxOutput: 0,
  killGroup: true,
  contain: true,
  exitGrace: 0,
  unsupported: [],
};

const FULL_EVENTS = [
  'hello',
  'header',
  'stdin',
  'signal INT',
  'stdin',
  'end',
  'signal TERM',
  'stop idle-timeout',
];

test('an extended request: opening, every field, then messages in order', () => {
  const { decoder: d, seen } = decoder();
  d.push(FULL);
  assert.equal(seen.version, 1);
  assert.deepEqual(seen.request, FULL_REQUEST);
  assert.equal(seen.stdin.toString(), 'abcdef');
  assert.deepEqual(seen.events, FULL_EVENTS);
  assert.equal(seen.plainArgs, null);
  assert.equal(d.phase, 'extended');
});

test('one byte at a time, and at any split, it parses the same', () => {
  const { decoder: d, seen } = decoder();
  for (const byte of FULL) d.push(Buffer.from([byte]));
  assert.deepEqual(seen.request, FULL_REQUEST);
  assert.deepEqual(seen.events, FULL_EVENTS);
  fc.assert(
    fc.property(fc.uniqueArray(fc.nat({ max: FULL.length }), { maxLength: 12 }), (cuts) => {
      const { decoder: split, seen: splitSeen } = decoder();
      let from = 0;
      for (const cut of [...cuts.sort((a, b) => a - b), FULL.length]) {
        split.push(FULL.subarray(from, cut));
        from = cut;
      }
      assert.deepEqual(splitSeen.request, FULL_REQUEST);
      assert.equal(splitSeen.stdin.toString(), 'abcdef');
      assert.deepEqual(splitSeen.events, FULL_EVENTS);
    }),
  );
});

test('the client encoder writes what the parser reads', () => {
  const { decoder: d, seen } = decoder();
  const { unsupported: _, ...fields } = FULL_REQUEST;
  d.push(encodeExtendedRequest({ ...fields, extra: [['x-new', '1']] }));
  d.push(Buffer.concat([...encodeStdinMessage(Buffer.from('abc')), encodeSignalMessage('INT')]));
  d.push(Buffer.concat(encodeStdinMessage(Buffer.alloc(10_000, 'x'))));
  assert.deepEqual(encodeStdinMessage(Buffer.alloc(0)), [], 'empty data would close stdin');
  d.push(STDIN_END_MESSAGE);
  assert.deepEqual(seen.request, { ...FULL_REQUEST, unsupported: ['x-new'] });
  assert.deepEqual(seen.events, ['hello', 'header', 'stdin', 'signal INT', 'stdin', 'end']);
  assert.equal(seen.stdin.length, 10_003);
});

test('fields a daemon does not know (a later version) are collected, not fatal', () => {
  const { decoder: d, seen } = decoder();
  d.push(extendedRequest([...args(['cat']), ['x-new', 'v'], ['x-newer', '']]));
  assert.deepEqual(seen.request?.unsupported, ['x-new', 'x-newer']);
});

test('pty fields: a terminal, its size and stderr; then window messages', () => {
  const { decoder: d, seen } = decoder();
  d.push(
    extendedRequest([
      ...args(['tty']),
      ['pty', '1'],
      ['pty-columns', '132'],
      ['pty-rows', '43'],
      ['pty-stderr', 'pty'],
      ['pty-raw', '1'],
    ]),
  );
  d.push(Buffer.concat([encodeWindowMessage(100, 30), encodeWindowMessage(65535, 1)]));
  assert.deepEqual(seen.request?.pty, { columns: 132, rows: 43, stderr: 'pty', raw: true });
  assert.deepEqual(seen.request?.unsupported, []);
  assert.deepEqual(seen.events, ['hello', 'header', 'end', 'window 100x30', 'window 65535x1']);
  // pty 1 alone: the daemon's defaults; pty 0: none.
  const alone = decoder();
  alone.decoder.push(extendedRequest([...args(['tty']), ['pty', '1']]));
  assert.deepEqual(alone.seen.request?.pty, {});
  const off = decoder();
  off.decoder.push(extendedRequest([...args(['tty']), ['pty', '0']]));
  assert.equal(off.seen.request?.pty, undefined);
  // The encoder writes what the parser reads.
  const encoded = decoder();
  encoded.decoder.push(
    encodeExtendedRequest({
      argv: ['tty'],
      pty: { columns: 10, rows: 5, stderr: 'pipe', raw: true },
    }),
  );
  assert.deepEqual(encoded.seen.request?.pty, { columns: 10, rows: 5, stderr: 'pipe', raw: true });
});

test('malformed pty fields and window messages are protocol violations', () => {
  const header = (fields: [string, string][]) => extendedRequest([...args(['tty']), ...fields]);
  const cases: [Buffer, RegExp][] = [
    [header([['pty', 'yes']]), /pty must be 0 or 1/],
    [header([['pty-columns', '80']]), /need pty 1/],
    [
      header([
        ['pty', '0'],
        ['pty-rows', '24'],
      ]),
      /need pty 1/,
    ],
    [
      header([
        ['pty', '1'],
        ['pty-columns', '0'],
      ]),
      /from 1 to 65535/,
    ],
    [
      header([
        ['pty', '1'],
        ['pty-rows', '65536'],
      ]),
      /from 1 to 65535/,
    ],
    [
      header([
        ['pty', '1'],
        ['pty-rows', '024'],
      ]),
      /from 1 to 65535/,
    ],
    [
      header([
        ['pty', '1'],
        ['pty-stderr', 'both'],
      ]),
      /pipe or pty/,
    ],
    [
      header([
        ['pty', '1'],
        ['pty-raw', 'yes'],
      ]),
      /pty-raw must be 0 or 1/,
    ],
    [header([['pty-raw', '1']]), /need pty 1/],
    [
      header([
        ['pty', '1'],
        ['pty', '1'],
      ]),
      /given twice/,
    ],
    [Buffer.concat([header([['pty', '1']]), ns('window'), ns('80 24')]), /bad window size/],
    [Buffer.concat([header([['pty', '1']]), ns('window'), ns('0x24')]), /from 1 to 65535/],
    [Buffer.concat([header([['pty', '1']]), ns('window'), Buffer.from('12:')]), /limit of 11/],
  ];
  for (const [bytes, expected] of cases) {
    const { decoder: d } = decoder();
    assert.throws(() => d.push(bytes), expected, bytes.toString('latin1'));
  }
});

test('an opening offering a later version is answered in this one', () => {
  const { decoder: d, seen } = decoder();
  d.push(Buffer.concat([ns('1;procsock/7'), ns(''), ns('arg'), ns('true'), ns('')]));
  assert.equal(seen.version, 1);
  assert.equal(openingVersion('1;procsock/1'), 1);
  for (const bad of [
    '1;procsock/',
    '1;procsock/0',
    '1;procsock/1x',
    'procsock/1',
    '1',
    '1;procsock/1234',
  ]) {
    assert.equal(openingVersion(bad), null, bad);
  }
});

test('without onExtended, the opening is a bad argument count, as for any sockexec daemon', () => {
  const plain = new RequestDecoder({
    onArgs: () => assert.fail('args'),
    onStdin: () => {},
    onStdinEnd: () => {},
  });
  // 12 bytes: more than the 10 digits any count may have.
  assert.throws(() => plain.push(Buffer.from('12:1;procsock/1,0:,')), LimitError);
  const withHook = decoder();
  assert.throws(() => withHook.decoder.push(Buffer.from('10:1;procsock,')), /bad argument count/);
});

test('plain requests are untouched by the hook', () => {
  const { decoder: d, seen } = decoder();
  d.push(Buffer.from('1:2,4:echo,2:hi,'));
  assert.deepEqual(seen.plainArgs, ['echo', 'hi']);
  assert.equal(seen.version, null);
});

function rejects(bytes: Buffer, error: typeof ProtocolError | typeof LimitError, pattern: RegExp) {
  const { decoder: d } = decoder();
  assert.throws(
    () => d.push(bytes),
    (thrown: Error) => thrown instanceof error && pattern.test(thrown.message),
  );
}

test('malformed extended requests are protocol errors, each with a reason', () => {
  const opening = Buffer.concat([ns('1;procsock/1'), ns('')]);
  const field = (name: string, value: string) => Buffer.concat([ns(name), ns(value)]);
  const header = (...fields: Buffer[]) => Buffer.concat([opening, ...fields]);
  const cases: [Buffer, RegExp][] = [
    [Buffer.concat([ns('1;procsock/1'), ns('x')]), /followed by an empty netstring/],
    [header(ns('')), /no arg field/],
    [header(field('Bad_Name', 'x')), /bad field name/],
    [header(field('cwd', '/a'), field('cwd', '/b')), /given twice/],
    [header(field('cwd', 'relative')), /absolute path/],
    [header(field('env', 'NOEQUALS')), /NAME=VALUE/],
    [header(field('env', '=value')), /NAME=VALUE/],
    [header(field('env-mode', 'all')), /replace or merge/],
    [header(field('timeout', '0')), /from 1 to/],
    [header(field('timeout', '2147483648')), /from 1 to/],
    [header(field('timeout', '01')), /decimal number/],
    [header(field('max-output', '-1')), /decimal number/],
    [header(field('kill-group', 'yes')), /0 or 1/],
    [header(field('contain', 'yes')), /contain must be 0 or 1/],
    [header(field('exit-grace', '2147483648')), /exit-grace must be from 0 to/],
    [header(field('exit-grace', '01')), /decimal number/],
    [header(field('exit-grace', '1'), field('exit-grace', '2')), /given twice/],
    [header(field('arg', 'cat'), ns(''), field('winsize', '80x24')), /unknown message type/],
    [header(field('arg', 'cat'), ns(''), field('signal', 'int')), /bad signal name/],
    [header(field('arg', 'cat'), ns(''), field('stop', 'deadline')), /bad stop cause "deadline"/],
    [header(field('arg', 'cat'), ns(''), field('stop', '')), /bad stop cause ""/],
    [
      header(field('arg', 'cat'), ns(''), field('stdin', ''), field('stdin', 'late')),
      /after stdin was closed/,
    ],
  ];
  for (const [bytes, pattern] of cases) rejects(bytes, ProtocolError, pattern);
});

test('every field is bounded before a byte of it is buffered', () => {
  const opening = Buffer.concat([ns('1;procsock/1'), ns('')]);
  const cases: [Buffer, RegExp][] = [
    // Announced lengths alone are refused while their digits arrive.
    [Buffer.concat([opening, Buffer.from('99999999999:')]), /exceeds the limit of 16/],
    [Buffer.concat([opening, ns('cwd'), Buffer.from('4097:')]), /exceeds the limit of 4096/],
    [Buffer.concat([opening, ns('timeout'), Buffer.from('17:')]), /exceeds the limit of 16/],
    [Buffer.concat([opening, ns('arg'), Buffer.from('131073:')]), /exceeds the limit of 131072/],
    [Buffer.concat([opening, ns('x-new'), Buffer.from('257:')]), /exceeds the limit of 256/],
    [Buffer.concat([opening, ns('pty'), Buffer.from('17:')]), /exceeds the limit of 16/],
    [
      Buffer.concat([opening, ns('arg'), ns('cat'), ns(''), ns('signal'), Buffer.from('17:')]),
      /exceeds the limit of 16/,
    ],
    [
      Buffer.concat([opening, ns('arg'), ns('cat'), ns(''), ns('stop'), Buffer.from('17:')]),
      /exceeds the limit of 16/,
    ],
    // Counts and totals.
    [
      Buffer.concat([
        opening,
        ...Array.from({ length: 17 }, (_, i) => [ns(`x${i}`), ns('')]).flat(),
      ]),
      /more than 16 unknown fields/,
    ],
  ];
  for (const [bytes, pattern] of cases) rejects(bytes, LimitError, pattern);
  const small = decoder({ maxArgs: 2, maxArgBytes: 1000 });
  assert.throws(
    () => small.decoder.push(extendedRequest(args(['a', 'b', 'c']))),
    /argument count exceeds the limit of 2/,
  );
  const bytes = decoder({ maxArgBytes: 10 });
  assert.throws(
    () =>
      bytes.decoder.push(
        extendedRequest([
          ['arg', 'echo'],
          ['env', 'A=1234567'],
        ]),
      ),
    /arguments and environment exceed the limit of 10 bytes/,
  );
  const env = decoder();
  assert.throws(
    () =>
      env.decoder.push(
        extendedRequest([
          ['arg', 'true'],
          ...Array.from({ length: 4097 }, (_, i): [string, string] => ['env', `V${i}=`]),
        ]),
      ),
    /more than 4096 env fields/,
  );
});

interface ReplySeen {
  hello: number | null;
  stopping: number[];
  output: string;
  end: [WireReason | null, WireUsage | null, string | null] | null;
  exit: ExitStatus | null;
}

function replyDecoder(extended: boolean): { decoder: ReplyDecoder; seen: ReplySeen } {
  const seen: ReplySeen = { hello: null, stopping: [], output: '', end: null, exit: null };
  const decoder = new ReplyDecoder(
    {
      onOutput: (_type, data) => {
        seen.output += data.toString();
      },
      onExit: (status) => {
        assert.ok(!extended || seen.end, 'run end before the exit');
        seen.exit = status;
      },
      onHello: (version) => {
        seen.hello = version;
      },
      onRunEnd: (reason, usage, refused) => {
        seen.end = [reason, usage, refused];
      },
      onStopping: (ms) => {
        seen.stopping.push(ms);
      },
    },
    { extended },
  );
  return { decoder, seen };
}

test('an extended reply: hello, output, reason and usage, exit', () => {
  const bytes = Buffer.concat([
    encodeHello(1),
    ...encodeOutput('stdout', Buffer.from('/usr\n')),
    encodeRunEnd('exit', { userCPUTime: 1200, systemCPUTime: 300, maxRSS: 2048, wallTime: 12.4 }),
    encodeExit({ exitCode: 0, termSignal: null }),
  ]);
  for (let step = 1; step <= bytes.length; step *= 3) {
    const { decoder: d, seen } = replyDecoder(true);
    for (let i = 0; i < bytes.length; i += step) d.push(bytes.subarray(i, i + step));
    assert.equal(seen.hello, 1);
    assert.equal(seen.output, '/usr\n');
    assert.deepEqual(seen.end, [
      'exit',
      { userCPUTime: 1200, systemCPUTime: 300, maxRSS: 2048, wallTime: 12 },
      null,
    ]);
    assert.deepEqual(seen.exit, { exitCode: 0, termSignal: null });
    assert.ok(d.helloReceived && d.atPairBoundary);
  }
});

test("a client's stop: the message it sends, and the daemon's stopping answer in the reply", () => {
  assert.deepEqual(encodeStopMessage('abort'), Buffer.from('4:stop,5:abort,'));
  const bytes = Buffer.concat([
    encodeHello(1),
    ...encodeOutput('stdout', Buffer.from('partial')),
    encodeStopping(10_000),
    encodeRunEnd('abort', { wallTime: 40 }),
    encodeExit({ exitCode: null, termSignal: 'KILL' }),
  ]);
  for (let step = 1; step <= bytes.length; step *= 2) {
    const { decoder: d, seen } = replyDecoder(true);
    for (let i = 0; i < bytes.length; i += step) d.push(bytes.subarray(i, i + step));
    assert.deepEqual(seen.stopping, [10_000]);
    assert.deepEqual(seen.end, ['abort', { wallTime: 40 }, null]);
    assert.deepEqual(seen.exit, { exitCode: null, termSignal: 'KILL' });
  }
  for (const bad of ['-1', '01', '2147483648', 'soon', '']) {
    assert.throws(
      () =>
        replyDecoder(true).decoder.push(Buffer.concat([encodeHello(1), ns('stopping'), ns(bad)])),
      /bad stopping time/,
      bad,
    );
  }
  // Only in an extended reply, after the hello and before the exit.
  assert.throws(() => replyDecoder(false).decoder.push(encodeStopping(5)), /unexpected reply type/);
  assert.throws(() => replyDecoder(true).decoder.push(encodeStopping(5)), /instead of its hello/);
  assert.throws(
    () =>
      replyDecoder(true).decoder.push(
        Buffer.concat([
          encodeHello(1),
          encodeExit({ exitCode: 0, termSignal: null }),
          encodeStopping(5),
        ]),
      ),
    /unexpected reply type/,
  );
});

test('a refusal names the refused field before the reason', () => {
  const { decoder: d, seen } = replyDecoder(true);
  d.push(
    Buffer.concat([
      encodeHello(1),
      ...encodeOutput('stderr', Buffer.from('procsock: env: clients may not set FOO\n')),
      encodeRunEnd('policy-refused', {}, 'env'),
      encodeExit({ exitCode: 126, termSignal: null }),
    ]),
  );
  assert.deepEqual(seen.end, ['policy-refused', {}, 'env']);
  assert.throws(
    () =>
      replyDecoder(true).decoder.push(Buffer.concat([encodeHello(1), ns('refused'), ns('Bad')])),
    /bad field name/,
  );
});

test('usage keys a daemon does not know are skipped; an absent run end is null', () => {
  const { decoder: d, seen } = replyDecoder(true);
  d.push(
    Buffer.concat([
      encodeHello(1),
      ns('usage'),
      ns('wallTime=5 futureThing=9'),
      ns('termsig'),
      ns('KILL'),
    ]),
  );
  assert.deepEqual(seen.end, [null, { wallTime: 5 }, null]);
  assert.deepEqual(seen.exit, { exitCode: null, termSignal: 'KILL' });
});

test('an extended reply must start with the hello; a plain one must not have the extras', () => {
  const withoutHello = replyDecoder(true);
  assert.throws(
    () => withoutHello.decoder.push(Buffer.concat(encodeOutput('stdout', Buffer.from('x')))),
    /instead of its hello/,
  );
  for (const extra of [encodeHello(1), Buffer.concat([ns('reason'), ns('exit')])]) {
    assert.throws(() => replyDecoder(false).decoder.push(extra), /unexpected reply type/);
  }
  const twice = replyDecoder(true);
  assert.throws(
    () => twice.decoder.push(Buffer.concat([encodeHello(1), encodeHello(1)])),
    /unexpected/,
  );
  const newer = replyDecoder(true);
  assert.throws(() => newer.decoder.push(encodeHello(2)), /protocol version "2"/);
  const badUsage = replyDecoder(true);
  assert.throws(
    () => badUsage.decoder.push(Buffer.concat([encodeHello(1), ns('usage'), ns('wallTime=-1')])),
    /bad usage entry/,
  );
  const longUsage = replyDecoder(true);
  assert.throws(
    () => longUsage.decoder.push(Buffer.concat([encodeHello(1), ns('usage'), Buffer.from('513:')])),
    LimitError,
  );
});
