// Metering end to end: exactly one ledger row per keyed request, with the
// attribution headers, real token counts, exact micro-dollar costs, rows for
// errors and for streams the client abandoned, none for unauthenticated
// requests; `tenantgate usage` over the file; and a kill -9 under load that
// loses no completed request's row and never writes one twice.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startGateway, runCli, tempDir, waitFor, killUnderLoad, DEMO_KEYS, ACME_TENANT_YAML, ADMIN_KEY, ADMIN_HASH } from './harness.mjs';

const sql = (db, q) => execFileSync('sqlite3', ['-json', db, q], { encoding: 'utf8' }).trim();
const rows = (db, q) => { const out = sql(db, q); return out ? JSON.parse(out) : []; };

function config(dbPath, decodeMs = 2) {
  return `
server: { access_log: "off" }
metering: { ledger_sqlite: "${dbPath}" }
orgs: [{ id: demo }]
models:
  - alias: chat
    encoding: o200k_base
    price: { input_per_1m: "0.15", output_per_1m: "0.60" }
    deployments: [{ id: chat-sim, provider: sim, sim: { engine: fixed, decode_ms_per_token: ${decodeMs}, ttft_base_ms: 1 } }]
${ACME_TENANT_YAML}      - { id: acme-service, sha256: 005e0af9d236348df20df9e54704c3fd304eef82c0abda9fafebca817236f2f3 }
`;
}

describe('ledger', () => {
  it('records one attributed, priced row per keyed request', async () => {
    const db = join(tempDir(), 'ledger.db');
    const gw = await startGateway({ yaml: config(db, 20) });
    const alice = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: DEMO_KEYS.alice, maxRetries: 0 });
    const svc = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: DEMO_KEYS.acmeService, maxRetries: 0 });
    const ids = [];
    const { response } = await alice.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'Price me' }], max_tokens: 7 },
      { headers: { 'X-TG-Feature': 'search', 'X-TG-Run': 'run-42' } }).withResponse();
    ids.push(response.headers.get('x-request-id'));
    await svc.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'for a customer' }], max_tokens: 3 },
      { headers: { 'X-TG-User': 'end-user-9' } });
    await assert.rejects(alice.chat.completions.create({ model: 'missing', messages: [{ role: 'user', content: 'x' }] }));
    const bad = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: 'tg-nope', maxRetries: 0 });
    await assert.rejects(bad.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }));
    // A stream the client abandons after a few tokens: counted from what was sent.
    const ac = new AbortController();
    const stream = await alice.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'long' }], max_tokens: 500, stream: true }, { signal: ac.signal });
    let n = 0;
    try { for await (const c of stream) { if (c.choices[0]?.delta?.content && ++n === 5) ac.abort(); } } catch {}
    const bad400 = await fetch(`${gw.base}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${DEMO_KEYS.alice}`, 'content-type': 'application/json', 'x-tg-feature': 'has space' }, body: '{}' });
    assert.equal(bad400.status, 400);
    assert.equal((await bad400.json()).error.param, 'X-TG-Feature');
    await gw.stop();  // drains and flushes the ledger

    const all = rows(db, 'SELECT * FROM ledger ORDER BY ts_ms');
    assert.equal(all.length, 5, JSON.stringify(all.map((r) => [r.status, r.error_code])));  // not the 401
    assert.equal(new Set(all.map((r) => r.request_id)).size, all.length);
    const first = all.find((r) => r.request_id === ids[0]);
    assert.equal(first.org, 'demo');
    assert.equal(first.tenant, 'acme');
    assert.equal(first.user, 'alice');
    assert.equal(first.key_id, 'acme-alice');
    assert.equal(first.feature, 'search');
    assert.equal(first.run_id, 'run-42');
    assert.equal(first.model, 'chat');
    assert.equal(first.deployment, 'chat-sim');
    assert.equal(first.status, 200);
    assert.equal(first.usage_source, 'upstream');
    assert.equal(first.completion_tokens, 7);
    // 3 framing + "user" + "Price me" + 3 priming, in o200k_base
    assert.ok(first.prompt_tokens >= 8 && first.prompt_tokens <= 12, `prompt_tokens ${first.prompt_tokens}`);
    const want = Math.floor((first.prompt_tokens * 150000 + first.completion_tokens * 600000 + 500000) / 1e6);
    assert.equal(first.cost_micros, want);
    assert.ok(first.latency_us > 0);
    const svcRow = all.find((r) => r.key_id === 'acme-service');
    assert.equal(svcRow.user, 'end-user-9');
    const notFound = all.find((r) => r.status === 404);
    assert.equal(notFound.error_code, 'model_not_found');
    assert.equal(notFound.prompt_tokens, 0);
    const aborted = all.find((r) => r.status === 200 && r.stream === 1);
    assert.equal(aborted.usage_source, 'gateway');
    assert.ok(aborted.completion_tokens >= 5 && aborted.completion_tokens < 500, `completion ${aborted.completion_tokens}`);
    assert.ok(aborted.prompt_tokens > 0);

    const csv = await runCli(['usage', '--db', db, '--group-by', 'tenant,user,feature', '--csv']);
    assert.equal(csv.code, 0, csv.stderr);
    const lines = csv.stdout.trim().split('\n');
    assert.equal(lines[0], 'tenant,user,feature,requests,prompt_tokens,completion_tokens,cached_tokens,cost_usd');
    assert.ok(lines.some((l) => l.startsWith('acme,alice,search,1,')), csv.stdout);
    assert.ok(lines.some((l) => l.startsWith('acme,end-user-9,,1,')), csv.stdout);
    // The hourly rollup (hour-aligned bounds) and the raw rows (any other
    // bounds) must agree to the micro-dollar.
    const raw = await runCli(['usage', '--db', db, '--group-by', 'tenant,user,feature', '--from', '1', '--csv']);
    assert.equal(raw.stdout, csv.stdout);
    const badq = await runCli(['usage', '--db', db, '--group-by', 'colour']);
    assert.equal(badq.code, 2);
    assert.match(badq.stderr, /unknown field 'colour'/);
  });

  it('survives kill -9 under load: every completed request keeps its row, none is written twice', async () => {
    const db = join(tempDir(), 'ledger.db');
    const gw = await startGateway({ yaml: config(db, 0) });
    const { completed } = await killUnderLoad(gw, () => fetch(`${gw.base}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${DEMO_KEYS.alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'load' }], max_tokens: 2 }),
    }), 600);
    const beforeRestart = new Set(rows(db, 'SELECT request_id FROM ledger').map((r) => r.request_id));
    // Restart on the same file: the journal's rows are replayed, the ledger keeps counting.
    const again = await startGateway({ yaml: config(db, 0) });
    await fetch(`${again.base}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${DEMO_KEYS.alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'after' }], max_tokens: 1 }) }).then((r) => r.text());
    await again.stop();
    const stored = new Set(rows(db, 'SELECT request_id FROM ledger').map((r) => r.request_id));
    const dup = rows(db, 'SELECT request_id, COUNT(*) AS n FROM ledger GROUP BY request_id HAVING n > 1');
    assert.equal(dup.length, 0);
    // A request whose response the client had in full was journaled before its
    // last byte was written: none may be missing.
    const missing = completed.filter(([id]) => !stored.has(id));
    assert.equal(missing.length, 0, `${missing.length} of ${completed.length} completed rows missing`);
    assert.equal(rows(db, 'SELECT SUM(requests) AS n FROM usage_hourly')[0].n, stored.size);
    const replayed = /replayed (\d+) rows/.exec(again.stderr);
    console.log(`# kill -9: ${completed.length} completed, ${beforeRestart.size} stored at the kill, ` +
                `${replayed ? replayed[1] : 0} replayed from the journal, ${stored.size - 1} after restart, 0 lost`);
  });
});

