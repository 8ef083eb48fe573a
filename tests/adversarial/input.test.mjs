// Adversarial: what a client controls in a request (body fields, headers,
// credentials) is validated, attributed and echoed safely. Each case is a
// defect found by a probe of the landed gateway, or its class.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, rawExchange, waitFor, ADMIN_KEY } from '../e2e/harness.mjs';
import { adversarialConfig, recordingUpstream, post, chatBody, SERVICE_KEY, ALICE_KEY } from './common.mjs';

const decoder = new TextDecoder('utf-8', { fatal: true });

// The body of a raw HTTP response, decoded as strict UTF-8 (throws on invalid bytes).
function rawBody(data) {
  const buf = Buffer.from(data, 'latin1');
  const sep = buf.indexOf('\r\n\r\n');
  return decoder.decode(buf.subarray(sep + 4));
}

describe('client-controlled input', () => {
  let gw, up;
  before(async () => {
    up = await recordingUpstream();
    gw = await startGateway({ yaml: adversarialConfig({
      accessLog: 'stdout',
      models: `  - alias: rec
    deployments: [{ id: rec-a, provider: openai, model: rec-model, base_url: "http://127.0.0.1:${up.port}/v1" }]` }) });
  });
  after(async () => { await gw.stop(); await up.close(); });

  it('reserves n x max_tokens: 128 choices of 2,000 tokens exceed a 240k TPM limit', async () => {
    const one = await post(gw.base, ALICE_KEY, chatBody('hi', { n: 1, max_tokens: 2000 }));
    assert.equal(one.status, 200);
    await one.text();
    const r = await post(gw.base, ALICE_KEY, chatBody('hi', { n: 128, max_tokens: 2000 }));
    const body = await r.json();
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(body.error.code, 'tokens_exceed_limit');
    assert.match(body.error.message, /256\d{3} tokens/);  // 128 x 2,000 + the prompt
  });

  it('reserves n x max_tokens in the rate-limit headers', async () => {
    const r = await post(gw.base, SERVICE_KEY, chatBody('hi', { n: 8, max_tokens: 100 }), { 'x-tg-user': 'n-user' });
    assert.equal(r.status, 200);
    await r.text();
    // user limit 240k tpm: after this request at most 240,000 - 800 - prompt remain
    const remaining = Number(r.headers.get('x-ratelimit-remaining-tokens'));
    assert.ok(remaining <= 240000 - 800, `remaining ${remaining}`);
    assert.ok(remaining > 240000 - 900, `remaining ${remaining}`);
  });

  it('validates best_of against n (completions)', async () => {
    const r = await fetch(`${gw.base}/v1/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${ALICE_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', prompt: 'x', n: 4, best_of: 2 }) });
    const body = await r.json();
    assert.equal(r.status, 400);
    assert.equal(body.error.param, 'best_of');
  });

  it("a user-bound key cannot name another user in the body", async () => {
    const r = await post(gw.base, ALICE_KEY, chatBody('hi', { user: 'bob' }));
    const body = await r.json();
    assert.equal(r.status, 403);
    assert.equal(body.error.code, 'user_mismatch');
    assert.match(body.error.message, /'alice'.*'bob'/);
  });

  for (const [label, user] of [['NUL', 'alice\u0000x'], ['newline', 'alice\nx'], ['ESC', 'a\u001b[31m'], ['space', 'a b'],
    ['129 characters', 'u'.repeat(129)], ['empty-looking unicode', '\u200b']]) {
    it(`rejects a body user with ${label}`, async () => {
      const r = await post(gw.base, SERVICE_KEY, chatBody('hi', { user }));
      const body = await r.json();
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(body.error.param, 'user');
      assert.equal(body.error.code, 'invalid_user');
    });
  }

  it('sends upstream the user the gateway attributed, never a claim it overrode', async () => {
    up.seen.length = 0;
    const r = await fetch(`${gw.base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SERVICE_KEY}`, 'content-type': 'application/json', 'x-tg-user': 'carl',
        'cache-control': 'no-store' },
      body: JSON.stringify({ model: 'rec', messages: [{ role: 'user', content: 'hi' }], user: 'mallory' }) });
    assert.equal(r.status, 200, await r.text());
    assert.equal(up.seen.length, 1);
    assert.equal(up.seen[0].body.user, 'carl');
    // alice's key, her own name in the body: forwarded as is
    const r2 = await fetch(`${gw.base}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${ALICE_KEY}`, 'content-type': 'application/json', 'cache-control': 'no-store' },
      body: JSON.stringify({ model: 'rec', messages: [{ role: 'user', content: 'hi' }], user: 'alice' }) });
    assert.equal(r2.status, 200);
    await r2.text();
    assert.equal(up.seen[1].body.user, 'alice');
  });

  it('forwards a valid traceparent and drops an invalid one', async () => {
    const valid = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const cases = [[valid, valid], ['00-00000000000000000000000000000000-00f067aa0ba902b7-01', undefined],
      ['00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', undefined], ['garbage', undefined],
      [`${valid}-extra`, undefined], ['ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', undefined]];
    for (const [sent, expected] of cases) {
      up.seen.length = 0;
      const r = await fetch(`${gw.base}/v1/chat/completions`, {
        method: 'POST', headers: { authorization: `Bearer ${ALICE_KEY}`, 'content-type': 'application/json', traceparent: sent,
          'cache-control': 'no-store' },
        body: JSON.stringify({ model: 'rec', messages: [{ role: 'user', content: 'hi' }] }) });
      assert.equal(r.status, 200);
      await r.text();
      assert.equal(up.seen[0].headers.traceparent, expected, `sent ${sent}`);
    }
  });

  it('bounds and validates the model name', async () => {
    const long = await post(gw.base, ALICE_KEY, JSON.stringify({ model: 'm'.repeat(100000), messages: [{ role: 'user', content: 'x' }] }));
    const body = await long.json();
    assert.equal(long.status, 400);
    assert.equal(body.error.code, 'string_above_max_length');
    assert.ok(JSON.stringify(body).length < 1000);
    const ctl = await post(gw.base, ALICE_KEY, JSON.stringify({ model: 'chat\u0000', messages: [{ role: 'user', content: 'x' }] }));
    assert.equal(ctl.status, 400);
    assert.equal((await ctl.json()).error.param, 'model');
  });

  it('refuses a prompt longer than the model context before admission, counting no further than the context', async () => {
    const r = await post(gw.base, ALICE_KEY, chatBody('word '.repeat(140000), { max_tokens: 10 }));
    const body = await r.json();
    assert.equal(r.status, 400);
    assert.equal(body.error.code, 'context_length_exceeded');
    assert.match(body.error.message, /131072/);
  });

  it("refuses a prompt over the path's tokens-per-minute ceiling, as an admin set it (counting stops there)", async () => {
    const put = await fetch(`${gw.base}/admin/limits/user:acme/ceil-user`, {
      method: 'PUT', headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tokens_per_min: 20000 }) });
    assert.equal(put.status, 200, await put.text());
    const words = Array.from({ length: 60000 }, (_, i) => `w${i % 5000}`).join(' ');  // ~120k tokens: within the context
    const r = await post(gw.base, SERVICE_KEY, chatBody(words, { max_tokens: 10 }), { 'x-tg-user': 'ceil-user' });
    const body = await r.json();
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(body.error.code, 'tokens_exceed_limit');
    assert.match(body.error.message, /user 'acme\/ceil-user' tokens-per-minute limit \(20000\)/);
  });

  it('echoes invalid UTF-8 and control bytes as printable text, in bounded error bodies', async () => {
    const bad = Buffer.from([0xff, 0xfe, 0x41, 0xc3]);  // obs-text: HTTP lets it through, JSON must not
    const ct = (name) => (name === 'Content-Type' ? '' : 'Content-Type: application/json\r\n');
    const head = (name, value) => Buffer.concat([Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${ct(name)}Authorization: Bearer ${ALICE_KEY}\r\n${name}: `), value,
      Buffer.from(`\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`)]);
    for (const [name, code] of [['X-TG-Priority', 'invalid_header'], ['Content-Type', 'unsupported_media_type']]) {
      const { data } = await rawExchange(gw.port, [head(name, bad)]);
      const text = rawBody(data);  // throws on invalid UTF-8
      const body = JSON.parse(text);
      assert.equal(body.error.code, code);
      assert.match(body.error.message, /\\xFF\\xFEA\\xC3/);
    }
    const path = Buffer.concat([Buffer.from('GET /v1/'), Buffer.from([0xff, 0xfe]), Buffer.from('x'.repeat(5000)),
      Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]);
    const { data } = await rawExchange(gw.port, [path]);
    const text = rawBody(data);
    assert.ok(text.length < 3000, `error body of ${text.length} bytes`);
    assert.equal(JSON.parse(text).error.code, 'unknown_url');
  });

  it('writes only valid UTF-8 of bounded length to the access log', async () => {
    const before = gw.stdout.length;
    const path = Buffer.concat([Buffer.from('GET /v1/'), Buffer.from([0xff, 0xfe]), Buffer.from('y'.repeat(8000)),
      Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]);
    await rawExchange(gw.port, [path]);
    const logged = () => gw.stdout.slice(before).split('\n').filter((l) => l.includes('yyyyyyyy'));
    await waitFor(() => logged().length >= 1, 10000, 'the access-log line');
    const lines = logged();
    assert.ok(lines.length >= 1);
    for (const l of lines) {
      assert.ok(l.length < 2048, `log line of ${l.length} chars`);
      const o = JSON.parse(l);
      assert.match(o.path, /^\/v1\/\\xFF\\xFEy{250}…\(8006 bytes\)$/);
    }
  });
});

