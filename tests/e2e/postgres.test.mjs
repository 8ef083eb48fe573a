// The fleet ledger in a real PostgreSQL (Debian's postgresql, started here on
// a loopback port in a temp dir): rows and rollup from two gateway processes
// sharing it, idempotence, and kill -9 under load.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { startGateway, runCli, tempDir, killUnderLoad, DEMO_KEYS, ACME_TENANT_YAML, ADMIN_KEY, ADMIN_HASH } from './harness.mjs';

const bindir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
const asPostgres = (cmd, args) => execFileSync('runuser', ['-u', 'postgres', '--', join(bindir, cmd), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

let pg;
async function startPostgres() {
  const dir = tempDir();
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
  chownSync(dir, uid, gid);
  const data = join(dir, 'data');
  asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const port = await freePort();
  asPostgres('pg_ctl', ['-D', data, '-w', '-l', join(dir, 'log'), '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  asPostgres('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'tenantgate']);
  const sql = (q) => execFileSync(join(bindir, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'tenantgate', '-At', '-F', '|', '-c', q], { encoding: 'utf8' }).trim();
  const stop = () => { try { asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']); } catch {} };
  process.on('exit', stop);
  return { port, sql, stop, conninfo: `host=127.0.0.1 port=${port} dbname=tenantgate user=postgres` };
}

const config = (conninfo) => `
server: { access_log: "off" }
metering: { ledger_postgres: "${conninfo}" }
orgs: [{ id: demo }]
models:
  - alias: chat
    price: { input_per_1m: "0.15", output_per_1m: "0.60" }
    deployments: [{ id: chat-sim, provider: sim, sim: { engine: fixed, decode_ms_per_token: 0, ttft_base_ms: 1 } }]
${ACME_TENANT_YAML}`;

const ask = (base, feature = 'f') => fetch(`${base}/v1/chat/completions`, {
  method: 'POST', headers: { authorization: `Bearer ${DEMO_KEYS.alice}`, 'content-type': 'application/json', 'x-tg-feature': feature },
  body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'to postgres' }], max_tokens: 3 }),
});

describe('PostgreSQL ledger (fleet)', () => {
  before(async () => { pg = await startPostgres(); });
  after(() => pg?.stop());

  it('two gateways write one ledger: every row once, rollup equal to the rows', async () => {
    const a = await startGateway({ yaml: config(pg.conninfo) });
    const b = await startGateway({ yaml: config(pg.conninfo) });
    const ids = [];
    for (let i = 0; i < 20; i++) {
      const r = await ask(i % 2 ? a.base : b.base, i % 3 ? 'chat' : 'search');
      await r.text();
      ids.push(r.headers.get('x-request-id'));
    }
    await a.stop();
    await b.stop();
    assert.equal(pg.sql('SELECT COUNT(*) FROM ledger'), '20');
    assert.equal(pg.sql('SELECT COUNT(DISTINCT request_id) FROM ledger'), '20');
    const row = pg.sql(`SELECT tenant, "user", key_id, feature, model, status, completion_tokens, usage_source FROM ledger WHERE request_id = '${ids[0]}'`);
    assert.equal(row, 'acme|alice|acme-alice|search|chat|200|3|upstream');
    const raw = pg.sql('SELECT feature, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_micros) FROM ledger GROUP BY feature ORDER BY feature');
    const rolled = pg.sql('SELECT feature, SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_micros) FROM usage_hourly GROUP BY feature ORDER BY feature');
    assert.equal(rolled, raw);
    // The usage CLI and the admin API read the same store with the same SQL.
    const cli = await runCli(['usage', '--postgres', pg.conninfo, '--group-by', 'feature', '--csv']);
    assert.equal(cli.code, 0, cli.stderr);
    const lines = cli.stdout.trim().split('\n');
    assert.equal(lines.length, 3);
    assert.equal(lines.slice(1).map((l) => Number(l.split(',')[1])).reduce((x, y) => x + y), 20);
    const adminHash = ADMIN_HASH;
    const c = await startGateway({ yaml: config(pg.conninfo).replace('orgs:', `admin: { key_sha256: [${adminHash}] }\norgs:`) });
    const j = await (await fetch(`${c.base}/admin/usage?group_by=tenant,user&granularity=day`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).json();
    assert.equal(j.data.length, 1);
    assert.equal(j.data[0].requests, 20);
    assert.equal(j.data[0].user, 'alice');
    await c.stop();
  });

  it('keeps the row of every completed request through kill -9 under load, none twice', async () => {
    pg.sql('TRUNCATE ledger, usage_hourly');
    const gw = await startGateway({ yaml: config(pg.conninfo) });
    const { completed } = await killUnderLoad(gw, () => ask(gw.base), 400);
    // The journal sits in the gateway's working directory: a restart there replays it.
    const again = await startGateway({ yaml: config(pg.conninfo), cwd: gw.cwd });
    await again.stop();
    const stored = new Set(pg.sql('SELECT request_id FROM ledger').split('\n'));
    assert.equal(completed.filter(([id]) => !stored.has(id)).length, 0, 'a completed request lost its row');
    assert.equal(pg.sql('SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM ledger'), '0');
    assert.equal(pg.sql('SELECT SUM(requests) FROM usage_hourly'), String(stored.size));
  });

  it('keeps the cache\'s audit trail in PostgreSQL: writes, hits, purges, and the admin API reads it', async () => {
    const yaml = config(pg.conninfo).replace('orgs:', `admin: { key_sha256: [${ADMIN_HASH}] }\ncache: { threshold: 0.9 }\norgs:`);
    const gw = await startGateway({ yaml });
    const statuses = [];
    let first;
    for (let i = 0; i < 3; i++) {
      const r = await ask(gw.base);
      await r.text();
      statuses.push(r.headers.get('x-tg-cache'));
      first ??= r.headers.get('x-request-id');
    }
    assert.deepEqual(statuses, ['miss', 'hit', 'hit']);
    const entry = `ce_${first}`;
    const admin = { authorization: `Bearer ${ADMIN_KEY}` };
    const info = await (await fetch(`${gw.base}/admin/cache/entries/${entry}`, { headers: admin })).json();
    assert.equal(info.created_by.request_id, first);
    assert.equal(info.served.length, 2);
    assert.deepEqual(await (await fetch(`${gw.base}/admin/cache/entries/${entry}`, { method: 'DELETE', headers: admin })).json(), { purged: 1, audited: true });
    await gw.stop();
    assert.equal(pg.sql(`SELECT event, COUNT(*) FROM cache_audit WHERE entry = '${entry}' GROUP BY event ORDER BY event`), 'hit|2\npurge|1\nwrite|1');
    assert.equal(pg.sql(`SELECT cache_status, usage_source, cost_micros FROM ledger WHERE request_id <> '${first}' AND cache_status = 'hit' LIMIT 1`), 'hit|cache|0');
  });
});
