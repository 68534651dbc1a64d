#!/usr/bin/env python3
"""llama2c_encode.py: an independent, literal port of llama2.c's encode() (run.c),
the oracle for src/tok/llama2c_tok.c.

    python3 tests/ref/llama2c_encode.py TOKENIZER.bin FILE...

Prints one line per FILE: its ids, space-separated, without BOS/EOS (callers add
BOS). The algorithm is llama2.c's, quadratic on purpose (no cleverness to share a
bug with the C heap version): a " " dummy prefix for non-empty text, one token
per UTF-8 character (a byte plus up to three continuation bytes) or byte
fallback id = byte + 3, then repeatedly merge the leftmost adjacent pair whose
concatenated string is in the vocabulary with the highest score (> -1e10).
"""
import struct
import sys


def load(path):
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    pos, vocab, scores = 4, [], []
    while pos < len(data):
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        vocab.append(data[pos:pos + n])
        scores.append(score)
        pos += n
    lookup = {}
    for i, s in enumerate(vocab):
        lookup.setdefault(s, i)
    return vocab, scores, lookup


def encode(text, vocab, scores, lookup):
    if not text:
        return []
    tokens = [lookup.get(b" ", ord(" ") + 3)]
    i = 0
    while i < len(text):
        j = i + 1
        while j < len(text) and (text[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        piece = text[i:j]
        if piece in lookup:
            tokens.append(lookup[piece])
        else:
            tokens.extend(b + 3 for b in piece)
        i = j
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for k in range(len(tokens) - 1):
            merged = lookup.get(vocab[tokens[k]] + vocab[tokens[k + 1]], -1)
            if merged != -1 and scores[merged] > best_score:
                best_score, best_id, best_idx = scores[merged], merged, k
        if best_idx == -1:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    return tokens


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: llama2c_encode.py TOKENIZER.bin FILE...")
    vocab, scores, lookup = load(sys.argv[1])
    for path in sys.argv[2:]:
        ids = encode(open(path, "rb").read(), vocab, scores, lookup)
        print(" ".join(map(str, ids)))


if __name__ == "__main__":
    main()
