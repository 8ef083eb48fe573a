// tenantgate end to end in front of the built-in sim upstream: the client
// suite, then the HTTP edge (timeouts, limits, errors), upstream failures,
// TLS upstreams, the CLI and graceful drain.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startGateway, runCli, metric, rawExchange, tempDir, waitFor, DEMO_KEYS } from './harness.mjs';
import { defineClientSuite } from './client-suite.mjs';

const ALICE = DEMO_KEYS.alice;

defineClientSuite('sim (embedded default config)', async () => {
  const gw = await startGateway();
  return { base: gw.base, key: ALICE, chatModel: 'sim-chat', embedModel: 'sim-embed', teardown: gw.stop };
});

// A config with short timeouts and a slow sim, for the edge cases.
function edgeConfig({ extraModels = '', server = '' } = {}) {
  return `
server:
  header_timeout_ms: 400
  body_timeout_ms: 400
  idle_timeout_ms: 600
  drain_timeout_ms: 5000
  max_body_bytes: 65536
  access_log: stdout
${server}
orgs: [{ id: o1 }]
models:
  - alias: slow
    deployments:
      - { id: slow-sim, provider: sim, sim: { engine: fixed, decode_ms_per_token: 50, ttft_base_ms: 10 } }
${extraModels}
tenants:
  - id: acme
    org: o1
    users: [alice]
    keys:
      - { id: k-alice, user: alice, sha256: ee710a59742613919631058bec5f5d41996ed75d2d456bc33438591e24f58a54 }
  - id: globex
    org: o1
    users: [carol]
    models: [slow]
    keys:
      - { id: k-carol, user: carol, sha256: c4c746af8a9f76e72d9f32cda358105d59855e7da7b6526ba74e5905d386c0ef }
      - { id: k-svc, sha256: 3c16ac312d08ff1e8a10f5bd5638b29a7d5ca21d19630167437967b713659c89 }
`;
}

function post(base, path, body, headers = {}) {
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ALICE}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

