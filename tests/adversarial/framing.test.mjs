// HTTP/1.1 message framing under attack: the real binary, driven over raw
// loopback sockets with every Transfer-Encoding / Content-Length shape of
// RFC 9112 §6, malformed chunked bodies, and hostile request heads.
//
// The smuggling shape: a POST whose body is a complete admin request. A
// gateway that frames the body differently from the RFC parses those bytes
// as the NEXT request on the keep-alive connection and answers it. Every
// refused variant must answer exactly one error and close the connection;
// every accepted variant must consume the body as a body and keep serving.
//
// Run from the repository root: TG_BIN=build/tenantgate node --test tests/adversarial/framing.test.mjs
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { resolve as absolute } from 'node:path';

// The harness starts the binary from a temporary directory: a TG_BIN given
// relative to the repository root must be made absolute before it is read.
if (process.env.TG_BIN) process.env.TG_BIN = absolute(process.env.TG_BIN);
const { startGateway, waitFor, DEMO_KEYS, ACME_TENANT_YAML, ADMIN_KEY, ADMIN_HASH } = await import('../e2e/harness.mjs');

const ALICE = DEMO_KEYS.alice;

// Generous idle timeout: a connection the server keeps open must not look
// closed to a test because it idled out. Short body timeout: a body the
// server keeps waiting for fails the test quickly instead of hanging it.
const CONFIG = `
server: { header_timeout_ms: 3000, body_timeout_ms: 3000, idle_timeout_ms: 30000, access_log: stdout }
metering: { ledger_sqlite: tenantgate-ledger.db }
admin: { key_sha256: [${ADMIN_HASH}] }
orgs: [{ id: demo }]
models:
  - alias: chat
    deployments: [{ id: chat-sim, provider: sim, sim: { engine: fixed, decode_ms_per_token: 1, ttft_base_ms: 1 } }]
${ACME_TENANT_YAML}`;

// The request an attacker hides in a body: answered 200 when sent on its own.
const SMUGGLED = `GET /admin/usage HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${ADMIN_KEY}\r\n\r\n`;
const CHAT = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 });
const HEALTH = 'GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n';

const chunk = (data, ext = '') => `${Buffer.byteLength(data, 'latin1').toString(16)}${ext}\r\n${data}\r\n`;
const LAST = '0\r\n\r\n';
const CHUNKED_CHAT = chunk(CHAT) + LAST;
const len = (s) => Buffer.byteLength(s, 'latin1');

// A chat POST head; `framing` is header lines (each ending CRLF).
function chatHead(framing, { version = '1.1', host = 'Host: gw\r\n', extra = '' } = {}) {
  return `POST /v1/chat/completions HTTP/${version}\r\n${host}Authorization: Bearer ${ALICE}\r\n` +
    `Content-Type: application/json\r\n${extra}${framing}\r\n`;
}

// --- a raw connection that parses the responses it receives ---------------

function connect(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const c = { sock, buf: Buffer.alloc(0), serverClosed: false, wake: null };
    const poke = () => { const w = c.wake; c.wake = null; if (w) w(); };
    sock.on('data', (d) => { c.buf = Buffer.concat([c.buf, d]); poke(); });
    const closed = () => { c.serverClosed = true; poke(); };
    sock.on('end', closed);
    sock.on('close', closed);
    sock.on('error', closed);
    sock.once('connect', () => resolve(c));
    sock.once('error', reject);
  });
}

function send(c, bytes) { c.sock.write(Buffer.from(bytes, 'latin1')); }

// One whole response off the front of `buf`, or null while it is incomplete.
function parseResponse(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
  if (!m) throw new Error(`not an HTTP/1.1 status line: ${JSON.stringify(lines[0])}`);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  const status = Number(m[1]);
  if (status < 200) return { status, headers, body: Buffer.alloc(0), size: end + 4 };
  assert.equal(headers['transfer-encoding'], undefined, 'these requests are answered with Content-Length');
  const n = Number(headers['content-length']);
  assert.ok(Number.isInteger(n), `response without Content-Length: ${lines[0]}`);
  if (buf.length < end + 4 + n) return null;
  return { status, headers, body: buf.subarray(end + 4, end + 4 + n), size: end + 4 + n };
}

