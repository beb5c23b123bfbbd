import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import fc from 'fast-check';
import { LimitError, ProtocolError } from '../../src/errors.js';
import {
  ARG_OVERHEAD,
  encodeArgs,
  encodeStdin,
  RequestDecoder,
  type RequestLimits,
  STDIN_END,
} from '../../src/protocol/request.js';
import { split } from '../helpers/split.js';

interface Seen {
  argv: string[] | null;
  stdin: Buffer;
  ended: boolean;
  /** Order of the handler calls. */
  events: string[];
}

function decoder(limits: Partial<RequestLimits> = {}): { decoder: RequestDecoder; seen: Seen } {
  const seen: Seen = { argv: null, stdin: Buffer.alloc(0), ended: false, events: [] };
  const decoder = new RequestDecoder(
    {
      onArgs: (argv) => {
        seen.argv = argv.map((arg) => arg.toString());
        seen.events.push('args');
      },
      onStdin: (data) => {
        assert.ok(data.length > 0, 'empty stdin piece');
        seen.stdin = Buffer.concat([seen.stdin, data]);
        if (seen.events.at(-1) !== 'stdin') seen.events.push('stdin');
      },
      onStdinEnd: () => {
        seen.ended = true;
        seen.events.push('end');
      },
    },
    limits,
  );
  return { decoder, seen };
}

test('uname -a: args, then end', () => {
  const { decoder: d, seen } = decoder();
  d.push(Buffer.from('1:2,5:uname,2:-a,0:,'));
  assert.deepEqual(seen.argv, ['uname', '-a']);
  assert.deepEqual(seen.events, ['args', 'end']);
  assert.equal(d.phase, 'done');
});

test('args are delivered as soon as the last argv netstring is complete', () => {
  const { decoder: d, seen } = decoder();
  d.push(Buffer.from('1:1,3:ca'));
  assert.equal(seen.argv, null);
  d.push(Buffer.from('t,'));
  assert.deepEqual(seen.argv, ['cat']);
  assert.equal(d.phase, 'stdin');
  d.push(Buffer.from('3:abc,2:de'));
  assert.equal(seen.stdin.toString(), 'abcde');
  assert.equal(seen.ended, false);
});

test('any split of a request gives the same argv, stdin and end', () => {
  fc.assert(
    fc.property(
      fc.array(fc.string({ minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 100 }), { maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (argv, stdin, cuts) => {
        const input = Buffer.concat([
          encodeArgs(argv),
          ...stdin.flatMap((data) => encodeStdin(Buffer.from(data))),
          STDIN_END,
        ]);
        const { decoder: d, seen } = decoder();
        for (const chunk of split(input, cuts)) d.push(chunk);
        assert.deepEqual(seen.argv, argv);
        assert.deepEqual(seen.stdin, Buffer.concat(stdin.map((data) => Buffer.from(data))));
        assert.equal(seen.ended, true);
      },
    ),
  );
});

test('many and long arguments, any split: the argv grows past its first buffers intact', () => {
  fc.assert(
    fc.property(
      fc.array(fc.string({ unit: 'grapheme', maxLength: 300 }), { minLength: 1, maxLength: 120 }),
      fc.array(fc.nat(), { maxLength: 40 }),
      (args, cuts) => {
        const argv = ['prog', ...args];
        const input = Buffer.concat([encodeArgs(argv), STDIN_END]);
        const { decoder: d, seen } = decoder();
        for (const chunk of split(input, cuts)) d.push(chunk);
        assert.deepEqual(seen.argv, argv);
      },
    ),
    { numRuns: 200 },
  );
});

test(`each argument counts ${ARG_OVERHEAD} bytes more than its length against maxArgBytes`, () => {
  const limits = { maxArgBytes: 10 * ARG_OVERHEAD + 3 };
  const fits = `2:10,${'0:,'.repeat(9)}3:abc,0:,`;
  assert.doesNotThrow(() => decoder(limits).decoder.push(Buffer.from(fits)));
  // 11 empty arguments: no byte of content, and still over the limit.
  const { decoder: d, seen } = decoder(limits);
  assert.throws(
    () => d.push(Buffer.from(`2:11,${'0:,'.repeat(11)}`)),
    (error) => error instanceof LimitError && error.limit === 'maxArgBytes',
  );
  assert.equal(seen.argv, null);
});

test('input after the terminator is ignored, even garbage', () => {
  const { decoder: d, seen } = decoder();
  d.push(Buffer.from('1:1,4:true,0:,garbage'));
  d.push(Buffer.from('more garbage'));
  assert.equal(seen.ended, true);
});

test('argc must be a decimal number ≥ 1', () => {
  for (const argc of ['0', '', 'x', '-1', '01', ' 1']) {
    const { decoder: d } = decoder();
    const netstring = Buffer.from(`${Buffer.byteLength(argc)}:${argc},`);
    assert.throws(() => d.push(netstring), ProtocolError, JSON.stringify(argc));
  }
});

test('limits: argc, one argument, all arguments, one stdin netstring', () => {
  const limits = {
    maxArgs: 2,
    maxArgLength: 5,
    maxArgBytes: 2 * ARG_OVERHEAD + 8,
    maxDataLength: 10,
  };
  // A netstring longer than its phase allows (argument or stdin) is the decoder's maxLength.
  const cases: [string, string][] = [
    ['1:3,', 'maxArgs'],
    ['1:1,6:', 'maxLength'],
    ['1:2,5:aaaaa,4:bbbb,', 'maxArgBytes'],
    ['1:1,4:true,11:', 'maxLength'],
  ];
  for (const [input, limit] of cases) {
    const { decoder: d, seen } = decoder(limits);
    assert.throws(
      () => d.push(Buffer.from(input)),
      (error) => error instanceof LimitError && error.limit === limit,
      input,
    );
    assert.equal(seen.ended, false);
  }
});

test('a huge argc or length is refused before anything is allocated', () => {
  const { decoder: d } = decoder();
  assert.throws(() => d.push(Buffer.from('99999999999:')), LimitError);
  const { decoder: d2 } = decoder();
  assert.throws(() => d2.push(Buffer.from('11:99999999999,')), LimitError);
  const { decoder: d3, seen } = decoder();
  d3.push(Buffer.from('1:1,3:cat,'));
  assert.throws(() => d3.push(Buffer.from('99999999999:')), LimitError);
  assert.equal(seen.stdin.length, 0);
});

test('random garbage throws nothing but ProtocolError or LimitError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
      const { decoder: d } = decoder({ maxArgs: 4, maxArgLength: 10, maxDataLength: 10 });
      try {
        d.push(Buffer.concat([Buffer.from('1:2,'), Buffer.from(bytes)]));
      } catch (error) {
        assert.ok(error instanceof ProtocolError || error instanceof LimitError, String(error));
      }
    }),
    { numRuns: 2000 },
  );
});
