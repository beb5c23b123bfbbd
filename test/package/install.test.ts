/**
 * The npm package as a user installs it: packed, installed into an empty project with no
 * compiler on PATH (with and without install scripts), and the native spawn backend in use
 * from the prebuilt binary; what the tarball holds; require() from CommonJS; and the one
 * wording of the fallback when no addon fits.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { installInto, packWorkspace, REPO, type Workspace } from '../helpers/package.js';

const run = promisify(execFile);
const requirements = JSON.parse(readFileSync(join(REPO, 'scripts', 'native-build.json'), 'utf8'))
  .requirements as string;
const platform = `${process.platform}-${process.arch}`;

// The package does not depend on the spawn backend of the run: it is checked once, in the
// native pass of `npm test` (or when run alone).
const skip =
  process.env.PROCSOCK_SPAWN === 'child_process' && 'backend-independent: runs in the native pass';

describe('the npm package, installed without a compiler', { skip }, () => {
  let workspace: Workspace;
  before(async () => {
    workspace = await packWorkspace();
  });
  after(() => workspace?.cleanup());

  /** Runs a command of the installed project with the workspace's bare PATH. */
  function inProject(dir: string, file: string, args: string[], env: NodeJS.ProcessEnv = {}) {
    return run(file, args, { cwd: dir, env: { ...workspace.env, ...env } });
  }

  test('the PATH holds no compiler, make or python3', async () => {
    for (const tool of ['gcc', 'cc', 'c++', 'g++', 'clang', 'make', 'python3', 'python']) {
      await assert.rejects(
        inProject(workspace.root, 'sh', ['-c', `command -v ${tool}`]),
        `${tool} must not be found`,
      );
    }
  });

  test('the tarball holds dist, every prebuild, LICENSE, and no source maps or stale scripts', () => {
    const files = workspace.files;
    assert.ok(files.includes('LICENSE'));
    assert.ok(files.includes('dist/index.js'));
    assert.ok(files.includes(`prebuilds/${platform}/procsock_spawn.napi.glibc.node`));
    for (const prebuild of [
      'prebuilds/linux-x64/procsock_spawn.napi.glibc.node',
      'prebuilds/linux-x64/procsock_spawn.napi.musl.node',
      'prebuilds/linux-arm64/procsock_spawn.napi.glibc.node',
      'prebuilds/linux-arm64/procsock_spawn.napi.musl.node',
      'prebuilds/linux-x64/procsock_reaper.glibc',
      'prebuilds/linux-x64/procsock_reaper.musl',
      'prebuilds/linux-arm64/procsock_reaper.glibc',
      'prebuilds/linux-arm64/procsock_reaper.musl',
    ]) {
      // CI builds every target (PROCSOCK_PREBUILD_ALL=1); elsewhere those whose toolchain is here.
      if (process.env.PROCSOCK_PREBUILD_ALL === '1' || existsSync(join(REPO, prebuild))) {
        assert.ok(files.includes(prebuild), prebuild);
      }
    }
    assert.deepEqual(
      files.filter((file) => file.endsWith('.map')),
      [],
    );
    assert.deepEqual(
      files.filter((file) => file.startsWith('src/') || file.startsWith('test/')),
      [],
    );
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
    assert.equal(pkg.license, 'MIT');
    assert.match(readFileSync(join(REPO, 'LICENSE'), 'utf8'), /^MIT License/);
    // npm lists every lifecycle script of an installed package; none may need what is not shipped.
    assert.equal(pkg.scripts.prepare, undefined);
    assert.match(pkg.scripts.install, /^node scripts\/build-native\.mjs$/);
    assert.ok(files.includes('scripts/build-native.mjs'));
    assert.ok(files.includes('scripts/native-build.json'));
    // The README's systemd setup copies the unit from the installed package.
    assert.deepEqual(
      files.filter((file) => file.startsWith('examples/')),
      ['examples/systemd/procsock.service'],
    );
  });

  for (const [name, npmArgs] of [
    ['with-scripts', []],
    ['ignore-scripts', ['--ignore-scripts']],
  ] as const) {
    test(`npm install ${npmArgs.join(' ')}: the native backend, from the prebuilt binary`, async () => {
      const { dir, stdout: log, stderr } = await installInto(workspace, name, [...npmArgs]);
      assert.doesNotMatch(log + stderr, /falling back|node-gyp/);
      const installed = join(dir, 'node_modules', 'procsock');
      assert.equal(existsSync(join(installed, 'build')), false, 'nothing was compiled');
      const probe = [
        "import { run, spawnBackendInUse } from 'procsock';",
        "const result = await run(['sh', '-c', 'echo native $$']);",
        'console.log(spawnBackendInUse(), result.stdout.trim(), result.exitCode);',
      ].join('\n');
      const { stdout } = await inProject(dir, 'node', ['--input-type=module', '-e', probe]);
      assert.match(stdout, /^native native \d+ 0\n$/);
      // Contained, though nothing was compiled: the prebuilt reaper (kept executable by npm).
      const contained = [
        "import { run } from 'procsock';",
        // The project's PATH holds node, npm and sh only.
        "const result = await run(['sh', '-c', '/usr/bin/setsid /bin/sleep 300 & echo $!'], { contain: true, exitGrace: 0 });",
        'let alive = true;',
        'try { process.kill(Number(result.stdout), 0); } catch { alive = false; }',
        'console.log(result.exitCode, result.descendantsStopped, alive);',
      ].join('\n');
      const containedRun = await inProject(dir, 'node', ['--input-type=module', '-e', contained]);
      assert.equal(containedRun.stdout, '0 1 false\n');
      const doctor = await inProject(dir, join(dir, 'node_modules', '.bin', 'procsock'), [
        'doctor',
      ]);
      assert.ok(
        doctor.stdout.includes(
          `containment: procsock_reaper (${installed}/prebuilds/${platform}/procsock_reaper.glibc)`,
        ),
        doctor.stdout,
      );
      assert.match(
        doctor.stdout,
        new RegExp(
          `spawn backend: native \\(prebuilt: ${installed}/prebuilds/${platform}/procsock_spawn\\.napi\\.glibc\\.node\\)`,
        ),
      );
      const version = await inProject(dir, join(dir, 'node_modules', '.bin', 'procsock'), [
        '--version',
      ]);
      assert.match(version.stdout, /^procsock \d+\.\d+\.\d+\nspawn backend: native \(prebuilt: /);
      // CommonJS: require(esm), which the engines range (^20.19.0 || >=22.12.0) guarantees.
      const cjs = await inProject(dir, 'node', [
        '--input-type=commonjs',
        '-e',
        "const p = require('procsock'); console.log(typeof p.run, typeof p.serve, p.spawnBackendInUse())",
      ]);
      assert.equal(cjs.stdout, 'function function native\n');
    });
  }

  test('no addon fits: install goes on, and every message names the same requirements', async () => {
    const { dir } = await installInto(workspace, 'no-fit', ['--ignore-scripts']);
    const installed = join(dir, 'node_modules', 'procsock');
    rmSync(join(installed, 'prebuilds'), { recursive: true });
    const install = await inProject(installed, 'node', ['scripts/build-native.mjs']);
    assert.ok(install.stderr.includes(requirements), install.stderr);
    assert.match(install.stderr, /falling back to child_process/);
    const cli = join(dir, 'node_modules', '.bin', 'procsock');
    const doctor = await inProject(dir, cli, ['doctor']).then(
      () => assert.fail('doctor must exit 1 without the native backend'),
      (error: { code: number; stdout: string }) => error,
    );
    assert.equal(doctor.code, 1);
    assert.ok(doctor.stdout.includes(requirements), doctor.stdout);
    assert.match(doctor.stdout, /spawn backend: child_process/);
    const forced = await inProject(dir, cli, ['run', '--', 'true'], {
      PROCSOCK_SPAWN: 'native',
    }).then(
      () => assert.fail('a forced native backend must fail'),
      (error: { stderr: string }) => error,
    );
    assert.ok(forced.stderr.includes(requirements), forced.stderr);
    const rlimit = await inProject(
      dir,
      cli,
      ['serve', '--allow-root', '--rlimit-cpu', '5', join(dir, 's.sock')],
      {
        PROCSOCK_SPAWN: '',
      },
    ).then(
      () => assert.fail('--rlimit-cpu without the native backend must refuse to start'),
      (error: { stderr: string }) => error,
    );
    assert.ok(rlimit.stderr.includes(requirements), rlimit.stderr);
  });
});
