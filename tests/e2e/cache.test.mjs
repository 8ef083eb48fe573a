// The response cache over the real binary: exact and semantic hits inside a
// user's own partition only, guards that turn away another account's answer,
// streamed answers stored and replayed, Cache-Control and the temperature
// ceiling, tenant scope without personal data, and the audit trail and
// purges through the admin API.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startGateway, tempDir, limitsConfig, waitFor, freePort, startRedis, DEMO_KEYS, ADMIN_KEY } from './harness.mjs';

const admin = { authorization: `Bearer ${ADMIN_KEY}` };

function cacheConfig(dir, { threshold = 0.8, acmeScope = 'user', redis = '', extra = '' } = {}) {
  return limitsConfig()
    .replace('metering: { ledger_sqlite: "off" }', `metering: { ledger_sqlite: "${join(dir, 'ledger.db')}" }`)
    .replace('  - id: acme\n    org: demo\n', `  - id: acme\n    org: demo\n    cache_scope: ${acmeScope}\n`) +
    `cache: { threshold: ${threshold}, ttl_s: 600, max_temperature: 1.0${redis ? `, redis: { ${redis} }` : ''}${extra} }\n`;
}

async function ask(base, key, content, { stream = false, headers = {}, extra = {} } = {}) {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content }], max_tokens: 8, stream, ...extra }),
  });
  const text = await res.text();
  let answer = '';
  if (stream) {
    for (const ev of text.split('\n\n')) {
      if (!ev.startsWith('data: {')) continue;
      const d = JSON.parse(ev.slice(6));
      for (const c of d.choices ?? []) answer += c.delta?.content ?? '';
    }
  } else if (res.status === 200) {
    answer = JSON.parse(text).choices[0].message.content;
  }
  return { status: res.status, cache: res.headers.get('x-tg-cache'), id: res.headers.get('x-request-id'), answer, text };
}

