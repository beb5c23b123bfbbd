/**
 * The sentinel scanner on its own: fed whole, byte by byte, and at random splits, it must
 * pass on exactly the bytes before the marker and hold back no more than the marker's length.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ArgumentError } from '../../src/errors.js';
import { freshMarker, quote, SentinelFraming } from '../../src/shell/framing.js';
import { PosixFraming } from '../../src/shell/posix.js';
import { partialMatchLength, SentinelScanner, validateSentinel } from '../../src/shell/sentinel.js';

/** Feeds `pieces` to a fresh scanner; returns what was emitted and where it stopped. */
function scan(needle: string, pieces: Buffer[], trailer = false) {
  const scanner = new SentinelScanner(needle, { trailer });
  const emitted: Buffer[] = [];
  let foundAt = -1;
  pieces.forEach((piece, i) => {
    if (
      scanner.push(piece, (data) => {
        assert.ok(data.length > 0, 'never emits an empty piece');
        emitted.push(data);
      }) &&
      foundAt < 0
    ) {
      foundAt = i;
    }
  });
  return {
    output: Buffer.concat(emitted),
    found: scanner.found,
    payload: scanner.payload,
    foundAt,
  };
}

function splitAt(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (data.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const point of points) {
    pieces.push(data.subarray(from, point));
    from = point;
  }
  pieces.push(data.subarray(from));
  return pieces;
}

const bytes = (data: Buffer) => [...data].map((byte) => Buffer.from([byte]));

describe('SentinelScanner', () => {
  test('passes on output before the value on the same line (after `printf foo`)', () => {
    const result = scan('END\n', [Buffer.from('line\nfooEND\n')]);
    assert.equal(result.output.toString(), 'line\nfoo');
    assert.ok(result.found);
  });

  test('a value not at a line end is output', () => {
    const result = scan('END\n', [Buffer.from('END of story\nENDEND\n')]);
    assert.equal(result.output.toString(), 'END of story\nEND');
  });

  test('byte by byte: same result, found on the newline', () => {
    const data = Buffer.from('€ ünï EN\nENDx END\n');
    const result = scan('END\n', bytes(data));
    assert.equal(result.output.toString(), '€ ünï EN\nENDx ');
    assert.equal(result.foundAt, data.length - 1);
  });

  test('a partial marker at a chunk end is held back, then released when it is not one', () => {
    const scanner = new SentinelScanner('MARK\n');
    const seen: string[] = [];
    scanner.push(Buffer.from('abcMA'), (data) => seen.push(data.toString()));
    assert.deepEqual(seen, ['abc']);
    scanner.push(Buffer.from('Xyz'), (data) => seen.push(data.toString()));
    assert.deepEqual(seen, ['abc', 'MAXyz']);
  });

  test('trailer mode reads the payload up to the newline, across chunks', () => {
    const result = scan('M1 ', bytes(Buffer.from('outM1 127\n')), true);
    assert.equal(result.output.toString(), 'out');
    assert.equal(result.payload, '127');
  });

  test('bytes after the sentinel are dropped, and later pushes ignored', () => {
    const scanner = new SentinelScanner('END\n');
    const seen: string[] = [];
    assert.ok(scanner.push(Buffer.from('aEND\nlate'), (data) => seen.push(data.toString())));
    assert.ok(scanner.push(Buffer.from('more'), (data) => seen.push(data.toString())));
    assert.deepEqual(seen, ['a']);
  });

  test('random splits anywhere, multi-byte text and marker-like noise: output intact', () => {
    const marker = freshMarker();
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 60 }),
        fc.array(fc.nat(200), { maxLength: 12 }),
        (text, cuts) => {
          // Noise: a prefix of the marker, the marker without its space, a wrong status.
          const output = `${text}${marker.slice(0, 5)}\n${marker}\n${text}`;
          const data = Buffer.from(`${output}${marker} 42\n`);
          const result = scan(`${marker} `, splitAt(data, cuts), true);
          assert.equal(result.output.toString(), output);
          assert.equal(result.payload, '42');
        },
      ),
      { numRuns: 300 },
    );
  });

  test('partialMatchLength: the longest marker prefix the data ends with', () => {
    const needle = Buffer.from('abab\n');
    assert.equal(partialMatchLength(Buffer.from('xxaba'), needle), 3);
    assert.equal(partialMatchLength(Buffer.from('xxabab'), needle), 4);
    assert.equal(partialMatchLength(Buffer.from('xxab'), needle), 2);
    assert.equal(partialMatchLength(Buffer.from('xxb'), needle), 0);
    assert.equal(partialMatchLength(Buffer.from(''), needle), 0);
  });

  test('an empty needle is refused', () => {
    assert.throws(() => new SentinelScanner(''), ArgumentError);
  });
});

