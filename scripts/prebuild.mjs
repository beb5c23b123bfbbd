#!/usr/bin/env node
// Builds the prebuilt native addons that ship inside the npm package, in prebuildify's layout
// (what node-gyp-build and src/native/locate.ts look for):
//   prebuilds/linux-x64/procsock_spawn.napi.glibc.node    prebuilds/linux-x64/procsock_spawn.napi.musl.node
//   prebuilds/linux-arm64/procsock_spawn.napi.glibc.node  prebuilds/linux-arm64/procsock_spawn.napi.musl.node
// Node-API 8 (binding.gyp's NAPI_VERSION) makes one binary per platform serve every Node version.
// The sources, flags and defines are binding.gyp's, so a prebuild is the addon node-gyp builds.
// binding.gyp's executable, procsock_reaper (containment: src/channel/contain.ts), is prebuilt
// beside each addon as prebuilds/linux-<arch>/procsock_reaper.<glibc|musl>, so that an install
// without a C compiler still contains its runs; it is checked as the addon is, and run (under
// qemu-user for arm64): with no arguments it prints its usage and exits 125.
//
//   node scripts/prebuild.mjs                   every target whose toolchain is installed
//   node scripts/prebuild.mjs linux-x64-glibc   only the ones named
//   PROCSOCK_PREBUILD_ALL=1 node scripts/prebuild.mjs   a missing toolchain is an error (CI, publish)
//
// Each binary is checked before it is kept: its ELF machine, the libraries it needs (libc only),
// the symbols it imports (Node-API, libuv and libc: nothing of V8 or C++), for glibc no symbol
// version newer than the floor in scripts/native-build.json. The one for this machine is loaded
// into this Node; the others are loaded with their own libc (arm64 under qemu-user) by a stub
// program (loadElsewhere).
// Toolchains (Debian packages): gcc, gcc-aarch64-linux-gnu, musl-tools, qemu-user; for arm64 musl, the
// headers and libc of Debian's musl-dev:arm64 unpacked into MUSL_ARM64_SYSROOT (.ci/run does it).
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const facts = JSON.parse(readFileSync(join(root, 'scripts', 'native-build.json'), 'utf8'));
const requireAll =
  process.env.PROCSOCK_PREBUILD_ALL === '1' || process.env.npm_command === 'publish';
const muslArm64Sysroot = resolve(
  root,
  process.env.MUSL_ARM64_SYSROOT ?? join('.cache', 'sysroot-aarch64-musl'),
);

/** What each target needs: the compiler, its extra flags, and what its ELF must look like. */
const TARGETS = {
  'linux-x64-glibc': {
    arch: 'x64',
    libc: 'glibc',
    cc: process.env.CC ?? 'gcc',
    package: 'gcc',
    flags: ['-include', join(root, 'scripts', 'glibc-floor.h')],
    machine: 'Advanced Micro Devices X86-64',
  },
  'linux-arm64-glibc': {
    arch: 'arm64',
    libc: 'glibc',
    cc: 'aarch64-linux-gnu-gcc',
    package: 'gcc-aarch64-linux-gnu',
    flags: ['-include', join(root, 'scripts', 'glibc-floor.h')],
    machine: 'AArch64',
    harness: (source, out) => ['aarch64-linux-gnu-gcc', ['-rdynamic', source, '-o', out, '-ldl']],
    runner: (harness, file) => ['qemu-aarch64', ['-L', '/usr/aarch64-linux-gnu', harness, file]],
  },
  'linux-x64-musl': {
    arch: 'x64',
    libc: 'musl',
    cc: 'musl-gcc',
    package: 'musl-tools',
    flags: [],
    machine: 'Advanced Micro Devices X86-64',
    harness: (source, out) => ['musl-gcc', ['-rdynamic', source, '-o', out]],
    runner: (harness, file) => [harness, [file]],
  },
  'linux-arm64-musl': {
    arch: 'arm64',
    libc: 'musl',
    cc: 'aarch64-linux-gnu-gcc',
    package: 'gcc-aarch64-linux-gnu, and musl-dev:arm64 unpacked into MUSL_ARM64_SYSROOT',
    sysroot: muslArm64Sysroot,
    // gcc's own headers (stddef.h…) and libgcc, musl's libc and headers; no glibc at all.
    flags: () => [
      '-nostdinc',
      '-isystem',
      join(muslArm64Sysroot, 'usr', 'include', 'aarch64-linux-musl'),
      '-isystem',
      capture('aarch64-linux-gnu-gcc', ['-print-file-name=include']),
      '-mno-outline-atomics',
      '-nostdlib',
    ],
    libs: () => [
      '-L',
      join(muslArm64Sysroot, 'lib', 'aarch64-linux-musl'),
      '-lc',
      capture('aarch64-linux-gnu-gcc', ['-print-libgcc-file-name']),
    ],
    machine: 'AArch64',
    harness: (source, out) => {
      const lib = join(muslArm64Sysroot, 'usr', 'lib', 'aarch64-linux-musl');
      return [
        'aarch64-linux-gnu-gcc',
        [
          ...TARGETS['linux-arm64-musl'].flags(),
          '-rdynamic',
          '-Wl,--dynamic-linker=/lib/ld-musl-aarch64.so.1',
          join(lib, 'Scrt1.o'),
          join(lib, 'crti.o'),
          source,
          ...TARGETS['linux-arm64-musl'].libs(),
          join(lib, 'crtn.o'),
          '-o',
          out,
        ],
      ];
    },
    runner: (harness, file) => ['qemu-aarch64', ['-L', muslArm64Sysroot, harness, file]],
  },
};