// The next final (non-1xx) response, or null when the server closed (or
// `ms` passed) before a whole one arrived.
async function nextResponse(c, ms = 3000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = parseResponse(c.buf);
    if (r) {
      c.buf = c.buf.subarray(r.size);
      if (r.status < 200) continue;
      return r;
    }
    if (c.serverClosed) return null;
    const left = deadline - Date.now();
    if (left <= 0) return null;
    await new Promise((resolve) => { c.wake = resolve; setTimeout(resolve, left); });
  }
}

// The body of an error response: OpenAI's shape, valid UTF-8.
function errorOf(r) {
  assert.match(r.headers['content-type'], /^application\/json/);
  const text = new TextDecoder('utf-8', { fatal: true }).decode(r.body);
  const j = JSON.parse(text);
  assert.equal(typeof j.error, 'object');
  assert.equal(typeof j.error.message, 'string');
  assert.ok(j.error.message.length > 0);
  assert.equal(typeof j.error.type, 'string');
  assert.equal(typeof j.error.code, 'string');
  return j.error;
}

// Sends `bytes` on a fresh connection and requires: exactly one response,
// with `status` (and error `code`), `Connection: close`, then the server
// closing without answering anything else that was on the wire.
async function expectRefusedAndClosed(gw, bytes, { status, code, endWrite = false }) {
  const c = await connect(gw.port);
  try {
    send(c, bytes);
    if (endWrite) c.sock.end();
    const r = await nextResponse(c);
    assert.ok(r, `no response at all (server closed: ${c.serverClosed})`);
    assert.equal(r.status, status, r.body.toString('latin1'));
    const e = errorOf(r);
    assert.equal(e.code, code, e.message);
    assert.equal(r.headers.connection, 'close');
    const second = await nextResponse(c, 2500);
    assert.equal(second, null, `a second response arrived: ${second && second.status} ${second && second.body}`);
    assert.ok(c.serverClosed, 'the server kept the connection open');
    assert.equal(c.buf.length, 0, `stray bytes after the response: ${c.buf.toString('latin1').slice(0, 120)}`);
    return { r, e };
  } finally {
    c.sock.destroy();
  }
}

// Sends `bytes`, requires `status` and `answer` (the error code of an error,
// else the body's `object`), then a second request on the same connection
// answered 200, and the connection still open.
async function expectAnsweredAndReusable(gw, bytes, { status, answer }) {
  const c = await connect(gw.port);
  try {
    send(c, bytes);
    const r = await nextResponse(c);
    assert.ok(r, `no response (server closed: ${c.serverClosed})`);
    assert.equal(r.status, status, r.body.toString('latin1'));
    assert.equal(status >= 400 ? errorOf(r).code : JSON.parse(r.body.toString()).object, answer);
    assert.equal(r.headers.connection, 'keep-alive');
    send(c, HEALTH);
    const h = await nextResponse(c);
    assert.ok(h, 'no answer to the second request on the connection');
    assert.equal(h.status, 200);
    assert.equal(JSON.parse(h.body.toString()).status, 'ok');
    assert.equal(await nextResponse(c, 300), null, 'an extra response arrived');
    assert.equal(c.serverClosed, false, 'the server closed a connection it should keep');
    assert.equal(c.buf.length, 0);
    return r;
  } finally {
    c.sock.destroy();
  }
}

// The access-log line of a request: it was settled (logged and counted).
async function accessLogLine(gw, requestId) {
  let line;
  await waitFor(() => {
    line = gw.stdout.split('\n').find((l) => l.includes(`"request_id":"${requestId}"`));
    return Boolean(line);
  }, 3000, `access log line for ${requestId}`);
  return JSON.parse(line);
}

// --- the cases --------------------------------------------------------------

