#!/usr/bin/env node
// Builds the native spawn addon with AddressSanitizer and UndefinedBehaviorSanitizer into
// build-asan/procsock_spawn.node (never build/, which users load), from binding.gyp's
// sources and defines, with the compiler directly: node-gyp builds only into build/; and
// procsock_reaper likewise, into build-asan/procsock_reaper.
// Load them with PROCSOCK_NATIVE_PATH=build-asan/procsock_spawn.node,
// PROCSOCK_REAPER_PATH=build-asan/procsock_reaper and the sanitizer runtimes first in the
// process: scripts/test-sanitizers.sh shows how (LD_PRELOAD, ASAN_OPTIONS).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build-asan', 'procsock_spawn.node');
const targets = JSON.parse(readFileSync(join(root, 'binding.gyp'), 'utf8')).targets;
const target = targets.find((t) => t.target_name === 'procsock_spawn');
const reaper = targets.find((t) => t.target_name === 'procsock_reaper');

/** Node's headers: next to this node, else node-gyp's download. */
function includeDir() {
  const prefix = resolve(dirname(process.execPath), '..');
  const candidates = [
    join(prefix, 'include', 'node'),
    join(process.env.HOME ?? '', '.cache', 'node-gyp', process.versions.node, 'include', 'node'),
  ];
  const found = candidates.find((dir) => existsSync(join(dir, 'node_api.h')));
  if (!found) {
    console.error(`build-native-asan: no Node headers in ${candidates.join(' or ')}`);
    process.exit(1);
  }
  return found;
}

const cc = process.env.CC || 'gcc';
const sanitize = [
  '-O1',
  '-g',
  '-std=gnu11',
  '-Wall',
  '-Wextra',
  '-Wno-unused-parameter',
  '-fno-omit-frame-pointer',
  '-fsanitize=address,undefined',
  // Every report is fatal: a sanitizer finding fails the run that met it.
  '-fno-sanitize-recover=all',
  // The test hooks (PROCSOCK_TEST_HOLD_*: test/channel/parent-race.test.ts); inert unless set.
  '-DPROCSOCK_TEST_HOOKS',
];

function compile(args, out) {
  mkdirSync(dirname(out), { recursive: true });
  const result = spawnSync(cc, args, { stdio: 'inherit' });
  if (result.error || result.status !== 0) {
    console.error(`build-native-asan: ${cc} failed (${result.error?.message ?? result.status})`);
    process.exit(1);
  }
  console.log(`build-native-asan: ${out}`);
}

compile(
  [
    '-shared',
    '-fPIC',
    ...sanitize,
    `-I${includeDir()}`,
    ...target.defines.map((define) => `-D${define}`),
    ...target.sources.map((source) => join(root, source)),
    '-o',
    out,
    ...(target.libraries ?? []),
  ],
  out,
);
const reaperOut = join(root, 'build-asan', 'procsock_reaper');
compile(
  [...sanitize, ...reaper.sources.map((source) => join(root, source)), '-o', reaperOut],
  reaperOut,
);