function capture(command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr}`);
  return result.stdout.trim();
}

function has(command) {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0;
}

/** The Node-API headers (and libuv's, which the addon uses): this Node's own, else node-gyp's cache. */
function nodeHeaders() {
  const candidates = [
    process.env.PROCSOCK_NODE_HEADERS,
    join(resolve(dirname(process.execPath), '..'), 'include', 'node'),
    join(homedir(), '.cache', 'node-gyp', process.versions.node, 'include', 'node'),
  ].filter(Boolean);
  const found = candidates.find(
    (dir) => existsSync(join(dir, 'node_api.h')) && existsSync(join(dir, 'uv.h')),
  );
  if (!found) {
    throw new Error(
      `no Node-API headers (node_api.h and uv.h) in ${candidates.join(', ')}; set PROCSOCK_NODE_HEADERS`,
    );
  }
  return found;
}

/** binding.gyp's addon targets (it is written as JSON, which gyp reads too). */
function gypTargets(type = 'loadable_module') {
  const gyp = JSON.parse(readFileSync(join(root, 'binding.gyp'), 'utf8'));
  return gyp.targets.filter((target) => (target.type ?? 'loadable_module') === type);
}

export function prebuiltExecutablePath(arch, libc, name) {
  return join(root, 'prebuilds', `linux-${arch}`, `${name}.${libc}`);
}

/**
 * The compiler and arguments that link `sources` into the executable `out` for `target`:
 * its own flags; for arm64 musl, which has no driver of its own, musl's start files and libc
 * by hand, as the load check's harness is linked.
 */
function executableCommand(target, gyp, out) {
  const flags = typeof target.flags === 'function' ? target.flags() : target.flags;
  const sources = gyp.sources.map((source) => join(root, source));
  const common = [...flags, ...(gyp.cflags ?? []), '-s', '-Wl,-z,relro,-z,now'];
  if (target.sysroot) {
    const lib = join(target.sysroot, 'usr', 'lib', 'aarch64-linux-musl');
    return [
      target.cc,
      [
        ...common,
        '-pie',
        '-Wl,--dynamic-linker=/lib/ld-musl-aarch64.so.1',
        join(lib, 'Scrt1.o'),
        join(lib, 'crti.o'),
        ...sources,
        ...target.libs(),
        join(lib, 'crtn.o'),
        '-o',
        out,
      ],
    ];
  }
  // glibc: linked statically (its start files would need the build machine's glibc, newer
  // than the floor; the reaper uses no NSS), so it runs on any glibc, or none.
  const linkage = target.libc === 'glibc' ? ['-static-pie'] : [];
  return [target.cc, [...common, ...linkage, ...sources, '-o', out]];
}

function buildExecutables(id, target) {
  const outputs = [];
  for (const gyp of gypTargets('executable')) {
    const out = prebuiltExecutablePath(target.arch, target.libc, gyp.target_name);
    compileChecked(id, target, gyp.target_name, out, { executable: true }, (partial) =>
      executableCommand(target, gyp, partial),
    );
    outputs.push(out);
  }
  return outputs;
}

/**
 * Runs a prebuilt executable with no arguments on its platform (natively, or through the
 * target's runner: qemu-user for arm64): it must start, print its usage and exit 125.
 * Returns why it could not be checked, or null once it was.
 */
function runExecutable(file, target, here) {
  const [command, args] = here ? [file, []] : target.runner(file, '--');
  if (!here && command !== file && !has(command)) return `${command} not found (Debian: qemu-user)`;
  // The runner passes the file name after the program: the reaper sees one argument.
  const result = spawnSync(command, here ? args : args.slice(0, -1), { encoding: 'utf8' });
  if (result.status !== 125 || !result.stderr.includes('usage: procsock_reaper')) {
    throw new Error(
      `${file} does not run on its platform: ${result.stderr || result.error || result.status}`,
    );
  }
  return null;
}

export function prebuildPath(arch, libc, name = 'procsock_spawn') {
  return join(root, 'prebuilds', `linux-${arch}`, `${name}.napi.${libc}.node`);
}

function build(id, target, headers) {
  const flags = typeof target.flags === 'function' ? target.flags() : target.flags;
  const libs = target.libs ? target.libs() : [];
  const outputs = [];
  for (const gyp of gypTargets()) {
    const out = prebuildPath(target.arch, target.libc, gyp.target_name);
    compileChecked(id, target, gyp.target_name, out, {}, (partial) => [
      target.cc,
      [
        ...flags,
        ...(gyp.cflags ?? []),
        ...(gyp.defines ?? []).map((define) => `-D${define}`),
        '-fPIC',
        '-shared',
        '-s',
        '-Wl,-z,relro,-z,now',
        '-I',
        headers,
        ...gyp.sources.map((source) => join(root, source)),
        '-o',
        partial,
        ...(gyp.ldflags ?? []),
        ...(gyp.libraries ?? []),
        ...libs,
      ],
    ]);
    outputs.push(out);
  }
  return outputs;
}

/**
 * Compiles into `out`.partial (`command(partial)` gives the compiler and its arguments), checks
 * the result's ABI, and only then renames it to `out`: a failed or unfit build never leaves a
 * file where a loader would look.
 */
function compileChecked(id, target, name, out, elfOptions, command) {
  mkdirSync(dirname(out), { recursive: true });
  const partial = `${out}.partial`;
  const [cc, args] = command(partial);
  const result = spawnSync(cc, args, { cwd: root, encoding: 'utf8' });
  if (result.status !== 0) {
    rmSync(partial, { force: true });
    throw new Error(`${id}: ${cc} failed for ${name}:\n${result.stderr}`);
  }
  const problems = checkElf(partial, target, elfOptions);
  if (problems.length > 0) {
    rmSync(partial, { force: true });
    throw new Error(`${id}: ${name} fails its ABI check:\n  ${problems.join('\n  ')}`);
  }
  renameSync(partial, out);
}

/** What would stop the binary from loading on its platform; empty when none. */
export function checkElf(file, target, { executable = false } = {}) {
  const problems = [];
  const header = capture('readelf', ['-h', file]);
  if (!header.includes(`Machine:                           ${target.machine}`)) {
    problems.push(`machine is not ${target.machine}`);
  }
  // A shared object, or a position-independent executable (DYN too).
  if (!/Type:\s+DYN/.test(header)) {
    problems.push(executable ? 'not a position-independent executable' : 'not a shared object');
  }
  const dynamic = capture('readelf', ['-d', file]);
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map(
    (match) => match[1],
  );
  const libcNames = target.libc === 'glibc' ? ['libc.so.6'] : ['libc.so'];
  for (const library of needed) {
    if (!libcNames.includes(library)) problems.push(`needs ${library} (only libc is allowed)`);
  }
  if (/\((RPATH|RUNPATH)\)/.test(dynamic)) problems.push('has an RPATH/RUNPATH');
  const symbols = capture('readelf', ['--dyn-syms', '-W', file]);
  const versions = [...symbols.matchAll(/@(GLIBC_[0-9.]+)/g)].map((match) => match[1]);
  if (target.libc === 'musl' && versions.length > 0) {
    problems.push(`imports glibc-versioned symbols: ${[...new Set(versions)].join(', ')}`);
  }
  for (const version of new Set(versions)) {
    if (newerThan(version.slice('GLIBC_'.length), facts.glibcFloor)) {
      const names = [...symbols.matchAll(new RegExp(`(\\S+)@${version}`, 'g'))].map((m) => m[1]);
      problems.push(
        `${names.join(', ')} need ${version}, newer than the floor GLIBC_${facts.glibcFloor}`,
      );
    }
  }
  // Undefined symbols: Node-API and libuv come from node itself; anything else (V8, C++
  // runtime) would tie the binary to one Node version.
  for (const line of symbols.split('\n')) {
    const match = /\sUND\s+(\S+)$/.exec(line.trim());
    if (!match) continue;
    const name = match[1].replace(/@.*/, '');
    if (/^_Z|^v8|^node::/.test(name)) problems.push(`imports ${name}, not Node-API`);
  }
  return problems;
}

function newerThan(version, floor) {
  const a = version.split('.').map(Number);
  const b = floor.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return false;
}

/**
 * A prebuild for another platform is loaded by a small program of that platform, with that
 * platform's own libc (under qemu-user for arm64): it defines every Node-API and libuv
 * function the addon imports as a stub (Node would provide them), then dlopen()s the addon
 * with RTLD_NOW, so every libc symbol and version must resolve, and looks up its
 * napi_register_module_v1. Returns why it could not be checked, or null once it was.
 */
function loadElsewhere(file, target) {
  const [runner] = target.runner('', file);
  if (runner !== '' && !has(runner)) return `${runner} not found (Debian: qemu-user)`;
  const symbols = capture('readelf', ['--dyn-syms', '-W', file])
    .split('\n')
    .map((line) => /\sUND\s+((?:napi_|uv_)\w+)/.exec(line)?.[1])
    .filter(Boolean);
  const dir = mkdtempSync(join(tmpdir(), 'procsock-prebuild-'));
  try {
    const source = join(dir, 'load.c');
    writeFileSync(
      source,
      [
        '#include <dlfcn.h>',
        '#include <stdio.h>',
        ...[...new Set(symbols)].map((name) => `void ${name}(void) {}`),
        'int main(int argc, char **argv) {',
        '  void *addon = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);',
        '  if (!addon) { fprintf(stderr, "%s\\n", dlerror()); return 1; }',
        '  if (!dlsym(addon, "napi_register_module_v1")) { fputs("no napi_register_module_v1\\n", stderr); return 2; }',
        '  return 0;',
        '}',
        '',
      ].join('\n'),
    );
    const harness = join(dir, 'load');
    const [cc, args] = target.harness(source, harness);
    const built = spawnSync(cc, args, { encoding: 'utf8' });
    if (built.status !== 0) throw new Error(`cannot build the load check: ${built.stderr}`);
    const [command, runArgs] = target.runner(harness, file);
    const loaded = spawnSync(command, runArgs, { encoding: 'utf8' });
    if (loaded.status !== 0) {
      throw new Error(`${file} does not load on its platform: ${loaded.stderr || loaded.error}`);
    }
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The prebuild for this very machine must load into this Node and initialise. */
function loadHere(file) {
  const probe = `const a = require(${JSON.stringify(file)}); if (typeof a.spawn !== 'function') process.exit(3);`;
  const result = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${file} does not load here: ${result.stderr}`);
}

