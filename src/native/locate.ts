/**
 * Where the native spawn addon is loaded from. The order is node-gyp-build's, and so is the
 * layout of the prebuilt binaries (prebuildify's), so the package works as the ecosystem's
 * native packages do:
 *
 * 1. `PROCSOCK_NATIVE_PATH`: exactly that file, and nothing else if it does not load (a
 *    sanitizer build under test must never be silently replaced by the normal one);
 * 2. `build/Release/procsock_spawn.node`: compiled on this machine (`npm install` in a git
 *    clone, `npm rebuild procsock --build-from-source`, or no prebuild fitted);
 * 3. `prebuilds/linux-<arch>/procsock_spawn.napi.<glibc|musl>.node`: shipped in the npm
 *    package, one per platform for every Node version (Node-API 8).
 *
 * A loader of our own rather than node-gyp-build: the package keeps zero runtime
 * dependencies, tells apart glibc and musl by the running Node's own dynamic linker rather
 * than by /etc/alpine-release, honours PROCSOCK_NATIVE_PATH, and records what it tried for
 * `procsock doctor`.
 */
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: the same two levels up from src/native and dist/native. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);

/** What building the addon needs, in every message that says so (scripts/native-build.json). */
export const NATIVE_REQUIREMENTS: string = (
  require('../../scripts/native-build.json') as { requirements: string }
).requirements;

export type AddonOrigin = 'PROCSOCK_NATIVE_PATH' | 'compiled' | 'prebuilt';

export interface AddonCandidate {
  origin: AddonOrigin;
  path: string;
}

export interface AddonReport {
  /** linux-x64, linux-arm64… */
  platform: string;
  libc: 'glibc' | 'musl';
  /** What was tried, in order, and why each one that failed did. */
  tried: { candidate: AddonCandidate; error: string | null }[];
  /** The one that loaded; null when none did. */
  loaded: AddonCandidate | null;
}

let report: AddonReport | null = null;

/** glibc or musl, from the dynamic linker the running Node was linked with. */
export function runtimeLibc(): 'glibc' | 'musl' {
  let fd: number | undefined;
  try {
    // The ELF interpreter's path sits in the first page of the executable.
    fd = openSync('/proc/self/exe', 'r');
    const head = Buffer.alloc(4096);
    const length = readSync(fd, head, 0, head.length, 0);
    return head.subarray(0, length).includes('/ld-musl-') ? 'musl' : 'glibc';
  } catch {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } };
    return report?.header?.glibcVersionRuntime ? 'glibc' : 'musl';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The files the addon may be loaded from, in order. */
export function addonCandidates(): AddonCandidate[] {
  const explicit = process.env.PROCSOCK_NATIVE_PATH;
  if (explicit) return [{ origin: 'PROCSOCK_NATIVE_PATH', path: explicit }];
  const platform = `${process.platform}-${process.arch}`;
  return [
    { origin: 'compiled', path: join(ROOT, 'build', 'Release', 'procsock_spawn.node') },
    {
      origin: 'prebuilt',
      path: join(ROOT, 'prebuilds', platform, `procsock_spawn.napi.${runtimeLibc()}.node`),
    },
  ];
}

/** Loads the first candidate that loads; throws an Error that says what was tried. */
export function requireAddon(): unknown {
  const tried: AddonReport['tried'] = [];
  report = {
    platform: `${process.platform}-${process.arch}`,
    libc: runtimeLibc(),
    tried,
    loaded: null,
  };
  for (const candidate of addonCandidates()) {
    if (!existsSync(candidate.path)) {
      tried.push({ candidate, error: 'not there' });
      continue;
    }
    try {
      const addon: unknown = require(candidate.path);
      tried.push({ candidate, error: null });
      report.loaded = candidate;
      return addon;
    } catch (error) {
      tried.push({ candidate, error: (error as Error).message.split('\n')[0]! });
    }
  }
  throw new Error(nativeUnavailable(report));
}

/** What the last load attempt found (null before the addon was first needed). */
export function addonReport(): AddonReport | null {
  return report;
}

/** One line: why there is no native backend, and what would give one. */
export function nativeUnavailable(what: AddonReport): string {
  const tried = what.tried
    .map(({ candidate, error }) => `${candidate.path.replace(ROOT, '')}: ${error}`)
    .join('; ');
  if (what.tried[0]?.candidate.origin === 'PROCSOCK_NATIVE_PATH') {
    return `the addon named by PROCSOCK_NATIVE_PATH does not load (${tried})`;
  }
  return (
    `no native spawn addon for ${what.platform} (${what.libc}) loads (${tried}); ` +
    `building one needs ${NATIVE_REQUIREMENTS}: then run "npm rebuild procsock"`
  );
}

/** Why spawning is not native here, for the errors of what needs it (one wording everywhere). */
export function nativeUnavailableReason(): string {
  if (report === null || report.loaded !== null) {
    return 'the child_process backend was chosen (PROCSOCK_SPAWN or spawnBackend)';
  }
  return nativeUnavailable(report);
}
