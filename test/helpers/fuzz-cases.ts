/**
 * Hostile client behaviour for the daemon, as fast-check arbitraries: arbitrary bytes,
 * valid requests, mangled requests and absurd lengths, cut at arbitrary points, with the
 * client leaving in arbitrary ways. Used by the CI fuzz test and by bench/soak.ts.
 */
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { args, extendedRequest, ns, request } from './raw-client.js';

/**
 * Harmless programs a (possibly mangled) request may name. No shell: a mangled `sh -c` is
 * arbitrary code. Fuzz daemons also run with `FUZZ_POLICY_FLAGS`.
 */
export const fuzzPrograms = fc.constantFrom(
  ['true'],
  ['cat'],
  ['echo', 'x'],
  ['false'],
  ['head', '-c', '200000', '/dev/zero'],
  ['sleep', '0.05'],
  ['sleep', '5'],
  ['procsock-no-such-program'],
);

/** `procsock serve` flags for a fuzz daemon: only the fuzz programs may run, in `cwd`. */
export function fuzzPolicyFlags(cwd: string): string[] {
  const programs = ['true', 'cat', 'echo', 'false', 'head', 'sleep'];
  return [...programs.flatMap((name) => ['--allow', `/usr/bin/${name}`]), '--cwd', cwd];
}

export const wellFormedRequest = fc
  .record({
    argv: fuzzPrograms,
    stdin: fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 4 }),
    terminate: fc.boolean(),
  })
  .map(({ argv, stdin, terminate }) => request([...argv], stdin.map(Buffer.from), terminate));

/**
 * A valid request in the protocol extension: argv, some per-run options (a fuzz daemon's
 * policy refuses env and cwd, so those are answered without running), stdin, signals and stops.
 */
export const wellFormedExtendedRequest = fc
  .record({
    argv: fuzzPrograms,
    options: fc.subarray<[string, string]>([
      ['timeout', '300'],
      ['kill-timeout', '200'],
      ['kill-group', '1'],
      ['max-output', '100'],
      ['env', 'FUZZ=1'],
      ['env-mode', 'merge'],
      ['cwd', '/'],
      ['pty', '1'],
      ['x-later', '1'],
    ]),
    messages: fc.array(
      fc.oneof(
        fc
          .uint8Array({ minLength: 1, maxLength: 64 })
          .map((data): [string, Buffer] => ['stdin', Buffer.from(data)]),
        fc.constantFrom<[string, string]>(
          ['signal', 'TERM'],
          ['signal', 'INT'],
          ['signal', 'USR1'],
          ['window', '100x30'],
          ['stop', 'timeout'],
          ['stop', 'idle-timeout'],
          ['stop', 'abort'],
          ['stop', 'output-limit'],
        ),
      ),
      { maxLength: 4 },
    ),
    terminate: fc.boolean(),
  })
  .map(({ argv, options, messages, terminate }) =>
    extendedRequest(
      [...args([...argv]), ...options],
      terminate ? [...messages, ['stdin', '']] : messages,
    ),
  );

/** A valid request (plain or extended) with one byte changed, a byte inserted, or cut short. */
export const mangledRequest = fc
  .tuple(
    fc.oneof(wellFormedRequest, wellFormedExtendedRequest),
    fc.nat(),
    fc.integer({ min: 0, max: 255 }),
    fc.constantFrom('flip', 'insert', 'cut'),
  )
  .map(([bytes, at, byte, how]) => {
    const i = at % (bytes.length + 1);
    if (how === 'cut') return bytes.subarray(0, i);
    if (how === 'insert') {
      return Buffer.concat([bytes.subarray(0, i), Buffer.from([byte]), bytes.subarray(i)]);
    }
    const copy = Buffer.from(bytes);
    if (i < copy.length) copy[i] = byte;
    return copy;
  });

export const hostileLengths = fc.constantFrom(
  Buffer.from('99999999999:'),
  Buffer.from('1:9,99999999999:'),
  Buffer.from('1:1,9999999:'),
  Buffer.concat([ns('100000000'), ns('a')]),
  Buffer.from('00:,'),
  Buffer.from('0:,'),
  Buffer.from(':,'),
  Buffer.concat([ns('1;procsock/1'), ns(''), ns('arg'), Buffer.from('99999999999:')]),
  Buffer.concat([ns('1;procsock/1'), ns(''), ns('cwd'), Buffer.from('4097:')]),
  Buffer.concat([ns('1;procsock/999'), ns(''), ns('')]),
  Buffer.concat([
    ns('1;procsock/1'),
    ns(''),
    ns('arg'),
    ns('cat'),
    ns(''),
    ns('stop'),
    Buffer.from('17:'),
  ]),
);

export const fuzzInput = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 200 }).map(Buffer.from), weight: 3 },
  { arbitrary: wellFormedRequest, weight: 2 },
  { arbitrary: wellFormedExtendedRequest, weight: 2 },
  { arbitrary: mangledRequest, weight: 4 },
  { arbitrary: hostileLengths, weight: 1 },
);

export type Leave = 'end' | 'destroy' | 'read-to-close';

export interface FuzzScenario {
  bytes: Buffer;
  /** Offsets at which the bytes are split into separate writes. */
  cuts: number[];
  /** How the client leaves after writing. */
  leave: Leave;
}

export const fuzzScenario: fc.Arbitrary<FuzzScenario> = fc.record({
  bytes: fuzzInput,
  cuts: fc.uniqueArray(fc.nat({ max: 400 }), { maxLength: 6 }),
  // Reading until the daemon closes may wait for its deadline: rarer, to keep runs quick.
  leave: fc.oneof(
    { arbitrary: fc.constantFrom<Leave>('end', 'destroy'), weight: 9 },
    { arbitrary: fc.constant<Leave>('read-to-close'), weight: 1 },
  ),
});

function write(socket: Socket, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || !socket.writable) return resolve();
    socket.write(data, () => resolve());
  });
}

/** Plays one scenario against the daemon at `path`; resolves once the connection is closed. */
export async function playFuzzScenario(path: string, scenario: FuzzScenario): Promise<void> {
  const { bytes, cuts, leave } = scenario;
  const socket = connect(path);
  socket.on('data', () => {});
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => {
    socket.once('connect', () => resolve());
    socket.once('close', () => resolve());
  });
  const points = cuts.filter((c) => c < bytes.length).sort((a, b) => a - b);
  let from = 0;
  for (const point of [...points, bytes.length]) {
    await write(socket, bytes.subarray(from, point));
    from = point;
  }
  if (leave === 'destroy') socket.destroy();
  else if (leave === 'end') socket.end();
  // read-to-close: the daemon ends it (reply done, violation, or its deadline).
  await closed;
}