describe('cache', () => {
  let gw, dir;
  before(async () => {
    dir = tempDir();
    gw = await startGateway({ yaml: cacheConfig(dir) });
  });
  after(async () => { await gw.stop(); });

  it('hits exactly and semantically inside the user\'s partition, never another user\'s or tenant\'s', async () => {
    const first = await ask(gw.base, DEMO_KEYS.alice, 'How do I reset my password?');
    assert.equal(first.cache, 'miss');
    const again = await ask(gw.base, DEMO_KEYS.alice, 'How do I reset my password?');
    assert.equal(again.cache, 'hit');
    assert.equal(again.answer, first.answer);
    assert.notEqual(again.id, first.id);
    assert.doesNotMatch(again.text, /partition|similarity/, 'a response never shows cache internals');
    const para = await ask(gw.base, DEMO_KEYS.alice, 'how do I reset my password please');
    assert.equal(para.cache, 'hit', 'a paraphrase above the threshold');
    // bob is acme too, through the tenant-level key: his own partition.
    const bob = await ask(gw.base, DEMO_KEYS.acmeService, 'How do I reset my password?', { headers: { 'x-tg-user': 'bob' } });
    assert.equal(bob.cache, 'miss');
    const carol = await ask(gw.base, DEMO_KEYS.carol, 'How do I reset my password?');
    assert.equal(carol.cache, 'miss', 'another tenant');
  });

  it('turns away a close prompt about another account, or its negation', async () => {
    assert.equal((await ask(gw.base, DEMO_KEYS.alice, "I can't log into my account, my email is jane@example.com")).cache, 'miss');
    const other = await ask(gw.base, DEMO_KEYS.alice, "I can't log into my account, my email is bob@example.com");
    assert.equal(other.cache, 'miss', 'the entity guard');
    assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'Should I increase the dose of vitamin D?')).cache, 'miss');
    assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'Should I decrease the dose of vitamin D?')).cache, 'miss', 'the polarity guard');
  });

  it('stores streamed answers and serves them streamed or not', async () => {
    const s = await ask(gw.base, DEMO_KEYS.alice, 'Tell me a fact about otters', { stream: true });
    assert.equal(s.cache, 'miss');
    const plain = await ask(gw.base, DEMO_KEYS.alice, 'Tell me a fact about otters');
    assert.equal(plain.cache, 'hit');
    assert.equal(plain.answer, s.answer);
    const streamed = await ask(gw.base, DEMO_KEYS.alice, 'Tell me a fact about otters', { stream: true, extra: { stream_options: { include_usage: true } } });
    assert.equal(streamed.cache, 'hit');
    assert.equal(streamed.answer, s.answer);
    assert.match(streamed.text, /"usage":\{"prompt_tokens":\d+/);
    assert.match(streamed.text, /data: \[DONE\]\n\n$/);
  });

  it('follows Cache-Control and the temperature ceiling', async () => {
    await ask(gw.base, DEMO_KEYS.alice, 'What is the boiling point of water?');
    assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'What is the boiling point of water?', { headers: { 'cache-control': 'no-store' } })).cache, 'bypass');
    assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'What is the boiling point of water?', { headers: { 'cache-control': 'no-cache' } })).cache, 'refresh');
    assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'What is the boiling point of water?')).cache, 'hit');
    assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'What is the boiling point of water?', { extra: { temperature: 1.5 } })).cache, 'bypass');
  });

  it('keeps an audit trail of writes and hits, and purges by entry, user and tenant (audited)', async () => {
    const w = await ask(gw.base, DEMO_KEYS.alice, 'Audit me: what is 2 plus 2?');
    const h = await ask(gw.base, DEMO_KEYS.alice, 'Audit me: what is 2 plus 2?');
    assert.equal(h.cache, 'hit');
    const entry = `ce_${w.id}`;
    const info = await (await fetch(`${gw.base}/admin/cache/entries/${entry}`, { headers: admin })).json();
    assert.equal(info.live, true);
    assert.equal(info.created_by.request_id, w.id);
    assert.equal(info.created_by.user, 'alice');
    assert.equal(info.created_by.scope, 'user:alice');
    assert.deepEqual(info.served.map((s) => s.request_id), [h.id]);
    assert.equal(info.served[0].guards, 'exact');
    const served = await (await fetch(`${gw.base}/admin/cache/served?tenant=acme&user=alice`, { headers: admin })).json();
    assert.ok(served.data.some((d) => d.request_id === h.id && d.entry === entry));
    // purge the entry: the next ask misses; the purge is in the trail
    assert.deepEqual(await (await fetch(`${gw.base}/admin/cache/entries/${entry}`, { method: 'DELETE', headers: admin })).json(), { purged: 1, audited: true });
    assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'Audit me: what is 2 plus 2?')).cache, 'miss');
    const after = await (await fetch(`${gw.base}/admin/cache/entries/${entry}`, { headers: admin })).json();
    assert.equal(after.live, false);
    assert.equal(after.purges.length, 1);
    assert.equal(after.purges[0].user, 'alice');
    // purge alice's entries, then the tenant's
    const pu = await (await fetch(`${gw.base}/admin/cache?tenant=acme&user=alice`, { method: 'DELETE', headers: admin })).json();
    assert.ok(pu.purged >= 3, JSON.stringify(pu));
    assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'How do I reset my password?')).cache, 'miss');
    const pt = await (await fetch(`${gw.base}/admin/cache?tenant=acme`, { method: 'DELETE', headers: admin })).json();
    assert.ok(pt.purged >= 1, 'bob\'s entry and alice\'s new one');
    // bad requests get precise errors
    const tenantKey = await fetch(`${gw.base}/admin/cache/served?tenant=acme&user=alice`, { headers: { authorization: `Bearer ${DEMO_KEYS.alice}` } });
    assert.equal(tenantKey.status, 403);
    const missing = await (await fetch(`${gw.base}/admin/cache/served?tenant=acme`, { headers: admin })).json();
    assert.equal(missing.error.param, 'user');
    const gone = await fetch(`${gw.base}/admin/cache/entries/ce_nope`, { method: 'DELETE', headers: admin });
    assert.equal(gone.status, 404);
    assert.equal((await gone.json()).error.code, 'entry_not_found');
  });
});

describe('cache with tenant scope', () => {
  it('shares answers without personal data inside the tenant, and keeps the others per user', async () => {
    const dir = tempDir();
    const gw = await startGateway({ yaml: cacheConfig(dir, { acmeScope: 'tenant' }) });
    try {
      assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'What are your opening hours?')).cache, 'miss');
      const bob = await ask(gw.base, DEMO_KEYS.acmeService, 'What are your opening hours?', { headers: { 'x-tg-user': 'bob' } });
      assert.equal(bob.cache, 'hit', 'shared inside acme');
      assert.equal((await ask(gw.base, DEMO_KEYS.carol, 'What are your opening hours?')).cache, 'miss', 'never across tenants');
      assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'Where is my order? My email is jane@example.com')).cache, 'miss');
      const bob2 = await ask(gw.base, DEMO_KEYS.acmeService, 'Where is my order? My email is jane@example.com', { headers: { 'x-tg-user': 'bob' } });
      assert.equal(bob2.cache, 'miss', 'personal data stays in its user\'s partition');
    } finally {
      await gw.stop();
    }
  });
});

