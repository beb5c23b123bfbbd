/**
 * The picture of `npm run bench`: every goal row that has a same-run ratio, as a bar of
 * procsock ÷ peer, with parity (1×) and the goal marked. bench/index.ts writes it, with the
 * goal table, into bench/README.md and bench/chart.svg after a full run; both come from the
 * same rows, and `node --import tsx bench/chart.ts` redraws the chart from the table that is
 * in bench/README.md (test/bench/chart.test.ts checks that the committed two agree).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatGoalTable, type GoalRow } from './goals.js';

export const BENCH_README = fileURLToPath(new URL('./README.md', import.meta.url));
export const CHART = fileURLToPath(new URL('./chart.svg', import.meta.url));
const BEGIN = '<!-- results:begin -->';
const END = '<!-- results:end -->';

const WIDTH = 820;
const LEFT = 20;
const BAR_WIDTH = 640;
const ROW = 38;
const TOP = 56;

function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function ratioOf(row: GoalRow): number | undefined {
  const match = /^([0-9.]+)×$/.exec(row.ratio.trim());
  return match ? Number(match[1]) : undefined;
}

/** The goal as a ratio, when it is one ("≥ 2×", "≤ 0.33×"); lower-is-better for "≤". */
function goalOf(row: GoalRow): { value: number; lowerIsBetter: boolean } | undefined {
  const match = /([≥≤])\s*([0-9.]+)×/.exec(row.goal);
  return match ? { value: Number(match[2]), lowerIsBetter: match[1] === '≤' } : undefined;
}

/** An SVG bar chart of the rows with a ratio; `caption` says when and where they were measured. */
export function renderChart(rows: readonly GoalRow[], caption: string): string {
  const bars = rows.filter((row) => ratioOf(row) !== undefined);
  const top = Math.max(2, ...bars.map((row) => Math.ceil(ratioOf(row)!)));
  const scale = Math.min(top, 6);
  const x = (value: number) => LEFT + (Math.min(value, scale) / scale) * BAR_WIDTH;
  const height = TOP + bars.length * ROW + 40;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>procsock ÷ peer, from one npm run bench: ${xml(caption)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="22" font-size="15" font-weight="bold">procsock ÷ peer, from one npm run bench (a peer marked “reference figure” was not installed)</text>`,
    `<text x="${LEFT}" y="40" fill="#555555">${xml(caption)}</text>`,
  ];
  for (let tick = 0; tick <= scale; tick++) {
    const at = x(tick).toFixed(1);
    out.push(
      `<line x1="${at}" y1="${TOP - 6}" x2="${at}" y2="${TOP + bars.length * ROW}" stroke="${tick === 1 ? '#333333' : '#e0e0e0'}" stroke-width="${tick === 1 ? 1.5 : 1}"/>`,
      `<text x="${at}" y="${TOP + bars.length * ROW + 16}" text-anchor="middle" fill="#555555">${tick}×</text>`,
    );
  }
  bars.forEach((row, index) => {
    const value = ratioOf(row)!;
    const goal = goalOf(row);
    const y = TOP + index * ROW;
    const colour = row.met === true ? '#2e7d32' : row.met === false ? '#c62828' : '#9e9e9e';
    const better = goal?.lowerIsBetter ? ' (lower is better)' : '';
    out.push(
      `<text x="${LEFT}" y="${y + 10}">${xml(`${row.figure} — vs ${row.peer}${better}`)}</text>`,
      `<rect x="${LEFT}" y="${y + 14}" width="${Math.max(1, x(value) - LEFT).toFixed(1)}" height="14" fill="${colour}"/>`,
      `<text x="${(x(value) + 4).toFixed(1)}" y="${y + 25}" fill="#222222">${xml(row.ratio)}${value > scale ? ' →' : ''}</text>`,
    );
    if (goal) {
      const at = x(goal.value).toFixed(1);
      out.push(
        `<line x1="${at}" y1="${y + 11}" x2="${at}" y2="${y + 31}" stroke="#000000" stroke-width="2" stroke-dasharray="3,2"/>`,
      );
    }
  });
  out.push(
    `<text x="${LEFT}" y="${height - 6}" fill="#555555">green: goal met · red: not met · grey: for scale · dashed: the goal</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}

/** The goal rows of a table as `formatGoalTable` prints it. */
export function parseGoalTable(table: string): GoalRow[] {
  const lines = table.split('\n').filter((line) => line.startsWith('|'));
  return lines.slice(2).map((line) => {
    const cells = line
      .slice(1, -1)
      .split(' | ')
      .map((cell) => cell.trim());
    const [figure, procsock, peer, peerValue, ratio, goal, met] = cells as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const row: GoalRow = { figure, procsock, peer, peerValue, ratio, goal };
    if (met === 'yes') row.met = true;
    else if (met === 'NO') row.met = false;
    else if (met.startsWith('n/a')) row.met = null;
    return row;
  });
}

/** The results block of bench/README.md: its caption line and its table. */
export function readResults(readme = readFileSync(BENCH_README, 'utf8')): {
  caption: string;
  rows: GoalRow[];
} {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${BENCH_README} has no ${BEGIN} … ${END} block`);
  const block = readme.slice(start + BEGIN.length, end);
  const caption = /^Run: (.*)$/m.exec(block)?.[1] ?? '';
  return { caption, rows: parseGoalTable(block) };
}

/** Replaces the results block of bench/README.md and redraws bench/chart.svg from the same rows. */
export function writeResults(rows: readonly GoalRow[], caption: string): void {
  const readme = readFileSync(BENCH_README, 'utf8');
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${BENCH_README} has no ${BEGIN} … ${END} block`);
  const block = `${BEGIN}\nRun: ${caption}\n\n${formatGoalTable([...rows])}\n${END}`;
  writeFileSync(BENCH_README, readme.slice(0, start) + block + readme.slice(end + END.length));
  writeFileSync(CHART, renderChart(rows, caption));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { caption, rows } = readResults();
  writeFileSync(CHART, renderChart(rows, caption));
  console.log(`${CHART}: ${rows.length} rows from ${BENCH_README}`);
}