describe('HTTP edge', () => {
  let gw;
  before(async () => { gw = await startGateway({ yaml: edgeConfig() }); });
  after(async () => { await gw.stop(); });

  it('relays stream chunks as they are produced, not buffered', async () => {
    const r = await post(gw.base, '/v1/chat/completions', { model: 'slow', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10, stream: true });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/event-stream/);
    const times = [];
    const reader = r.body.getReader();
    const t0 = Date.now();
    for (;;) { const { done } = await reader.read(); if (done) break; times.push(Date.now() - t0); }
    // 10 tokens 50 ms apart: the first arrives ~450 ms before the last.
    assert.ok(times.length >= 5, `${times.length} reads`);
    assert.ok(times.at(-1) - times[0] >= 300, `arrival spread ${times}`);
  });

  it('names the offending field for wrong types and values', async () => {
    const cases = [
      [{ model: 'slow', messages: 'hi' }, 'messages', 'invalid_type'],
      [{ model: 'slow', messages: [] }, 'messages', 'empty_array'],
      [{ model: 'slow', messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role', 'invalid_value'],
      [{ model: 'slow', messages: [{ role: 'user' }] }, 'messages[0].content', 'missing_required_parameter'],
      [{ model: 42, messages: [{ role: 'user', content: 'x' }] }, 'model', 'invalid_type'],
      [{ messages: [{ role: 'user', content: 'x' }] }, 'model', 'missing_required_parameter'],
      [{ model: 'slow', messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }, 'max_tokens', 'invalid_value'],
      [{ model: 'slow', messages: [{ role: 'user', content: 'x' }], max_tokens: 1.5 }, 'max_tokens', 'invalid_type'],
      [{ model: 'slow', messages: [{ role: 'user', content: 'x' }], temperature: 3 }, 'temperature', 'invalid_value'],
      [{ model: 'slow', messages: [{ role: 'user', content: 'x' }], stream: 'yes' }, 'stream', 'invalid_type'],
      [{ model: 'slow', messages: [{ role: 'user', content: 'x' }], stream_options: { include_usage: true } }, 'stream_options', 'invalid_value'],
    ];
    for (const [body, param, code] of cases) {
      const r = await post(gw.base, '/v1/chat/completions', body);
      const j = await r.json();
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(j.error.param, param, JSON.stringify(j));
      assert.equal(j.error.code, code, JSON.stringify(j));
      assert.equal(j.error.type, 'invalid_request_error');
    }
    const e = await post(gw.base, '/v1/embeddings', { model: 'slow', input: 'x', encoding_format: 'hex' });
    assert.equal(e.status, 400);
    assert.equal((await e.json()).error.param, 'encoding_format');
    const nonObject = await post(gw.base, '/v1/chat/completions', '[1,2]');
    assert.equal((await nonObject.json()).error.code, 'invalid_json');
  });

  it('requires application/json', async () => {
    const r = await fetch(`${gw.base}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${ALICE}` }, body: '{}' });
    assert.equal(r.status, 415);
    const j = await r.json();
    assert.equal(j.error.code, 'unsupported_media_type');
  });

  it('rejects missing, malformed and unknown keys with 401', async () => {
    const none = await fetch(`${gw.base}/v1/models`);
    assert.equal(none.status, 401);
    assert.equal((await none.json()).error.code, 'missing_api_key');
    const basic = await fetch(`${gw.base}/v1/models`, { headers: { authorization: 'Basic abc' } });
    assert.equal((await basic.json()).error.code, 'invalid_authorization_header');
    const anthropic = await fetch(`${gw.base}/v1/models`, { headers: { 'x-api-key': ALICE } });
    assert.equal(anthropic.status, 200);
  });

  it('hides models outside a tenant allow-list, as if they did not exist', async () => {
    const carol = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: DEMO_KEYS.carol, maxRetries: 0 });
    const ids = (await carol.models.list()).data.map((m) => m.id);
    assert.deepEqual(ids, ['slow']);
  });

  it('binds user keys to their user; tenant keys take X-TG-User', async () => {
    const body = { model: 'slow', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 };
    const mismatch = await post(gw.base, '/v1/chat/completions', body, { 'x-tg-user': 'mallory' });
    assert.equal(mismatch.status, 403);
    assert.equal((await mismatch.json()).error.code, 'user_mismatch');
    const svc = await post(gw.base, '/v1/chat/completions', body, { authorization: `Bearer ${'tg-demo-globex-dave'}`, 'x-tg-user': 'end-user-7' });
    assert.equal(svc.status, 200);
    const bad = await post(gw.base, '/v1/chat/completions', body, { authorization: `Bearer ${'tg-demo-globex-dave'}`, 'x-tg-user': 'a b' });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.param, 'X-TG-User');
    await waitFor(() => gw.stdout.includes('"user":"end-user-7"'), 2000, 'access log with end user');
  });

  it('answers unknown URLs with 404 and wrong methods with 405', async () => {
    const r = await fetch(`${gw.base}/v1/nope`, { headers: { authorization: `Bearer ${ALICE}` } });
    assert.equal(r.status, 404);
    assert.equal((await r.json()).error.code, 'unknown_url');
    const m = await fetch(`${gw.base}/v1/chat/completions`, { headers: { authorization: `Bearer ${ALICE}` } });
    assert.equal(m.status, 405);
    assert.equal(m.headers.get('allow'), 'POST');
  });

  it('closes a connection whose headers stall (slowloris) at the header timeout', async () => {
    const before = await metric(gw.base, 'tg_client_timeouts_total');
    const r = await rawExchange(gw.port, ['POST /v1/chat/completions HTTP/1.1\r\n', 100, 'Host: x\r\n', 200, 'X-A: 1\r\n', 200, 'X-B: 2\r\n', 2000, 'X-C: 3\r\n'], { timeoutMs: 3000 });
    assert.equal(r.why, 'closed');
    assert.ok(r.ms >= 350 && r.ms < 1500, `closed after ${r.ms} ms`);
    assert.equal(await metric(gw.base, 'tg_client_timeouts_total'), before + 1);
  });

  it('closes a connection whose body stalls at the body timeout, and logs a 408', async () => {
    const before = await metric(gw.base, 'tg_client_timeouts_total');
    const r = await rawExchange(gw.port, [
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ALICE}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":`,
    ], { timeoutMs: 3000 });
    assert.equal(r.why, 'closed');
    assert.ok(r.ms >= 350 && r.ms < 1500, `closed after ${r.ms} ms`);
    assert.equal(await metric(gw.base, 'tg_client_timeouts_total'), before + 1);
    await waitFor(() => /"status":408[^\n]*"error_code":"body_timeout"/.test(gw.stdout), 2000, '408 in the access log');
  });

  it('closes idle keep-alive connections at the idle timeout', async () => {
    const r = await rawExchange(gw.port, ['GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'], { timeoutMs: 3000 });
    assert.match(r.data, /^HTTP\/1\.1 200/);
    assert.equal(r.why, 'closed');
    assert.ok(r.ms >= 500 && r.ms < 2000, `idle close after ${r.ms} ms`);
  });

  it('answers 413 from Content-Length alone and for chunked bodies over the limit', async () => {
    const big = await rawExchange(gw.port, [
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ALICE}\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n`,
    ]);
    assert.match(big.data, /^HTTP\/1\.1 413/);
    const chunk = 'x'.repeat(40000);
    const chunked = await rawExchange(gw.port, [
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ALICE}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
      `${chunk.length.toString(16)}\r\n${chunk}\r\n`, `${chunk.length.toString(16)}\r\n${chunk}\r\n`, '0\r\n\r\n',
    ]);
    assert.match(chunked.data, /^HTTP\/1\.1 413/);
  });

  it('answers garbage with 400 and keeps serving', async () => {
    const r = await rawExchange(gw.port, ['NOT HTTP AT ALL\r\n\r\n']);
    assert.match(r.data, /^HTTP\/1\.1 400/);
    assert.equal((await fetch(`${gw.base}/healthz`)).status, 200);
  });

  it('survives a barrage of malformed requests and stays healthy', async () => {
    // Deterministic pseudo-random garbage: broken request lines, bogus
    // lengths, binary bodies, invalid JSON, wrong types. Every connection must
    // end (answered or closed) and the gateway must still serve.
    let seed = 12345;
    const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const bytes = (n) => Buffer.from(Array.from({ length: n }, () => rnd(256)));
    const jsonish = ['{', '{"model":', '{"model":"slow","messages":[{"role":"user","content":', '[[[[', '{"a":1e99999}',
      '{"model":"slow","messages":[{"role":"user","content":"\\ud800"}]}', '"\u0000"', 'null', '{"model":"slow","messages":[{"role":"user","content":[{"type":"text"}]}]}'];
    const reqs = [];
    for (let i = 0; i < 120; i++) {
      const kind = rnd(4);
      let payload;
      if (kind === 0) payload = bytes(1 + rnd(200));
      else if (kind === 1) payload = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${rnd(3) === 0 ? '-5' : 'abc'}\r\n\r\n`;
      else {
        const body = kind === 2 ? jsonish[rnd(jsonish.length)] : bytes(rnd(64)).toString('latin1');
        payload = `POST /v1/${['chat/completions', 'completions', 'embeddings'][rnd(3)]} HTTP/1.1\r\nHost: x\r\n` +
          `Authorization: Bearer ${ALICE}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
      }
      reqs.push(rawExchange(gw.port, [payload], { timeoutMs: 3000 }));
    }
    const results = await Promise.all(reqs);
    for (const r of results) {
      assert.notEqual(r.why, 'timeout', 'a malformed request hung');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(r.data);
      if (m) assert.ok(Number(m[1]) < 500, r.data.slice(0, 200));  // never a server error
    }
    assert.equal((await fetch(`${gw.base}/healthz`)).status, 200);
    const ok = await post(gw.base, '/v1/chat/completions', { model: 'slow', messages: [{ role: 'user', content: 'still here?' }], max_tokens: 1 });
    assert.equal(ok.status, 200);
  });

  it('exports Prometheus metrics by tenant, model and status', async () => {
    const text = await (await fetch(`${gw.base}/metrics`)).text();
    assert.match(text, /# TYPE tg_requests_total counter/);
    assert.match(text, /tg_requests_total\{tenant="acme",model="slow",endpoint="chat.completions",status="200"\} \d+/);
    assert.match(text, /tg_request_duration_seconds_bucket\{tenant="acme",model="slow",le="\+Inf"\} \d+/);
    assert.match(text, /tg_time_to_first_token_seconds_count\{tenant="acme",model="slow"\} \d+/);
    assert.match(text, /tg_tokens_total\{tenant="acme",model="slow",kind="completion"\} \d+/);
  });

  it('writes one JSON access-log line per request', async () => {
    const r = await post(gw.base, '/v1/chat/completions', { model: 'slow', messages: [{ role: 'user', content: 'log me' }], max_tokens: 2 });
    const id = r.headers.get('x-request-id');
    await r.json();
    await waitFor(() => gw.stdout.includes(id), 2000, 'access log line');
    const lines = gw.stdout.split('\n').filter((l) => l.includes(id));
    assert.equal(lines.length, 1);
    const rec = JSON.parse(lines[0]);
    assert.equal(rec.status, 200);
    assert.equal(rec.tenant, 'acme');
    assert.equal(rec.user, 'alice');
    assert.equal(rec.key_id, 'k-alice');
    assert.equal(rec.model, 'slow');
    assert.equal(rec.deployment, 'slow-sim');
    assert.equal(rec.completion_tokens, 2);
    assert.ok(rec.duration_us > 0);
  });
});

// A local OpenAI-compatible peer for upstream failure modes.
function startPeer(handler, tls = null) {
  return new Promise((resolve) => {
    const conns = { count: 0 };
    const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
    server.on('connection', () => { conns.count += 1; });
    server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port, conns }));
  });
}

const CANNED = JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'peer', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } });

describe('upstreams', () => {
  let peer, silent, tlsPeer, gw, dir, hung = [];
  before(async () => {
    dir = tempDir();
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
    const seen = [];
    peer = await startPeer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        seen.push({ headers: req.headers, body: JSON.parse(body) });
        const b = JSON.parse(body);
        if (b.messages?.[0]?.content === 'fail-401') { res.writeHead(401, { 'content-type': 'application/json' }); return res.end('{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}'); }
        if (b.messages?.[0]?.content === 'fail-400') { res.writeHead(400, { 'content-type': 'application/json' }); return res.end('{"error":{"message":"context too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}'); }
        if (b.messages?.[0]?.content === 'fail-500') { res.writeHead(500, { 'content-type': 'text/plain' }); return res.end('boom'); }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(CANNED);
      });
    });
    peer.seen = seen;
    silent = await startPeer((req) => { hung.push(req); });  // accepts, never answers
    tlsPeer = await startPeer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(CANNED); }); },
      { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) });
    const models = `
  - alias: peer
    deployments: [{ id: peer-a, provider: openai, model: peer-model, base_url: "http://127.0.0.1:${peer.port}/v1", api_key_env: TG_TEST_UPSTREAM_KEY }]
  - alias: down
    deployments: [{ id: down-a, provider: openai, model: m, base_url: "http://127.0.0.1:1/v1", connect_timeout_ms: 500 }]
  - alias: silent
    deployments: [{ id: silent-a, provider: openai, model: m, base_url: "http://127.0.0.1:${silent.port}/v1", read_timeout_ms: 300 }]
  - alias: tls-ok
    deployments: [{ id: tls-a, provider: openai, model: m, base_url: "https://localhost:${tlsPeer.port}/v1", tls_ca_file: "${join(dir, 'cert.pem')}" }]
  - alias: tls-untrusted
    deployments: [{ id: tls-b, provider: openai, model: m, base_url: "https://localhost:${tlsPeer.port}/v1" }]`;
    gw = await startGateway({ yaml: edgeConfig({ extraModels: models }), env: { TG_TEST_UPSTREAM_KEY: 'sk-upstream-secret' } });
  });
  after(async () => {
    await gw.stop();
    for (const r of hung) r.socket.destroy();
    for (const p of [peer, silent, tlsPeer]) p.server.close();
  });

  const chat = (model, content = 'hi', extra = {}) => post(gw.base, '/v1/chat/completions', { model, messages: [{ role: 'user', content }], ...extra });

  it('forwards with the deployment model, the upstream key and trace context, over one pooled connection', async () => {
    for (let i = 0; i < 20; i++) {
      const r = await chat('peer', 'hi', { max_tokens: 3 });
      assert.equal(r.status, 200);
      assert.equal((await r.json()).choices[0].message.content, 'ok');
    }
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await (await chat('peer', 'hi', {})).json();
    await (await post(gw.base, '/v1/chat/completions', { model: 'peer', messages: [{ role: 'user', content: 'hi' }] }, { traceparent: tp })).json();
    const last = peer.seen.at(-1);
    assert.equal(last.body.model, 'peer-model');
    assert.equal(last.headers.authorization, 'Bearer sk-upstream-secret');
    assert.equal(last.headers.traceparent, tp);
    assert.match(last.headers['x-request-id'], /^req_/);
    assert.ok(peer.conns.count <= 2, `${peer.conns.count} upstream connections for 22 requests`);
  });

  it('passes upstream client errors through and hides upstream auth failures', async () => {
    const e400 = await chat('peer', 'fail-400');
    assert.equal(e400.status, 400);
    assert.equal((await e400.json()).error.code, 'context_length_exceeded');
    const e401 = await chat('peer', 'fail-401');
    assert.equal(e401.status, 502);
    assert.equal((await e401.json()).error.code, 'upstream_auth_error');
    const e500 = await chat('peer', 'fail-500');
    assert.equal(e500.status, 502);
    const j = await e500.json();
    assert.equal(j.error.code, 'upstream_http_error');
    assert.match(j.error.message, /peer-a.*500.*boom/);
  });

  it('answers 502 for an unreachable upstream and 504 for a silent one', async () => {
    const down = await chat('down');
    assert.equal(down.status, 502);
    const dj = await down.json();
    assert.equal(dj.error.code, 'upstream_unavailable');
    assert.match(dj.error.message, /down-a/);
    const t0 = Date.now();
    const silentR = await chat('silent');
    assert.equal(silentR.status, 504);
    assert.equal((await silentR.json()).error.code, 'upstream_timeout');
    assert.ok(Date.now() - t0 < 2000);
    const text = await (await fetch(`${gw.base}/metrics`)).text();
    assert.match(text, /tg_upstream_errors_total\{deployment="down-a",code="upstream_unavailable"\} 1/);
  });

  it('speaks TLS to HTTPS upstreams and refuses an untrusted certificate', async () => {
    const ok = await chat('tls-ok');
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).choices[0].message.content, 'ok');
    const bad = await chat('tls-untrusted');
    assert.equal(bad.status, 502);
    assert.equal((await bad.json()).error.code, 'upstream_tls_error');
  });
});

describe('configuration and CLI', () => {
  it('rejects a bad config with the file, line, field path and reason', async () => {
    const dir = tempDir();
    const file = join(dir, 'bad.yaml');
    const yaml = edgeConfig().replace('{ id: k-carol, user: carol,', '{ id: k-carol, user: bob,').replace('header_timeout_ms: 400', 'header_timeout_ms: fast');
    (await import('node:fs')).writeFileSync(file, yaml + '\nlisten_typo: 1\n');
    const r = await runCli(['serve', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.yaml:\d+: tenants\[1\]\.keys\[0\]\.user: unknown user 'bob' \(tenant 'globex' has: carol\)/);
    assert.match(r.stderr, /server\.header_timeout_ms: must be an integer/);
    assert.match(r.stderr, /listen_typo: unknown field/);
    const check = await runCli(['config', 'check', file]);
    assert.equal(check.code, 2);
  });

  it('fails at start when an upstream key variable is missing', async () => {
    const dir = tempDir();
    const file = join(dir, 'c.yaml');
    (await import('node:fs')).writeFileSync(file, edgeConfig({ extraModels: '  - alias: p\n    deployments: [{ id: p1, provider: openai, model: m, base_url: "https://api.example.invalid/v1", api_key_env: TG_SURELY_UNSET }]' }));
    const r = await runCli(['config', 'check', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /models\[1\]\.deployments\[0\]\.api_key_env: environment variable 'TG_SURELY_UNSET' is not set/);
  });

  it('refuses to share a port another gateway already serves', async () => {
    const gw = await startGateway();
    const second = await runCli(['serve', '--listen', `127.0.0.1:${gw.port}`]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${gw.port}: Address already in use`));
    assert.equal((await fetch(`${gw.base}/healthz`)).status, 200);
    await gw.stop();
  });

  it('mints a key whose hash line authenticates', async () => {
    const r = await runCli(['keys', 'new', '--tenant', 'acme', '--user', 'alice', '--id', 'fresh']);
    assert.equal(r.code, 0);
    const key = /key: (tg-[0-9A-Za-z]{43})/.exec(r.stdout)[1];
    const line = r.stdout.split('\n').find((l) => l.startsWith('- {'));
    assert.ok(!line.includes(key), 'the secret must not be in the config line');
    const yaml = edgeConfig().replace('      - { id: k-alice,', `      ${line}\n      - { id: k-alice,`);
    const gw = await startGateway({ yaml });
    try {
      const ok = await fetch(`${gw.base}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(ok.status, 200);
    } finally { await gw.stop(); }
  });
});

describe('graceful drain on SIGTERM', () => {
  it('finishes in-flight streams, refuses new work, and exits 0', async () => {
    const gw = await startGateway({ yaml: edgeConfig() });
    const r = await post(gw.base, '/v1/chat/completions', { model: 'slow', messages: [{ role: 'user', content: 'drain' }], max_tokens: 20, stream: true });
    assert.equal(r.status, 200);
    const reader = r.body.getReader();
    await reader.read();
    gw.child.kill('SIGTERM');
    await waitFor(() => gw.stderr.includes('draining'), 2000, 'drain start');
    await assert.rejects(fetch(`${gw.base}/healthz`));  // the listener is closed
    let text = '';
    const dec = new TextDecoder();
    for (;;) { const { done, value } = await reader.read(); if (done) break; text += dec.decode(value); }
    assert.match(text, /data: \[DONE\]/);
    const { code } = await gw.exited;
    assert.equal(code, 0);
  });

  it('cuts streams at the drain deadline and still exits 0', async () => {
    const gw = await startGateway({ yaml: edgeConfig({ server: '' }).replace('drain_timeout_ms: 5000', 'drain_timeout_ms: 300') });
    const r = await post(gw.base, '/v1/chat/completions', { model: 'slow', messages: [{ role: 'user', content: 'long' }], max_tokens: 1000, stream: true });
    const reader = r.body.getReader();
    await reader.read();
    const t0 = Date.now();
    gw.child.kill('SIGTERM');
    await reader.read().catch(() => {});
    try { for (;;) { const { done } = await reader.read(); if (done) break; } } catch {}
    const { code } = await gw.exited;
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
  });
});
