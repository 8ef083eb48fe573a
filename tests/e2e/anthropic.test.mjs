// The Anthropic Messages API door (POST /v1/messages, /v1/messages/count_tokens)
// driven by the official @anthropic-ai/sdk against the real binary in front
// of the sim upstream (and, for tool calls, a small recorded OpenAI upstream:
// what is under test is what the gateway translates). Limits, the cache, the
// ledger and fair admission behave as on the OpenAI door; errors come in
// Anthropic's shape with its types.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startGateway, limitsConfig, chat, metric, waitFor, rawExchange, DEMO_KEYS } from './harness.mjs';

const ALICE = DEMO_KEYS.alice;
const client = (base, key = ALICE, opts = {}) => new Anthropic({ baseURL: base, apiKey: key, maxRetries: 0, ...opts });
const sql = (db, q) => JSON.parse(execFileSync('sqlite3', ['-json', db, q], { encoding: 'utf8' }).trim() || '[]');

// Anthropic's own error shape, status and type, from a raw request.
async function rawMessages(base, body, headers = {}) {
  const res = await fetch(`${base}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': ALICE, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: (() => { try { return JSON.parse(text); } catch { return null; } })() };
}

function assertAnthropicError(r, status, type) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.json.type, 'error', r.text);
  assert.equal(r.json.error.type, type, r.text);
  assert.ok(r.json.error.message.length > 0);
  assert.ok(r.headers.get('request-id'), 'request-id header');
}

describe('anthropic door in front of the sim (embedded default config)', () => {
  let gw;
  before(async () => { gw = await startGateway(); });
  after(async () => { await gw.stop(); });
  const ask = { model: 'sim-chat', max_tokens: 12, messages: [{ role: 'user', content: 'Tell me about the sea.' }] };

  it('answers a plain message with its usage; input_tokens is what count_tokens says', async () => {
    const c = client(gw.base);
    const m = await c.messages.create(ask);
    assert.equal(m.type, 'message');
    assert.equal(m.role, 'assistant');
    assert.equal(m.model, 'sim-chat');
    assert.match(m.id, /^msg_/);
    assert.equal(m.content[0].type, 'text');
    assert.ok(m.content[0].text.length > 0);
    assert.ok(['end_turn', 'max_tokens'].includes(m.stop_reason), m.stop_reason);
    assert.ok(m.usage.output_tokens > 0 && m.usage.output_tokens <= 12);
    const counted = await c.messages.countTokens({ model: 'sim-chat', messages: ask.messages });
    assert.ok(counted.input_tokens > 0);
    assert.equal(m.usage.input_tokens, counted.input_tokens);
    const longer = await c.messages.countTokens({ model: 'sim-chat', system: 'You are terse.',
      messages: [...ask.messages, { role: 'assistant', content: 'It is wide.' }, { role: 'user', content: 'More.' }] });
    assert.ok(longer.input_tokens > counted.input_tokens);
  });

  it('streams message_start (real input_tokens) .. message_stop, and the SDK assembles the final message', async () => {
    const c = client(gw.base);
    const counted = await c.messages.countTokens({ model: 'sim-chat', messages: ask.messages });
    const stream = c.messages.stream({ ...ask, max_tokens: 20 });
    const types = [];
    let text = '';
    stream.on('streamEvent', (e) => { types.push(e.type); });
    stream.on('text', (t) => { text += t; });
    const final = await stream.finalMessage();
    assert.equal(types[0], 'message_start');
    assert.deepEqual(types.slice(-2), ['message_delta', 'message_stop']);
    assert.equal(types.filter((t) => t === 'content_block_start').length, 1);
    assert.equal(types.filter((t) => t === 'content_block_stop').length, 1);
    assert.ok(types.includes('content_block_delta'));
    assert.equal(final.content[0].text, text);
    assert.ok(text.length > 0);
    assert.equal(final.usage.input_tokens, counted.input_tokens);
    assert.ok(final.usage.output_tokens > 0 && final.usage.output_tokens <= 20);
    assert.ok(['end_turn', 'max_tokens'].includes(final.stop_reason));
  });

  it('takes the key as x-api-key or Authorization: Bearer', async () => {
    const viaBearer = new Anthropic({ baseURL: gw.base, authToken: ALICE, apiKey: null, maxRetries: 0 });
    const m = await viaBearer.messages.create(ask);
    assert.equal(m.type, 'message');
    const r = await rawMessages(gw.base, ask, { 'x-api-key': '', authorization: `Bearer ${ALICE}` });
    assert.equal(r.status, 200, r.text);
  });

  it('answers every refusal in Anthropic\'s shape, with its type', async () => {
    const { max_tokens: _, ...noMax } = ask;
    const r400 = await rawMessages(gw.base, noMax);
    assertAnthropicError(r400, 400, 'invalid_request_error');
    assert.match(r400.json.error.message, /max_tokens/);
    assertAnthropicError(await rawMessages(gw.base, { ...ask, bogus: 1 }), 400, 'invalid_request_error');
    assertAnthropicError(await rawMessages(gw.base, '{"model":'), 400, 'invalid_request_error');
    assertAnthropicError(await rawMessages(gw.base, ask, { 'x-api-key': 'tg-wrong' }), 401, 'authentication_error');
    assertAnthropicError(await rawMessages(gw.base, { ...ask, metadata: { user_id: 'mallory' } }), 403, 'permission_error');
    assertAnthropicError(await rawMessages(gw.base, { ...ask, model: 'nope' }), 404, 'not_found_error');
    // Refused on its head (Content-Length over server.max_body_bytes), its body never read.
    const head = `POST /v1/messages HTTP/1.1\r\nHost: t\r\nx-api-key: ${ALICE}\r\ncontent-type: application/json\r\ncontent-length: ${64 << 20}\r\n\r\n{"model":`;
    const big = await rawExchange(gw.port, [head]);
    const [rawHead, rawBody] = big.data.split('\r\n\r\n');
    assert.match(rawHead, /^HTTP\/1\.1 413 /);
    assert.match(rawHead, /\r\nrequest-id: \S+/i);
    assert.equal(JSON.parse(rawBody).error.type, 'request_too_large');
    // The SDK raises its own error classes from them.
    await assert.rejects(client(gw.base).messages.create(noMax), (e) => e instanceof Anthropic.BadRequestError && e.status === 400);
    await assert.rejects(client(gw.base, 'tg-wrong').messages.create(ask), (e) => e instanceof Anthropic.AuthenticationError);
    await assert.rejects(client(gw.base).messages.create({ ...ask, model: 'nope' }), (e) => e instanceof Anthropic.NotFoundError);
    assert.equal((await fetch(`${gw.base}/healthz`)).status, 200);
  });

  it('serves a repeated request from the cache, in the door\'s shape, in partitions of its own', async () => {
    const c = client(gw.base);
    const q = { model: 'sim-chat', max_tokens: 8, temperature: 0, messages: [{ role: 'user', content: `cache me ${Date.now()}` }] };
    const first = await c.messages.create(q).withResponse();
    assert.equal(first.response.headers.get('x-tg-cache'), 'miss');
    const again = await c.messages.create(q).withResponse();
    assert.equal(again.response.headers.get('x-tg-cache'), 'hit');
    assert.equal(again.data.content[0].text, first.data.content[0].text);
    assert.notEqual(again.data.id, first.data.id);
    // Streamed from the cache: the same events.
    const types = [];
    const s = c.messages.stream(q);
    s.on('streamEvent', (e) => types.push(e.type));
    const fin = await s.finalMessage();
    assert.equal(fin.content[0].text, first.data.content[0].text);
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
    // The same prompt through the OpenAI door is its own partition: a miss.
    const oa = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: ALICE });
    const viaOpenAI = await oa.chat.completions.create({ model: 'sim-chat', max_tokens: 8, temperature: 0, messages: q.messages }).withResponse();
    assert.equal(viaOpenAI.response.headers.get('x-tg-cache'), 'miss');
  });

  it('records the door in the ledger (endpoint messages), charged once', async () => {
    const m = await client(gw.base).messages.create({ ...ask, messages: [{ role: 'user', content: `ledger ${Date.now()}` }] }).withResponse();
    const id = m.response.headers.get('x-request-id');
    const db = join(gw.cwd, 'tenantgate-ledger.db');
    let rows = [];
    await waitFor(() => (rows = sql(db, `SELECT endpoint, prompt_tokens, completion_tokens, usage_source, status FROM ledger WHERE request_id='${id}'`)).length === 1, 5000, 'ledger row');
    assert.equal(rows[0].endpoint, 'messages');
    assert.equal(rows[0].status, 200);
    assert.equal(rows[0].prompt_tokens, m.data.usage.input_tokens);
    assert.equal(rows[0].completion_tokens, m.data.usage.output_tokens);
  });

  it('a client that aborts mid-stream leaves the gateway serving, its request settled', async () => {
    const before = await metric(gw.base, 'tg_client_disconnects_total');
    const ctl = new AbortController();
    const s = client(gw.base).messages.stream({ ...ask, max_tokens: 2000 }, { signal: ctl.signal });
    let got = 0;
    await assert.rejects((async () => { for await (const e of s) { if (e.type === 'content_block_delta' && ++got === 3) ctl.abort(); } })());
    await waitFor(async () => (await metric(gw.base, 'tg_client_disconnects_total')) > before, 5000, 'disconnect counted');
    const m = await client(gw.base).messages.create(ask);
    assert.equal(m.type, 'message');
  });
});

describe('anthropic door: limits and fair admission as on the OpenAI door', () => {
  it('429 rate_limit_error with retry-after at the tenant\'s request limit, shared with the OpenAI door', async () => {
    const gw = await startGateway({ yaml: limitsConfig({ tenantLimits: 'requests_per_min: 2' }) });
    const ask = { model: 'chat', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] };
    assert.equal((await chat(gw.base, ALICE)).status, 200);       // one through the OpenAI door
    assert.equal((await rawMessages(gw.base, ask)).status, 200);  // one through the Anthropic door
    const r = await rawMessages(gw.base, ask);
    assertAnthropicError(r, 429, 'rate_limit_error');
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    assert.match(r.json.error.message, /tenant/);
    await assert.rejects(client(gw.base).messages.create(ask), (e) => e instanceof Anthropic.RateLimitError);
    await gw.stop();
  });

  it('529 overloaded_error when the deployment\'s queue deadline passes', async () => {
    const yaml = limitsConfig().replace(/sim: \{ engine: fixed, decode_ms_per_token: \d+, ttft_base_ms: 1 \} \}/,
      'sim: { engine: fixed, decode_ms_per_token: 20, ttft_base_ms: 1 }, pool: { max_seqs: 1 } }') +
      'scheduling: { policy: fair, interactive_timeout_ms: 300, batch_aging_s: 60 }\n';
    const gw = await startGateway({ yaml });
    const running = chat(gw.base, DEMO_KEYS.carol, { maxTokens: 60 });  // 1.2 s
    await waitFor(async () => (await metric(gw.base, 'tg_pool_inflight_requests')) === 1, 2000, 'admitted');
    const r = await rawMessages(gw.base, { model: 'chat', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] });
    assertAnthropicError(r, 529, 'overloaded_error');
    assert.equal((await running).status, 200);
    await gw.stop();
  });
});

// A recorded OpenAI-compatible upstream that answers with tool calls (what the
// gateway must translate into tool_use blocks), plain and streamed.
function toolUpstream() {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const b = JSON.parse(body);
      seen.push(b);
      const call = { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } };
      const usage = { prompt_tokens: 31, completion_tokens: 9, total_tokens: 40 };
      if (!b.stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: b.model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'Let me look.', tool_calls: [call] }, finish_reason: 'tool_calls' }], usage }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (delta, finish = null) => `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: b.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.write(chunk({ role: 'assistant', content: 'Let me look.' }));
      res.write(chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } }] }));
      res.write(chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }));
      res.write(chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }));
      res.write(chunk({}, 'tool_calls'));
      res.write(`data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: b.model, choices: [], usage })}\n\n`);
      res.end('data: [DONE]\n\n');
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, seen, port: server.address().port })));
}

