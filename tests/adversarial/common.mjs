// Shared by the adversarial suites: a gateway config with a fast sim model,
// a small recording upstream, the gateway's own resource figures (RSS from
// /proc, CPU time, /metrics size) and a bounded-concurrency request driver.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { ADMIN_HASH } from '../e2e/harness.mjs';

export const SERVICE_KEY = 'tg-demo-acme-service';  // acme's tenant-level key
export const ALICE_KEY = 'tg-demo-acme-alice';

// acme with alice's key and a tenant-level service key; limits far above what
// the suites send, unless `server`/`tenantLimits` say otherwise.
export function adversarialConfig({ server = '', accessLog = 'off', tenantLimits = 'requests_per_min: 10000000, tokens_per_min: 1000000000',
  userLimits = 'tokens_per_min: 240000', models = '', cache = 'exact: true, semantic: true', ledger = '"off"' } = {}) {
  return `
server: { access_log: ${accessLog}, ${server} }
metering: { ledger_sqlite: ${ledger} }
admin: { key_sha256: [${ADMIN_HASH}] }
cache: { ${cache} }
orgs: [{ id: demo }]
models:
  - alias: chat
    context_tokens: 131072
    deployments: [{ id: chat-sim, provider: sim, sim: { engine: fixed, decode_ms_per_token: 0, ttft_base_ms: 0 } }]
${models}
tenants:
  - id: acme
    org: demo
    limits: { ${tenantLimits} }
    user_limits: { ${userLimits} }
    users: [alice]
    keys:
      - { id: acme-alice, user: alice, sha256: ee710a59742613919631058bec5f5d41996ed75d2d456bc33438591e24f58a54 }
      - { id: acme-service, sha256: 005e0af9d236348df20df9e54704c3fd304eef82c0abda9fafebca817236f2f3 }
`;
}

// The gateway process's resident memory, in bytes.
export function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

// The gateway process's CPU time (user + system), in seconds.
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;  // utime, stime in clock ticks (USER_HZ = 100)
}

export async function metricsText(base) { return (await fetch(`${base}/metrics`)).text(); }

// Runs `count` calls of `one(i)` with `concurrency` in flight; returns the
// statuses seen, counted.
export async function drive(count, concurrency, one) {
  const statuses = {};
  let next = 0;
  const loop = async () => {
    while (next < count) {
      const i = next++;
      const r = await one(i);
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      await r.arrayBuffer();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return statuses;
}

export function chatBody(content, extra = {}) {
  return JSON.stringify({ model: 'chat', max_tokens: 4, messages: [{ role: 'user', content }], ...extra });
}

export function post(base, key, body, headers = {}) {
  return fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body,
  });
}

// An OpenAI-compatible upstream that records what the gateway sends it
// (bodies and headers) and answers a fixed completion.
export async function recordingUpstream() {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      seen.push({ path: req.url, headers: req.headers, body: body ? JSON.parse(body) : null });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'rec-1', object: 'chat.completion', created: 1, model: 'rec',
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { seen, port: server.address().port, close: () => new Promise((r) => server.close(r)) };
}
