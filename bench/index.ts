/**
 * Runs every benchmark (`bench/*.bench.ts`, or the names given) one after another, each in
 * its own process so they do not disturb each other, and lets each print its table.
 *   npm run bench                # all
 *   npm run bench -- daemon      # only bench/daemon.bench.ts
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const benches = readdirSync(here)
  .filter((name) => name.endsWith('.bench.ts'))
  .filter((name) => wanted.length === 0 || wanted.includes(name.replace(/\.bench\.ts$/, '')))
  .sort();
if (benches.length === 0) {
  console.error(`no benchmark matches ${wanted.join(' ')}`);
  process.exit(1);
}
let failed = false;
for (const name of benches) {
  console.log(`\n## ${name}\n`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(here, name)], {
    stdio: 'inherit',
  });
  failed ||= result.status !== 0;
}
process.exit(failed ? 1 : 0);