describe('sentinels and framing', () => {
  test('validateSentinel refuses a missing command, an empty or multi-line value', () => {
    assert.throws(() => validateSentinel({ command: ' ', value: 'v' }, 'x'), /needs a command/);
    assert.throws(() => validateSentinel({ command: 'v', value: '' }, 'x'), /non-empty value/);
    assert.throws(() => validateSentinel({ command: 'v', value: 'a\nb' }, 'x'), /one line/);
  });

  test('markers are fresh, 22 URL-safe characters', () => {
    const seen = new Set(Array.from({ length: 1000 }, freshMarker));
    assert.equal(seen.size, 1000);
    for (const marker of seen) assert.match(marker, /^[A-Za-z0-9_-]{22}$/);
  });

  test('the terminator is added once; stderr sentinel goes before stdout sentinel', () => {
    const framing = new SentinelFraming(
      ';',
      { command: 'version', value: 'v1' },
      { command: 'oops', value: 'unknown: oops' },
    );
    assert.equal(framing.frame('select 1').input, 'select 1;\noops;\nversion;\n');
    assert.equal(framing.frame('select 1;  ').input, 'select 1;\noops;\nversion;\n');
    assert.equal(framing.frame(null).input, 'oops;\nversion;\n');
    assert.equal(framing.finalInput(undefined), '');
    assert.equal(framing.finalInput('quit'), 'quit;\n');
  });

  test('a sentinel factory gets a fresh marker per frame', () => {
    const framing = new SentinelFraming(
      '',
      (marker) => ({ command: `echo ${marker}`, value: marker }),
      null,
    );
    const [a, b] = [framing.frame('x').input, framing.frame('x').input];
    assert.notEqual(a, b);
    assert.match(a, /^x\necho [A-Za-z0-9_-]{22}\n$/);
  });

  test('POSIX frames: the command quoted for eval, the marker in two pieces, statuses carried over', () => {
    const framing = new PosixFraming();
    assert.match(framing.setup(false), /^exec 7>&2;__procsock_status\(\) \{/);
    // Given a pipe, the shell reads these lines on fd 3 and stdin is /dev/null; until the
    // start-up probe says so, commands are sent with </dev/null (as on a socket).
    const launched = framing.launch(['bash', '--norc']);
    assert.deepEqual(launched.slice(0, 2), ['bash', '-c']);
    assert.deepEqual(launched.slice(3), ['bash', '--norc']);
    assert.match(launched[2]!, /exec "\$0" "\$@" \/dev\/fd\/3 3<&0 <\/dev\/null/);
    assert.match(launched[2]!, /export __procsock_fd3=0; exec "\$0" "\$@"$/);
    const probe = framing.frame(null);
    const [, p1, p2] = /printf '%s%s %s %s %s\\n' (\S+) (\S+) /.exec(probe.input)!;
    assert.ok(!probe.input.includes(p1! + p2!), 'the marker is never written whole');
    // Other shells (and bash before 4.1) print the probe's report and close the launcher's copy
    // of the pipe; bash starts its loop, on this line, and its first report is the probe's.
    assert.match(
      probe.input,
      /^case \$\{BASH_VERSION-\} in ''\|\[0-3\]\.\*\|4\.0\*\) .*\\unset __procsock_fd3; exec 3<&-;; \*\) \\builtin printf -v __psh %s%s (\S+) (\S+); __pss="\$\{__procsock_fd3-0\} bash"; \\builtin eval '.*;; esac\n$/,
    );
    assert.equal(probe.input.split('\n').length, 2, 'one line');
    probe.stdout.push(Buffer.from(`${p1}${p2} 0 1 zsh\n`), () => {});
    // zsh: `\builtin`, so no alias or function named eval/printf can capture the framing.
    const frame = framing.frame("echo 'it''s'\nfalse");
    const run =
      /^\\builtin \\eval 'echo '\\''it'\\'''\\''s'\\''\nfalse\n__pss=\$\?' 7>&-;\\builtin \\printf "\$__psg" (\S+) (\S+) "\$\?" >&7;\\builtin \\printf "\$__psf" \1 \2 "\$__pss"\n$/;
    const [, q1, q2] = run.exec(frame.input)!;
    frame.stderr!.push(Buffer.from(`${q1}${q2} 0\n`), () => {});
    frame.stdout.push(Buffer.from(`${q1}${q2} 1\n`), () => {});
    assert.equal(frame.exitCode(), 1);
    // The report leaves $? at 0: after a failed command the next one gets its status back.
    assert.match(
      framing.frame('echo $?').input,
      /^\\builtin \\false\|\|\\builtin \\eval 'echo \$\?/,
    );
    const syntax = framing.frame('echo "');
    const [, s1, s2] = /"\$__psf" (\S+) (\S+) /.exec(syntax.input)!;
    syntax.stderr!.push(Buffer.from(`${s1}${s2} 2\n`), () => {}); // eval's own status wins
    syntax.stdout.push(Buffer.from(`${s1}${s2} 0\n`), () => {});
    assert.equal(syntax.exitCode(), 2);
    assert.equal(framing.finalInput('exit'), '\\__procsock_status \\2||exit\n');
    assert.equal(quote("a'b"), `'a'\\''b'`);
    // dash and other shells: `\eval` (a special builtin: never a function), `\command printf`.
    const dash = new PosixFraming('drain');
    dash.setup(true);
    const dashProbe = dash.frame(null);
    const [, d1, d2] = /printf '%s%s %s %s %s\\n' (\S+) (\S+) /.exec(dashProbe.input)!;
    dashProbe.stdout.push(Buffer.from(`${d1}${d2} 0 0 \n`), () => {});
    assert.match(
      dash.frame('true').input,
      /^\\command \\eval 'true\n__pss=\$\?' <\/dev\/null;\\command \\printf "\$__psf" \S+ \S+ "\$\?" "\$__pss"\n$/,
    );
    assert.equal(dash.finalInput(undefined), 'true\n');
  });

  test("bash's loop: a run is data (marker pieces, the status to restore, the kind, the command)", () => {
    const framing = new PosixFraming();
    framing.setup(true);
    const probe = framing.frame(null);
    const [, p1, p2] = /printf '%s%s %s %s %s\\n' (\S+) (\S+) /.exec(probe.input)!;
    // The loop's first report: eval's status, then what the probe set (fd 3 read, bash).
    probe.stdout.push(Buffer.from(`${p1}${p2} 0 1 bash\n`), () => {});
    // A short ASCII command: one block of 64 characters, the tail and blanks after it.
    const frame = framing.frame("echo 'it''s'\nfalse");
    const [, marker] = /^([\w-]{16})000secho 'it''s'\nfalse\n__pss=\$\? +$/.exec(frame.input)!;
    assert.equal(frame.input.length, 64);
    assert.equal(frame.stderr, null);
    frame.stdout.push(Buffer.from(`${marker} 0 1\n`), () => {});
    assert.equal(frame.exitCode(), 1);
    assert.match(framing.frame('echo $?').input, /^[\w-]{16}001secho \$\?\n__pss=\$\? +$/);
    // Longer: the block holds the length (in characters: all ASCII), the command follows it.
    const long = `echo ${'x'.repeat(60)}`;
    const longInput = framing.frame(long).input;
    assert.equal(longInput.length, 64 + long.length + 9);
    assert.equal(longInput.slice(16, 20), '000l');
    assert.equal(Number(longInput.slice(20, 64)), long.length + 9);
    assert.equal(longInput.slice(64), `${long}\n__pss=$?`);
    // Not ASCII: its length in characters is bash's locale's to say, so it ends at a NUL.
    const utf8 = framing.frame('echo é').input;
    assert.match(utf8, /^[\w-]{16}000u {44}echo é\n__pss=\$\?\0$/);
    // A status the loop could not record ('-': a `continue` or `break` in the command) is unknown.
    const broken = framing.frame('continue');
    const [, b] = /^([\w-]{16})/.exec(broken.input)!;
    broken.stdout.push(Buffer.from(`${b} 0 \n`), () => {}); // the read emptied __pss
    assert.equal(broken.exitCode(), null);
    // stop(): the final command (or `true`) goes through the loop too, then end-of-file.
    // It exits with its status itself: at end of input the read has emptied __pss.
    assert.match(framing.finalInput('exit 4'), /^[\w-]{16}000sexit 4\n\\builtin exit "\$\?" +$/);
    assert.match(framing.finalInput(undefined), /^[\w-]{16}000strue\n\\builtin exit "\$\?" +$/);
    assert.throws(() => framing.frame('echo a\0b'), /cannot contain a NUL byte/);
  });
});
