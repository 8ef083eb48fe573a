// `provider: anthropic` against a real third-party Messages API: llama.cpp's
// llama-server (POST /v1/messages, built by scripts/build-llama-server) with a
// tiny random-weight GPT-2. The official openai SDK talks to the gateway's
// OpenAI door; the gateway talks Anthropic upstream. A recording proxy between
// the gateway and llama-server keeps every exchange, so the test compares what
// the client got with exactly what the upstream said (usage, stop reason, text).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startGateway, startLlama, DEMO_KEYS, ACME_TENANT_YAML } from './harness.mjs';

// Forwards to 127.0.0.1:`target` and records each exchange: method, path,
// headers and JSON body of the request; status and body of the response.
async function startRecorder(target) {
  const exchanges = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const x = { method: req.method, path: req.url, headers: req.headers, body: JSON.parse(body.toString() || 'null'), response: '' };
      exchanges.push(x);
      const up = http.request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, agent: false,
        headers: { ...req.headers, host: `127.0.0.1:${target}` } }, (ur) => {
        x.status = ur.statusCode;
        res.writeHead(ur.statusCode, ur.headers);
        ur.on('data', (c) => { x.response += c; res.write(c); });
        ur.on('end', () => res.end());
      });
      up.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
      up.end(body);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, exchanges, stop: () => new Promise((r) => server.close(r)) };
}

// The data payloads of a recorded SSE body, as [event, parsed data].
function sseEvents(text) {
  const out = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    let event = '', data = '';
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data += line.slice(5).trim();
    }
    if (data) out.push([event, JSON.parse(data)]);
  }
  return out;
}

const FINISH = { end_turn: 'stop', stop_sequence: 'stop', max_tokens: 'length', tool_use: 'tool_calls' };

function promptTokens(u) {
  return u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0);
}

