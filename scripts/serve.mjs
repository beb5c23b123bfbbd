#!/usr/bin/env node
// `npm run serve`: the daemon on a default socket path, for trying procsock out.
//   socket: $PROCSOCK_SOCKET, else $XDG_RUNTIME_DIR/procsock.sock, else <tmpdir>/procsock.sock
//   extra flags: npm run serve -- -d -t 30
// It builds dist/ first when src/ is newer, then this very process is the daemon: the npm
// script is `exec node scripts/serve.mjs`, so npm's shell is replaced by node, and npm forwards
// SIGTERM and SIGINT to its child — a signal to npm's PID (or Ctrl-C) shuts the daemon down
// cleanly and removes its socket. "serving on" is printed only once the socket is listening.
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

const socket =
  process.env.PROCSOCK_SOCKET || join(process.env.XDG_RUNTIME_DIR || tmpdir(), 'procsock.sock');
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
