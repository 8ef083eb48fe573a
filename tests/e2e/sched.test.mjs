// Fair admission over the real binary: a saturated deployment queues in VTC
// order (and in arrival order with policy fcfs), batch yields to interactive,
// the queue deadline sheds with 503 queue_timeout, a client that leaves the
// queue leaves nothing behind, and the shared batching sim engine streams
// correct usage.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, chat, limitsConfig, metric, waitFor, DEMO_KEYS } from './harness.mjs';

// One model whose deployment takes one request at a time; 20 ms per token.
function poolConfig({ policy = 'fair', timeoutMs = 30000, engine = 'engine: fixed, decode_ms_per_token: 20, ttft_base_ms: 1', pool = 'pool: { max_seqs: 1 }' } = {}) {
  return limitsConfig().replace(/sim: \{ engine: fixed, decode_ms_per_token: \d+, ttft_base_ms: 1 \} \}/,
    `sim: { ${engine} }${pool ? `, ${pool}` : ''} }`) +
    `scheduling: { policy: ${policy}, interactive_timeout_ms: ${timeoutMs}, batch_aging_s: 60 }\n`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Sends a request and resolves with the time its whole answer arrived.
async function timed(base, key, opts, order, label) {
  const r = await chat(base, key, opts);
  await r.text();
  order.push(label);
  return r.status;
}