describe('provider: anthropic through llama-server /v1/messages', () => {
  let llama, rec, gw, client;
  before(async () => {
    llama = await startLlama();
    rec = await startRecorder(llama.port);
    gw = await startGateway({
      env: { TG_E2E_ANTHROPIC_KEY: 'sk-ant-e2e' },
      yaml: `
server: { access_log: "off" }
metering: { ledger_sqlite: "off" }
orgs: [{ id: demo }]
models:
  - alias: tiny-claude
    deployments:
      - { id: llama-messages, provider: anthropic, model: tiny-gpt2, base_url: "http://127.0.0.1:${rec.port}/v1",
          api_key_env: TG_E2E_ANTHROPIC_KEY, default_max_tokens: 5 }
${ACME_TENANT_YAML}`,
    });
    client = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: DEMO_KEYS.alice, maxRetries: 0, timeout: 30000 });
  });
  after(async () => {
    await gw?.stop();
    await rec?.stop();
    await llama?.stop();
  });

  it('answers a chat completion translated from the Messages answer, usage as llama-server counted it', async () => {
    const before = rec.exchanges.length;
    // Greedy, this prompt reads " Scientific fold scientists...": the stop
    // sequence ends it (llama-server says end_turn, with stop_sequence set).
    const data = await client.chat.completions.create({
      model: 'tiny-claude', temperature: 0, max_tokens: 6, user: 'alice', stop: ['scientists'],
      messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello' }],
    });
    assert.equal(rec.exchanges.length, before + 1);
    const x = rec.exchanges.at(-1);
    // What went upstream: Anthropic's path, headers and request shape.
    assert.equal(x.method, 'POST');
    assert.equal(x.path, '/v1/messages');
    assert.equal(x.headers['anthropic-version'], '2023-06-01');
    assert.equal(x.headers['x-api-key'], 'sk-ant-e2e');
    assert.equal(x.headers.authorization, undefined);
    assert.deepEqual(x.body, {
      model: 'tiny-gpt2', max_tokens: 6, system: 'You are terse.', stop_sequences: ['scientists'],
      messages: [{ role: 'user', content: 'Say hello' }], temperature: 0, metadata: { user_id: 'alice' },
    });
    // What came back, and what the client got.
    assert.equal(x.status, 200);
    const msg = JSON.parse(x.response);
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.id, msg.id);
    const text = msg.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
    assert.equal(data.choices[0].message.content, text);
    assert.equal(data.choices[0].message.role, 'assistant');
    assert.ok(FINISH[msg.stop_reason], `stop_reason ${msg.stop_reason}`);
    assert.equal(data.choices[0].finish_reason, FINISH[msg.stop_reason]);
    assert.equal(data.usage.prompt_tokens, promptTokens(msg.usage));
    assert.equal(data.usage.prompt_tokens_details?.cached_tokens ?? 0, msg.usage.cache_read_input_tokens ?? 0);
    assert.equal(data.usage.completion_tokens, msg.usage.output_tokens);
    assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);
    assert.ok(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
  });

  it('streams chunks translated event by event, with the final usage', async () => {
    const stream = await client.chat.completions.create({
      model: 'tiny-claude', temperature: 0, max_tokens: 6, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'Say hello' }],
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const x = rec.exchanges.at(-1);
    assert.equal(x.body.stream, true);
    const events = sseEvents(x.response);
    const types = events.map(([, d]) => d.type);
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
    const start = events[0][1].message;
    const delta = events.find(([, d]) => d.type === 'message_delta')[1];
    const upstreamText = events.filter(([, d]) => d.type === 'content_block_delta' && d.delta.type === 'text_delta')
      .map(([, d]) => d.delta.text).join('');

    assert.ok(chunks.length >= 3, `chunks: ${chunks.length}`);
    for (const c of chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.id, start.id);
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const text = chunks.flatMap((c) => c.choices).map((ch) => ch.delta?.content ?? '').join('');
    assert.equal(text, upstreamText);
    const finish = chunks.flatMap((c) => c.choices).filter((ch) => ch.finish_reason);
    assert.equal(finish.length, 1);
    assert.equal(finish[0].finish_reason, FINISH[delta.delta.stop_reason]);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    const usage = { ...start.usage, ...delta.usage };
    assert.equal(last.usage.prompt_tokens, promptTokens(usage));
    assert.equal(last.usage.completion_tokens, delta.usage.output_tokens);
  });

  it('a stream without include_usage gets no usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'tiny-claude', temperature: 0, max_tokens: 3, stream: true, messages: [{ role: 'user', content: 'Hi' }],
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks.length > 0);
    for (const c of chunks) {
      assert.ok(!c.usage, `usage leaked: ${JSON.stringify(c)}`);
      assert.ok(c.choices.length > 0);
    }
  });

  it('max_tokens reached is finish_reason length; no max_tokens sends the deployment default', async () => {
    const data = await client.chat.completions.create({
      model: 'tiny-claude', temperature: 0, max_tokens: 2, messages: [{ role: 'user', content: 'Tell me a long story' }],
    });
    const msg = JSON.parse(rec.exchanges.at(-1).response);
    assert.equal(msg.stop_reason, 'max_tokens');
    assert.equal(data.choices[0].finish_reason, 'length');
    assert.equal(data.usage.completion_tokens, 2);

    const dflt = await client.chat.completions.create({
      model: 'tiny-claude', temperature: 0, messages: [{ role: 'user', content: 'Tell me a long story' }],
    });
    assert.equal(rec.exchanges.at(-1).body.max_tokens, 5);
    assert.ok(dflt.usage.completion_tokens <= 5);
  });

  // With random weights, greedy "Count to three" trips llama-server's output
  // parser after a few tokens: a real upstream failure, mid-stream and whole.
  it('an upstream failure reaches the client as an OpenAI error, mid-stream or whole', async () => {
    const stream = await client.chat.completions.create({
      model: 'tiny-claude', temperature: 0, max_tokens: 6, stream: true, messages: [{ role: 'user', content: 'Count to three' }],
    });
    const chunks = [];
    await assert.rejects((async () => { for await (const c of stream) chunks.push(c); })(),
      (e) => /peg-native/.test(e.message));
    const events = sseEvents(rec.exchanges.at(-1).response);
    assert.equal(events.at(-1)[0], 'error', 'llama-server ended its stream with an error event');
    const text = events.filter(([, d]) => d.type === 'content_block_delta').map(([, d]) => d.delta.text).join('');
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), text, 'what came before the error');

    await assert.rejects(client.chat.completions.create({
      model: 'tiny-claude', temperature: 0, max_tokens: 6, messages: [{ role: 'user', content: 'Count to three' }],
    }), (e) => e.status === 502 && /peg-native/.test(e.message));
    assert.equal(rec.exchanges.at(-1).status, 500);
  });

  it('refuses what Anthropic cannot do with a 400 naming the field, without calling upstream', async () => {
    const before = rec.exchanges.length;
    await assert.rejects(client.chat.completions.create({
      model: 'tiny-claude', n: 2, messages: [{ role: 'user', content: 'Hi' }],
    }), (e) => e.status === 400 && e.param === 'n' && /Anthropic/.test(e.message));
    await assert.rejects(client.chat.completions.create({
      model: 'tiny-claude', messages: [{ role: 'user', content: 'Hi' },
        { role: 'assistant', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{oops' } }] },
        { role: 'tool', tool_call_id: 'c1', content: '1' }],
    }), (e) => e.status === 400 && e.param === 'messages[1].tool_calls[0].function.arguments');
    await assert.rejects(client.embeddings.create({ model: 'tiny-claude', input: 'x' }),
      (e) => e.status === 400 && e.code === 'unsupported_endpoint');
    assert.equal(rec.exchanges.length, before);
  });
});

