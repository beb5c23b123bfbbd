/**
 * Every `ts` block of the README type-checks, as a user's TypeScript project would see it:
 * `strict`, Node's ESM resolution, against the .d.ts of the packed and installed package (not
 * src/), with the library's own declarations checked too (skipLibCheck off). A block that does
 * not import from 'procsock' is a fragment of the one before it: it gets the imports of the
 * package's names it uses, and `socket` (a string) and `shell` (a Shell) when it uses them
 * without declaring them — nothing else, so what a reader copies is what is checked.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { installInto, packWorkspace, REPO, type Workspace } from '../helpers/package.js';

const run = promisify(execFile);
const skip =
  process.env.PROCSOCK_SPAWN === 'child_process' && 'backend-independent: runs in the native pass';

/** The README's `ts` blocks with the line each starts on. */
function tsBlocks(): { line: number; code: string }[] {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  return [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => ({
    line: readme.slice(0, match.index).split('\n').length,
    code: match[1]!,
  }));
}

/**
 * A block made a module: a fragment (no import from 'procsock') gets the package's names it
 * uses imported; any block, the free variables `socket` and `shell` declared.
 */
function asModule(code: string, exported: string[]): string {
  const uses = (name: string) => new RegExp(`(?<![.\\w$'])${name}\\b`).test(code);
  const declares = (name: string) => new RegExp(`\\b(const|let|var) ${name}\\b`).test(code);
  const names = /from 'procsock'/.test(code) ? [] : exported.filter(uses);
  const lines = names.length > 0 ? [`import { ${names.join(', ')} } from 'procsock';`] : [];
  if (uses('socket') && !declares('socket')) lines.push('declare const socket: string;');
  if (uses('shell') && !declares('shell')) {
    lines.push("import type { Shell as ShellType } from 'procsock';");
    lines.push('declare const shell: ShellType;');
  }
  return `${[...lines, code].join('\n')}export {};\n`;
}

describe("the README's TypeScript blocks, against the installed package's types", { skip }, () => {
  let workspace: Workspace;
  let dir: string;
  before(async () => {
    workspace = await packWorkspace();
    ({ dir } = await installInto(workspace, 'readme-types', ['--ignore-scripts']));
  });
  after(() => workspace?.cleanup());

  test('each block type-checks under strict', async () => {
    const { stdout } = await run(
      'node',
      ['--input-type=module', '-e', "console.log(Object.keys(await import('procsock')).join(' '))"],
      { cwd: dir, env: workspace.env },
    );
    const exported = stdout.trim().split(' ');
    const blocks = tsBlocks();
    assert.ok(blocks.length >= 15, `the README's ts blocks (${blocks.length})`);
    const snippets = join(dir, 'snippets');
    mkdirSync(snippets);
    for (const { line, code } of blocks) {
      writeFileSync(join(snippets, `readme-line-${line}.ts`), asModule(code, exported));
    }
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          noEmit: true,
          skipLibCheck: false,
          typeRoots: [join(REPO, 'node_modules', '@types')],
          types: ['node'],
        },
        include: ['snippets/*.ts'],
      }),
    );
    const tsc = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = await run('node', [tsc, '-p', dir], { cwd: dir, env: workspace.env }).then(
      () => ({ stdout: '' }),
      (error: { stdout: string }) => error,
    );
    // readme-line-N.ts(L,C): the README line is N + L (fragments: + their added imports).
    assert.equal(result.stdout, '', 'tsc reports errors in README blocks');
  });
});
