/**
 * src/cli/complete.ts: how `procsock shell` gathers lines into whole commands for the Python
 * and Node presets — from a script (a block ends where the next statement starts) and at a
 * terminal (a statement runs when complete, a block at its blank line, as the REPLs do).
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { type GatherPreset, gatherer } from '../../src/cli/complete.js';

/** Feeds lines one by one; each entry: what that line made ready. */
async function feed(preset: GatherPreset, interactive: boolean, lines: string[]) {
  const commands = gatherer(preset, interactive);
  const ready: string[][] = [];
  for (const line of lines) ready.push(await commands.line(line));
  return { ready, end: commands.end() };
}

describe('whole commands for python3', () => {
  test('from a script: a block takes indented, blank and else lines, and ends at the next statement', async () => {
    const { ready, end } = await feed('python', false, [
      'x = "#(" # a comment (',
      'def f(',
      '    a):',
      '    return a',
      '',
      '    # still f',
      'if x:',
      '    pass',
      'else:',
      '    pass',
      's = """a',
      'b"""',
      'f(1)',
    ]);
    assert.deepEqual(ready, [
      ['x = "#(" # a comment ('],
      [],
      [],
      [],
      [],
      [],
      ['def f(\n    a):\n    return a\n\n    # still f'],
      [],
      [],
      [],
      ['if x:\n    pass\nelse:\n    pass'],
      ['s = """a\nb"""'],
      ['f(1)'],
    ]);
    assert.deepEqual(end, []);
  });

  test('at a terminal: a block runs at its blank line, a one-line statement at once', async () => {
    const { ready, end } = await feed('python', true, [
      'for i in x:',
      '    f(i)',
      '',
      'y = (1,',
      '2)',
      'if y: f(y)',
      'while 1:',
    ]);
    assert.deepEqual(ready, [
      [],
      [],
      ['for i in x:\n    f(i)'],
      [],
      ['y = (1,\n2)'],
      ['if y: f(y)'],
      [],
    ]);
    assert.deepEqual(end, ['while 1:']);
  });
});

describe('whole commands for node', () => {
  test('from a script: a chain, an Allman else and an open template literal go with their statement', async () => {
    const { ready, end } = await feed('node', false, [
      'fetch(x)',
      '  .then((r) => r.json())',
      'if (a) {',
      '}',
      'else {',
      '}',
      'const t = `a',
      'b`;',
      '/* a',
      'comment */ f()',
    ]);
    assert.deepEqual(ready, [
      [],
      [],
      ['fetch(x)\n  .then((r) => r.json())'],
      [],
      [],
      [],
      ['if (a) {\n}\nelse {\n}'],
      ['const t = `a\nb`;'],
      [],
      [],
    ]);
    assert.deepEqual(end, ['/* a\ncomment */ f()']);
  });

  test('at a terminal: complete text runs at once', async () => {
    const { ready } = await feed('node', true, ['f()', 'function g() {', '}', 'h(1,', '2)']);
    assert.deepEqual(ready, [['f()'], [], ['function g() {\n}'], [], ['h(1,\n2)']]);
  });
});
