#!/usr/bin/env node
// Install step. When a prebuilt addon in prebuilds/ (shipped in the npm package) loads here,
// that is the addon and nothing is compiled. Otherwise this builds native/spawn.c →
// build/Release/procsock_spawn.node with node-gyp; without the tools (scripts/native-build.json
// names them) the build fails, and procsock falls back to child_process: one line says so and
// the install goes on — unless PROCSOCK_REQUIRE_NATIVE=1 (CI), which makes the failure fatal.
// `npm rebuild procsock --build-from-source` compiles even when a prebuild fits.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const required = process.env.PROCSOCK_REQUIRE_NATIVE === '1';
const addon = join(root, 'build', 'Release', 'procsock_spawn.node');
const { requirements } = JSON.parse(
  readFileSync(join(root, 'scripts', 'native-build.json'), 'utf8'),
);

/** The prebuilt addon that loads here, found as the runtime finds it (dist/…/locate.js); or null. */
async function loadablePrebuild() {
  const locate = join(root, 'dist', 'native', 'locate.js');
  if (process.env.npm_config_build_from_source === 'true' || !existsSync(locate)) return null;
  delete process.env.PROCSOCK_NATIVE_PATH;
  const { requireAddon, addonReport } = await import(pathToFileURL(locate).href);
  try {
    requireAddon();
  } catch {
    return null;
  }
  const { loaded } = addonReport();
  return loaded.origin === 'prebuilt' ? loaded.path : null;
}

/** node-gyp as npm ships it (npm tells scripts where), else one on PATH. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath &&
      join(
        dirname(process.env.npm_execpath),
        '..',
        'node_modules',
        'node-gyp',
        'bin',
        'node-gyp.js',
      ),
  ];
  // npm installed next to node (outside npm, e.g. `node scripts/build-native.mjs`).
  const prefix = resolve(dirname(process.execPath), '..');
  candidates.push(
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  );
  const script = candidates.find((path) => path && existsSync(path));
  return script ? [process.execPath, script] : ['node-gyp'];
}

/** Build against this Node's own headers when they are installed, so nothing is downloaded. */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

function fail(reason) {
  if (required) {
    console.error(
      `procsock: the native spawn addon failed to build (${reason}), and PROCSOCK_REQUIRE_NATIVE=1 makes that an error. ` +
        `No prebuilt binary fits this machine, and building one needs ${requirements}.`,
    );
    process.exit(1);
  }
  console.warn(
    `procsock: native spawn addon not built (${reason}); falling back to child_process (slower spawns). ` +
      `No prebuilt binary fits this machine, and building one needs ${requirements}; then run "npm rebuild procsock".`,
  );
  process.exit(0);
}

/**
 * procsock_reaper next to a prebuilt addon (containment: src/channel/contain.ts): compiled with
 * a C compiler where there is one; without, the prebuilt one shipped beside the addon
 * (prebuilds/linux-<arch>/procsock_reaper.<libc>) is what runs, if it runs here. Only when
 * neither can be had are runs not contained (the daemon's and the Shell's contained default
 * falls back to uncontained), and one line says so.
 */
function buildReaper(prebuiltAddon) {
  const cc = process.env.CC || 'cc';
  // Beside the addon that loaded, for the same platform and C library.
  const prebuilt = prebuiltAddon.replace(
    /procsock_spawn\.napi\.(\w+)\.node$/,
    'procsock_reaper.$1',
  );
  const prebuiltRuns = () => {
    // With no arguments it prints its usage and exits 125: it starts here.
    const probe = spawnSync(prebuilt, [], { encoding: 'utf8' });
    return probe.status === 125 && probe.stderr.includes('usage: procsock_reaper');
  };
  if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status !== 0) {
    if (prebuiltRuns()) return;
    console.warn(
      `procsock: procsock_reaper not built (no C compiler, ${cc}) and no prebuilt one runs here: ` +
        'runs cannot be contained; install a compiler and run "npm rebuild procsock" to have them contained',
    );
    return;
  }
  const out = join(root, 'build', 'Release', 'procsock_reaper');
  mkdirSync(dirname(out), { recursive: true });
  const result = spawnSync(cc, ['-O2', '-std=gnu11', '-o', out, join(root, 'native', 'reaper.c')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  if (result.status !== 0 && !prebuiltRuns()) {
    console.warn(
      `procsock: procsock_reaper not built (${cc} exited with ${result.status}) and no prebuilt one runs here: runs cannot be contained`,
    );
  }
}

const prebuiltAddon = await loadablePrebuild();
if (prebuiltAddon) {
  buildReaper(prebuiltAddon);
  process.exit(0);
}
const [command, ...prefixArgs] = nodeGyp();
const result = spawnSync(command, [...prefixArgs, 'rebuild', ...nodedirArgs()], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'pipe'],
  encoding: 'utf8',
});
if (result.error) fail(`cannot run node-gyp: ${result.error.message}`);
if (result.status !== 0) {
  // Where the addon is required (CI), the compiler's own words are what a fix needs.
  if (required) process.stderr.write(result.stdout.slice(-4000) + result.stderr.slice(-4000));
  fail(`node-gyp exited with ${result.status}`);
}
try {
  createRequire(import.meta.url)(addon);
} catch (error) {
  fail(`built, but it does not load: ${error.message}`);
}
