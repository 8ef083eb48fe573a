// The client suite: what the official openai SDK must be able to do through
// the gateway, whatever the upstream. Run against the built-in sim
// (gateway.test.mjs) and against a real llama.cpp llama-server (llama.test.mjs).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { metric, waitFor } from './harness.mjs';

// setup() resolves to { base, key, chatModel, embedModel, teardown, sampling }.
// `sampling` is merged into every generation request (llama-server with random
// weights needs greedy decoding to be reproducible).
export function defineClientSuite(name, setup) {
  describe(`openai SDK through tenantgate: ${name}`, () => {
    let env, client;
    before(async () => {
      env = await setup();
      client = new OpenAI({ baseURL: `${env.base}/v1`, apiKey: env.key, maxRetries: 0, timeout: 30000 });
      env.sampling ??= {};
    });
    after(async () => { if (env?.teardown) await env.teardown(); });

    it('lists models', async () => {
      const page = await client.models.list();
      const ids = page.data.map((m) => m.id);
      assert.ok(ids.includes(env.chatModel), `models: ${ids}`);
      const one = await client.models.retrieve(env.chatModel);
      assert.equal(one.id, env.chatModel);
      assert.equal(one.object, 'model');
    });

    it('answers a chat completion with usage and a request id', async () => {
      const { data, response } = await client.chat.completions.create({
        ...env.sampling, model: env.chatModel, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 8,
      }).withResponse();
      assert.equal(data.object, 'chat.completion');
      assert.equal(typeof data.choices[0].message.content, 'string');
      assert.ok(data.choices[0].message.content.length > 0);
      assert.ok(data.usage.prompt_tokens > 0);
      assert.ok(data.usage.completion_tokens > 0 && data.usage.completion_tokens <= 8);
      assert.match(response.headers.get('x-request-id'), /^req_[0-9a-z]{20}$/);
    });

    it('streams a chat completion chunk by chunk, without a usage chunk unless asked', async () => {
      const stream = await client.chat.completions.create({
        ...env.sampling, model: env.chatModel, messages: [{ role: 'user', content: 'Count' }], max_tokens: 6, stream: true,
      });
      let text = '', chunks = 0, sawUsage = false, finish = null;
      for await (const c of stream) {
        chunks += 1;
        if (c.usage) sawUsage = true;
        assert.ok(!('usage' in c) || c.usage === undefined, 'usage field leaked to a client that did not ask');
        if (c.choices[0]?.delta?.content) text += c.choices[0].delta.content;
        if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      }
      assert.ok(chunks >= 3, `only ${chunks} chunks`);
      assert.ok(text.length > 0);
      assert.equal(sawUsage, false);
      assert.equal(finish, 'length');
    });

    it('streams usage when the client asks for it', async () => {
      const stream = await client.chat.completions.create({
        ...env.sampling, model: env.chatModel, messages: [{ role: 'user', content: 'Count' }], max_tokens: 4, stream: true,
        stream_options: { include_usage: true },
      });
      let usage = null;
      for await (const c of stream) if (c.usage) usage = c.usage;
      assert.ok(usage, 'no usage chunk');
      assert.equal(usage.completion_tokens, 4);
      assert.ok(usage.prompt_tokens > 0);
    });

    it('answers legacy completions, plain and streamed', async () => {
      const r = await client.completions.create({ ...env.sampling, model: env.chatModel, prompt: 'Once upon a time', max_tokens: 5 });
      assert.equal(r.object, 'text_completion');
      assert.equal(typeof r.choices[0].text, 'string');
      assert.equal(r.usage.completion_tokens, 5);
      const s = await client.completions.create({ ...env.sampling, model: env.chatModel, prompt: 'Once', max_tokens: 3, stream: true });
      let text = '';
      for await (const c of s) text += c.choices[0]?.text ?? '';
      assert.ok(text.length > 0);
    });

    it('returns embeddings as floats and as base64 (the SDK default)', async () => {
      const f = await client.embeddings.create({ model: env.embedModel, input: ['hello world', 'goodbye'], encoding_format: 'float' });
      assert.equal(f.data.length, 2);
      assert.ok(f.data[0].embedding.length > 8);
      assert.ok(f.usage.prompt_tokens > 0);
      const b = await client.embeddings.create({ model: env.embedModel, input: 'hello world' });
      assert.equal(b.data[0].embedding.length, f.data[0].embedding.length);
      for (let i = 0; i < 8; i++) assert.ok(Math.abs(b.data[0].embedding[i] - f.data[0].embedding[i]) < 1e-5);
    });

    it('rejects an unknown key with 401 in OpenAI shape', async () => {
      const bad = new OpenAI({ baseURL: `${env.base}/v1`, apiKey: 'tg-not-a-real-key', maxRetries: 0 });
      await assert.rejects(bad.chat.completions.create({ ...env.sampling, model: env.chatModel, messages: [{ role: 'user', content: 'x' }] }),
        (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === 'invalid_api_key'
          && e.type === 'authentication_error' && !e.message.includes('not-a-real-key'));
    });

    it('rejects an unknown model with 404 model_not_found', async () => {
      await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
        (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found' && e.param === 'model'
          && /no-such-model/.test(e.message));
    });

    it('rejects malformed JSON with 400 invalid_json', async () => {
      const r = await fetch(`${env.base}/v1/chat/completions`, {
        method: 'POST', headers: { authorization: `Bearer ${env.key}`, 'content-type': 'application/json' },
        body: '{"model": "x", "messages": [',
      });
      assert.equal(r.status, 400);
      const body = await r.json();
      assert.equal(body.error.code, 'invalid_json');
      assert.equal(body.error.type, 'invalid_request_error');
    });

    it('rejects a body over the limit with 413 before reading it', async () => {
      const refusedBefore = await metric(env.base, 'tg_bodies_too_large_total');
      assert.ok(Number.isFinite(refusedBefore), 'tg_bodies_too_large_total is exported');
      const big = JSON.stringify({ ...env.sampling, model: env.chatModel, messages: [{ role: 'user', content: 'x'.repeat(5 << 20) }] });
      const r = await fetch(`${env.base}/v1/chat/completions`, {
        method: 'POST', headers: { authorization: `Bearer ${env.key}`, 'content-type': 'application/json' }, body: big,
      }).catch((e) => e);
      if (r instanceof Error) {
        // The server may close before the client has finished sending (the
        // kernel then resets the connection under the 413). Only a reset is
        // acceptable, and only from a server that is still serving and that
        // counted the refusal: a crash would look the same from here.
        const code = r.cause?.code ?? r.code;
        assert.ok(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET'].includes(code), `not a connection reset: ${r} (${code})`);
      } else {
        assert.equal(r.status, 413);
        const body = await r.json();
        assert.equal(body.error.code, 'request_too_large');
        assert.equal(body.error.type, 'invalid_request_error');
        assert.match(body.error.message, /max_body_bytes/);
      }
      const health = await fetch(`${env.base}/healthz`);
      assert.equal(health.status, 200, 'the gateway still answers after the oversized body');
      assert.deepEqual(await health.json(), { status: 'ok' });
      assert.equal(await metric(env.base, 'tg_bodies_too_large_total'), refusedBefore + 1, 'refused for its size, once');
    });

    it('cancels the upstream when the client aborts mid-stream, leaking nothing', async () => {
      const before = await metric(env.base, 'tg_client_disconnects_total');
      const ac = new AbortController();
      const stream = await client.chat.completions.create({
        ...env.sampling, model: env.chatModel, messages: [{ role: 'user', content: 'Write a long story' }], max_tokens: 400, stream: true,
      }, { signal: ac.signal });
      let n = 0;
      // The SDK ends the iteration quietly on abort (or throws APIUserAbortError).
      try { for await (const _ of stream) { if (++n === 2) ac.abort(); } } catch (e) { assert.match(e.name, /Abort/); }
      assert.ok(n >= 2 && n < 300, `${n} chunks read`);
      await waitFor(async () => (await metric(env.base, 'tg_client_disconnects_total')) === before + 1, 5000, 'disconnect counted');
      await waitFor(async () => (await metric(env.base, 'tg_requests_in_flight')) === 1, 5000, 'in-flight back to just /metrics');
    });
  });
}