describe('fair admission', () => {
  for (const policy of ['fair', 'fcfs']) {
    it(`serves a saturated deployment in ${policy} order`, async () => {
      const gw = await startGateway({ yaml: poolConfig({ policy }) });
      const order = [];
      // globex fills the pool (one 40-token stream, 0.8 s) and queues three more.
      const heavy = [timed(gw.base, DEMO_KEYS.carol, { maxTokens: 40 }, order, 'h1')];
      await waitFor(async () => (await metric(gw.base, 'tg_pool_inflight_requests')) === 1, 2000, 'h1 admitted');
      for (let i = 2; i <= 4; i++) {
        heavy.push(timed(gw.base, DEMO_KEYS.carol, { maxTokens: 10 }, order, `h${i}`));
        await sleep(20);
      }
      await sleep(50);
      const light = timed(gw.base, DEMO_KEYS.alice, { maxTokens: 5 }, order, 'light');
      assert.ok((await Promise.all([...heavy, light])).every((s) => s === 200));
      if (policy === 'fair') assert.deepEqual(order, ['h1', 'light', 'h2', 'h3', 'h4'], 'acme has had no service: it goes next');
      else assert.deepEqual(order, ['h1', 'h2', 'h3', 'h4', 'light'], 'fcfs: arrival order');
      const text = await (await fetch(`${gw.base}/metrics`)).text();
      assert.match(text, /tg_queue_waited_total\{deployment="chat-sim",tenant="acme"\} 1/);
      assert.match(text, /tg_queue_admitted_total\{deployment="chat-sim",tenant="globex"\} 4/);
      assert.equal(await metric(gw.base, 'tg_pool_inflight_requests'), 0);
      await gw.stop();
    });
  }

  it('lets interactive work pass waiting batch work, and names a bad X-TG-Priority', async () => {
    const gw = await startGateway({ yaml: poolConfig() });
    const order = [];
    const first = timed(gw.base, DEMO_KEYS.carol, { maxTokens: 30 }, order, 'running');
    await waitFor(async () => (await metric(gw.base, 'tg_pool_inflight_requests')) === 1, 2000, 'admitted');
    const batch = timed(gw.base, DEMO_KEYS.alice, { maxTokens: 3, headers: { 'x-tg-priority': 'batch' } }, order, 'batch');
    await sleep(50);
    const interactive = timed(gw.base, DEMO_KEYS.carol, { maxTokens: 3, headers: { 'x-tg-priority': 'interactive' } }, order, 'interactive');
    await Promise.all([first, batch, interactive]);
    assert.deepEqual(order, ['running', 'interactive', 'batch']);
    const bad = await chat(gw.base, DEMO_KEYS.alice, { headers: { 'x-tg-priority': 'urgent' } });
    assert.equal(bad.status, 400);
    const e = (await bad.json()).error;
    assert.equal(e.code, 'invalid_header');
    assert.equal(e.param, 'X-TG-Priority');
    assert.match(e.message, /'urgent': use interactive \(the default\) or batch/);
    await gw.stop();
  });

  it('sheds a request still waiting at its deadline with 503 queue_timeout and Retry-After', async () => {
    const gw = await startGateway({ yaml: poolConfig({ timeoutMs: 300 }) });
    const running = chat(gw.base, DEMO_KEYS.carol, { maxTokens: 60 });  // 1.2 s
    await waitFor(async () => (await metric(gw.base, 'tg_pool_inflight_requests')) === 1, 2000, 'admitted');
    const t0 = Date.now();
    const res = await chat(gw.base, DEMO_KEYS.alice);
    const waited = Date.now() - t0;
    assert.equal(res.status, 503);
    assert.ok(waited >= 280 && waited < 1000, `shed after ${waited} ms`);
    assert.ok(Number(res.headers.get('retry-after')) >= 1);
    const e = (await res.json()).error;
    assert.equal(e.code, 'queue_timeout');
    assert.equal(e.type, 'server_error');
    assert.match(e.message, /Deployment 'chat-sim' is saturated: .*interactive queue deadline/);
    assert.equal((await running).status, 200);
    const text = await (await fetch(`${gw.base}/metrics`)).text();
    assert.match(text, /tg_queue_timeouts_total\{deployment="chat-sim",tenant="acme"\} 1/);
    assert.match(text, /tg_queue_depth\{deployment="chat-sim",tenant="acme"\} 0/);
    await gw.stop();
  });

  it('forgets a queued request whose client leaves, and frees every slot after aborted streams', async () => {
    const gw = await startGateway({ yaml: poolConfig() });
    const running = chat(gw.base, DEMO_KEYS.carol, { maxTokens: 40 });
    await waitFor(async () => (await metric(gw.base, 'tg_pool_inflight_requests')) === 1, 2000, 'admitted');
    const ctls = [];
    const gone = [];
    for (let i = 0; i < 20; i++) {
      const ctl = new AbortController();
      ctls.push(ctl);
      gone.push(chat(gw.base, DEMO_KEYS.alice, { signal: ctl.signal }).catch(() => 'aborted'));
    }
    await waitFor(async () => (await metric(gw.base, 'tg_queue_depth')) === 20, 2000, '20 queued');
    for (const c of ctls) c.abort();
    await Promise.all(gone);
    await waitFor(async () => (await metric(gw.base, 'tg_queue_depth')) === 0, 2000, 'the queue emptied');
    assert.equal((await running).status, 200);
    // Streams aborted while admitted release their slot too.
    for (let i = 0; i < 30; i++) {
      const ctl = new AbortController();
      const r = await chat(gw.base, DEMO_KEYS.alice, { maxTokens: 100, stream: true, signal: ctl.signal });
      const reader = r.body.getReader();
      await reader.read();
      ctl.abort();
    }
    await waitFor(async () => (await metric(gw.base, 'tg_pool_inflight_requests')) === 0, 3000, 'no slot held');
    assert.equal(await metric(gw.base, 'tg_pool_inflight_tokens'), 0);
    const t0 = Date.now();
    assert.equal((await chat(gw.base, DEMO_KEYS.alice)).status, 200);
    assert.ok(Date.now() - t0 < 500, 'admitted at once');
    await gw.stop();
  });

  it('streams from the shared batching engine with correct usage, slower when it is shared', async () => {
    const gw = await startGateway({ yaml: poolConfig({ engine: 'engine: llama3-8b-h100', pool: '' }) });
    try {
      const one = async () => {
        const t0 = Date.now();
        const r = await fetch(`${gw.base}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${DEMO_KEYS.alice}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'word '.repeat(1500) }], max_tokens: 16,
            stream: true, stream_options: { include_usage: true } }),
        });
        const text = await r.text();
        const events = text.split('\n\n').filter((e) => e.startsWith('data: {'));
        const usage = JSON.parse(events.at(-1).slice(6)).usage;
        return { usage, content: events.filter((e) => /"content":"[^"]/.test(e)).length, ms: Date.now() - t0 };
      };
      const alone = await one();
      assert.equal(alone.usage.completion_tokens, 16);
      assert.ok(alone.usage.prompt_tokens > 1500);
      assert.equal(alone.content, 16);
      // Eight at once share the engine's steps (and its prefill budget): each takes longer than one alone.
      const many = await Promise.all(Array.from({ length: 8 }, one));
      for (const m of many) assert.equal(m.usage.completion_tokens, 16);
      const slowest = Math.max(...many.map((m) => m.ms));
      assert.ok(slowest > 1.3 * alone.ms, `alone ${alone.ms} ms, slowest of eight ${slowest} ms`);
    } finally {
      await gw.stop();
    }
  });
});
