/**
 * Runs every benchmark (`bench/*.bench.ts`, or the names given) one after another, each in
 * its own process so they do not disturb each other, and lets each print its table.
 *   npm run bench                # all
 *   npm run bench -- daemon      # only bench/daemon.bench.ts
 * A full run (no names) also writes its goal table into bench/README.md and redraws
 * bench/chart.svg from the same rows (PROCSOCK_BENCH_WRITE=0: print only).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeResults } from './chart.js';
import { formatGoalTable, goalsFileVariable, readGoals } from './goals.js';

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
// Every benchmark records its goal figures in this file; they are printed together at the end.
const goalsDir = mkdtempSync(join(tmpdir(), 'procsock-bench-goals-'));
const goalsFile = join(goalsDir, 'goals.jsonl');
let failed = false;
for (const name of benches) {
  console.log(`\n## ${name}\n`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(here, name)], {
    stdio: 'inherit',
    env: { ...process.env, [goalsFileVariable()]: goalsFile },
  });
  failed ||= result.status !== 0;
}
const goals = readGoals(goalsFile);
rmSync(goalsDir, { recursive: true, force: true });
if (goals.length > 0) {
  console.log('\n## Goals (bench/README.md), every figure from this run\n');
  console.log(formatGoalTable(goals));
  const missed = goals.filter((row) => row.met === false).length;
  console.log(
    `\n${goals.length - missed} of ${goals.length} rows met or not judged; ${missed} not met.`,
  );
  if (wanted.length === 0 && !failed && process.env.PROCSOCK_BENCH_WRITE !== '0') {
    const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
    const when = new Date().toISOString().slice(0, 16).replace('T', ' ');
    writeResults(
      goals,
      `${when} UTC, ${cpus().length} cores, load ${loadavg()[0]!.toFixed(1)}, Node ${process.version}, commit ${commit.stdout?.trim() || 'unknown'}`,
    );
    console.log('\nbench/README.md (results) and bench/chart.svg written from these rows.');
  }
}
process.exit(failed ? 1 : 0);
