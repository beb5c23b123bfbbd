/**
 * Every command block of the README's daemon section (and the overview's daemon example),
 * run as written against the installed package, as root and as an unprivileged user:
 * a `procsock serve` line must serve (checked with a client), then stop cleanly on SIGTERM
 * and remove its socket — unless the README marks it: "as root: add --allow-root" (then as
 * root it must refuse with a message naming --allow-root, and serve with the flag added),
 * "root only" (then as another user it must refuse). Other lines must exit 0. The `ts` block
 * runs as a module the same way. Socket paths are moved into the test's own directory.
 */
import { strict as assert } from 'node:assert';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { finished } from '../helpers/cli.js';
import { isListening } from '../helpers/daemon.js';
import { installInto, packWorkspace, REPO, type Workspace } from '../helpers/package.js';
import { waitUntil } from '../helpers/process.js';

const README = readFileSync(join(REPO, 'README.md'), 'utf8');
const PLAIN_USER = 'procsock-readme';
const asRoot = process.getuid?.() === 0;
const skip =
  process.env.PROCSOCK_SPAWN === 'child_process' && 'backend-independent: runs in the native pass';

function section(name: string): string {
  const start = README.indexOf(`<!-- section:${name} -->`);
  const end = README.indexOf(`<!-- /section:${name} -->`);
  assert.ok(start >= 0 && end > start, `README section ${name}`);
  return README.slice(start, end);
}

function blocks(text: string, language: string): string[] {
  return [...text.matchAll(new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``, 'g'))].map(
    (match) => match[1]!,
  );
}

interface Line {
  command: string;
  comment: string;
  background: boolean;
}

function lines(block: string): Line[] {
  return block
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.trim().startsWith('#'))
    .map((line) => {
      const hash = line.indexOf(' #');
      let command = (hash < 0 ? line : line.slice(0, hash)).trim();
      const background = command.endsWith('&');
      if (background) command = command.slice(0, -1).trim();
      return { command, comment: hash < 0 ? '' : line.slice(hash + 2), background };
    });
}

interface Runner {
  name: string;
  uid: number;
  /** argv that runs `sh -c SCRIPT` as this user. */
  wrap(script: string): string[];
  env: NodeJS.ProcessEnv;
}