function hostLibc() {
  return process.report?.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
}

function main() {
  const wanted = process.argv.slice(2);
  for (const id of wanted) {
    if (!Object.hasOwn(TARGETS, id)) {
      console.error(`prebuild: unknown target ${id} (${Object.keys(TARGETS).join(', ')})`);
      process.exit(2);
    }
  }
  const headers = nodeHeaders();
  let missing = 0;
  for (const [id, target] of Object.entries(TARGETS)) {
    if (wanted.length > 0 && !wanted.includes(id)) continue;
    const absent = !has(target.cc)
      ? `${target.cc} not found`
      : target.sysroot && !existsSync(join(target.sysroot, 'lib', 'aarch64-linux-musl', 'libc.so'))
        ? `no musl sysroot at ${target.sysroot}`
        : null;
    if (absent) {
      missing++;
      console.error(`prebuild: ${id}: SKIPPED, ${absent} (Debian: ${target.package})`);
      continue;
    }
    const outputs = build(id, target, headers);
    const here = target.arch === process.arch && target.libc === hostLibc();
    for (const file of buildExecutables(id, target)) {
      const native = target.arch === process.arch && (here || !target.runner);
      const unchecked = runExecutable(file, target, native);
      if (unchecked && requireAll) throw new Error(`${id}: not run-checked: ${unchecked}`);
      console.log(
        `prebuild: ${id}: ${file.slice(root.length + 1)} (ABI check passed, ${unchecked ? `NOT run-checked: ${unchecked}` : 'runs on its platform'})`,
      );
    }
    for (const file of outputs) {
      let loads = 'loads in this Node';
      if (here) loadHere(file);
      else {
        const unchecked = target.runner ? loadElsewhere(file, target) : 'no load check for it';
        if (unchecked && requireAll) throw new Error(`${id}: not load-checked: ${unchecked}`);
        loads = unchecked
          ? `NOT load-checked: ${unchecked}`
          : `loads with its own libc${target.arch === process.arch ? '' : ' under qemu'}`;
      }
      console.log(`prebuild: ${id}: ${file.slice(root.length + 1)} (ABI check passed, ${loads})`);
    }
  }
  if (missing > 0 && requireAll) {
    console.error(`prebuild: ${missing} target(s) could not be built, and every one is required`);
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (error) {
    console.error(`prebuild: ${error.message}`);
    process.exit(1);
  }
}
