/**
 * The goal table of `npm run bench`: each benchmark records its goal figures here (one row
 * per figure and peer, all measured in the same run), and bench/index.ts prints them all
 * together at the end. Run alone, a benchmark still prints its own tables.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';

export interface GoalRow {
  /** What is measured, e.g. 'daemon /bin/true conn/s, 1 in flight'. */
  figure: string;
  /** procsock's figure, with its unit. */
  procsock: string;
  /** The peer compared with, and its figure ('not installed', 'reference …' when not measured here). */
  peer: string;
  peerValue: string;
  /** procsock ÷ peer, formatted ('—' when there is no peer figure). */
  ratio: string;
  goal: string;
  /** true met, false not met, null: cannot be judged (peer missing); undefined: for scale only. */
  met?: boolean | null;
}

const FILE_VARIABLE = 'PROCSOCK_BENCH_GOALS';

/** Records rows for the combined table (a no-op unless run by bench/index.ts). */
export function recordGoals(rows: GoalRow[]): void {
  const file = process.env[FILE_VARIABLE];
  if (!file) return;
  appendFileSync(file, rows.map((row) => `${JSON.stringify(row)}\n`).join(''));
}

export function goalsFileVariable(): string {
  return FILE_VARIABLE;
}

export function readGoals(file: string): GoalRow[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as GoalRow);
}

export function ratio(ours: number, peer: number | undefined): string {
  return peer === undefined || !Number.isFinite(peer) || peer === 0
    ? '—'
    : `${(ours / peer).toFixed(2)}×`;
}

export function formatGoalTable(rows: GoalRow[]): string {
  const header = ['figure', 'procsock', 'peer', 'peer figure', 'ratio', 'goal', 'met'];
  const cells = rows.map((row) => [
    row.figure,
    row.procsock,
    row.peer,
    row.peerValue,
    row.ratio,
    row.goal,
    row.met === undefined ? '' : row.met === null ? 'n/a (peer missing)' : row.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => `| ${row.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}
