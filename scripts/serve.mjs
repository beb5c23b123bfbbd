#!/usr/bin/env node
// `npm run serve`: the daemon on a default socket path, for trying procsock out.
//   socket: $PROCSOCK_SOCKET, else $XDG_RUNTIME_DIR/procsock.sock, else <tmpdir>/procsock.sock
//   ($XDG_RUNTIME_DIR only when it is a directory of this user's, as the XDG spec has it: `su`
//   keeps the other user's, which this one cannot write, and a logged-out session's is gone)
//   extra flags: npm run serve -- -d -t 30
// It builds dist/ first when src/ is newer (and the compiled addon when native/ is), then this
// very process is the daemon: the npm script is `exec node scripts/serve.mjs`, so npm's shell
// is replaced by node, and npm forwards SIGTERM and SIGINT to its child — a signal to npm's PID
// (or Ctrl-C) shuts the daemon down cleanly and removes its socket. "serving on" is printed only once the socket is listening.
// Run as root (a fresh container, CI), it passes --allow-root and says so: a real
// deployment runs as its own user, or as root with --user (see README, Security model).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The newest modification time of the files below `dir`. */
function newest(dir) {
  return Math.max(
    0,
    ...readdirSync(dir, { withFileTypes: true, recursive: true })
      .filter((entry) => entry.isFile())
      .map((entry) => statSync(join(entry.parentPath ?? entry.path, entry.name)).mtimeMs),
  );
}

const built = join(root, 'dist', 'cli', 'serve.js');
if (!existsSync(built) || newest(join(root, 'src')) > statSync(built).mtimeMs) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], {
    stdio: 'inherit',
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

// The addon compiled here (a clone's npm install) is rebuilt when native/ changed since (a git
// pull): it and dist/ must be of one version — a stale addon refuses the daemon's calls.
const addon = join(root, 'build', 'Release', 'procsock_spawn.node');
const nativeChanged = () =>
  Math.max(newest(join(root, 'native')), statSync(join(root, 'binding.gyp')).mtimeMs) >
  statSync(addon).mtimeMs;
if (existsSync(addon) && nativeChanged()) {
  console.error('procsock: native/ changed since the addon was compiled: rebuilding it');
  const result = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], {
    stdio: 'inherit',
    env: { ...process.env, npm_config_build_from_source: 'true' },
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

/** $XDG_RUNTIME_DIR when it is a directory owned by this user, else undefined. */
function runtimeDir() {
  const dir = process.env.XDG_RUNTIME_DIR;
  if (!dir) return undefined;
  try {
    const stats = statSync(dir);
    return stats.isDirectory() && stats.uid === process.getuid?.() ? dir : undefined;
  } catch {
    return undefined;
  }
}

const socket = process.env.PROCSOCK_SOCKET || join(runtimeDir() ?? tmpdir(), 'procsock.sock');
const asRoot = process.getuid?.() === 0;
if (asRoot) {
  console.error(
    'procsock: running as root, so programs run as root (--allow-root); deploy with --user',
  );
}
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const { main } = await import('../dist/cli/serve.js');
const args = [...(asRoot ? ['--allow-root'] : []), ...process.argv.slice(2), socket];
process.exitCode = await main(args, version, (path) => {
  console.error(`procsock: serving on ${path} (Ctrl-C stops it)`);
});
