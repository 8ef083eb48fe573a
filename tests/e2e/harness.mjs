// Starts the real tenantgate binary on a loopback port chosen by the kernel
// and hands tests its base URL. Every process started here is killed when
// the test file ends.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

export const BIN = process.env.TG_BIN;
if (!BIN) throw new Error('TG_BIN must point at the tenantgate binary');

export const DEMO_KEYS = {
  alice: 'tg-demo-acme-alice',
  bob: 'tg-demo-acme-bob',
  acmeService: 'tg-demo-acme-service',
  carol: 'tg-demo-globex-carol',
};

// The demo tenant 'acme' (org 'demo') with alice's key, as config YAML; tests
// append more keys by indentation (six spaces).
export const ACME_TENANT_YAML = `tenants:
  - id: acme
    org: demo
    users: [alice]
    keys:
      - { id: acme-alice, user: alice, sha256: ee710a59742613919631058bec5f5d41996ed75d2d456bc33438591e24f58a54 }
`;

export const ADMIN_KEY = 'tg-admin-demo';
export const ADMIN_HASH = '1e7bfaad4c408265b2a507a1546cd61fd91463c3a7e357fdf3f280720b747ab7';  // sha256(ADMIN_KEY)

// A config for the limits suites: acme (alice, and bob through the service
// key) and globex (carol), one sim model 'chat', limits small enough to hit.
// `limits` adds lines under the top-level `limits:` (e.g. a redis block).
export function limitsConfig({ tenantLimits = '', userLimits = '', runs = '', decodeMs = 1, limits = '' } = {}) {
  return `
server: { access_log: "off" }
metering: { ledger_sqlite: "off" }
admin: { key_sha256: [${ADMIN_HASH}] }
limits:
${limits ? `  ${limits}\n` : ''}  runs: { ${runs} }
orgs: [{ id: demo }]
models:
  - alias: chat
    deployments: [{ id: chat-sim, provider: sim, sim: { engine: fixed, decode_ms_per_token: ${decodeMs}, ttft_base_ms: 1 } }]
${ACME_TENANT_YAML}      - { id: acme-service, sha256: 005e0af9d236348df20df9e54704c3fd304eef82c0abda9fafebca817236f2f3 }
    limits: { ${tenantLimits} }
    user_limits: { ${userLimits} }
  - id: globex
    org: demo
    users: [carol]
    keys:
      - { id: globex-carol, user: carol, sha256: c4c746af8a9f76e72d9f32cda358105d59855e7da7b6526ba74e5905d386c0ef }
`;
}

// A chat completion to the 'chat' model of limitsConfig().
export function chat(base, key, { headers = {}, maxTokens = 4, stream = false, signal } = {}) {
  return fetch(`${base}/v1/chat/completions`, {
    method: 'POST', signal,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens, stream }),
  });
}

const children = new Set();
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch {} } });

export function tempDir() { return mkdtempSync(join(tmpdir(), 'tg-e2e-')); }

// Starts `tenantgate serve`; `yaml` null means the embedded default config.
// Resolves once the gateway logs its listening address.
export async function startGateway({ yaml = null, args = [], env = {}, cwd = null } = {}) {
  const argv = ['serve', '--listen', '127.0.0.1:0', ...args];
  if (yaml !== null) {
    const file = join(tempDir(), 'tenantgate.yaml');
    writeFileSync(file, yaml);
    argv.push('--config', file);
  }
  cwd ??= tempDir();  // the embedded default writes its SQLite ledger (and its journal) in the working directory
  const child = spawn(BIN, argv, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const gw = { child, cwd, stdout: '', stderr: '', port: 0 };
  child.stdout.on('data', (d) => { gw.stdout += d; });
  child.stderr.on('data', (d) => { gw.stderr += d; });
  gw.exited = new Promise((resolve) => child.on('exit', (code, signal) => { children.delete(child); resolve({ code, signal }); }));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${gw.stderr}`)), 10000);
    const check = () => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(gw.stderr);
      if (m) { clearTimeout(timer); gw.port = Number(m[1]); resolve(); }
    };
    child.stderr.on('data', check);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`gateway exited ${code}:\n${gw.stderr}`)); });
  });
  gw.base = `http://127.0.0.1:${gw.port}`;
  gw.stop = async () => { if (child.exitCode === null) child.kill('SIGTERM'); return gw.exited; };
  return gw;
}

// Runs the binary to completion (CLI subcommands, config checks).
export function runCli(args, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(BIN, args, { env: { ...process.env, ...env } });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

// Drives `send()` from 8 concurrent loops until `count` requests completed
// with 200, then kill -9s the gateway. Resolves to the completed request ids
// with their completion times, and the moment of the kill.
export async function killUnderLoad(gw, send, count) {
  const completed = [];
  let stop = false;
  const loop = async () => {
    while (!stop) {
      try {
        const r = await send();
        await r.text();
        if (r.status === 200) completed.push([r.headers.get('x-request-id'), Date.now()]);
      } catch { return; }
    }
  };
  const loops = Array.from({ length: 8 }, loop);
  await waitFor(() => completed.length >= count, 20000, `${count} completed requests`);
  const killedAt = Date.now();
  gw.child.kill('SIGKILL');
  stop = true;
  await Promise.all(loops);
  await gw.exited;
  return { completed, killedAt };
}

export async function metric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : NaN;
}

export async function waitFor(pred, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// A raw TCP exchange: writes `chunks` (with optional delays) and collects
// what the server sends until it closes or `timeoutMs` passes.
export function rawExchange(port, chunks, { timeoutMs = 5000 } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    const started = Date.now();
    const done = (why) => { clearTimeout(t); sock.destroy(); resolve({ data, why, ms: Date.now() - started }); };
    const t = setTimeout(() => done('timeout'), timeoutMs);
    sock.on('data', (d) => { data += d; });
    sock.on('close', () => done('closed'));
    sock.on('error', () => done('error'));
    sock.on('connect', async () => {
      for (const c of chunks) {
        if (typeof c === 'number') await new Promise((r) => setTimeout(r, c));
        else if (!sock.destroyed) sock.write(c);
      }
    });
  });
}

