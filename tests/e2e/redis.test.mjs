// Limits shared by a fleet through Redis (Debian's redis-server, started here
// on a loopback port): the 429s and run trees through the admit script, four
// gateways enforcing one limit with no overshoot, and a Redis outage under
// load (local share, fail closed, reconnect).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { startGateway, tempDir, waitFor, metric, chat, limitsConfig, freePort, startRedis, startRedisCluster, DEMO_KEYS, ADMIN_KEY } from './harness.mjs';

const admin = { authorization: `Bearer ${ADMIN_KEY}` };

function config(redisPort, { redis = '', prefix = 'tg', decodeMs = 0, ...rest } = {}) {
  return limitsConfig({ ...rest, decodeMs,
    limits: `redis: { address: "127.0.0.1:${redisPort}", key_prefix: "${prefix}", timeout_ms: 200${redis ? ', ' + redis : ''} }` });
}

async function status(res) { await res.text(); return res.status; }

// The status of a stream, which stays open (its reservation held) until `release` is called.
async function held(res, ctl, release) {
  if (res.status !== 200) { await res.text(); return res.status; }
  release.push(() => ctl.abort());
  return 200;
}

// Runs the admit and settle scripts directly (redis-cli EVAL) on one run of
// tenant acme with chosen bounds, as the gateway would send them.
const ADMIT = readFileSync(new URL('../../src/limits/lua/admit.lua', import.meta.url), 'utf8');
const SETTLE = readFileSync(new URL('../../src/limits/lua/settle.lua', import.meta.url), 'utf8');
function scriptDriver(port, pfx, cluster = false) {
  const cli = (...args) => new Promise((resolve, reject) => execFile('redis-cli', [...(cluster ? ['-c'] : []), '-p', String(port), '--no-raw', ...args],
    (err, out) => (err ? reject(err) : resolve(out.trim()))));
  const key = (k) => `${pfx}:{acme}:${k}`;
  const runKeys = (run) => [key(`run:${run}`), key(`run:${run}:calls`), key(`run:${run}:inflight`), key(`run:${run}:order`), key('runs')];
  const admitReply = async (run, hold, parent, { maxCalls, maxRuns, quietUs }) => {
    const args = ['0', '10', '0', '10000000', '60000000', '1', hold, '1800000000', '900000',
      run, 'acme', parent, '0', '0', '0', '0', '0', '0', '0', '3600000', String(maxCalls), String(maxRuns), String(quietUs), '10000'];
    const out = await cli('EVAL', ADMIT, '5', ...runKeys(run), ...args);
    // --no-raw: "1) (integer) 1\n2) \"run_calls\"\n..." → [1, 'run_calls', ...]
    return out.split('\n').map((l) => l.replace(/^\s*\d+\)\s*/, '')).map((v) =>
      (v.startsWith('(integer) ') ? Number(v.slice(10)) : v.replace(/^"|"$/g, '')));
  };
  return {
    admitReply,
    admit: async (...a) => (await admitReply(...a))[0],
    settle: (run, hold) => cli('EVAL', SETTLE, '3', key(`run:${run}`), key(`run:${run}:inflight`), key('runs'),
      '0', '10', '10', '0', '0', hold, '0', run),
    zcard: async (k) => Number((await cli('ZCARD', key(k))).replace('(integer) ', '')),
    exists: async (k) => Number((await cli('EXISTS', key(k))).replace('(integer) ', '')),
  };
}

let redis;
let prefixN = 0;
const prefix = () => `t${++prefixN}`;  // each test its own keys in the shared redis

