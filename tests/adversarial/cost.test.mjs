// Adversarial: a request refused before admission costs the server little,
// and a client whose requests keep being refused is refused unread (the
// refusal budget, limits/refusal_budget.h), while everyone else, and
// /healthz, keeps being served.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from '../e2e/harness.mjs';
import { adversarialConfig, cpuSeconds, drive, post, chatBody, SERVICE_KEY, ALICE_KEY } from './common.mjs';

const BOB_SHA = '3679eb031292f8ba1ca2549bd7adc359f866c9862364e3ecee56195ef179f6fb';  // tg-demo-acme-bob
const BOB_KEY = 'tg-demo-acme-bob';
const withBob = (yaml) => yaml.replace('    users: [alice]\n    keys:\n', `    users: [alice, bob]\n    keys:\n      - { id: acme-bob, user: bob, sha256: ${BOB_SHA} }\n`);

describe('CPU per refusal before admission', () => {
  let gw;
  before(async () => { gw = await startGateway({ yaml: adversarialConfig({ server: 'refusal_burst: 0' }) }); });
  after(async () => { await gw.stop(); });

  it('costs under 250 us of gateway CPU, whatever the kind of refusal', async () => {
    const kinds = [
      () => post(gw.base, ALICE_KEY, '{"model": "chat", "messages": ['),                         // invalid JSON
      () => post(gw.base, ALICE_KEY, chatBody('x').replace('"chat"', '"nope"')),                   // unknown model
      () => post(gw.base, ALICE_KEY, chatBody('x'), { 'x-tg-priority': 'urgent' }),                // bad header
      () => post(gw.base, 'tg-wrong-key', chatBody('x')),                                           // unknown key
      () => post(gw.base, ALICE_KEY, chatBody('x'), { 'content-type': 'text/plain' }),             // 415
      () => fetch(`${gw.base}/v1/nothing-here`),                                                    // 404 path
      () => post(gw.base, ALICE_KEY, chatBody('x', { temperature: 7 })),                           // out of range
    ];
    const n = 3500;
    const cpu0 = cpuSeconds(gw.child.pid);
    const statuses = await drive(n, 8, (i) => kinds[i % kinds.length]());
    const perRefusal = (cpuSeconds(gw.child.pid) - cpu0) / n;
    console.log(`# ${n} refusals: ${JSON.stringify(statuses)}, ${(perRefusal * 1e6).toFixed(0)} us of gateway CPU each`);
    assert.equal(statuses[200], undefined);
    assert.ok(perRefusal < 250e-6, `${(perRefusal * 1e6).toFixed(0)} us per refusal`);
  });
});

describe('the refusal budget', () => {
  let gw;
  before(async () => {
    gw = await startGateway({ yaml: withBob(adversarialConfig({ server: 'refusal_burst: 100, refusal_per_s: 1', userLimits: '' })) });
  });
  after(async () => { await gw.stop(); });

  it('refuses unread a key whose huge prompts keep being refused; /healthz and other keys stay fast', async () => {
    const huge = chatBody('a'.repeat(3_000_000), { max_tokens: 10 });  // one 3 MB word: the tokenizer's worst case
    let stop = false;
    const health = [];
    const probe = (async () => {
      while (!stop) {
        const t = process.hrtime.bigint();
        const r = await fetch(`${gw.base}/healthz`);
        await r.text();
        health.push(Number(process.hrtime.bigint() - t) / 1e6);
        await new Promise((res) => setTimeout(res, 10));
      }
    })();
    const cpu0 = cpuSeconds(gw.child.pid);
    const codes = {};
    await drive(40, 2, async () => {
      const r = await post(gw.base, ALICE_KEY, huge);
      const body = await r.clone().json();
      codes[body.error?.code ?? r.status] = (codes[body.error?.code ?? r.status] ?? 0) + 1;
      return r;
    });
    const cpu = cpuSeconds(gw.child.pid) - cpu0;
    stop = true;
    await probe;
    health.sort((a, b) => a - b);
    const p99 = health[Math.floor(health.length * 0.99)];
    console.log(`# 40 x 3 MB prompts: ${JSON.stringify(codes)}, gateway CPU ${cpu.toFixed(2)} s, ` +
      `/healthz p50 ${health[Math.floor(health.length / 2)].toFixed(1)} ms p99 ${p99.toFixed(1)} ms over ${health.length}`);
    assert.ok(codes.too_many_refusals >= 25, JSON.stringify(codes));
    assert.ok((codes.context_length_exceeded ?? 0) >= 1, JSON.stringify(codes));
    assert.ok(cpu < 15, `gateway CPU ${cpu} s`);
    // (/healthz latency is printed, not asserted: tools/adversarial-bench measures it on a quiet machine)
    const refusedUnread = await post(gw.base, ALICE_KEY, chatBody('a small, valid request'));
    const body = await refusedUnread.json();
    assert.equal(refusedUnread.status, 429);
    assert.equal(body.error.code, 'too_many_refusals');
    assert.ok(Number(refusedUnread.headers.get('retry-after')) >= 1);
    assert.match(body.error.message, /key 'acme-alice'/);
    const other = await post(gw.base, BOB_KEY, chatBody('bob is not affected'));
    assert.equal(other.status, 200, await other.text());
  });

  it('refuses unread an address that keeps presenting unknown keys, not the valid keys behind it', async () => {
    const statuses = await drive(300, 4, () => post(gw.base, 'tg-guess-' + Math.random(), chatBody('x')));
    assert.ok(statuses[401] >= 100, JSON.stringify(statuses));
    assert.ok(statuses[429] >= 50, JSON.stringify(statuses));
    const valid = await post(gw.base, SERVICE_KEY, chatBody('a valid key from the same address'), { 'x-tg-user': 'zed' });
    assert.equal(valid.status, 200, await valid.text());
  });
});
