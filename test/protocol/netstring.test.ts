import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import fc from 'fast-check';
import { LimitError, ProtocolError } from '../../src/errors.js';
import { encodeNetstring, NetstringDecoder, netstringParts } from '../../src/protocol/netstring.js';
import { split } from '../helpers/split.js';

/** Decodes `input` fed as the given chunks; returns the payloads. */
function decode(chunks: Buffer[], maxLength = 1 << 20): Buffer[] {
  const payloads: Buffer[] = [];
  let pieces: Buffer[] = [];
  const decoder = new NetstringDecoder(
    (piece, last) => {
      pieces.push(Buffer.from(piece));
      if (last) {
        payloads.push(Buffer.concat(pieces));
        pieces = [];
      }
    },
    { maxLength },
  );
  for (const chunk of chunks) decoder.push(chunk);
  assert.equal(decoder.atBoundary, true, 'input ended inside a netstring');
  return payloads;
}

const payloads = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 });

test('any split of valid input gives the same payloads', () => {
  fc.assert(
    fc.property(payloads, fc.array(fc.nat(), { maxLength: 20 }), (items, cuts) => {
      const buffers = items.map((item) => Buffer.from(item));
      const input = Buffer.concat(buffers.map((b) => encodeNetstring(b)));
      assert.deepEqual(decode(split(input, cuts)), buffers);
    }),
  );
});

test('one byte at a time gives the same payloads', () => {
  fc.assert(
    fc.property(payloads, (items) => {
      const buffers = items.map((item) => Buffer.from(item));
      const input = Buffer.concat(buffers.map((b) => encodeNetstring(b)));
      const bytes = [...input].map((byte) => Buffer.from([byte]));
      assert.deepEqual(decode(bytes), buffers);
    }),
  );
});

test('netstringParts encodes the same bytes as encodeNetstring', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 10_000 }), (data) => {
      const payload = Buffer.from(data);
      assert.deepEqual(Buffer.concat(netstringParts(payload)), encodeNetstring(payload));
    }),
  );
});

test('random garbage in random splits throws nothing but ProtocolError or LimitError', () => {
  const garbage = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    // Mostly-valid input with one byte changed: reaches the deeper states.
    fc.tuple(payloads, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([items, at, byte]) => {
      const input = Buffer.concat(items.map((item) => encodeNetstring(Buffer.from(item))));
      if (input.length > 0) input[at % input.length] = byte;
      return new Uint8Array(input);
    }),
    fc.stringMatching(/^[0-9:,]{0,40}$/).map((text) => new Uint8Array(Buffer.from(text))),
  );
  fc.assert(
    fc.property(
      garbage,
      fc.array(fc.nat(), { maxLength: 10 }),
      fc.integer({ min: 0, max: 400 }),
      (bytes, cuts, maxLength) => {
        const decoder = new NetstringDecoder(() => {}, { maxLength });
        let failure: unknown = null;
        for (const chunk of split(Buffer.from(bytes), cuts)) {
          try {
            decoder.push(chunk);
          } catch (error) {
            failure = error;
            break;
          }
        }
        if (failure !== null) {
          assert.ok(
            failure instanceof ProtocolError || failure instanceof LimitError,
            `unexpected ${String(failure)}`,
          );
          // Once failed, it keeps failing with the same error.
          assert.throws(
            () => decoder.push(Buffer.from('0:,')),
            (error) => error === failure,
          );
        }
      },
    ),
    { numRuns: 2000 },
  );
});

test('99999999999 is refused while its digits arrive, before any payload', () => {
  let sinkCalls = 0;
  const decoder = new NetstringDecoder(() => sinkCalls++, { maxLength: 1024 * 1024 * 1024 });
  const digits = Buffer.from('99999999999');
  let thrownAt = -1;
  for (let i = 0; i < digits.length; i++) {
    try {
      decoder.push(digits.subarray(i, i + 1));
    } catch (error) {
      assert.ok(error instanceof LimitError);
      thrownAt = i;
      break;
    }
  }
  // 1 GiB has 10 digits: the 11th digit at the latest is refused, and no ':' was needed.
  assert.ok(thrownAt >= 0 && thrownAt <= 10, `refused at digit ${thrownAt}`);
  assert.equal(sinkCalls, 0);
});

test('malformed netstrings are ProtocolErrors', () => {
  for (const bad of ['x', ':', '1x', '01:a,', '1:ab', '3:abc;', '-1:', ' 1:a,']) {
    assert.throws(
      () => decode([Buffer.from(bad)], 100),
      (error) => error instanceof ProtocolError,
      bad,
    );
  }
});

test('empty netstring and binary payloads', () => {
  assert.deepEqual(decode([Buffer.from('0:,')]), [Buffer.alloc(0)]);
  const binary = Buffer.from([0, 0x3a, 0x2c, 255, 10]);
  assert.deepEqual(decode([encodeNetstring(binary)]), [binary]);
});