// The other door: the official @anthropic-ai/sdk against the gateway's
// /v1/messages, in front of llama-server both ways: its Messages API
// (provider: anthropic) and its OpenAI API (provider: openai, the door
// translating). The recorder shows what llama-server itself answered.
describe('the Anthropic SDK through the gateway to llama-server, both APIs', () => {
  let llama, rec, gw, client;
  before(async () => {
    llama = await startLlama();
    rec = await startRecorder(llama.port);
    gw = await startGateway({
      yaml: `
server: { access_log: "off" }
metering: { ledger_sqlite: "off" }
orgs: [{ id: demo }]
models:
  - alias: via-messages
    deployments:
      - { id: llama-messages, provider: anthropic, model: tiny-gpt2, base_url: "http://127.0.0.1:${rec.port}/v1" }
  - alias: via-chat
    deployments:
      - { id: llama-chat, provider: openai, model: tiny-gpt2, base_url: "http://127.0.0.1:${rec.port}/v1" }
${ACME_TENANT_YAML}`,
    });
    client = new Anthropic({ baseURL: gw.base, apiKey: DEMO_KEYS.alice, maxRetries: 0, timeout: 30000 });
  });
  after(async () => {
    await gw?.stop();
    await rec?.stop();
    await llama?.stop();
  });

  for (const [model, path] of [['via-messages', '/v1/messages'], ['via-chat', '/v1/chat/completions']]) {
    it(`${model}: a message, its text and usage as llama-server gave them (${path})`, async () => {
      const m = await client.messages.create({ model, max_tokens: 5, temperature: 0,
        messages: [{ role: 'user', content: 'Say hello' }] });
      const x = rec.exchanges.at(-1);
      assert.equal(x.path, path);
      assert.equal(x.status, 200);
      const up = JSON.parse(x.response);
      const upText = path === '/v1/messages' ? up.content.filter((b) => b.type === 'text').map((b) => b.text).join('')
        : up.choices[0].message.content;
      assert.equal(m.type, 'message');
      assert.equal(m.model, model);
      assert.equal(m.content[0].type, 'text');
      assert.equal(m.content[0].text, upText);
      assert.equal(m.stop_reason, 'max_tokens');
      assert.equal(m.usage.output_tokens, path === '/v1/messages' ? up.usage.output_tokens : up.usage.completion_tokens);
      const upInput = path === '/v1/messages' ? up.usage.input_tokens : up.usage.prompt_tokens - (up.usage.prompt_tokens_details?.cached_tokens ?? 0);
      assert.equal(m.usage.input_tokens, upInput);
    });

    it(`${model}: a stream, message_start .. message_stop, the final message assembled by the SDK`, async () => {
      const s = client.messages.stream({ model, max_tokens: 5, temperature: 0, messages: [{ role: 'user', content: 'Say hello' }] });
      const types = [];
      s.on('streamEvent', (e) => types.push(e.type));
      const fin = await s.finalMessage();
      const x = rec.exchanges.at(-1);
      assert.equal(x.path, path);
      assert.equal(x.body.stream, true);
      assert.equal(types[0], 'message_start');
      assert.deepEqual(types.slice(-2), ['message_delta', 'message_stop']);
      assert.ok(fin.content[0].text.length > 0);
      assert.equal(fin.stop_reason, 'max_tokens');
      assert.equal(fin.usage.output_tokens, 5);
    });
  }

  it('via-messages: the client\'s body passes through untranslated (cache_control included), model and user set', async () => {
    const body = { model: 'via-messages', max_tokens: 4, temperature: 0, top_k: 3, metadata: { user_id: 'alice' },
      system: [{ type: 'text', text: 'You are terse.', cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Say hello', cache_control: { type: 'ephemeral' } }] }] };
    const m = await client.messages.create(body).withResponse();
    const x = rec.exchanges.at(-1);
    assert.equal(x.path, '/v1/messages');
    assert.deepEqual(x.body, { ...body, model: 'tiny-gpt2' });
    // The answer as llama-server gave it, but naming the model asked for (not the upstream's).
    const up = JSON.parse(x.response);
    assert.equal(m.data.id, up.id);
    assert.equal(m.data.model, 'via-messages');
    assert.notEqual(up.model, 'via-messages');
    assert.deepEqual(m.data.content, up.content);
    assert.deepEqual(m.data.usage, up.usage);
    assert.ok(m.response.headers.get('request-id'));
    // A stream: llama-server's own events, in order.
    const types = [];
    const s = client.messages.stream(body);
    s.on('streamEvent', (e) => types.push(e.type));
    const fin = await s.finalMessage();
    assert.equal(fin.model, 'via-messages');
    const events = sseEvents(rec.exchanges.at(-1).response).map(([e]) => e);
    assert.deepEqual(types, events.filter((e) => e !== 'ping'));
    assert.equal(fin.usage.output_tokens, 4);
  });

  it('count_tokens counts without calling the upstream', async () => {
    const before = rec.exchanges.length;
    const c = await client.messages.countTokens({ model: 'via-messages', messages: [{ role: 'user', content: 'Say hello' }] });
    assert.ok(c.input_tokens > 0);
    assert.equal(rec.exchanges.length, before);
  });
});
