// Hierarchical limits over the real binary: every 429 code with its headers,
// agent run trees, the admin limits API, SIGHUP reload, and no leaked
// reservation after thousands of aborted streams.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startGateway, tempDir, waitFor, chat, limitsConfig, DEMO_KEYS, ADMIN_KEY } from './harness.mjs';

const admin = { authorization: `Bearer ${ADMIN_KEY}` };
const config = limitsConfig;

async function expectError(res, status, code) {
  const body = await res.json();
  assert.equal(res.status, status, JSON.stringify(body));
  assert.equal(body.error.code, code, JSON.stringify(body));
  return body.error;
}

describe('limits', () => {
  it('refuses past a user requests-per-minute limit with Retry-After and rate-limit headers', async () => {
    const gw = await startGateway({ yaml: config({ userLimits: 'requests_per_min: 3' }) });
    const ok = await chat(gw.base, DEMO_KEYS.alice);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('x-ratelimit-limit-requests'), '3');
    assert.equal(ok.headers.get('x-ratelimit-remaining-requests'), '2');
    assert.match(ok.headers.get('x-ratelimit-reset-requests'), /^\d+(\.\d+)?m?s$/);
    assert.equal(ok.headers.get('ratelimit-policy'), '"requests";q=3;w=60');
    assert.match(ok.headers.get('ratelimit'), /^"requests";r=2;t=\d+$/);
    await ok.text();
    for (let i = 0; i < 2; i++) assert.equal((await chat(gw.base, DEMO_KEYS.alice).then(async (r) => { await r.text(); return r; })).status, 200);
    const res = await chat(gw.base, DEMO_KEYS.alice);
    const retry = Number(res.headers.get('retry-after'));
    assert.ok(retry >= 20 && retry <= 22, `Retry-After ${retry}: 20 s for the next token, plus up to 2 s of jitter`);
    assert.equal(res.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.equal(res.headers.get('x-ratelimit-limit-requests'), '3');
    const e = await expectError(res, 429, 'user_rpm_exhausted');
    assert.equal(e.type, 'rate_limit_error');
    assert.match(e.message, /^user 'acme\/alice' requests-per-minute limit \(3\) exhausted; retry after 2\ds\.$/);
    // The official SDK surfaces it as a RateLimitError with the same body.
    const client = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: DEMO_KEYS.alice, maxRetries: 0 });
    await assert.rejects(client.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }),
      (err) => err.status === 429 && err.code === 'user_rpm_exhausted');
    // Another tenant is untouched.
    assert.equal((await chat(gw.base, DEMO_KEYS.carol)).status, 200);
    await gw.stop();
  });

  it('names the tenant when its tokens-per-minute limit is exhausted, and refuses requests that can never fit', async () => {
    // (20 ms a token: the held streams stay open, their reservations held, while the third asks.)
    const gw = await startGateway({ yaml: config({ tenantLimits: 'tokens_per_min: 120000', decodeMs: 20 }) });
    // Each request reserves prompt + max_tokens: 40,000 output tokens three times fills 120,000.
    const held = [];
    for (let i = 0; i < 2; i++) {
      const ctl = new AbortController();
      const r = await chat(gw.base, DEMO_KEYS.alice, { maxTokens: 50000, stream: true, signal: ctl.signal });
      assert.equal(r.status, 200);
      held.push(ctl);
    }
    const e = await expectError(await chat(gw.base, DEMO_KEYS.alice, { maxTokens: 50000 }), 429, 'tenant_tpm_exhausted');
    assert.match(e.message, /^tenant 'acme' tokens-per-minute limit \(120000\) exhausted; retry after \d+s\.$/);
    const tooBig = await expectError(await chat(gw.base, DEMO_KEYS.alice, { maxTokens: 200000 }), 400, 'tokens_exceed_limit');
    assert.equal(tooBig.param, 'max_tokens');
    for (const c of held) c.abort();
    await gw.stop();
  });

  it('caps concurrency and frees the slot when a stream ends or is cancelled', async () => {
    const gw = await startGateway({ yaml: config({ tenantLimits: 'concurrency: 2', decodeMs: 20 }) });
    const a = new AbortController(), b = new AbortController();
    const ra = await chat(gw.base, DEMO_KEYS.alice, { stream: true, maxTokens: 500, signal: a.signal });
    const rb = await chat(gw.base, DEMO_KEYS.alice, { stream: true, maxTokens: 500, signal: b.signal });
    assert.equal(ra.status, 200);
    assert.equal(rb.status, 200);
    const e = await expectError(await chat(gw.base, DEMO_KEYS.alice), 429, 'tenant_concurrency_exhausted');
    assert.match(e.message, /tenant 'acme' concurrency limit \(2 requests in flight\) reached/);
    a.abort();
    await waitFor(async () => (await (await fetch(`${gw.base}/admin/limits/tenant:acme`, { headers: admin })).json()).in_flight === 1);
    const again = await chat(gw.base, DEMO_KEYS.alice);
    assert.equal(again.status, 200);
    await again.text();
    b.abort();
    await gw.stop();
  });

  it('keeps a fair share for each active user inside the tenant', async () => {
    const gw = await startGateway({ yaml: config({ tenantLimits: 'requests_per_min: 20', userLimits: 'requests_per_min: 20' }) });
    const bob = (h = {}) => chat(gw.base, DEMO_KEYS.acmeService, { headers: { 'X-TG-User': 'bob', ...h } });
    assert.equal((await bob().then(async (r) => { await r.text(); return r; })).status, 200);  // bob is active
    let ok = 0, e;
    for (let i = 0; i < 25; i++) {
      const r = await chat(gw.base, DEMO_KEYS.alice);
      if (r.status === 200) { ok++; await r.text(); } else { e = await r.json(); break; }
    }
    assert.equal(e.error.code, 'user_fair_share_exceeded', JSON.stringify(e));
    assert.match(e.error.message, /tenant 'acme' requests-per-minute limit \(20\) is shared by 2 active users; user 'acme\/alice' is over its fair share \(10 per minute\)/);
    assert.ok(ok >= 10 && ok < 19, `alice got ${ok}: her share and what bob's burst reserve leaves`);
    const r = await bob();
    assert.equal(r.status, 200, 'bob still gets his share');
    await gw.stop();
  });

  it('enforces agent run trees: depth, fan-out, concurrency, budget; a run id names a run of its tenant only', async () => {
    const gw = await startGateway({ yaml: config({ runs: 'max_depth: 1, max_fanout: 2, max_tokens: 200' }) });
    const call = (run, parent, key = DEMO_KEYS.alice, maxTokens = 4) =>
      chat(gw.base, key, { maxTokens, headers: { 'X-TG-Run': run, ...(parent ? { 'X-TG-Parent': parent } : {}) } });
    const root = await call('run-a');
    assert.equal(root.status, 200);
    await root.text();
    const rootId = root.headers.get('x-request-id');
    const kids = [];
    for (let i = 0; i < 2; i++) {
      const k = await call('run-a', rootId);
      assert.equal(k.status, 200);
      await k.text();
      kids.push(k.headers.get('x-request-id'));
    }
    const fan = await expectError(await call('run-a', rootId), 429, 'run_fanout_exceeded');
    assert.match(fan.message, new RegExp(`request '${rootId}' already spawned 2 calls`));
    await expectError(await call('run-a', kids[0]), 429, 'run_depth_exceeded');
    const unknown = await expectError(await call('run-a', 'req_nope'), 400, 'unknown_parent');
    assert.equal(unknown.param, 'X-TG-Parent');
    await expectError(await chat(gw.base, DEMO_KEYS.alice, { headers: { 'X-TG-Parent': rootId } }), 400, 'parent_without_run');
    // 200 tokens per run: prompt (~8) + 190 output is over what is left.
    await expectError(await call('run-a', null, DEMO_KEYS.alice, 190), 429, 'run_budget_exhausted');
    // globex's 'run-a' is another run: its own whole budget, and no way into acme's tree
    // (acme's request is no parent there, exactly like one that never existed).
    const theirs = await call('run-a', null, DEMO_KEYS.carol, 190);
    assert.equal(theirs.status, 200, await theirs.clone().text());
    await theirs.text();
    const into = await expectError(await call('run-a', rootId, DEMO_KEYS.carol), 400, 'unknown_parent');
    assert.equal(into.message, unknown.message.replace('req_nope', rootId));
    const rep = await (await fetch(`${gw.base}/admin/limits/run:acme/run-a`, { headers: admin })).json();
    assert.equal(rep.calls, 3);
    assert.equal(rep.in_flight, 0);
    assert.equal(rep.tokens_reserved, 0);
    assert.equal(rep.max_depth_seen, 1);
    assert.equal(rep.tenant, 'acme');
    const theirRep = await (await fetch(`${gw.base}/admin/limits/run:globex/run-a`, { headers: admin })).json();
    assert.equal(theirRep.calls, 1);
    assert.equal(theirRep.tenant, 'globex');
    await expectError(await fetch(`${gw.base}/admin/limits/run:run-a`, { headers: admin }), 404, 'scope_not_found');
    await gw.stop();
  });

  it('refuses run concurrency past its limit', async () => {
    const gw = await startGateway({ yaml: config({ runs: 'max_concurrency: 1', decodeMs: 20 }) });
    const ctl = new AbortController();
    const first = await chat(gw.base, DEMO_KEYS.alice, { stream: true, maxTokens: 500, signal: ctl.signal, headers: { 'X-TG-Run': 'r1' } });
    assert.equal(first.status, 200);
    await expectError(await chat(gw.base, DEMO_KEYS.alice, { headers: { 'X-TG-Run': 'r1' } }), 429, 'run_concurrency_exceeded');
    ctl.abort();
    await gw.stop();
  });

  it('limits a run\'s call rate and wall time, and a key\'s concurrency', async () => {
    const gw = await startGateway({ yaml: config({ runs: 'calls_per_min: 2, max_wall_s: 1', decodeMs: 20 })
      .replace('{ id: acme-alice, user: alice, sha256', '{ id: acme-alice, user: alice, limits: { concurrency: 1 }, sha256') });
    const run = (h = {}) => chat(gw.base, DEMO_KEYS.acmeService, { headers: { 'X-TG-User': 'bob', 'X-TG-Run': 'paced', ...h } });
    assert.equal((await run().then(async (r) => { await r.text(); return r; })).status, 200);
    assert.equal((await run().then(async (r) => { await r.text(); return r; })).status, 200);
    const rate = await expectError(await run(), 429, 'run_rate_exceeded');
    assert.match(rate.message, /run 'paced' calls-per-minute limit \(2\) exhausted; retry after \d+s/);
    await new Promise((d) => setTimeout(d, 1100));
    const wall = await expectError(await run(), 429, 'run_wall_time_exceeded');
    assert.match(wall.message, /over its wall-time limit \(1s\); start a new run/);
    // The key's own concurrency limit: alice's key carries one request at a time.
    const ctl = new AbortController();
    const first = await chat(gw.base, DEMO_KEYS.alice, { stream: true, maxTokens: 500, signal: ctl.signal });
    assert.equal(first.status, 200);
    await expectError(await chat(gw.base, DEMO_KEYS.alice), 429, 'key_concurrency_exhausted');
    ctl.abort();
    await gw.stop();
  });

  it('shows and changes limits through the admin API, and reloads them on SIGHUP', async () => {
    const dir = tempDir();
    const file = join(dir, 'tenantgate.yaml');
    writeFileSync(file, config({ userLimits: 'requests_per_min: 100' }));
    const gw = await startGateway({ args: ['--config', file] });
    assert.equal((await fetch(`${gw.base}/admin/limits/tenant:acme`)).status, 401);
    assert.equal((await fetch(`${gw.base}/admin/limits/tenant:acme`, { headers: { authorization: `Bearer ${DEMO_KEYS.alice}` } })).status, 403);
    assert.equal((await fetch(`${gw.base}/admin/limits/planet:mars`, { headers: admin })).status, 404);
    await (await chat(gw.base, DEMO_KEYS.alice)).text();
    const u = await (await fetch(`${gw.base}/admin/limits/user:acme%2Falice`, { headers: admin })).json();
    assert.equal(u.limits.requests_per_min.ceil, 100);
    assert.equal(u.requests_remaining, 99);
    assert.equal(u.requests_total, 1);
    const put = await fetch(`${gw.base}/admin/limits/user:acme/alice`, { method: 'PUT', headers: admin, body: JSON.stringify({ requests_per_min: 1 }) });
    assert.equal(put.status, 200);
    await expectError(await chat(gw.base, DEMO_KEYS.alice), 429, 'user_rpm_exhausted');
    const bad = await fetch(`${gw.base}/admin/limits/user:acme/alice`, { method: 'PUT', headers: admin, body: JSON.stringify({ requests_per_min: { rate: 5, ceil: 2 } }) });
    assert.equal((await expectError(bad, 400, 'invalid_value')).param, 'requests_per_min.rate');
    const typo = await fetch(`${gw.base}/admin/limits/user:acme/alice`, { method: 'PUT', headers: admin, body: JSON.stringify({ request_per_min: 5 }) });
    assert.equal((await expectError(typo, 400, 'unknown_parameter')).param, 'request_per_min');
    // SIGHUP: the file says 100 again; the one request used still counts.
    gw.child.kill('SIGHUP');
    await waitFor(() => /limits reloaded/.test(gw.stderr), 5000, 'reload log line');
    const after = await (await fetch(`${gw.base}/admin/limits/user:acme/alice`, { headers: admin })).json();
    assert.equal(after.limits.requests_per_min.ceil, 100);
    assert.equal(after.requests_remaining, 99);
    // An invalid file is reported and changes nothing.
    writeFileSync(file, 'limits: { global: { requests_per_min: -1 } }\n');
    gw.child.kill('SIGHUP');
    await waitFor(() => /SIGHUP: the config is invalid/.test(gw.stderr), 5000, 'invalid reload log line');
    assert.equal((await chat(gw.base, DEMO_KEYS.alice)).status, 200);
    await gw.stop();
  });

  it('keeps a tenant to 1000 live agent runs: a new one past that is a 429 too_many_runs', async () => {
    const gw = await startGateway({ yaml: config({}) });
    const run = (id, key = DEMO_KEYS.alice, h = {}) => chat(gw.base, key, { headers: { 'X-TG-Run': id, ...h } });
    let next = 0;
    const worker = async () => {
      while (next < 1000) {
        const r = await run(`r${next++}`);
        assert.equal(r.status, 200, await r.text());
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const tenant = await (await fetch(`${gw.base}/admin/limits/tenant:acme`, { headers: admin })).json();
    assert.equal(tenant.runs_live, 1000);
    const res = await run('one-too-many');
    const retry = Number(res.headers.get('retry-after'));
    const e = await expectError(res, 429, 'too_many_runs');
    assert.match(e.message, /^tenant 'acme' has 1000 live agent runs \(the limit\); a run is let go once it has had no call for 300s\./);
    assert.ok(retry >= 290 && retry <= 330, `Retry-After ${retry}: the oldest run is quiet 300 s after its call, plus jitter`);
    // A live run goes on, and another tenant starts runs as before.
    const live = await run('r5');
    assert.equal(live.status, 200);
    await live.text();
    const other = await run('one-too-many', DEMO_KEYS.carol);
    assert.equal(other.status, 200);
    await other.text();
    assert.equal((await (await fetch(`${gw.base}/admin/limits/tenant:acme`, { headers: admin })).json()).runs_live, 1000);
    await gw.stop();
  });

  it('sets limits only on configured scopes, and never empties a scope without being told to', async () => {
    const gw = await startGateway({ yaml: config({ userLimits: 'requests_per_min: 3' }) });
    const put = (scope, body) => fetch(`${gw.base}/admin/limits/${scope}`, { method: 'PUT', headers: admin, body: JSON.stringify(body) });
    const get = (scope) => fetch(`${gw.base}/admin/limits/${scope}`, { headers: admin });
    for (const scope of ['tenant:nobody', 'user:nobody%2Falice', 'key:nokey', 'org:nowhere', 'model:gpt-nope', 'deployment:nodep', 'run:acme%2Fr1']) {
      const e = await expectError(await put(scope, { requests_per_min: 5 }), 404, 'scope_not_found');
      assert.equal(e.param, 'scope');
      if (!scope.startsWith('user:')) await expectError(await get(scope), 404, 'scope_not_found');  // nothing was created
    }
    const e = await expectError(await put('tenant:nobody', { requests_per_min: 5 }), 404, 'scope_not_found');
    assert.match(e.message, /^No tenant 'nobody' in the configuration/);
    assert.equal((await put('user:acme%2Fnew-user', { requests_per_min: 5 })).status, 200, 'any user of a configured tenant');
    // {} would silently lift alice's limits, her tenant's user_limits included.
    const empty = await expectError(await put('user:acme%2Falice', {}), 400, 'empty_limits');
    assert.match(empty.message, /\{"requests_per_min": null, "tokens_per_min": null, "concurrency": null\}/);
    assert.equal((await (await get('user:acme%2Falice')).json()).limits.requests_per_min.ceil, 3, 'unchanged');
    // Said explicitly, every limit of the scope goes.
    const cleared = await put('user:acme%2Falice', { requests_per_min: null, tokens_per_min: null, concurrency: null });
    assert.equal(cleared.status, 200, await cleared.clone().text());
    assert.deepEqual((await (await get('user:acme%2Falice')).json()).limits,
      { requests_per_min: { rate: 0, ceil: 0 }, tokens_per_min: { rate: 0, ceil: 0 }, concurrency: 0 });
    for (let i = 0; i < 5; i++) assert.equal((await chat(gw.base, DEMO_KEYS.alice).then(async (r) => { await r.text(); return r; })).status, 200);
    await gw.stop();
  });

  it('leaves every counter at zero after thousands of aborted streams', async () => {
    const gw = await startGateway({ yaml: config({ tenantLimits: 'concurrency: 64, tokens_per_min: 100000000', decodeMs: 5, runs: 'max_concurrency: 1000' }) });
    let aborted = 0;
    const worker = async (w) => {
      for (let i = 0; i < 50; i++) {
        const ctl = new AbortController();
        try {
          const r = await chat(gw.base, DEMO_KEYS.alice, { stream: true, maxTokens: 200, signal: ctl.signal, headers: { 'X-TG-Run': `storm-${w % 4}` } });
          assert.equal(r.status, 200);
          const reader = r.body.getReader();
          await reader.read();  // the first chunk, then hang up
          ctl.abort();
          aborted++;
        } catch (e) { if (e.name !== 'AbortError') throw e; }
      }
    };
    await Promise.all(Array.from({ length: 40 }, (_, w) => worker(w)));
    assert.equal(aborted, 2000);
    for (const scope of ['global', 'org:demo', 'tenant:acme', 'user:acme/alice', 'key:acme-alice', 'model:chat', 'deployment:chat-sim', 'run:acme/storm-0']) {
      await waitFor(async () => {
        const j = await (await fetch(`${gw.base}/admin/limits/${scope}`, { headers: admin })).json();
        return j.in_flight === 0 && (j.reserved_tokens ?? j.tokens_reserved) === 0;
      }, 5000, `${scope} back to zero`);
    }
    await gw.stop();
  });
});