describe('cache public namespace and per-namespace thresholds', () => {
  it('shares an operator-defined namespace across tenants, written only by its writers, never with personal data', async () => {
    const gw = await startGateway({ yaml: cacheConfig(tempDir(), {
      extra: ', public_namespaces: [{ name: faq, threshold: 0.85, writers: [acme] }]' }).replace('  - id: globex\n    org: demo\n', '  - id: globex\n    org: demo\n    cache_threshold: 0.99\n') });
    try {
      const faq = { 'x-tg-cache-namespace': 'faq' };
      assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'What are the shipping costs to Canada?', { headers: faq })).cache, 'miss');
      assert.equal((await ask(gw.base, DEMO_KEYS.carol, 'What are the shipping costs to Canada?', { headers: faq })).cache, 'hit', 'another tenant reads it');
      assert.equal((await ask(gw.base, DEMO_KEYS.carol, 'What are the shipping costs to Canada?')).cache, 'miss', 'only when asking the namespace');
      // globex is not a writer: its answers stay in its own partitions.
      assert.equal((await ask(gw.base, DEMO_KEYS.carol, 'Do you ship on Sundays?', { headers: faq })).cache, 'miss');
      assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'Do you ship on Sundays?', { headers: faq })).cache, 'miss');
      // Personal data never enters it.
      assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'Ship my order to jane@example.com', { headers: faq })).cache, 'miss');
      assert.equal((await ask(gw.base, DEMO_KEYS.carol, 'Ship my order to jane@example.com', { headers: faq })).cache, 'miss');
      // globex's own namespace threshold (0.99) refuses a paraphrase acme's (0.8) accepts.
      await ask(gw.base, DEMO_KEYS.carol, 'How do I change my billing address?');
      assert.equal((await ask(gw.base, DEMO_KEYS.carol, 'how do I change my billing address please')).cache, 'miss');
      await ask(gw.base, DEMO_KEYS.alice, 'How do I change my billing address?');
      assert.equal((await ask(gw.base, DEMO_KEYS.alice, 'how do I change my billing address please')).cache, 'hit');
      const bad = await ask(gw.base, DEMO_KEYS.alice, 'x', { headers: { 'x-tg-cache-namespace': 'secret' } });
      assert.equal(bad.status, 400);
      const e = JSON.parse(bad.text).error;
      assert.equal(e.param, 'X-TG-Cache-Namespace');
      assert.match(e.message, /Unknown X-TG-Cache-Namespace 'secret' \(defined: faq\)/);
    } finally {
      await gw.stop();
    }
  });
});

describe('cache fleet mode (entries in Redis, every gateway a replica)', () => {
  it('serves on one gateway what another stored, loads entries at start, and purges everywhere', async () => {
    const redis = await startRedis(await freePort());
    const redisCfg = `address: "127.0.0.1:${redis.port}", key_prefix: "c${Date.now()}"`;
    const a = await startGateway({ yaml: cacheConfig(tempDir(), { redis: redisCfg }) });
    const b = await startGateway({ yaml: cacheConfig(tempDir(), { redis: redisCfg }) });
    const live = async (gw, entry) => (await (await fetch(`${gw.base}/admin/cache/entries/${entry}`, { headers: admin })).json()).live;
    try {
      const first = await ask(a.base, DEMO_KEYS.alice, 'Which planet is the largest?');
      assert.equal(first.cache, 'miss');
      const entry = `ce_${first.id}`;
      await waitFor(async () => (await live(b, entry)) === true, 3000, 'gateway b holding a\'s entry');
      const onB = await ask(b.base, DEMO_KEYS.alice, 'Which planet is the largest?');
      assert.equal(onB.cache, 'hit');
      assert.equal(onB.answer, first.answer);
      assert.equal((await ask(b.base, DEMO_KEYS.alice, 'which planet is the largest')).cache, 'hit', 'semantically too: b\'s index holds the vector');
      assert.equal((await ask(b.base, DEMO_KEYS.carol, 'Which planet is the largest?')).cache, 'miss', 'partitions hold across the fleet');
      // A gateway started later loads what Redis holds.
      const c = await startGateway({ yaml: cacheConfig(tempDir(), { redis: redisCfg }) });
      try {
        assert.equal(await live(c, entry), true);
        assert.equal((await ask(c.base, DEMO_KEYS.alice, 'Which planet is the largest?')).cache, 'hit');
        // A purge on b reaches a and c.
        const p = await (await fetch(`${b.base}/admin/cache?tenant=acme&user=alice`, { method: 'DELETE', headers: admin })).json();
        assert.ok(p.purged >= 1);
        for (const gw of [a, c]) await waitFor(async () => (await live(gw, entry)) === false, 3000, 'the purge on every node');
        assert.equal((await ask(c.base, DEMO_KEYS.alice, 'Which planet is the largest?')).cache, 'miss');
      } finally {
        await c.stop();
      }
    } finally {
      await a.stop();
      await b.stop();
      await redis.kill();
    }
  });
});
