/**
 * Commanders without a shell: feed their parsers buffers (split anywhere, as a pipe
 * would) and check what they make of them.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import {
  CollectCommander,
  type Commander,
  DiscardCommander,
  LabellingCommander,
  lineParser,
  PassThroughCommander,
  RecallCommander,
} from '../../src/shell/index.js';

/** What the shell does with a command's output: chunks in order, then end(). */
function feed(commander: Commander, stdout: Buffer[], stderr: Buffer[] = []): void {
  for (const chunk of stdout) commander.stdout?.write(chunk);
  for (const chunk of stderr) commander.stderr?.write(chunk);
  commander.stdout?.end?.();
  commander.stderr?.end?.();
}

const bytes = (text: string) => [...Buffer.from(text)].map((byte) => Buffer.from([byte]));

describe('commanders', () => {
  test('discard keeps the command and nothing else', () => {
    const commander = new DiscardCommander('rm -rf build');
    assert.equal(commander.command, 'rm -rf build');
    assert.equal((commander as Commander).stdout, undefined);
    feed(commander, [Buffer.from('x')]);
  });

  test('pass-through forwards chunks unchanged to writables or callbacks', () => {
    const out: Buffer[] = [];
    const err: string[] = [];
    const commander = new PassThroughCommander('make', {
      stdout: { write: (chunk: Buffer) => out.push(chunk) },
      stderr: (chunk) => err.push(chunk.toString()),
    });
    feed(commander, [Buffer.from([0xe2, 0x82]), Buffer.from([0xac, 0x00])], [Buffer.from('w')]);
    assert.deepEqual(Buffer.concat(out), Buffer.from([0xe2, 0x82, 0xac, 0x00]));
    assert.deepEqual(err, ['w']);
  });

  test('labelling prints each line with out:/err:, the unterminated last line too', () => {
    const printed: string[] = [];
    const commander = new LabellingCommander('ls', (line) => printed.push(line));
    feed(commander, bytes('a\nb\nfoo'), bytes('oops\n'));
    assert.deepEqual(printed, ['out: a', 'out: b', 'err: oops', 'out: foo']);
  });

  test('recall keeps the non-empty lines of each stream; reset forgets them', () => {
    const commander = new RecallCommander('query');
    feed(commander, [Buffer.from('one\n\ntw'), Buffer.from('o\n\n')], [Buffer.from('e1\n')]);
    assert.deepEqual(commander.stdoutLines, ['one', 'two']);
    assert.deepEqual(commander.stderrLines, ['e1']);
    commander.reset();
    feed(commander, [Buffer.from('three')]);
    assert.deepEqual(commander.stdoutLines, ['three']);
    assert.deepEqual(commander.stderrLines, []);
  });

  test('collect decodes UTF-8 split at every byte', () => {
    const text = 'ünïcødé 日本語 🎉\n';
    const commander = new CollectCommander('x');
    feed(commander, bytes(text), bytes(text));
    assert.equal(commander.stdout.text, text);
    assert.equal(commander.stderr.text, text);
  });

  test('lineParser: one line held across many chunks, delivered once, whole', () => {
    const lines: string[] = [];
    const parser = lineParser((line) => lines.push(line));
    const chunk = Buffer.alloc(65_536, 'q');
    for (let i = 0; i < 40; i++) parser.write(chunk);
    parser.write(Buffer.from('\nnext\n'));
    parser.end?.();
    assert.equal(lines.length, 2);
    assert.equal(lines[0]!.length, 40 * 65_536);
    assert.equal(lines[1], 'next');
  });
});
