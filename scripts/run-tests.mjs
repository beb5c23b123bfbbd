#!/usr/bin/env node
// Runs every test file under test/ (or the ones named) with node:test, TypeScript loaded by tsx.
// Node 20's --test does not expand globs itself, so the files are listed here.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

function findTests(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'fixtures' ? [] : findTests(path);
    return entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

const named = process.argv.slice(2);
const files = named.length > 0 ? named : findTests('test').sort();

// The whole suite runs once per spawn backend (see src/channel/spawn/): child_process, then the
// native addon when it is built (or required: PROCSOCK_REQUIRE_NATIVE=1). Named files, or a
// PROCSOCK_SPAWN set by the caller, run once.
function backends() {
  if (named.length > 0 || process.env.PROCSOCK_SPAWN) return [process.env.PROCSOCK_SPAWN];
  // Compiled here, or prebuilt for this platform (src/native/locate.ts loads either).
  const prebuilds = join('prebuilds', `${process.platform}-${process.arch}`);
  const built =
    existsSync('build/Release/procsock_spawn.node') ||
    (existsSync(prebuilds) && readdirSync(prebuilds).some((name) => name.endsWith('.node')));
  if (!built && process.env.PROCSOCK_REQUIRE_NATIVE !== '1') {
    console.log('# no native spawn addon here: the suite runs on child_process only');
    return ['child_process'];
  }
  return ['child_process', 'native'];
}

// The tests expect a missing program to be "not found" (127), as sh says with a usual PATH.
// A PATH entry this user cannot search (root's ~/.cargo/bin kept by runuser or su, say) makes
// execvp and sh say "Permission denied" (126) instead, procsock with them: such entries are
// dropped for the tests, and named.
const searchable = (dir) => {
  try {
    accessSync(dir || '.', constants.X_OK);
    return true;
  } catch (error) {
    return error.code !== 'EACCES';
  }
};
const pathEntries = (process.env.PATH ?? '').split(':');
const unsearchable = pathEntries.filter((dir) => !searchable(dir));
if (unsearchable.length > 0) {
  console.log(
    `# PATH entries this user cannot search, left out for the tests: ${unsearchable.join(' ')}`,
  );
  process.env.PATH = pathEntries.filter(searchable).join(':');
}

/**
 * The passes: the whole suite per backend; then, for the whole suite on the native backend, the
 * server tests once more with uncontained test daemons (PROCSOCK_TEST_CONTAIN=0, see
 * test/helpers/daemon.ts), which the daemon serves in native/conn.c instead of in JavaScript
 * (src/server/native-connections.ts): every server behaviour on that path too (~45 s).
 */
function passes() {
  const list = backends().map((backend) => ({ backend, files, env: {} }));
  if (named.length === 0 && list.some(({ backend }) => backend === 'native')) {
    const server = files.filter((file) => file.startsWith(`${join('test', 'server')}/`));
    list.push({ backend: 'native', files: server, env: { PROCSOCK_TEST_CONTAIN: '0' } });
  }
  return list;
}

let status = 0;
for (const pass of passes()) {
  if (pass.backend) {
    const uncontained = pass.env.PROCSOCK_TEST_CONTAIN === '0' ? ', uncontained server tests' : '';
    console.log(`# spawn backend: ${pass.backend}${uncontained}`);
  }
  const env = { ...process.env, ...pass.env };
  if (pass.backend) env.PROCSOCK_SPAWN = pass.backend;
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=120000', ...pass.files],
    { stdio: 'inherit', env },
  );
  if (result.status !== 0) status = result.status ?? 1;
}
process.exit(status);