describe('budgets', () => {
  const yaml = (db) => config(db, 0).replace('tenants:', `budgets:
  - { scope: tenant, tenant: acme, period: day, tokens: 120, soft_percent: 50 }
  - { scope: key, key: acme-service, period: month, usd: "0.000001" }
tenants:`) + `
  - id: globex
    org: demo
    users: [carol]
    keys:
      - { id: globex-carol, user: carol, sha256: c4c746af8a9f76e72d9f32cda358105d59855e7da7b6526ba74e5905d386c0ef }
`;
  const ask = (base, key, maxTokens = 20) => fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens }),
  });

  it('refuses with 429 budget_exceeded once spent, names the scope and reset, and survives a restart', async () => {
    const db = join(tempDir(), 'ledger.db');
    // The soft threshold's webhook lands here.
    const alerts = [];
    const hook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => { alerts.push({ path: req.url, type: req.headers['content-type'], body: JSON.parse(body) }); res.end('ok'); });
    });
    await new Promise((r) => hook.listen(0, '127.0.0.1', r));
    const withHook = yaml(db).replace('soft_percent: 50 }', `soft_percent: 50, webhook: "http://127.0.0.1:${hook.address().port}/alerts?src=tg" }`);
    let gw = await startGateway({ yaml: withHook });
    let ok = 0, refused = null;
    for (let i = 0; i < 10 && !refused; i++) {
      const r = await ask(gw.base, DEMO_KEYS.alice);
      if (r.status === 200) { ok += 1; await r.json(); } else refused = r;
    }
    assert.ok(ok >= 2 && ok <= 4, `${ok} admitted before the budget ran out`);
    assert.equal(refused.status, 429);
    const retry = Number(refused.headers.get('retry-after'));
    assert.ok(retry > 0 && retry <= 86400, `Retry-After ${retry}`);
    const body = await refused.json();
    assert.equal(body.error.code, 'budget_exceeded');
    assert.equal(body.error.type, 'rate_limit_error');
    assert.match(body.error.message, /tenant 'acme' daily budget of 120 tokens is exhausted .* resets at \d{4}-\d\d-\d\dT00:00:00Z/);
    // Another tenant is not affected; the soft threshold was reported once.
    assert.equal((await ask(gw.base, DEMO_KEYS.carol)).status, 200);
    const metrics = await (await fetch(`${gw.base}/metrics`)).text();
    assert.match(metrics, /tg_budget_soft_alerts_total 1\b/);
    await waitFor(() => alerts.length === 1, 3000, 'the soft-threshold webhook');
    assert.equal(alerts[0].path, '/alerts?src=tg');
    assert.match(alerts[0].type, /application\/json/);
    assert.equal(alerts[0].body.type, 'budget.soft_threshold');
    assert.equal(alerts[0].body.scope, "tenant 'acme' daily");
    assert.equal(alerts[0].body.limit, 120);
    assert.equal(alerts[0].body.unit, 'tokens');
    assert.ok(alerts[0].body.spent >= 60);
    hook.close();
    assert.match(metrics, /tg_budget_rejections_total 1\b/);
    // A key budget in dollars (one micro-dollar) refuses its second request.
    assert.equal((await ask(gw.base, DEMO_KEYS.acmeService, 1)).status, 429);  // tenant budget is gone too
    await gw.stop();
    // Restart on the same ledger: spend is preloaded, the budget stays exhausted.
    gw = await startGateway({ yaml: withHook });
    const again = await ask(gw.base, DEMO_KEYS.alice);
    assert.equal(again.status, 429);
    assert.equal((await again.json()).error.code, 'budget_exceeded');
    await gw.stop();
    // Refused requests are in the ledger too, with their error code and no tokens.
    const refusedRows = rows(db, "SELECT * FROM ledger WHERE error_code = 'budget_exceeded'");
    assert.ok(refusedRows.length >= 2);
    assert.ok(refusedRows.every((r) => r.prompt_tokens === 0 && r.cost_micros === 0));
  });
});