// Framing the server refuses before reading the body. `body` is what follows
// the head; each one hides SMUGGLED where a mis-framing server would find it.
const REFUSED_FRAMING = [
  // RFC 9112 §6.3: TE present and chunked not the final coding → 400.
  { name: 'TE: chunked, identity', head: chatHead('Transfer-Encoding: chunked, identity\r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  { name: 'TE: chunked, gzip', head: chatHead('Transfer-Encoding: chunked, gzip\r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  { name: 'TE: gzip', head: chatHead('Transfer-Encoding: gzip\r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  { name: 'TE: x-chunked', head: chatHead('Transfer-Encoding: x-chunked\r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  { name: 'TE: identity', head: chatHead('Transfer-Encoding: identity\r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  { name: 'TE: "chunked" (quoted)', head: chatHead('Transfer-Encoding: "chunked"\r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  { name: 'TE: empty value', head: chatHead('Transfer-Encoding: \r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  // Not a list: Beast alone would frame this as chunked.
  { name: 'TE: chunked identity (no comma)', head: chatHead('Transfer-Encoding: chunked identity\r\n'), body: CHUNKED_CHAT + SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  { name: 'TE: chunked;q=1 (chunked takes no parameters)', head: chatHead('Transfer-Encoding: chunked;q=1\r\n'), body: CHUNKED_CHAT + SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  // chunked applied twice → 400.
  { name: 'TE: chunked, chunked', head: chatHead('Transfer-Encoding: chunked, chunked\r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  { name: 'TE: CHUNKED,Chunked (case-insensitive)', head: chatHead('Transfer-Encoding: CHUNKED,Chunked\r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  { name: 'TE split over two lines: chunked / chunked', head: chatHead('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n'), body: CHUNKED_CHAT + SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  { name: 'TE split over two lines: chunked / identity', head: chatHead('Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  // §6.1: a coding the gateway does not decode (it decodes none but chunked) → 501.
  { name: 'TE: gzip, chunked', head: chatHead('Transfer-Encoding: gzip, chunked\r\n'), body: CHUNKED_CHAT + SMUGGLED, status: 501, code: 'unsupported_transfer_coding' },
  { name: 'TE: identity, chunked', head: chatHead('Transfer-Encoding: identity, chunked\r\n'), body: CHUNKED_CHAT + SMUGGLED, status: 501, code: 'unsupported_transfer_coding' },
  { name: 'TE split over two lines: gzip / chunked', head: chatHead('Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n'), body: CHUNKED_CHAT + SMUGGLED, status: 501, code: 'unsupported_transfer_coding' },
  // obs-fold is unfolded to SP (RFC 9112 §5.2) before the list is judged.
  { name: 'TE obs-fold: chunked / " , identity"', head: chatHead('Transfer-Encoding: chunked\r\n , identity\r\n'), body: SMUGGLED, status: 400, code: 'invalid_transfer_encoding' },
  // §6.1: TE in HTTP/1.0 → faulty framing, 400 and close.
  { name: 'TE: chunked in HTTP/1.0 (keep-alive)', head: chatHead('Transfer-Encoding: chunked\r\n', { version: '1.0', extra: 'Connection: keep-alive\r\n' }), body: CHUNKED_CHAT + SMUGGLED, status: 400, code: 'transfer_encoding_in_http10' },
  { name: 'TE: chunked + Content-Length in HTTP/1.0', head: chatHead(`Transfer-Encoding: chunked\r\nContent-Length: ${len(CHUNKED_CHAT)}\r\n`, { version: '1.0', extra: 'Connection: keep-alive\r\n' }), body: CHUNKED_CHAT + SMUGGLED, status: 400, code: 'transfer_encoding_in_http10' },
  // TE together with CL, in both orders and with a coding Beast ignores → 400.
  { name: 'TE: chunked, then Content-Length', head: chatHead(`Transfer-Encoding: chunked\r\nContent-Length: ${len(CHUNKED_CHAT)}\r\n`), body: CHUNKED_CHAT + SMUGGLED, status: 400, code: 'conflicting_framing' },
  { name: 'Content-Length, then TE: chunked', head: chatHead(`Content-Length: ${len(CHUNKED_CHAT)}\r\nTransfer-Encoding: chunked\r\n`), body: CHUNKED_CHAT + SMUGGLED, status: 400, code: 'conflicting_framing' },
  { name: 'TE: gzip, then Content-Length', head: chatHead(`Transfer-Encoding: gzip\r\nContent-Length: ${len(SMUGGLED)}\r\n`), body: SMUGGLED, status: 400, code: 'conflicting_framing' },
  { name: 'Content-Length, then TE: gzip', head: chatHead(`Content-Length: ${len(SMUGGLED)}\r\nTransfer-Encoding: gzip\r\n`), body: SMUGGLED, status: 400, code: 'conflicting_framing' },
  // Content-Length must be one decimal number, sent once (RFC 9112 §6.3 item 5).
  { name: 'two Content-Length lines, equal', head: chatHead(`Content-Length: ${len(SMUGGLED)}\r\nContent-Length: ${len(SMUGGLED)}\r\n`), body: SMUGGLED, status: 400, code: 'invalid_content_length' },
  { name: 'two Content-Length lines, different', head: chatHead(`Content-Length: 0\r\nContent-Length: ${len(SMUGGLED)}\r\n`), body: SMUGGLED, status: 400, code: 'invalid_content_length' },
  { name: 'Content-Length list "n, n"', head: chatHead(`Content-Length: ${len(SMUGGLED)}, ${len(SMUGGLED)}\r\n`), body: SMUGGLED, status: 400, code: 'invalid_content_length' },
  { name: 'Content-Length with a sign (+n)', head: chatHead(`Content-Length: +${len(SMUGGLED)}\r\n`), body: SMUGGLED, status: 400, code: 'invalid_content_length' },
  { name: 'Content-Length negative (-1)', head: chatHead('Content-Length: -1\r\n'), body: SMUGGLED, status: 400, code: 'invalid_content_length' },
  { name: 'Content-Length with an inner space ("0 5")', head: chatHead('Content-Length: 0 5\r\n'), body: SMUGGLED, status: 400, code: 'invalid_content_length' },
  { name: 'Content-Length in hex (0x10)', head: chatHead('Content-Length: 0x10\r\n'), body: SMUGGLED, status: 400, code: 'invalid_content_length' },
  { name: 'Content-Length empty', head: chatHead('Content-Length: \r\n'), body: SMUGGLED, status: 400, code: 'invalid_content_length' },
  // A body with no framing at all: its bytes would be the next request → 411.
  { name: 'POST without Content-Length or TE', head: chatHead(''), body: SMUGGLED, status: 411, code: 'length_required' },
  { name: 'TE hidden in the obs-fold of another header', head: chatHead('X-Note: a\r\n Transfer-Encoding: chunked\r\n'), body: SMUGGLED, status: 411, code: 'length_required' },
  { name: 'misspelt TE header (Transfer_Encoding)', head: chatHead('Transfer_Encoding: chunked\r\n'), body: SMUGGLED, status: 411, code: 'length_required' },
  // Header syntax Beast refuses itself (RFC 9112 §5.1, §2.2).
  { name: 'TE with a space before the colon', head: chatHead('Transfer-Encoding : chunked\r\n'), body: SMUGGLED, status: 400, code: 'malformed_http' },
  { name: 'bare LF line endings in the head', head: chatHead('Transfer-Encoding: chunked\r\n').replaceAll('\r\n', '\n'), body: SMUGGLED, status: 400, code: 'malformed_http' },
  { name: 'bare LF ending one header line', head: chatHead('Transfer-Encoding: chunked\nX-A: 1\r\n'), body: SMUGGLED, status: 400, code: 'malformed_http' },
];

// A head with `Transfer-Encoding: chunked` and a body Beast fails to parse:
// 400 malformed_http, connection closed, request settled (access log).
const TE_CHUNKED = chatHead('Transfer-Encoding: chunked\r\n');
const REFUSED_BODY = [
  { name: 'chunk size "zz"', body: `zz\r\n${SMUGGLED}\r\n${LAST}` },
  { name: 'chunk size of 24 hex digits (overflow)', body: `${'f'.repeat(24)}\r\n${SMUGGLED}\r\n${LAST}` },
  { name: 'chunk size "-1"', body: `-1\r\n${SMUGGLED}\r\n${LAST}` },
  { name: 'chunk size "0x5"', body: `0x5\r\nhello\r\n${LAST}${SMUGGLED}` },
  { name: 'chunk size with a leading space', body: ` 5\r\nhello\r\n${LAST}${SMUGGLED}` },
  { name: 'empty chunk size line', body: `\r\n${SMUGGLED}` },
  { name: 'chunk size line without CRLF', body: `${len(SMUGGLED).toString(16)}${SMUGGLED}\r\n${LAST}` },
  { name: 'chunk size line ending in a bare LF', body: `${len(SMUGGLED).toString(16)}\n${SMUGGLED}\r\n${LAST}` },
  { name: 'chunk data ending in a bare LF', body: `5\r\nhello\n${LAST}${SMUGGLED}` },
  { name: 'chunk data longer than its size', body: `5\r\nhello${SMUGGLED}\r\n${LAST}` },
  { name: 'malformed chunk extension (";=x")', body: `5;=x\r\nhello\r\n${LAST}${SMUGGLED}` },
  { name: 'smuggled request as the trailer section', body: `${chunk(CHAT)}0\r\n${SMUGGLED}` },
  { name: 'trailer with a space before the colon', body: `${chunk(CHAT)}0\r\nX-T : 1\r\n\r\n${SMUGGLED}` },
  { name: 'missing final CRLF, then the client half-closes', body: `${chunk(CHAT)}0\r\n`, endWrite: true },
  { name: 'body cut short mid-chunk, then the client half-closes', body: `${len(CHAT).toString(16)}\r\n${CHAT.slice(0, 10)}`, endWrite: true },
];

// Framing that is valid and must be served, the body consumed as a body.
const ACCEPTED = [
  { name: 'TE: chunked', bytes: TE_CHUNKED + CHUNKED_CHAT, status: 200, answer: 'chat.completion' },
  { name: 'TE: Chunked (case-insensitive), tab OWS', bytes: chatHead('Transfer-Encoding:\tChunked\t\r\n') + CHUNKED_CHAT, status: 200, answer: 'chat.completion' },
  { name: 'TE: ", chunked" (empty list element)', bytes: chatHead('Transfer-Encoding: , chunked\r\n') + CHUNKED_CHAT, status: 200, answer: 'chat.completion' },
  { name: 'TE obs-fold: "Transfer-Encoding:" / " chunked"', bytes: chatHead('Transfer-Encoding:\r\n chunked\r\n') + CHUNKED_CHAT, status: 200, answer: 'chat.completion' },
  { name: 'chunk extensions (5;ext=1, quoted value)', bytes: TE_CHUNKED + chunk(CHAT.slice(0, 5), ';ext=1') + chunk(CHAT.slice(5), ';name="a b";x') + '0;end=1\r\n\r\n', status: 200, answer: 'chat.completion' },
  { name: 'trailer fields', bytes: TE_CHUNKED + chunk(CHAT) + '0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n', status: 200, answer: 'chat.completion' },
  { name: 'chunk size with leading zeros (24 digits)', bytes: TE_CHUNKED + `${len(CHAT).toString(16).padStart(24, '0')}\r\n${CHAT}\r\n${LAST}`, status: 200, answer: 'chat.completion' },
  { name: 'many one-byte chunks', bytes: TE_CHUNKED + [...CHAT].map((ch) => chunk(ch)).join('') + LAST, status: 200, answer: 'chat.completion' },
  { name: 'Content-Length', bytes: chatHead(`Content-Length: ${len(CHAT)}\r\n`) + CHAT, status: 200, answer: 'chat.completion' },
  { name: 'Content-Length with leading zeros and OWS', bytes: chatHead(`Content-Length:  000${len(CHAT)} \r\n`) + CHAT, status: 200, answer: 'chat.completion' },
  { name: 'HTTP/1.0 with Content-Length, keep-alive, no Host', bytes: chatHead(`Content-Length: ${len(CHAT)}\r\n`, { version: '1.0', host: '', extra: 'Connection: keep-alive\r\n' }) + CHAT, status: 200, answer: 'chat.completion' },
  // The smuggled request as a properly framed body: an API error, not a second response.
  { name: 'smuggled request as a chunked body', bytes: TE_CHUNKED + chunk(SMUGGLED) + LAST, status: 400, answer: 'invalid_json' },
  { name: 'smuggled request as a Content-Length body', bytes: chatHead(`Content-Length: ${len(SMUGGLED)}\r\n`) + SMUGGLED, status: 400, answer: 'invalid_json' },
];

const MODELS = (target, lines = 'Host: gw\r\n', version = '1.1') =>
  `GET ${target} HTTP/${version}\r\n${lines}Authorization: Bearer ${ALICE}\r\n\r\n`;

// Hostile request heads (RFC 9112 §3, §5).
const REFUSED_HEAD = [
  { name: 'HTTP/1.1 without Host', bytes: MODELS('/v1/models', '') + SMUGGLED, status: 400, code: 'missing_host' },
  { name: 'two Host lines', bytes: MODELS('/v1/models', 'Host: gw\r\nHost: evil\r\n') + SMUGGLED, status: 400, code: 'duplicate_host' },
  { name: 'two Host lines in HTTP/1.0', bytes: MODELS('/v1/models', 'Host: gw\r\nHost: gw\r\nConnection: keep-alive\r\n', '1.0') + SMUGGLED, status: 400, code: 'duplicate_host' },
  { name: 'Host as a list ("a, b")', bytes: MODELS('/v1/models', 'Host: gw, evil\r\n') + SMUGGLED, status: 400, code: 'invalid_host' },
  { name: 'Host with a space inside', bytes: MODELS('/v1/models', 'Host: gw evil\r\n') + SMUGGLED, status: 400, code: 'invalid_host' },
  { name: 'absolute-form target with a non-HTTP scheme', bytes: MODELS('ftp://gw/v1/models') + SMUGGLED, status: 400, code: 'invalid_request_target' },
  { name: 'request target neither origin- nor absolute-form', bytes: MODELS('v1/models') + SMUGGLED, status: 400, code: 'invalid_request_target' },
  { name: 'request line over the header limit', bytes: MODELS(`/v1/models?q=${'a'.repeat(20000)}`), status: 414, code: 'request_line_too_long' },
  { name: 'header fields over the header limit', bytes: MODELS('/v1/models', `Host: gw\r\n${'X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n'.repeat(400)}`), status: 431, code: 'headers_too_large' },
  { name: 'NUL in a header value', bytes: MODELS('/v1/models', 'Host: gw\r\nX-A: a\0b\r\n') + SMUGGLED, status: 400, code: 'malformed_http' },
  { name: 'SOH (0x01) in a header value', bytes: MODELS('/v1/models', 'Host: gw\r\nX-A: a\x01b\r\n') + SMUGGLED, status: 400, code: 'malformed_http' },
  { name: 'vertical tab in a header value', bytes: MODELS('/v1/models', 'Host: gw\r\nX-A: a\x0bb\r\n') + SMUGGLED, status: 400, code: 'malformed_http' },
  { name: 'DEL (0x7f) in a header value', bytes: MODELS('/v1/models', 'Host: gw\r\nX-A: a\x7fb\r\n') + SMUGGLED, status: 400, code: 'malformed_http' },
  { name: 'bare CR in a header value', bytes: MODELS('/v1/models', 'Host: gw\r\nX-A: a\rb\r\n') + SMUGGLED, status: 400, code: 'malformed_http' },
  { name: 'header name with a space before the colon', bytes: MODELS('/v1/models', 'Host: gw\r\nX-A : 1\r\n') + SMUGGLED, status: 400, code: 'malformed_http' },
  { name: 'header name with a tab before the colon', bytes: MODELS('/v1/models', 'Host: gw\r\nX-A\t: 1\r\n') + SMUGGLED, status: 400, code: 'malformed_http' },
  { name: 'header line without a colon', bytes: MODELS('/v1/models', 'Host: gw\r\nX-A 1\r\n') + SMUGGLED, status: 400, code: 'malformed_http' },
];

describe('adversarial HTTP/1.1 framing', () => {
  let gw;
  before(async () => { gw = await startGateway({ yaml: CONFIG }); });
  after(async () => { await gw.stop(); });

  it('control: the smuggled admin request is answered 200 when sent on its own', async () => {
    const c = await connect(gw.port);
    send(c, SMUGGLED);
    const r = await nextResponse(c);
    c.sock.destroy();
    assert.ok(r);
    assert.equal(r.status, 200, r.body.toString());
  });

  describe('refused framing: one error, no smuggled response, connection closed', () => {
    for (const t of REFUSED_FRAMING) {
      it(`${t.name} → ${t.status} ${t.code}`, async () => {
        await expectRefusedAndClosed(gw, t.head + t.body, t);
      });
    }
  });

  describe('malformed chunked bodies: 400 malformed_http, closed, logged', () => {
    for (const t of REFUSED_BODY) {
      it(`${t.name} → 400`, async () => {
        const { r } = await expectRefusedAndClosed(gw, TE_CHUNKED + t.body, { status: 400, code: 'malformed_http', endWrite: t.endWrite });
        const line = await accessLogLine(gw, r.headers['x-request-id']);
        assert.equal(line.status, 400);
        assert.equal(line.error_code, 'malformed_http');
        assert.equal(line.path, '/v1/chat/completions');
      });
    }
    it('a chunk size over the body limit → 413 request_too_large', async () => {
      await expectRefusedAndClosed(gw, TE_CHUNKED + `${'f'.repeat(16)}\r\n${SMUGGLED}`, { status: 413, code: 'request_too_large' });
    });
  });

  describe('accepted framing: the body is consumed as a body, the connection serves on', () => {
    for (const t of ACCEPTED) {
      it(`${t.name} → ${t.status}`, async () => {
        await expectAnsweredAndReusable(gw, t.bytes, t);
      });
    }
  });

  describe('hostile request heads', () => {
    for (const t of REFUSED_HEAD) {
      it(`${t.name} → ${t.status} ${t.code}`, async () => {
        await expectRefusedAndClosed(gw, t.bytes, t);
      });
    }

    it('absolute-form targets are served as their path (RFC 9112 §3.2.2)', async () => {
      const c = await connect(gw.port);
      try {
        send(c, MODELS('http://gw/v1/models'));
        const r = await nextResponse(c);
        assert.ok(r);
        assert.equal(r.status, 200, r.body.toString());
        assert.ok(JSON.parse(r.body.toString()).data.some((m) => m.id === 'chat'));
        send(c, 'GET HTTPS://other.example:8443/healthz?probe=1 HTTP/1.1\r\nHost: gw\r\n\r\n');
        const h = await nextResponse(c);
        assert.ok(h);
        assert.equal(h.status, 200, h.body.toString());
        assert.equal(JSON.parse(h.body.toString()).status, 'ok');
        const line = await accessLogLine(gw, h.headers['x-request-id']);
        assert.equal(line.path, '/healthz');
      } finally {
        c.sock.destroy();
      }
    });

    it('a head trickled in pieces is bounded by the header limit in total → 431', async () => {
      // Beast's own header_limit bounds only what is unparsed at a time; the
      // gateway counts the whole head.
      const c = await connect(gw.port);
      try {
        send(c, 'GET /healthz HTTP/1.1\r\nHost: gw\r\n');
        const line = `X-Pad: ${'a'.repeat(1000)}\r\n`;
        for (let i = 0; i < 40 && !c.serverClosed; i++) {  // 40 KB against the default 16 KiB
          send(c, line.repeat(2));
          await new Promise((r) => setTimeout(r, 5));
        }
        if (!c.serverClosed) send(c, '\r\n');
        const r = await nextResponse(c);
        assert.ok(r, 'no response');
        assert.equal(r.status, 431, r.body.toString());
        assert.equal(errorOf(r).code, 'headers_too_large');
        assert.equal(await nextResponse(c, 2500), null);
        assert.ok(c.serverClosed);
      } finally {
        c.sock.destroy();
      }
    });

    it('HTTP/1.0 without Host is served', async () => {
      await expectAnsweredAndReusable(gw, MODELS('/v1/models', 'Connection: keep-alive\r\n', '1.0'), { status: 200, answer: 'list' });
    });

    it('error messages quote a header value cut short, raw bytes escaped', async () => {
      const raw = `g\xff\xfe\x80zip${'A'.repeat(300)}`;
      const bad = await expectRefusedAndClosed(gw, chatHead(`Transfer-Encoding: ${raw}, chunked\r\n`) + CHUNKED_CHAT + SMUGGLED,
        { status: 400, code: 'invalid_transfer_encoding' });
      assert.ok(bad.e.message.includes('g\\xFF\\xFE\\x80zipAAAA'), bad.e.message);
      const long = await expectRefusedAndClosed(gw, chatHead(`Transfer-Encoding: br${'A'.repeat(300)}, chunked\r\n`) + CHUNKED_CHAT + SMUGGLED,
        { status: 501, code: 'unsupported_transfer_coding' });
      assert.ok(long.e.message.includes('brAAAA'), long.e.message);
      for (const { e } of [bad, long]) {
        assert.ok(!e.message.includes('A'.repeat(100)), `the header value was echoed whole: ${e.message}`);
        assert.ok(e.message.length < 400, `message of ${e.message.length} chars`);
      }
    });
  });

  it('still serves after the barrage', async () => {
    await expectAnsweredAndReusable(gw, TE_CHUNKED + CHUNKED_CHAT, { status: 200, answer: 'chat.completion' });
  });
});
