// The BPE tokenizer must count exactly as OpenAI's tiktoken does: the
// published reference cases (gpt-tokenizer's TestPlans.txt) and thousands of
// generated mixed strings whose reference ids come from npm tiktoken (the
// official WASM build), compared id for id with `tenantgate count-tokens --jsonl`.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BIN } from './harness.mjs';

const require = createRequire(import.meta.url);
const { get_encoding } = require('tiktoken');

function binaryIds(encoding, texts) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['count-tokens', '--encoding', encoding, '--jsonl']);
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`count-tokens exited ${code}: ${err}`));
      resolve(out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l).ids));
    });
    child.stdin.end(texts.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
  });
}

function testPlans() {
  const file = readFileSync(require.resolve('gpt-tokenizer/package.json').replace('package.json', 'data/TestPlans.txt'), 'utf8');
  const plans = [];
  const re = /EncodingName: (\S+)\nSample: ([\s\S]*?)\nEncoded: \[([^\]]*)\]/g;
  for (let m; (m = re.exec(file));) plans.push({ encoding: m[1], text: m[2], ids: m[3].trim() ? m[3].split(',').map((x) => Number(x)) : [] });
  return plans;
}

// Deterministic mixed strings: prose, code, CJK, emoji (with ZWJ and skin
// tones), combining marks, RTL, digits, contractions, whitespace runs, and
// long unbroken words that take the O(n log n) merge path.
function mixedStrings(count, seed = 7) {
  let s = seed;
  const rnd = (n) => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s % n; };
  const pick = (a) => a[rnd(a.length)];
  const words = ['the', 'gateway', 'Tenant', 'budget', "don't", "WE'LL", "it's", 'naïve', 'café', 'straße', 'İstanbul', 'ΑΒΓ', 'привет', 'مرحبا', 'שלום', 'नमस्ते', '東京', 'こんにちは', '안녕하세요', '你好世界', '😀', '👩‍💻', '👍🏽', '🇫🇷', 'e\u0301', 'x\u0308y', '12345', '3.14159', '1,000,000', '0xDEADBEEF', 'snake_case', 'camelCaseWord', 'HTTPServer', 'i18n', '#include', '<|endoftext|>', '</div>', '=>', '...', '!!!', '???', '—', '«»', '\\n', 'https://example.com/a?b=c'];
  const code = ['for (int i = 0; i < n; ++i) {\n  sum += a[i];\n}\n', 'def f(x):\n\treturn x ** 2\n', 'SELECT * FROM t WHERE id = 42;', '{"a": [1, 2, {"b": null}]}', '    indented\n        more\n', 'const x = `${y}`;\r\n'];
  const spaces = [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n ', '\u00a0', '\u3000', '      \n'];
  const out = [];
  for (let i = 0; i < count; i++) {
    let t = '';
    const parts = 1 + rnd(12);
    for (let k = 0; k < parts; k++) {
      const kind = rnd(10);
      if (kind < 5) t += pick(words) + (rnd(3) ? ' ' : '');
      else if (kind === 5) t += pick(code);
      else if (kind === 6) t += pick(spaces);
      else if (kind === 7) t += String(rnd(100000000));
      else if (kind === 8) t += pick(['a', 'ab', 'xyz', 'Q', '€', '字']).repeat(1 + rnd(400));
      else t += String.fromCodePoint(0x20 + rnd(0x2ff0));
    }
    out.push(t);
  }
  return out;
}

for (const encoding of ['cl100k_base', 'o200k_base']) {
  describe(`tokenizer ${encoding} matches tiktoken`, () => {
    it('on the published reference cases', async () => {
      const plans = testPlans().filter((p) => p.encoding === encoding);
      assert.ok(plans.length >= 50, `${plans.length} reference cases`);
      const got = await binaryIds(encoding, plans.map((p) => p.text));
      plans.forEach((p, i) => assert.deepEqual(got[i], p.ids, `sample ${JSON.stringify(p.text)}`));
    });

    it('on 3,000 generated mixed strings, id for id', async () => {
      const enc = get_encoding(encoding);
      try {
        const texts = mixedStrings(3000, encoding.length);
        const got = await binaryIds(encoding, texts);
        let tokens = 0;
        texts.forEach((t, i) => {
          const want = Array.from(enc.encode_ordinary(t));
          tokens += want.length;
          assert.deepEqual(got[i], want, `string ${i}: ${JSON.stringify(t.slice(0, 120))}`);
        });
        assert.ok(tokens > 50000, `${tokens} tokens compared`);
      } finally { enc.free(); }
    });

    it('on long unbroken pieces (the O(n log n) merge)', async () => {
      const enc = get_encoding(encoding);
      try {
        const texts = ['a'.repeat(5000), 'ab'.repeat(3000), 'x'.repeat(129), 'Hello'.repeat(2000),
          'ñ'.repeat(2000), '字'.repeat(3000), '0123456789'.repeat(500), '!?'.repeat(2500)];
        const got = await binaryIds(encoding, texts);
        texts.forEach((t, i) => assert.deepEqual(got[i], Array.from(enc.encode_ordinary(t)), `long string ${i}`));
      } finally { enc.free(); }
    });
  });
}

describe('count-tokens CLI', () => {
  it('rejects invalid UTF-8 and unknown encodings and models precisely', async () => {
    const run = (args, input) => new Promise((resolve) => {
      const c = spawn(BIN, ['count-tokens', ...args]);
      let out = '', err = '';
      c.stdout.on('data', (d) => { out += d; });
      c.stderr.on('data', (d) => { err += d; });
      c.on('exit', (code) => resolve({ code, out, err }));
      c.stdin.end(input);
    });
    const bad = await run(['--encoding', 'cl100k_base'], Buffer.from([0x66, 0xff, 0x66]));
    assert.equal(bad.code, 2);
    assert.match(bad.err, /not valid UTF-8/);
    const unk = await run(['--encoding', 'p50k_base'], 'x');
    assert.match(unk.err, /unknown encoding 'p50k_base'/);
    const model = await run(['--model', 'llama-3'], 'x');
    assert.match(model.err, /no known encoding for model 'llama-3'/);
    const ok = await run(['--model', 'gpt-4o-mini'], 'hello world');
    assert.equal(ok.out.trim(), '2');
  });
});
