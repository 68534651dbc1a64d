#!/usr/bin/python3
"""Independent reference for `autointerp extract` (used by tests/unit/test_extract_run.c).

    extract_ref.py MODEL_DIR TOKENS.h5 SAE.h5 EXAMPLES.h5 CONTEXT

Recomputes everything from the input files in float64 with numpy: a GPT-2
forward (Hugging Face layout read straight from model.safetensors) up to the
SAE's hook, the encoder c = relu(W_enc x + b_enc) on every scanned token, and
from those: the density and maximum of every feature, and for each sampled
feature its greedy non-overlapping top-k windows (candidates sorted by
activation, then position; a window starts at t - offset clamped into its
sequence). Checks the examples file against them and exits non-zero with a
message on the first mismatch. Sequences are consecutive chunks of `context`
tokens (no BOS), which is what the test uses.
"""
import json
import struct
import sys

import h5py
import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", meta["dtype"]
        a, b = meta["data_offsets"]
        out[name.removeprefix("transformer.")] = (
            np.frombuffer(data[a:b], dtype="<f4").reshape(meta["shape"]).astype(np.float64))
    return out


def layernorm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def resid_at(p, cfg, tokens, layer):
    T = len(tokens)
    C, H = cfg["n_embd"], cfg["n_head"]
    x = p["wte.weight"][tokens] + p["wpe.weight"][:T]
    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    for i in range(layer):
        h = f"h.{i}."
        a = layernorm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"])
        qkv = a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]
        q, k, v = np.split(qkv, 3, axis=1)
        q = q.reshape(T, H, -1).transpose(1, 0, 2)
        k = k.reshape(T, H, -1).transpose(1, 0, 2)
        v = v.reshape(T, H, -1).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(C // H)
        s[:, mask] = -np.inf
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        y = (s @ v).transpose(1, 0, 2).reshape(T, C)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        a = layernorm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"])
        x = x + gelu(a @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"]) @ \
            p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    return x


def fail(msg):
    print("extract_ref: " + msg)
    sys.exit(1)


def main():
    model_dir, tokens_path, sae_path, ex_path = sys.argv[1:5]
    cfg = json.load(open(model_dir + "/config.json"))
    p = load_safetensors(model_dir + "/model.safetensors")
    with h5py.File(sae_path, "r") as f:
        W = f["weights/W_enc"][:].astype(np.float64)
        b = f["weights/b_enc"][:].astype(np.float64)
        layer = int(f.attrs["layer"])
    with h5py.File(ex_path, "r") as f:
        ex = {k: f[k][:] for k in ("density", "max_activation", "features")}
        for k in ("feature", "split", "rank", "source", "acts"):
            ex["w_" + k] = f["windows/" + k][:]
        a = dict(f.attrs)
    window, offset, top_k = int(a["window"]), int(a["offset"]), int(a["top_k"])
    n_tok = int(a["n_tokens_scanned"])
    with h5py.File(tokens_path, "r") as f:
        ids = f["tokens"][:n_tok].astype(np.int64)
    T = int(sys.argv[5])
    acts = np.concatenate([np.maximum(resid_at(p, cfg, ids[s:s + T], layer) @ W.T + b, 0)
                           for s in range(0, n_tok, T)])  # (n_tok, d_sae)
    dens = (acts > 0).mean(0)
    if np.abs(dens - ex["density"]).max() > 2.0 / n_tok:
        fail("density differs: max |diff| %g" % np.abs(dens - ex["density"]).max())
    if not np.allclose(acts.max(0), ex["max_activation"], rtol=1e-4, atol=1e-5):
        fail("max_activation differs")
    for j, feat in enumerate(ex["features"]):
        col = acts[:, feat]
        pos = np.nonzero(col > 0)[0]
        order = sorted(pos, key=lambda t: (-col[t], t))
        kept = []
        for t in order:
            local = t % T
            st = t - local + min(max(local - offset, 0), T - window)
            if all(abs(st - k) >= window for k in kept):
                kept.append(st)
                if len(kept) == top_k:
                    break
        sel = ex["w_feature"] == j
        for split, rank, src, wa in zip(ex["w_split"][sel], ex["w_rank"][sel],
                                        ex["w_source"][sel], ex["w_acts"][sel]):
            if not np.allclose(wa, col[src:src + window], rtol=1e-4, atol=1e-5):
                fail("feature %d: window at %d: activations differ" % (feat, src))
            if split <= 1 and kept[rank] != src:
                fail("feature %d: top window of rank %d starts at %d, expected %d"
                     % (feat, rank, src, kept[rank]))
    print("extract_ref: ok (%d features, %d windows, %d tokens)"
          % (len(ex["features"]), len(ex["w_source"]), n_tok))


if __name__ == "__main__":
    main()
