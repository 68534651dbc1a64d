#!/usr/bin/env node
// gpt2_encode.js: the independent GPT-2 tokenizer oracle (gpt-3-encoder@1.1.4).
//
//   node tests/ref/gpt2_encode.js [--uncut] [--time] FILE...
//
// Prints one line per FILE: its GPT-2 ids, space-separated. With --time, prints
// instead "bytes=B tokens=N seconds=S mb_per_s=R" over all files (encode calls
// only, not reading or decoding).
//
// How the bytes reach the oracle, which the C tokenizer reproduces:
//   - WHATWG UTF-8 decoding (TextDecoder): each maximal invalid subpart becomes
//     U+FFFD; a leading byte-order mark is KEPT (ignoreBOM: true) and encoded as
//     text, as tokenizer_encode does (callers strip it if they want).
//   - gpt-3-encoder has no special tokens, so the text is split at
//     "<|endoftext|>", the pieces encoded separately and joined with 50256.
//   - encode() is quadratic in its input (it concatenates arrays token by token),
//     so each piece is fed in chunks cut just BEFORE a "\n" that is followed by a
//     letter. No token spans such a cut: the newline is always a token of its
//     own there, and a whitespace run before it ends the same way whether or not
//     the text continues (\s+(?!\S) at the end of a chunk takes the same
//     characters as \s+(?!\S) before the "\n"). Cutting AFTER the newline would be
//     wrong: "\n\nThe" gives "\n","\n","The" but a chunk ending "\n\n" gives
//     "\n\n". --uncut encodes whole pieces (slow) so tests can check this claim.
//
// The package is looked up in $GPT3_ENCODER_DIR or .deps/npm/node_modules/
// gpt-3-encoder under the repository root (scripts/setup.sh installs it there).
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..', '..');
const pkg = process.env.GPT3_ENCODER_DIR ||
  path.join(root, '.deps', 'npm', 'node_modules', 'gpt-3-encoder');
const { encode } = require(pkg);

const EOT = '<|endoftext|>';
const EOT_ID = 50256;
const args = process.argv.slice(2);
const uncut = args.includes('--uncut');
const timing = args.includes('--time');
const files = args.filter(a => !a.startsWith('--'));
if (files.length === 0) {
  process.stderr.write('usage: gpt2_encode.js [--uncut] [--time] FILE...\n');
  process.exit(2);
}

const decoder = new TextDecoder('utf-8', { ignoreBOM: true });

function encodePiece(piece, out) {
  const chunks = uncut ? [piece] : piece.split(/(?=\n\p{L})/u);
  for (const c of chunks) {
    const ids = encode(c);
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }
}

function encodeText(text) {
  const out = [];
  const pieces = text.split(EOT);
  pieces.forEach((p, i) => {
    if (i > 0) out.push(EOT_ID);
    encodePiece(p, out);
  });
  return out;
}

let bytes = 0, tokens = 0, seconds = 0;
const lines = [];
for (const f of files) {
  const buf = fs.readFileSync(f);
  const text = decoder.decode(buf);
  const t0 = process.hrtime.bigint();
  const ids = encodeText(text);
  seconds += Number(process.hrtime.bigint() - t0) / 1e9;
  bytes += buf.length;
  tokens += ids.length;
  if (!timing) lines.push(ids.join(' '));
}
if (timing) {
  const mbps = bytes / 1e6 / seconds;
  process.stdout.write(`bytes=${bytes} tokens=${tokens} seconds=${seconds.toFixed(3)} ` +
                       `mb_per_s=${mbps.toFixed(3)}\n`);
} else {
  process.stdout.write(lines.join('\n') + '\n');
}