// The raw event names of an Anthropic stream, in order.
async function streamEvents(base, body) {
  const res = await fetch(`${base}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': ALICE, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  const text = await res.text();
  const events = [...text.matchAll(/^event: (\S+)\ndata: (.*)$/gm)].map((m) => ({ type: m[1], data: JSON.parse(m[2]) }));
  return { status: res.status, events };
}

describe('anthropic door: a stream waiting in the queue', () => {
  const queued = (timeoutMs) => limitsConfig().replace(/sim: \{ engine: fixed, decode_ms_per_token: \d+, ttft_base_ms: 1 \} \}/,
    'sim: { engine: fixed, decode_ms_per_token: 20, ttft_base_ms: 1 }, pool: { max_seqs: 1 } }') +
    `scheduling: { policy: fair, interactive_timeout_ms: ${timeoutMs}, batch_aging_s: 60 }\n`;
  const ask = { model: 'chat', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] };

  it('opens at once with message_start and pings until it is admitted', async () => {
    const gw = await startGateway({ yaml: queued(10000) });
    const running = chat(gw.base, DEMO_KEYS.carol, { maxTokens: 75 });  // 1.5 s
    await waitFor(async () => (await metric(gw.base, 'tg_pool_inflight_requests')) === 1, 2000, 'admitted');
    const { status, events } = await streamEvents(gw.base, ask);
    assert.equal(status, 200);
    const types = events.map((e) => e.type);
    assert.equal(types[0], 'message_start');
    assert.ok(events[0].data.message.usage.input_tokens > 0);
    assert.equal(types[1], 'ping');
    assert.ok(types.indexOf('content_block_start') > types.indexOf('ping'));
    assert.deepEqual(types.slice(-2), ['message_delta', 'message_stop']);
    assert.equal(types.filter((t) => t === 'message_start').length, 1);
    assert.equal((await running).status, 200);
    await gw.stop();
  });

  it('ends with an overloaded_error event when its queue deadline passes after it opened', async () => {
    const gw = await startGateway({ yaml: queued(300) });
    const running = chat(gw.base, DEMO_KEYS.carol, { maxTokens: 60 });  // 1.2 s
    await waitFor(async () => (await metric(gw.base, 'tg_pool_inflight_requests')) === 1, 2000, 'admitted');
    const { status, events } = await streamEvents(gw.base, ask);
    assert.equal(status, 200);
    const types = events.map((e) => e.type);
    assert.deepEqual(types, ['message_start', 'ping', 'error']);
    assert.equal(events[2].data.type, 'error');
    assert.equal(events[2].data.error.type, 'overloaded_error');
    assert.equal((await running).status, 200);
    await gw.stop();
  });
});

describe('anthropic door: tools', () => {
  let up, gw;
  before(async () => {
    up = await toolUpstream();
    const yaml = limitsConfig().replace(/\{ id: chat-sim, provider: sim, sim: \{[^}]*\} \}/,
      `{ id: tools-up, provider: openai, model: up-model, base_url: "http://127.0.0.1:${up.port}/v1" }`);
    assert.match(yaml, /tools-up/);
    gw = await startGateway({ yaml });
  });
  after(async () => { await gw.stop(); up.server.close(); });
  const tools = [{ name: 'get_weather', description: 'Weather of a city', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];

  it('translates tools, tool_choice, tool_use and tool_result both ways', async () => {
    const c = client(gw.base);
    const m = await c.messages.create({ model: 'chat', max_tokens: 50, tools, tool_choice: { type: 'any' },
      system: 'Use tools.', stop_sequences: ['END'], messages: [{ role: 'user', content: 'Weather in Paris?' }] });
    assert.equal(m.stop_reason, 'tool_use');
    assert.deepEqual(m.content.map((b) => b.type), ['text', 'tool_use']);
    assert.equal(m.content[1].name, 'get_weather');
    assert.deepEqual(m.content[1].input, { city: 'Paris' });
    assert.equal(m.usage.output_tokens, 9);
    const sent = up.seen.at(-1);
    assert.equal(sent.messages[0].role, 'system');
    assert.equal(sent.tools[0].function.name, 'get_weather');
    assert.deepEqual(sent.tools[0].function.parameters, tools[0].input_schema);
    assert.equal(sent.tool_choice, 'required');
    assert.deepEqual(sent.stop, ['END']);
    // The tool's result goes back as a tool message.
    await c.messages.create({ model: 'chat', max_tokens: 50, tools, messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: m.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: m.content[1].id, content: '18C, sunny' }] }] });
    const next = up.seen.at(-1);
    const asst = next.messages.find((x) => x.role === 'assistant');
    assert.equal(asst.tool_calls[0].function.name, 'get_weather');
    assert.deepEqual(JSON.parse(asst.tool_calls[0].function.arguments), { city: 'Paris' });
    const tool = next.messages.find((x) => x.role === 'tool');
    assert.equal(tool.tool_call_id, m.content[1].id);
    assert.match(JSON.stringify(tool.content), /18C, sunny/);
  });

  it('streams a tool call as a tool_use block with input_json_delta', async () => {
    const s = client(gw.base).messages.stream({ model: 'chat', max_tokens: 50, tools, messages: [{ role: 'user', content: 'Weather?' }] });
    const deltas = [];
    s.on('streamEvent', (e) => { if (e.type === 'content_block_delta') deltas.push(e.delta.type); });
    const fin = await s.finalMessage();
    assert.deepEqual(fin.content.map((b) => b.type), ['text', 'tool_use']);
    assert.deepEqual(fin.content[1].input, { city: 'Paris' });
    assert.equal(fin.stop_reason, 'tool_use');
    assert.ok(deltas.includes('text_delta') && deltas.includes('input_json_delta'));
    assert.equal(fin.usage.output_tokens, 9);
  });
});