describe('limits shared through Redis', () => {
  before(async () => { redis = await startRedis(await freePort()); });
  after(async () => { await redis?.kill(); });

  it('enforces and explains limits and run trees through the admit script', async () => {
    const gw = await startGateway({ yaml: config(redis.port, { prefix: prefix(), userLimits: 'requests_per_min: 3', runs: 'max_depth: 1, max_fanout: 1' }) });
    const ok = await chat(gw.base, DEMO_KEYS.alice);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('x-ratelimit-limit-requests'), '3');
    assert.equal(ok.headers.get('x-ratelimit-remaining-requests'), '2');
    await ok.text();
    const rootId = ok.headers.get('x-request-id');
    assert.equal(await status(await chat(gw.base, DEMO_KEYS.alice)), 200);
    assert.equal(await status(await chat(gw.base, DEMO_KEYS.alice)), 200);
    const r = await chat(gw.base, DEMO_KEYS.alice);
    const e = (await r.json()).error;
    assert.equal(r.status, 429);
    assert.equal(e.code, 'user_rpm_exhausted');
    assert.match(e.message, /^user 'acme\/alice' requests-per-minute limit \(3\) exhausted; retry after \d+s\.$/);
    assert.ok(Number(r.headers.get('retry-after')) >= 19);
    // Run trees, through the service key (its own users' buckets).
    const svc = (user, h) => chat(gw.base, DEMO_KEYS.acmeService, { headers: { 'X-TG-User': user, ...h } });
    const root = await svc('u1', { 'X-TG-Run': 'run-r' });
    assert.equal(root.status, 200);
    await root.text();
    const rid = root.headers.get('x-request-id');
    const kid = await svc('u2', { 'X-TG-Run': 'run-r', 'X-TG-Parent': rid });
    assert.equal(kid.status, 200);
    await kid.text();
    const code = async (res) => { const j = await res.json(); assert.ok(j.error, `${res.status} ${JSON.stringify(j).slice(0, 300)}`); return j.error.code; };
    assert.equal(await code(await svc('u3', { 'X-TG-Run': 'run-r', 'X-TG-Parent': rid })), 'run_fanout_exceeded');
    assert.equal(await code(await svc('u3', { 'X-TG-Run': 'run-r', 'X-TG-Parent': kid.headers.get('x-request-id') })), 'run_depth_exceeded');
    assert.equal(await code(await svc('u3', { 'X-TG-Run': 'run-r', 'X-TG-Parent': rootId })), 'unknown_parent');
    // globex's 'run-r' is globex's own run: admitted, and acme's requests are no parents in it.
    const theirs = await chat(gw.base, DEMO_KEYS.carol, { headers: { 'X-TG-Run': 'run-r' } });
    assert.equal(theirs.status, 200);
    await theirs.text();
    assert.equal(await code(await chat(gw.base, DEMO_KEYS.carol, { headers: { 'X-TG-Run': 'run-r', 'X-TG-Parent': rid } })), 'unknown_parent');
    const rep = await (await fetch(`${gw.base}/admin/limits/run:acme/run-r`, { headers: admin })).json();
    assert.equal(rep.calls, 2);
    assert.equal(rep.in_flight, 0);
    assert.equal((await (await fetch(`${gw.base}/admin/limits/run:globex/run-r`, { headers: admin })).json()).calls, 1);
    await gw.stop();
  });

  it('refuses PUT /admin/limits of unconfigured scopes and of no limits, fleet-wide', async () => {
    const gw = await startGateway({ yaml: config(redis.port, { prefix: prefix(), userLimits: 'requests_per_min: 3' }) });
    const put = (scope, body) => fetch(`${gw.base}/admin/limits/${scope}`, { method: 'PUT', headers: admin, body: JSON.stringify(body) });
    for (const scope of ['tenant:nobody', 'user:nobody%2Falice', 'org:nowhere', 'key:nokey']) {
      const r = await put(scope, { requests_per_min: 5 });
      const e = (await r.json()).error;
      assert.equal(r.status, 404, scope);
      assert.equal(e.code, 'scope_not_found');
    }
    const r = await put('user:acme%2Falice', {});
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error.code, 'empty_limits');
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push(await status(await chat(gw.base, DEMO_KEYS.alice)));
    assert.deepEqual(codes, [200, 200, 200, 429], 'alice keeps her 3 a minute');
    await gw.stop();
  });

  it('keeps a tenant to 1000 live runs in Redis, and its runs independent of another tenant\'s', async () => {
    const gw = await startGateway({ yaml: config(redis.port, { prefix: prefix() }) });
    let next = 0;
    const worker = async () => {
      while (next < 1000) {
        const r = await chat(gw.base, DEMO_KEYS.alice, { headers: { 'X-TG-Run': `r${next++}` } });
        assert.equal(r.status, 200, await r.text());
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    assert.equal((await (await fetch(`${gw.base}/admin/limits/tenant:acme`, { headers: admin })).json()).runs_live, 1000);
    const res = await chat(gw.base, DEMO_KEYS.alice, { headers: { 'X-TG-Run': 'one-too-many' } });
    const e = (await res.json()).error;
    assert.equal(res.status, 429);
    assert.equal(e.code, 'too_many_runs');
    assert.match(e.message, /^tenant 'acme' has 1000 live agent runs \(the limit\)/);
    assert.ok(Number(res.headers.get('retry-after')) >= 290);
    assert.equal(await status(await chat(gw.base, DEMO_KEYS.alice, { headers: { 'X-TG-Run': 'r5' } })), 200, 'a live run goes on');
    assert.equal(await status(await chat(gw.base, DEMO_KEYS.carol, { headers: { 'X-TG-Run': 'one-too-many' } })), 200, 'globex is not affected');
    await gw.stop();
  });

  it('the admit script forgets a run\'s oldest finished call and a tenant\'s oldest quiet run at their bounds', async () => {
    const s = scriptDriver(redis.port, prefix());
    // A run remembering at most 3 calls: the oldest finished one makes room, one in flight never does.
    const b = { maxCalls: 3, maxRuns: 100, quietUs: 0 };
    assert.deepEqual(await s.admit('r', 'c1', '', b), 0);
    for (const c of ['c2', 'c3']) { assert.equal(await s.admit('r', c, 'c1', b), 0); await s.settle('r', c); }
    assert.equal(await s.zcard('run:r:order'), 3);
    assert.equal(await s.admit('r', 'c4', 'c1', b), 0, 'c2 is forgotten, c1 (in flight, the parent) kept');
    assert.equal(await s.zcard('run:r:order'), 3);
    assert.deepEqual(await s.admitReply('r', 'c5', 'c2', b), [1, 'unknown_parent']);
    await s.settle('r', 'c3'); await s.settle('r', 'c4');
    // All remembered calls in flight: refused.
    const tight = { maxCalls: 2, maxRuns: 100, quietUs: 0 };
    assert.equal(await s.admit('q', 'q1', '', tight), 0);
    assert.equal(await s.admit('q', 'q2', '', tight), 0);
    assert.deepEqual(await s.admitReply('q', 'q3', '', tight), [1, 'run_calls', 2]);
    // Two live runs at most: a quiet one is forgotten (its keys deleted), one in flight is not.
    const few = { maxCalls: 10, maxRuns: 3, quietUs: 0 };  // r and q live already, c1 of r and q1, q2 in flight
    assert.equal(await s.admit('x', 'x1', '', few), 0);
    await s.settle('x', 'x1');
    assert.equal(await s.zcard('runs'), 3);
    assert.equal(await s.admit('y', 'y1', '', few), 0, 'x (quiet, nothing in flight) made room');
    assert.equal(await s.exists('run:x'), 0);
    assert.equal(await s.zcard('runs'), 3);
    const refused = await s.admitReply('z', 'z1', '', { ...few, quietUs: 3600e6 });
    assert.equal(refused[1], 'too_many_runs');
    assert.equal(await s.exists('run:r'), 1, 'runs with calls in flight stay');
  });

  it('PUT /admin/limits on one gateway changes the limit on every gateway of the fleet', async () => {
    const yaml = config(redis.port, { prefix: prefix(), userLimits: 'requests_per_min: 100' });
    const a = await startGateway({ yaml });
    const b = await startGateway({ yaml });
    try {
      const put = await fetch(`${a.base}/admin/limits/user:acme%2Fcarol2`, {
        method: 'PUT', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ requests_per_min: 2 }) });
      const body = await put.json();
      assert.equal(put.status, 200, JSON.stringify(body));
      assert.equal(body.applied, 'fleet');
      // b learns it within its next poll (1 s).
      await waitFor(async () => (await (await fetch(`${b.base}/admin/limits/user:acme%2Fcarol2`, { headers: admin })).json()).limits?.requests_per_min?.ceil === 2,
        3000, 'gateway b applying the override');
      const codes = [];
      for (let i = 0; i < 4; i++) codes.push(await status(await chat((i % 2 ? a : b).base, DEMO_KEYS.acmeService, { headers: { 'X-TG-User': 'carol2' } })));
      assert.deepEqual(codes, [200, 200, 429, 429], 'two a minute, across both gateways');
      // A gateway started later picks the override up too.
      const c = await startGateway({ yaml });
      await waitFor(async () => (await (await fetch(`${c.base}/admin/limits/user:acme%2Fcarol2`, { headers: admin })).json()).limits?.requests_per_min?.ceil === 2,
        3000, 'gateway c applying the override');
      await c.stop();
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('four gateways sharing one Redis admit no more than the limit in a burst', async () => {
    // n concurrent requests spread over 4 gateways. Streams stay open (their
    // reservations held) until every status is in.
    const burst = async (yaml, n, maxTokens) => {
      const gws = await Promise.all(Array.from({ length: 4 }, () => startGateway({ yaml })));
      const release = [];
      const t0 = Date.now();
      const codes = await Promise.all(Array.from({ length: n }, (_, i) => {
        const ctl = new AbortController();
        return chat(gws[i % 4].base, DEMO_KEYS.acmeService, { maxTokens, stream: true, signal: ctl.signal, headers: { 'X-TG-User': 'burst' } })
          .then((res) => held(res, ctl, release));
      }));
      const seconds = (Date.now() - t0) / 1000;
      release.forEach((f) => f());
      await Promise.all(gws.map((g) => g.stop()));
      return { admitted: codes.filter((c) => c === 200).length, refused: codes.filter((c) => c === 429).length, seconds };
    };
    // 100 requests a minute for the tenant, 400 concurrent requests over 4 gateways.
    const rpm = await burst(config(redis.port, { prefix: prefix(), tenantLimits: 'requests_per_min: 100', decodeMs: 20 }), 400, 200);
    const refill = Math.ceil(rpm.seconds * 100 / 60);
    assert.ok(rpm.admitted <= 100 + refill, `admitted ${rpm.admitted} in ${rpm.seconds}s (bucket 100 + ${refill} refilled)`);
    assert.ok(rpm.admitted >= 100, `admitted ${rpm.admitted}: the whole bucket is usable`);
    assert.equal(rpm.admitted + rpm.refused, 400);
    // 50,000 tokens a minute; each request reserves its prompt + 1000.
    const tpm = await burst(config(redis.port, { prefix: prefix(), tenantLimits: 'tokens_per_min: 50000', decodeMs: 20 }), 200, 1000);
    const perRequest = 1008;  // reserved while in flight: 8 prompt tokens + max_tokens
    const tokRefill = Math.ceil(tpm.seconds * 50000 / 60);
    assert.ok(tpm.admitted * perRequest <= 50000 + perRequest + tokRefill,
      `admitted ${tpm.admitted} x ${perRequest} tokens in ${tpm.seconds}s`);
    // The same burst without shared state: each gateway enforces the whole limit.
    const yamlLocal = config(redis.port, { tenantLimits: 'requests_per_min: 100', decodeMs: 20 }).replace(/  redis: .*\n/, '');
    const local = await burst(yamlLocal, 400, 200);
    console.log(`# fleet burst, 4 gateways: redis admitted ${rpm.admitted}/400 against 100 rpm (+${refill} refill in ${rpm.seconds}s), ` +
      `${tpm.admitted}x${perRequest} tokens against 50000 tpm; in-process only admitted ${local.admitted}/400`);
    assert.ok(local.admitted > 300, 'without Redis each of the 4 gateways admits its own 100');
  });

  it('survives Redis going away under load: local share, runs fail closed, and reconnects', async () => {
    const port = await freePort();
    let r = await startRedis(port);
    const gw = await startGateway({ yaml: config(port, { prefix: prefix(), userLimits: 'requests_per_min: 40',
      redis: 'fleet_size: 4, on_outage: local_share, runs_on_outage: fail_closed' }) });
    let stop = false;
    const seen = [];
    const load = (async () => {
      while (!stop) {
        const res = await chat(gw.base, DEMO_KEYS.acmeService, { headers: { 'X-TG-User': `load-${seen.length % 5}` } });
        seen.push(await status(res));
        await new Promise((d) => setTimeout(d, 5));
      }
    })();
    await waitFor(() => seen.length > 20, 5000, 'load running');
    assert.equal(await metric(gw.base, 'tg_limit_store_up'), 1);
    await r.kill();
    // With Redis gone, this process enforces 40/4 = 10 a minute for alice.
    await waitFor(async () => (await metric(gw.base, 'tg_limit_store_up')) === 0, 5000, 'store marked down');
    const during = [];
    for (let i = 0; i < 15; i++) during.push(await status(await chat(gw.base, DEMO_KEYS.alice)));
    assert.equal(during.filter((c) => c === 200).length, 10, `local share: ${during}`);
    assert.equal(during.filter((c) => c === 429).length, 5);
    const run = await chat(gw.base, DEMO_KEYS.alice, { headers: { 'X-TG-Run': 'outage-run' } });
    assert.equal(run.status, 503);
    assert.equal((await run.json()).error.code, 'limits_unavailable');
    assert.equal(run.headers.get('retry-after') !== null, true);
    assert.ok(!seen.some((c) => c >= 500), 'the load saw no 5xx: rate limits fell back to the local share');
    // Redis comes back on the same port: the gateway reconnects by itself.
    r = await startRedis(port);
    // Each worker's connection retries after its back-off (250 ms); runs are
    // admitted again once every worker has reconnected.
    await waitFor(async () => (await metric(gw.base, 'tg_limit_store_up')) === 1, 5000, 'reconnected');
    await waitFor(async () => (await status(await chat(gw.base, DEMO_KEYS.alice, { headers: { 'X-TG-Run': 'after-run' } }))) === 200,
      5000, 'runs admitted again');
    stop = true;
    await load;
    await gw.stop();
    await r.kill();
  });

  it('fails closed when configured to', async () => {
    const port = await freePort();
    const gw = await startGateway({ yaml: config(port, { prefix: prefix(), redis: 'on_outage: fail_closed' }) });
    const res = await chat(gw.base, DEMO_KEYS.alice);
    const e = (await res.json()).error;
    assert.equal(res.status, 503);
    assert.equal(e.code, 'limits_unavailable');
    assert.match(e.message, /cannot connect to redis at 127\.0\.0\.1:\d+/);
    await gw.stop();
  });
});

describe('limits on a Redis Cluster (three primaries)', () => {
  let cluster;
  before(async () => { cluster = await startRedisCluster(); });
  after(async () => { await cluster?.kill(); });
  const clusterYaml = (orgRpm) => limitsConfig({
    limits: `redis: { address: "127.0.0.1:${cluster.ports[1]}", key_prefix: "${prefix()}", timeout_ms: 2000, cluster: true }`,
    tenantLimits: 'requests_per_min: 1000, tokens_per_min: 10000000', userLimits: 'requests_per_min: 1000', decodeMs: 20 })
    .replace('orgs: [{ id: demo }]', `orgs: [{ id: demo, limits: { requests_per_min: ${orgRpm} } }]`);

  it('admits exactly an org\'s limit (a shared slot) from one tenant over 4 gateways', async () => {
    const yaml = clusterYaml(100);  // (once: one key prefix for the fleet)
    const gws = await Promise.all(Array.from({ length: 4 }, () => startGateway({ yaml })));
    try {
      const release = [];
      const t0 = Date.now();
      const codes = await Promise.all(Array.from({ length: 400 }, (_, i) => {
        const ctl = new AbortController();
        return chat(gws[i % 4].base, DEMO_KEYS.acmeService, { maxTokens: 200, stream: true, signal: ctl.signal,
          headers: { 'X-TG-User': `u${i % 10}` } }).then((res) => held(res, ctl, release));
      }));
      const seconds = (Date.now() - t0) / 1000;
      release.forEach((f) => f());
      const admitted = codes.filter((c) => c === 200).length;
      const refill = Math.ceil(seconds * 100 / 60);
      console.log(`# cluster burst, 4 gateways, one tenant: admitted ${admitted}/400 against the org's 100 rpm (+${refill} refill in ${seconds}s)`);
      assert.ok(admitted >= 100 && admitted <= 100 + refill, `admitted ${admitted}`);
      assert.equal(codes.filter((c) => c === 429).length, 400 - admitted);
    } finally {
      await Promise.all(gws.map((g) => g.stop()));
    }
  });

  it('splits a path over the shared and the tenant slots and stays exact under a burst from 4 gateways', async () => {
    {
      // The org (a shared scope) allows 100 a minute; the tenant and the user limits live in the tenant's slot.
      const yaml = clusterYaml(100);
      const gws = await Promise.all(Array.from({ length: 4 }, () => startGateway({ yaml })));
      try {
        // A run lives in its tenant's slot, all of it: another tenant's run of the same id is another run.
        const mine = await chat(gws[1].base, DEMO_KEYS.acmeService, { headers: { 'X-TG-User': 'r', 'X-TG-Run': 'cluster-run' } });
        assert.equal(mine.status, 200, await mine.text());
        const theirs = await chat(gws[2].base, DEMO_KEYS.carol, { headers: { 'X-TG-Run': 'cluster-run' } });
        assert.equal(theirs.status, 200, await theirs.text());
        const into = await chat(gws[3].base, DEMO_KEYS.carol, { headers: { 'X-TG-Run': 'cluster-run', 'X-TG-Parent': mine.headers.get('x-request-id') } });
        assert.equal(into.status, 400);
        assert.equal((await into.json()).error.code, 'unknown_parent');
        // (two of the org's 100 used; the unknown parent refused before any reservation)
        const release = [];
        const t0 = Date.now();
        const codes = await Promise.all(Array.from({ length: 400 }, (_, i) => {
          const ctl = new AbortController();
          const acme = i % 2 === 1;  // acme's service key (user 'burst') and globex's carol: two tenants of one org
          return chat(gws[i % 4].base, acme ? DEMO_KEYS.acmeService : DEMO_KEYS.carol,
            { maxTokens: 200, stream: true, signal: ctl.signal, headers: acme ? { 'X-TG-User': 'burst' } : {} }).then((res) => held(res, ctl, release));
        }));
        const seconds = (Date.now() - t0) / 1000;
        release.forEach((f) => f());
        const admitted = codes.filter((c) => c === 200).length;
        const refill = Math.ceil(seconds * 100 / 60);
        console.log(`# cluster burst, 4 gateways, 2 tenants of one org: admitted ${admitted}/400 against the org's 100 rpm (+${refill} refill in ${seconds}s)`);
        // No overshoot. (Not every request of the bucket is used: with both tenants
        // above their fair share, the org keeps its burst reserve, (100 - 50) x 10 s
        // of a minute, about 8 requests, for whichever comes back under its share.)
        assert.ok(admitted >= 85 && admitted <= 99 + refill, `admitted ${admitted}`);
        const counts = {}; for (const c of codes) counts[c] = (counts[c] ?? 0) + 1;
        assert.equal(codes.filter((c) => c === 429).length, 400 - admitted, JSON.stringify(counts));
        let e;
        for (let i = 0; i < 30 && !e; i++) e = (await (await chat(gws[i % 4].base, DEMO_KEYS.carol)).json()).error;
        assert.ok(e, 'the org stays exhausted');
        assert.ok(['org_rpm_exhausted', 'tenant_fair_share_exceeded'].includes(e.code), JSON.stringify(e));
        assert.match(e.message, /org 'demo'/, 'the shared scope is named, whichever slot refused');
        assert.equal(await metric(gws[0].base, 'tg_limit_store_fallbacks_total'), 0, 'every request went through the cluster');
      } finally {
        await Promise.all(gws.map((g) => g.stop()));
      }
    }
  });

  it('forgets a tenant\'s quiet run at the bound inside the tenant\'s slot', async () => {
    const s = scriptDriver(cluster.ports[0], prefix(), true);
    const few = { maxCalls: 10, maxRuns: 1, quietUs: 0 };
    assert.equal(await s.admit('a', 'a1', '', few), 0);
    await s.settle('a', 'a1');
    assert.equal(await s.admit('b', 'b1', '', few), 0, 'a (quiet) made room');
    assert.equal(await s.exists('run:a'), 0);
    assert.equal(await s.exists('run:b'), 1);
  });
});