describe('admin usage API', () => {
  it('answers usage and spend by group with the admin key, in JSON and CSV', async () => {
    const db = join(tempDir(), 'ledger.db');
    const adminHash = ADMIN_HASH;
    const gw = await startGateway({ yaml: config(db, 0).replace('orgs:', `admin: { key_sha256: [${adminHash}] }\norgs:`) });
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${gw.base}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${DEMO_KEYS.alice}`, 'content-type': 'application/json', 'x-tg-feature': i ? 'chat' : 'search' },
        body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'spend' }], max_tokens: 4 }) });
      await r.text();
    }
    const admin = { authorization: `Bearer ${ADMIN_KEY}` };
    await waitFor(async () => {
      const r = await fetch(`${gw.base}/admin/usage?group_by=tenant`, { headers: admin });
      const j = await r.json();
      return j.data?.[0]?.requests === 3;
    }, 3000, 'three requests in the ledger');
    const j = await (await fetch(`${gw.base}/admin/usage?group_by=tenant,user,feature&granularity=day`, { headers: admin })).json();
    assert.equal(j.object, 'list');
    const search = j.data.find((r) => r.feature === 'search');
    assert.equal(search.tenant, 'acme');
    assert.equal(search.user, 'alice');
    assert.equal(search.requests, 1);
    assert.equal(search.completion_tokens, 4);
    assert.equal(search.cost_usd, `0.${String(search.cost_micros).padStart(6, '0')}`);
    assert.ok(search.period_start_ms % 86400000 === 0);
    const csv = await fetch(`${gw.base}/admin/usage?group_by=feature`, { headers: { ...admin, accept: 'text/csv' } });
    assert.match(csv.headers.get('content-type'), /text\/csv/);
    assert.equal((await csv.text()).split('\n')[0], 'feature,requests,prompt_tokens,completion_tokens,cached_tokens,cost_usd');
    // Errors: tenant key, no key, bad parameters.
    const tenantKey = await fetch(`${gw.base}/admin/usage`, { headers: { authorization: `Bearer ${DEMO_KEYS.alice}` } });
    assert.equal(tenantKey.status, 403);
    assert.equal((await tenantKey.json()).error.code, 'admin_key_required');
    assert.equal((await fetch(`${gw.base}/admin/usage`)).status, 401);
    const bad = await fetch(`${gw.base}/admin/usage?group_by=colour`, { headers: admin });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /unknown field 'colour'/);
    const badTime = await fetch(`${gw.base}/admin/usage?from=yesterday`, { headers: admin });
    assert.equal((await badTime.json()).error.param, 'from');
    await gw.stop();
  });
});
