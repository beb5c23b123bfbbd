/**
 * bench/chart.svg is drawn from exactly the goal table committed in bench/README.md (both are
 * written by a full `npm run bench`), and the table parses back into the rows it was made of.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { BENCH_README, CHART, readResults, renderChart } from '../../bench/chart.js';
import { formatGoalTable } from '../../bench/goals.js';

describe('the committed benchmark results', () => {
  test('chart.svg is the drawing of the table in bench/README.md', () => {
    const { caption, rows } = readResults();
    assert.ok(rows.length > 0 && caption !== '');
    assert.equal(readFileSync(CHART, 'utf8'), renderChart(rows, caption));
  });

  test('the table round-trips: formatGoalTable of the parsed rows is the committed text', () => {
    const readme = readFileSync(BENCH_README, 'utf8');
    const { rows } = readResults(readme);
    assert.ok(readme.includes(formatGoalTable(rows)));
    assert.ok(rows.some((row) => row.met === true) && rows.some((row) => row.met === false));
  });

  test('a bar per row with a ratio, coloured by whether its goal is met', () => {
    const svg = renderChart(
      [
        {
          figure: 'a',
          procsock: '2/s',
          peer: 'p',
          peerValue: '1/s',
          ratio: '2.00×',
          goal: '≥ 2×',
          met: true,
        },
        {
          figure: 'b',
          procsock: '1/s',
          peer: 'p',
          peerValue: '2/s',
          ratio: '0.50×',
          goal: '≥ 1.0×',
          met: false,
        },
        {
          figure: 'c',
          procsock: '9 MB',
          peer: 'p',
          peerValue: 'not installed',
          ratio: '',
          goal: 'for scale',
        },
      ],
      'caption & <test>',
    );
    assert.equal((svg.match(/<rect x=/g) ?? []).length, 2);
    assert.ok(svg.includes('fill="#2e7d32"') && svg.includes('fill="#c62828"'));
    assert.ok(svg.includes('caption &amp; &lt;test&gt;'));
  });
});
