// The client suite through tenantgate in front of a real third-party engine:
// llama.cpp's llama-server (built by scripts/build-llama-server from the
// source npm node-llama-cpp@3.21.1 carries) serving a tiny random-weight
// GPT-2 GGUF. Its text is noise; its protocol, streaming and batching are real.
import { startGateway, startLlama as startLlamaServer, DEMO_KEYS, ACME_TENANT_YAML } from './harness.mjs';
import { defineClientSuite } from './client-suite.mjs';

const startLlama = () => startLlamaServer(['-np', '4', '-c', '8192', '--embeddings', '--pooling', 'mean']);

// A gateway config with model 'tiny-llama' served by the llama-server on `port`.
function llamaYaml(port, extra = '') {
  return `
orgs: [{ id: demo }]
models:
  - alias: tiny-llama
    deployments:
      - { id: llama-local, provider: openai, model: tiny-gpt2, base_url: "http://127.0.0.1:${port}/v1" }
${extra}
${ACME_TENANT_YAML}`;
}

defineClientSuite('llama.cpp llama-server', async () => {
  const llama = await startLlama();
  const gw = await startGateway({ yaml: llamaYaml(llama.port) });
  return {
    base: gw.base, key: DEMO_KEYS.alice, chatModel: 'tiny-llama', embedModel: 'tiny-llama',
    // Random weights: sampled text now and then trips llama-server's own
    // output parser (a 500 from the engine); greedy decoding is reproducible.
    sampling: { temperature: 0, seed: 7 },
    teardown: async () => { await gw.stop(); await llama.stop(); },
  };
});

// The cache's upstream embedder: prompts embedded by llama-server's
// /v1/embeddings (random weights: the vectors mean nothing, the protocol is real).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { metric } from './harness.mjs';

describe('cache with an upstream embedder (llama-server /v1/embeddings)', () => {
  it('embeds prompts upstream and serves exact and semantic hits from them', async () => {
    const llama = await startLlama();
    const gw = await startGateway({ yaml: llamaYaml(llama.port, 'cache: { embedder: tiny-llama, threshold: 0.6 }') });
    try {
      const ask = async (content) => {
        const r = await fetch(`${gw.base}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${DEMO_KEYS.alice}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'tiny-llama', messages: [{ role: 'user', content }], max_tokens: 4, temperature: 0, seed: 7 }),
        });
        await r.text();
        return r.headers.get('x-tg-cache');
      };
      assert.equal(await ask('What is the tallest mountain on Earth?'), 'miss');
      assert.equal(await ask('What is the tallest mountain on Earth?'), 'hit');
      assert.equal(await ask('What is the tallest mountain on Earth ?'), 'hit', 'a near-identical prompt, through the vectors');
      assert.ok(await metric(gw.base, 'tg_cache_embeddings_total') >= 3);
    } finally {
      await gw.stop();
      await llama.stop();
    }
  });
});
