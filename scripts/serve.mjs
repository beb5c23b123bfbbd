#!/usr/bin/env node
// `npm run serve`: the daemon on a default socket path, for trying procsock out.
//   socket: $PROCSOCK_SOCKET, else $XDG_RUNTIME_DIR/procsock.sock, else <tmpdir>/procsock.sock
//   extra flags: npm run serve -- -d -t 30
// Run as root (a fresh container, CI), it passes --allow-root and says so: a real
// deployment runs as its own user, or as root with --user (see README, Security model).
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const socket =
  process.env.PROCSOCK_SOCKET ?? join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), 'procsock.sock');
const asRoot = process.getuid?.() === 0;
if (asRoot) {
  console.error(
    'procsock: running as root, so programs run as root (--allow-root); deploy with --user',
  );
}
console.error(`procsock: serving on ${socket} (Ctrl-C stops it)`);
process.argv = [
  process.argv[0],
  'procsock',
  'serve',
  ...(asRoot ? ['--allow-root'] : []),
  ...process.argv.slice(2),
  socket,
];
await import('../dist/cli/main.js');