describe('credentials', () => {
  let gw;
  before(async () => { gw = await startGateway({ yaml: adversarialConfig() }); });
  after(async () => { await gw.stop(); });

  const admin = (auth) => fetch(`${gw.base}/admin/usage`, { headers: auth === null ? {} : { authorization: auth } });
  // [Authorization header, status on /admin/usage]
  const adminCases = [
    [`Bearer ${ADMIN_KEY}`, 404],  // accepted (the ledger is off in this config: 404 ledger_disabled)
    [`bearer ${ADMIN_KEY}`, 404], [`BEARER   ${ADMIN_KEY}  `, 404],
    [`XXXXXXX${ADMIN_KEY}`, 401], [`Bearer${ADMIN_KEY}`, 401], [`Basic ${ADMIN_KEY}`, 401], [`Token ${ADMIN_KEY}`, 401],
    [`Bearer\t${ADMIN_KEY}`, 401], ['Bearer ', 401], ['Bearer', 401], [`Bearer ${ADMIN_KEY}x`, 401], [null, 401],
    [`Bearer ${ALICE_KEY}`, 403],
  ];
  for (const [auth, status] of adminCases) {
    it(`admin API: Authorization ${JSON.stringify(auth)} -> ${status}`, async () => {
      const r = await admin(auth);
      const body = await r.json();
      assert.equal(r.status, status, JSON.stringify(body));
      if (status === 404) assert.equal(body.error.code, 'ledger_disabled');
    });
  }

  const tenantCases = [
    [{ authorization: `Bearer ${ALICE_KEY}` }, 200], [{ authorization: `bearer ${ALICE_KEY}` }, 200],
    [{ authorization: `XXXXXXX${ALICE_KEY}` }, 401], [{ authorization: `Basic ${ALICE_KEY}` }, 401],
    [{ authorization: `Bearer ${ADMIN_KEY}` }, 401], [{ authorization: '' , 'x-api-key': ALICE_KEY }, 200],
    [{ authorization: 'Bearer nope', 'x-api-key': ALICE_KEY }, 401],  // Authorization wins when both are sent
    [{ authorization: `Bearer ${'k'.repeat(8000)}` }, 401],
  ];
  for (const [headers, status] of tenantCases) {
    it(`inference: ${JSON.stringify(headers).slice(0, 80)} -> ${status}`, async () => {
      const h = { ...headers };
      if (h.authorization === '') delete h.authorization;
      const r = await fetch(`${gw.base}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json', ...h }, body: chatBody('hi') });
      const body = await r.json();
      assert.equal(r.status, status, JSON.stringify(body));
      if (status === 401) {
        assert.equal(body.error.type, 'authentication_error');
        assert.ok(!JSON.stringify(body).includes('k'.repeat(100)), 'the presented key is not echoed');
      }
    });
  }
});

// The Anthropic door's surface: what a client controls in a Messages request.
describe('client-controlled input on the Anthropic door (/v1/messages)', () => {
  let gw, up;
  before(async () => {
    up = await recordingUpstream();
    gw = await startGateway({ yaml: adversarialConfig({
      models: `  - alias: rec
    deployments: [{ id: rec-a, provider: openai, model: rec-model, base_url: "http://127.0.0.1:${up.port}/v1" }]` }) });
  });
  after(async () => { await gw.stop(); await up.close(); });
  const messages = (body, headers = {}) => fetch(`${gw.base}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': ALICE_KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const ask = (extra = {}) => ({ model: 'rec', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }], ...extra });

  it('refuses every unbounded count with a 400 naming it, before anything reaches the upstream', async () => {
    const before = up.seen.length;
    const cases = [
      [{ stop_sequences: Array.from({ length: 17 }, (_, i) => `s${i}`) }, /stop_sequences/],
      [{ stop_sequences: ['x'.repeat(257)] }, /stop_sequences/],
      [{ tools: Array.from({ length: 129 }, (_, i) => ({ name: `t${i}`, input_schema: { type: 'object' } })) }, /tools/],
      [{ messages: Array.from({ length: 10001 }, () => ({ role: 'user', content: 'x' })) }, /messages/],
      [{ metadata: { user_id: 'u'.repeat(300) } }, /metadata\.user_id|user/],
      [{ model: 'm'.repeat(300) }, /model/],
      [{ max_tokens: 1e12 }, /max_tokens/],
      [{ top_k: -1 }, /top_k/],
      [{ sneaky: true }, /sneaky/],
    ];
    for (const [extra, field] of cases) {
      const r = await messages(ask(extra));
      const body = await r.json();
      assert.equal(r.status, 400, JSON.stringify(extra).slice(0, 80));
      assert.equal(body.type, 'error');
      assert.equal(body.error.type, 'invalid_request_error');
      assert.match(body.error.message, field);
      assert.ok(body.error.message.length <= 2200, `message of ${body.error.message.length} bytes`);
    }
    // 40 levels of nested content: refused by the parser's depth bound.
    let deep = '"x"';
    for (let i = 0; i < 40; i++) deep = `[${deep}]`;
    const d = await messages(`{"model":"rec","max_tokens":4,"messages":[{"role":"user","content":${deep}}]}`);
    assert.equal(d.status, 400);
    assert.equal(up.seen.length, before, 'nothing refused reached the upstream');
  });

  it('echoes hostile bytes only printable and bounded, in Anthropic\'s shape', async () => {
    const payload = Buffer.from('{"model":"rec","max_tokens":4,"messages":[],"\xff\x01\x1b[31m":1}', 'latin1');
    const head = `POST /v1/messages HTTP/1.1\r\nHost: t\r\nx-api-key: ${ALICE_KEY}\r\ncontent-type: application/json\r\n` +
      `content-length: ${payload.length}\r\n\r\n`;
    const r = await rawExchange(gw.port, [Buffer.concat([Buffer.from(head), payload])]);
    assert.match(r.data, /^HTTP\/1\.1 400 /);
    const body = JSON.parse(rawBody(r.data));
    assert.equal(body.type, 'error');
    assert.doesNotMatch(body.error.message, /[\x00-\x08\x0b-\x1f]/);
  });

  it('a user-bound key cannot claim another end user through metadata.user_id; the upstream sees the attributed one', async () => {
    const r = await messages(ask({ metadata: { user_id: 'bob' } }));
    const body = await r.json();
    assert.equal(r.status, 403);
    assert.equal(body.error.type, 'permission_error');
    const ok = await messages(ask({ metadata: { user_id: 'svc-user' } }), { 'x-api-key': SERVICE_KEY });
    assert.equal(ok.status, 200, await ok.text());
    assert.equal(up.seen.at(-1).body.user, 'svc-user');
  });

  it('an invalid or stolen-looking key is 401 in Anthropic\'s shape, for x-api-key and Bearer alike', async () => {
    for (const headers of [{ 'x-api-key': 'tg-nope' }, { 'x-api-key': '', authorization: 'Bearer tg-nope' },
      { 'x-api-key': '', authorization: 'Basic dXNlcjpwYXNz' }]) {
      const r = await messages(ask(), headers);
      const body = await r.json();
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.equal(body.error.type, 'authentication_error');
      assert.ok(r.headers.get('request-id'));
    }
  });
});
