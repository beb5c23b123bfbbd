/**
 * The package as a user gets it from the registry: `npm pack` of this tree, installed into an
 * empty project in a temporary directory, with a PATH that holds node, npm and sh and nothing
 * else — no compiler, no make, no python3 — so nothing can be compiled at install.
 * Packing uses --ignore-scripts: `npm test` has built dist/ and prebuilds/ already (prepack
 * would rebuild them, rewriting dist/ under the tests that run meanwhile).
 */
import { execFile } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const REPO = fileURLToPath(new URL('../../', import.meta.url));
/** The prebuilt addon for this machine, which the tarball must carry. */
export const HOST_PREBUILD = join(
  REPO,
  'prebuilds',
  `${process.platform}-${process.arch}`,
  'procsock_spawn.napi.glibc.node',
);

export interface Workspace {
  /** Everything lives below it (world-readable, so another user can run the installed package). */
  root: string;
  tarball: string;
  /** The files `npm pack` put in the tarball. */
  files: string[];
  /** A directory of symlinks to node, npm and sh only. */
  bin: string;
  /** An environment with PATH = bin, its own HOME and npm cache, and no PROCSOCK_* variable. */
  env: NodeJS.ProcessEnv;
  cleanup(): void;
}

/** Packs this tree into a fresh world-readable workspace. */
export async function packWorkspace(): Promise<Workspace> {
  for (const needed of [join(REPO, 'dist', 'index.js'), HOST_PREBUILD]) {
    if (!existsSync(needed)) {
      throw new Error(`${needed} is missing: run npm run build && npm run build:prebuilds first`);
    }
  }
  const root = mkdtempSync(join(tmpdir(), 'procsock-package-'));
  chmodSync(root, 0o755);
  const { stdout } = await run(
    'npm',
    ['pack', '--ignore-scripts', '--json', '--pack-destination', root],
    { cwd: REPO, maxBuffer: 16 * 1024 * 1024 },
  );
  const [packed] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
  const bin = join(root, 'bin');
  mkdirSync(bin);
  for (const [name, target] of [
    ['node', process.execPath],
    ['npm', await which('npm')],
    ['npx', await which('npx')],
    ['sh', '/bin/sh'],
  ] as const) {
    symlinkSync(target, join(bin, name));
  }
  const home = join(root, 'home');
  mkdirSync(home, { mode: 0o777 });
  chmodSync(home, 0o777);
  const env: NodeJS.ProcessEnv = {
    PATH: bin,
    HOME: home,
    npm_config_cache: join(home, '.npm'),
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    LANG: 'C.UTF-8',
  };
  return {
    root,
    tarball: join(root, packed.filename),
    files: packed.files.map((file) => file.path),
    bin,
    env,
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

async function which(name: string): Promise<string> {
  const { stdout } = await run('sh', ['-c', `command -v ${name}`]);
  return stdout.trim();
}

/** An empty project in the workspace with the tarball installed; returns its directory. */
export async function installInto(
  workspace: Workspace,
  name: string,
  npmArgs: string[] = [],
): Promise<{ dir: string; stdout: string; stderr: string }> {
  const dir = join(workspace.root, name);
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify({ name, version: '1.0.0', private: true, type: 'module' }, null, 2)}\n`,
  );
  const { stdout, stderr } = await run(
    'npm',
    ['install', '--foreground-scripts', ...npmArgs, workspace.tarball],
    { cwd: dir, env: workspace.env, maxBuffer: 16 * 1024 * 1024 },
  );
  return { dir, stdout, stderr };
}