describe("the README's daemon commands, as written", { skip }, () => {
  let workspace: Workspace;
  let project: string;
  let sockets: string;
  const runners: Runner[] = [];

  before(async () => {
    workspace = await packWorkspace();
    project = (await installInto(workspace, 'readme', ['--ignore-scripts'])).dir;
    sockets = join(workspace.root, 'sockets');
    mkdirSync(sockets);
    chmodSync(sockets, 0o1777);
    const path = `${join(project, 'node_modules', '.bin')}:${process.env.PATH}`;
    const base = { PATH: path, LANG: 'C.UTF-8' };
    const homeFor = (name: string) => {
      const home = join(workspace.root, `home-${name}`);
      mkdirSync(home, { mode: 0o777 });
      chmodSync(home, 0o777);
      return { HOME: home, npm_config_cache: join(home, '.npm') };
    };
    runners.push({
      name: asRoot ? 'root' : 'this user',
      uid: process.getuid!(),
      wrap: (script) => ['sh', '-c', script],
      env: { ...base, ...homeFor('self') },
    });
    if (asRoot) {
      try {
        execFileSync('id', ['-u', PLAIN_USER], { stdio: 'ignore' });
      } catch {
        execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/bin/sh', PLAIN_USER]);
      }
      const uid = Number(execFileSync('id', ['-u', PLAIN_USER], { encoding: 'utf8' }));
      const gid = Number(execFileSync('id', ['-g', PLAIN_USER], { encoding: 'utf8' }));
      runners.push({
        name: PLAIN_USER,
        uid,
        wrap: (script) => [
          'setpriv',
          `--reuid=${uid}`,
          `--regid=${gid}`,
          '--clear-groups',
          '--',
          'sh',
          '-c',
          script,
        ],
        env: { ...base, ...homeFor(PLAIN_USER) },
      });
    }
  });
  after(() => workspace?.cleanup());

  const localise = (command: string) =>
    command.replaceAll('/tmp/exec.sock', join(sockets, 'exec.sock'));

  function start(runner: Runner, command: string): ChildProcess {
    const [file, ...args] = runner.wrap(`exec ${command}`);
    return spawn(file!, args, { cwd: project, env: runner.env, stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Starts a daemon line and waits until its socket listens (or it exits first). */
  async function startDaemon(runner: Runner, command: string) {
    const socket = command.split(/\s+/).at(-1)!;
    const child = start(runner, command);
    const done = finished(child);
    let exited = false;
    void done.then(() => {
      exited = true;
    });
    await waitUntil(() => exited || isListening(socket), `${command} listens`);
    return { child, done, socket, exited: () => exited };
  }

  async function expectServes(
    runner: Runner,
    command: string,
    line: Line,
    runAfter: () => Promise<void>,
  ) {
    const daemon = await startDaemon(runner, command);
    if (daemon.exited()) {
      const { status, stderr } = await daemon.done;
      assert.fail(`${command} as ${runner.name} exited ${status}: ${stderr}`);
    }
    const client = await finished(start(runner, `procsock run --socket ${daemon.socket} -- id -u`));
    assert.equal(client.status, 0, client.stderr);
    const expectedUid = /--user nobody/.test(command)
      ? execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' })
      : `${runner.uid}\n`;
    assert.equal(client.stdout, expectedUid, `${line.command}: programs run as`);
    await runAfter();
    daemon.child.kill('SIGTERM');
    const { status, stderr } = await daemon.done;
    assert.equal(status, 0, `${command}: clean shutdown on SIGTERM (${stderr})`);
    assert.equal(existsSync(daemon.socket), false, `${command}: socket removed`);
  }

  async function expectRefused(runner: Runner, command: string, why: RegExp) {
    const result = await finished(start(runner, command));
    assert.equal(result.status, 111, `${command} as ${runner.name} must refuse: ${result.stderr}`);
    assert.match(result.stderr, why);
  }

  async function runBlock(runner: Runner, block: string) {
    const all = lines(block);
    for (let i = 0; i < all.length; i++) {
      const line = all[i]!;
      const command = localise(line.command);
      if (!/\bprocsock serve\b/.test(command)) {
        const result = await finished(start(runner, command));
        assert.equal(result.status, 0, `${command} as ${runner.name}: ${result.stderr}`);
        continue;
      }
      // A background daemon serves the lines that follow it in the block.
      const rest = line.background ? all.splice(i + 1) : [];
      const following = async () => {
        for (const next of rest) {
          const result = await finished(start(runner, localise(next.command)));
          assert.equal(result.status, 0, `${next.command} as ${runner.name}: ${result.stderr}`);
        }
      };
      const root = runner.uid === 0;
      if (root && /as root: add --allow-root/.test(line.comment)) {
        await expectRefused(runner, command, /--allow-root/);
        await expectServes(
          runner,
          command.replace('procsock serve ', 'procsock serve --allow-root '),
          line,
          following,
        );
      } else if (!root && /root only/.test(line.comment)) {
        await expectRefused(runner, command, /needs the daemon to run as root/);
      } else {
        await expectServes(runner, command, line, following);
      }
    }
  }

  test('the blocks exist and carry their markers', async () => {
    const daemonBlocks = blocks(section('daemon'), 'sh');
    assert.ok(daemonBlocks.length >= 2);
    assert.match(daemonBlocks.join('\n'), /--allow-root/);
    assert.match(section('cli'), /procsock serve \[-v\][^\n]*\n[^\n]*--allow-root/);
    const { SERVE_USAGE } = await import('../../src/cli/serve.js');
    assert.match(SERVE_USAGE, /--allow-root/);
  });

  const cases = [
    ['overview', () => blocks(section('overview'), 'sh')[0]!],
    ...[0, 1].map(
      (index) =>
        [`daemon block ${index + 1}`, () => blocks(section('daemon'), 'sh')[index]!] as const,
    ),
  ] as const;
  for (const [name, block] of cases) {
    test(`${name}, as root and as an unprivileged user`, async () => {
      assert.ok(runners.length === (asRoot ? 2 : 1));
      for (const runner of runners) await runBlock(runner, block());
    });
  }

  test('the serve() block, as root and as an unprivileged user', async () => {
    const [code] = blocks(section('daemon'), 'ts');
    assert.ok(code?.includes('policy: { allowRoot: true }'), 'the block says what to add as root');
    for (const runner of runners) {
      const file = join(project, `serve-${runner.uid}.mjs`);
      const write = (text: string) => {
        writeFileSync(file, localise(text));
        chmodSync(file, 0o644);
      };
      write(code!);
      const result = await finished(start(runner, `node ${file}`));
      if (runner.uid === 0) {
        assert.notEqual(result.status, 0);
        assert.match(result.stderr, /policy\.allowRoot/, 'the rejection names the option');
        write(code!.replace('timeout: 30_000 }', 'timeout: 30_000, policy: { allowRoot: true } }'));
        const fixed = await finished(start(runner, `node ${file}`));
        assert.equal(fixed.status, 0, fixed.stderr);
        assert.equal(fixed.stdout, '0\n');
      } else {
        assert.equal(result.status, 0, result.stderr);
        assert.equal(result.stdout, '0\n');
      }
    }
  });
});