export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// Debian's redis-server on a loopback port, no persistence, killed with the test process.
export async function startRedis(port) {
  const dir = tempDir();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  await waitFor(() => /Ready to accept connections/.test(out), 10000, 'redis-server ready');
  const exited = new Promise((r) => child.on('exit', r));
  process.on('exit', () => { try { child.kill('SIGKILL'); } catch {} });
  return { port, kill: async () => { child.kill('SIGKILL'); await exited; } };
}


// A Redis Cluster of three primaries (Debian's redis-server and redis-cli),
// on loopback ports, no persistence, killed with the test process.
export async function startRedisCluster() {
  const nodes = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const dir = tempDir();
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes',
      '--cluster-config-file', 'nodes.conf', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    await waitFor(() => /Ready to accept connections/.test(out), 10000, 'redis-server (cluster) ready');
    process.on('exit', () => { try { child.kill('SIGKILL'); } catch {} });
    nodes.push({ port, child, exited: new Promise((r) => child.on('exit', r)) });
  }
  const { execFileSync } = await import('node:child_process');
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0',
    '--cluster-yes'], { stdio: 'ignore' });
  await waitFor(() => nodes.every((n) => /cluster_state:ok/.test(execFileSync('redis-cli', ['-p', String(n.port), 'cluster', 'info'], { encoding: 'utf8' }))),
    10000, 'cluster state ok');
  return { ports: nodes.map((n) => n.port), kill: async () => { for (const n of nodes) n.child.kill('SIGKILL'); await Promise.all(nodes.map((n) => n.exited)); } };
}

// llama.cpp's llama-server (scripts/build-llama-server) serving the tiny
// random-weight GPT-2 on a free loopback port, healthy before this resolves.
// `args`: its extra flags (slots, context, embeddings). Killed with the test file.
export const LLAMA_CACHE = process.env.TG_LLAMA_CACHE || '/var/cache/tenantgate/llama';
export async function startLlama(args = ['-np', '2', '-c', '4096']) {
  const bin = `${LLAMA_CACHE}/bin/llama-server`;
  const model = `${LLAMA_CACHE}/tiny-gpt2.gguf`;
  if (!existsSync(bin) || !existsSync(model))
    throw new Error(`llama-server or its model is missing under ${LLAMA_CACHE}: run scripts/setup --test`);
  const port = await freePort();
  const child = spawn(bin, ['-m', model, '--host', '127.0.0.1', '--port', String(port), ...args, '-t', '2', '--no-webui'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  child.on('exit', () => children.delete(child));
  const deadline = Date.now() + 60000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`llama-server exited ${child.exitCode}:\n${log}`);
    try { if ((await fetch(`http://127.0.0.1:${port}/health`)).status === 200) break; } catch {}
    if (Date.now() > deadline) throw new Error(`llama-server not healthy in 60 s:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port, stop: () => new Promise((r) => { if (child.exitCode !== null) return r(); child.on('exit', r); child.kill('SIGTERM'); }) };
}
