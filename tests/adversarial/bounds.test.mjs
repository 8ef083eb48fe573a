// Adversarial: every client-controlled value that the gateway keeps
// something for (a metric label, a limit scope, a run record, a cache
// partition) is bounded. Each test sends 10,000 distinct values and asserts
// the gateway's own RSS (/proc/<pid>/status) and /metrics size stay within a
// stated bound. The figures are printed for docs/security.md.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGateway, waitFor } from '../e2e/harness.mjs';
import { adversarialConfig, rssBytes, metricsText, drive, post, chatBody, SERVICE_KEY, ALICE_KEY } from './common.mjs';

const N = 10000;
const MB = 1 << 20;

// Sends `warm` then N requests made by `one(i)`; returns RSS and /metrics growth over the N.
async function growth(gw, one, { warm = 500, concurrency = 16 } = {}) {
  await drive(warm, concurrency, (i) => one(N + i));
  const rss0 = rssBytes(gw.child.pid), metrics0 = (await metricsText(gw.base)).length;
  const statuses = await drive(N, concurrency, one);
  const rss1 = rssBytes(gw.child.pid), metrics1 = (await metricsText(gw.base)).length;
  return { statuses, rss: rss1 - rss0, metrics: metrics1 - metrics0, metricsSize: metrics1 };
}

function report(what, g) {
  console.log(`# ${what}: statuses ${JSON.stringify(g.statuses)}, RSS +${(g.rss / MB).toFixed(1)} MB, ` +
    `/metrics +${g.metrics} bytes (${g.metricsSize} bytes)`);
}

describe(`${N} distinct values of each client-controlled string`, () => {
  let gw;
  // The refusal budget off: every one of the N requests must reach the code under test.
  // The ledger and the access log on: every row and line the N requests leave is checked at the end.
  before(async () => {
    gw = await startGateway({ yaml: adversarialConfig({ server: 'refusal_burst: 0', ledger: '"ledger.db"', accessLog: '"access.log"' }) });
  });
  after(async () => { await gw.stop(); });

  it('unknown model names are one metric label value and cost no memory', async () => {
    const g = await growth(gw, (i) => post(gw.base, ALICE_KEY,
      JSON.stringify({ model: `no-such-model-${i}-${'x'.repeat(200)}`, messages: [{ role: 'user', content: 'hi' }] })));
    report('unknown models', g);
    assert.deepEqual(g.statuses, { 404: N });
    assert.ok(g.metrics < 2048, `/metrics grew ${g.metrics} bytes`);
    assert.ok(g.rss < 16 * MB, `RSS grew ${g.rss} bytes`);
    const text = await metricsText(gw.base);
    assert.ok(!text.includes('no-such-model'), 'no client model name is a label');
    assert.match(text, /model="_unknown"/);
  });

  it('user names (X-TG-User on a tenant key): limit scopes and cache partitions stay bounded', async () => {
    const g = await growth(gw, (i) => post(gw.base, SERVICE_KEY, chatBody(`question ${i} about topic ${i * 7919 % 1000}`),
      { 'x-tg-user': `user-${i}` }));
    report('users', g);
    assert.deepEqual(g.statuses, { 200: N });
    assert.ok(g.metrics < 2048, `/metrics grew ${g.metrics} bytes`);
    assert.ok(g.rss < 96 * MB, `RSS grew ${(g.rss / MB).toFixed(1)} MB`);
  });

  it('run ids: run records stay bounded', async () => {
    const g = await growth(gw, (i) => post(gw.base, ALICE_KEY, chatBody(`step ${i}`, { max_tokens: 1 }),
      { 'x-tg-run': `run-${i}`, 'cache-control': 'no-store' }));
    report('run ids', g);
    assert.equal(g.statuses[200] + (g.statuses[429] ?? 0), N);
    assert.ok(g.statuses[200] > 0);
    assert.ok(g.metrics < 2048, `/metrics grew ${g.metrics} bytes`);
    assert.ok(g.rss < 48 * MB, `RSS grew ${(g.rss / MB).toFixed(1)} MB`);
  });

  it('sampling parameters (seed): one user minting cache partitions stays bounded', async () => {
    const g = await growth(gw, (i) => post(gw.base, ALICE_KEY, chatBody('the same question', { seed: i })));
    report('cache partitions (seed)', g);
    assert.deepEqual(g.statuses, { 200: N });
    assert.ok(g.rss < 96 * MB, `RSS grew ${(g.rss / MB).toFixed(1)} MB`);
  });

  it('feature tags and paths: no label, no growth', async () => {
    const g = await growth(gw, (i) => (i % 2
      ? post(gw.base, ALICE_KEY, chatBody('tagged', { max_tokens: 1 }), { 'x-tg-feature': `feature-${i}`, 'cache-control': 'no-store' })
      : fetch(`${gw.base}/v1/unknown-${i}-${'p'.repeat(300)}`)));
    report('features and paths', g);
    assert.equal(g.statuses[200] + g.statuses[404], N);
    assert.ok(g.metrics < 2048, `/metrics grew ${g.metrics} bytes`);
    assert.ok(g.rss < 16 * MB, `RSS grew ${(g.rss / MB).toFixed(1)} MB`);
  });

  it('ledger columns and access-log lines stay bounded over every request above', async () => {
    const db = join(gw.cwd, 'ledger.db');
    const sql = (q) => execFileSync('sqlite3', [db, q], { encoding: 'utf8' }).trim();
    await waitFor(() => Number(sql('SELECT count(*) FROM ledger')) >= 4 * N, 30000, 'the ledger rows');  // (keyless requests have none)
    const [model, user, run, feature, code] = sql(
      'SELECT max(length(model)), max(length(user)), max(length(run_id)), max(length(feature)), max(length(error_code)) FROM ledger')
      .split('|').map(Number);
    console.log(`# ledger: ${sql('SELECT count(*) FROM ledger')} rows; longest model ${model}, user ${user}, run ${run}, feature ${feature}, error code ${code}`);
    assert.ok(model <= 256 && user <= 128 && run <= 128 && feature <= 128 && code <= 64, { model, user, run, feature, code });
    const lines = readFileSync(join(gw.cwd, 'access.log'), 'utf8').trim().split('\n');
    const longest = Math.max(...lines.map((l) => l.length));
    console.log(`# access log: ${lines.length} lines, the longest ${longest} characters`);
    assert.ok(lines.length >= 5 * N);
    assert.ok(longest < 2048, `a log line of ${longest} characters`);
  });
});
