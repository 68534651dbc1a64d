#!/usr/bin/python3
"""gpt2_ref.py: an independent GPT-2 in PyTorch (float64) that the C model is checked against.

Builds a GPT-2 with random weights from a seed, saves it in Hugging Face layout
(config.json + model.safetensors written by hand: no safetensors package), draws a
batch of tokens, and writes what the C forward and backward passes must reproduce
into ref.h5:

  tokens (B,T) int32, logits (B,T,V), ce (mean next-token CE over t < T-1),
  resid (L+1,B,T,C): resid[l] = blocks.l.hook_resid_pre, resid[L] = last resid_post,
  attrs hook, hook2, mse_coeff;
  grad_ce (B,T,C)      d CE / d resid[hook]
  kl_target_logp (B,T,V), grad_kl (B,T,C): d KL(target || model) / d resid[hook],
                       KL summed over the vocabulary, averaged over all B*T positions
  mse_target (B,T,C), grad_ce_mse (B,T,C): d [CE + mse_coeff * mean((resid[hook2] -
                       mse_target)^2)] / d resid[hook]
  grads/<label>        d CE / d parameter, in the C layout (per-layer tensors
                       stacked over layers, Conv1D weights (in, out))

Sizes: "small" (3 layers, C=64, 4 heads, V=512, P=64, B=2, T=32: everything, and
the same weights again as F16 and BF16 files, the BF16 one with the
"transformer." prefix and the attn.bias mask buffers) and "gpt2small" (12 layers,
768, 12 heads, V=50257, P=1024, B=1, T=64: logits, CE, resid and grad_ce only).

The maths is written out here (no Hugging Face code): pre-LN blocks, GELU with
the tanh approximation, LayerNorm with eps from the config, causal attention
scaled by 1/sqrt(head_dim), learned positions, unembedding tied to wte.

With --verify MODEL_DIR (after a run into --out) it instead reads a model that
the C code saved, parsing config.json and model.safetensors by hand, recomputes
the logits of ref.h5's tokens and exits 1 unless they equal the reference's (to 1e-6):
an independent reader of what gpt2_save writes.

usage: gpt2_ref.py --out DIR --size small|gpt2small [--seed N] [--verify MODEL_DIR]
"""
import argparse
import json
import math
import os
import struct

import h5py
import numpy as np
import torch

SIZES = {
    "small": dict(L=3, C=64, NH=4, V=512, P=64, B=2, T=32, eps=1e-5, hook=1, hook2=2),
    "gpt2small": dict(L=12, C=768, NH=12, V=50257, P=1024, B=1, T=64, eps=1e-5, hook=6, hook2=9),
}
LABELS = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
          "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]
HF = {"ln1w": "ln_1.weight", "ln1b": "ln_1.bias", "qkvw": "attn.c_attn.weight",
      "qkvb": "attn.c_attn.bias", "attprojw": "attn.c_proj.weight",
      "attprojb": "attn.c_proj.bias", "ln2w": "ln_2.weight", "ln2b": "ln_2.bias",
      "fcw": "mlp.c_fc.weight", "fcb": "mlp.c_fc.bias", "fcprojw": "mlp.c_proj.weight",
      "fcprojb": "mlp.c_proj.bias"}
GLOBAL = {"wte": "wte.weight", "wpe": "wpe.weight", "lnfw": "ln_f.weight", "lnfb": "ln_f.bias"}


def make_params(s, gen):
    L, C, V, P = s["L"], s["C"], s["V"], s["P"]

    def randn(*shape, std):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * std

    proj_std = 0.02 / math.sqrt(2 * L)
    return {
        "wte": randn(V, C, std=0.1),
        "wpe": randn(P, C, std=0.05),
        "ln1w": 1.0 + randn(L, C, std=0.1), "ln1b": randn(L, C, std=0.05),
        "qkvw": randn(L, C, 3 * C, std=0.08), "qkvb": randn(L, 3 * C, std=0.02),
        "attprojw": randn(L, C, C, std=proj_std * 4), "attprojb": randn(L, C, std=0.02),
        "ln2w": 1.0 + randn(L, C, std=0.1), "ln2b": randn(L, C, std=0.05),
        "fcw": randn(L, C, 4 * C, std=0.05), "fcb": randn(L, 4 * C, std=0.02),
        "fcprojw": randn(L, 4 * C, C, std=proj_std * 4), "fcprojb": randn(L, C, std=0.02),
        "lnfw": 1.0 + randn(C, std=0.1), "lnfb": randn(C, std=0.05),
    }


def exact_in_half_and_bf16(p):
    """Round to values that F16, BF16 and F32 all hold exactly."""
    x = p.half().float().bfloat16().float()
    ok = (x.half().float() == x) & (x.bfloat16().float() == x)
    return torch.where(ok, x, torch.zeros_like(x))


def hf_tensors(params, s, prefix="", masks=False):
    out = []
    for label in LABELS:
        t = params[label]
        if label in GLOBAL:
            out.append((prefix + GLOBAL[label], t))
        else:
            for l in range(s["L"]):
                out.append((prefix + "h.%d.%s" % (l, HF[label]), t[l]))
    if masks:
        T = s["P"]
        for l in range(s["L"]):
            mask = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
            out.append((prefix + "h.%d.attn.bias" % l, mask))
            out.append((prefix + "h.%d.attn.masked_bias" % l, torch.tensor(-1e4)))
    return out


def write_safetensors(path, tensors, dtype):
    """The safetensors layout by hand: u64 header size, JSON header, raw data."""
    torch_dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        t = t.detach().contiguous().to(torch_dtype)
        if torch_dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret as int16
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_model(dirname, params, s, dtype="F32", prefix="", masks=False):
    os.makedirs(dirname, exist_ok=True)
    cfg = {"model_type": "gpt2", "activation_function": "gelu_new", "n_layer": s["L"],
           "n_head": s["NH"], "n_embd": s["C"], "n_positions": s["P"], "n_ctx": s["P"],
           "vocab_size": s["V"], "layer_norm_epsilon": s["eps"]}
    with open(os.path.join(dirname, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    write_safetensors(os.path.join(dirname, "model.safetensors"),
                      hf_tensors(params, s, prefix, masks), dtype)


def read_model(dirname):
    """config.json + model.safetensors (F32, optional "transformer." prefix) -> (sizes, params)."""
    with open(os.path.join(dirname, "config.json")) as f:
        cfg = json.load(f)
    s = dict(L=cfg["n_layer"], C=cfg["n_embd"], NH=cfg["n_head"], V=cfg["vocab_size"],
             P=cfg["n_positions"], eps=cfg["layer_norm_epsilon"])
    with open(os.path.join(dirname, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", name
        b, e = meta["data_offsets"]
        t = torch.from_numpy(np.frombuffer(data[b:e], dtype="<f4").copy()).view(*meta["shape"])
        tensors[name[len("transformer."):] if name.startswith("transformer.") else name] = t
    params = {label: tensors[GLOBAL[label]] for label in GLOBAL}
    for label, hf in HF.items():
        params[label] = torch.stack([tensors["h.%d.%s" % (l, hf)] for l in range(s["L"])])
    return s, params


def verify(out_dir, model_dir):
    s, params = read_model(model_dir)
    with h5py.File(os.path.join(out_dir, "ref.h5"), "r") as f:
        tokens = torch.from_numpy(f["tokens"][...]).long()
        want = torch.from_numpy(f["logits"][...])
    p = {k: v.double() for k, v in params.items()}
    got = logits_from(p, run_from(p, embed(p, tokens), 0, s), s).float()
    diff = (got - want).abs().max().item()
    print("verify %s: max |logits - reference| = %.3g" % (model_dir, diff))
    return diff < 1e-6  # same weights: only float64 summation order differs


# ---- the model, in float64 -------------------------------------------------------

def layernorm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def block(p, l, x, s):
    B, T, C = x.shape
    NH, hs = s["NH"], s["C"] // s["NH"]
    h = layernorm(x, p["ln1w"][l], p["ln1b"][l], s["eps"])
    qkv = h @ p["qkvw"][l] + p["qkvb"][l]
    q, k, v = qkv.split(C, dim=-1)
    q, k, v = [t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v)]
    att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    att = att.masked_fill(~mask, float("-inf")).softmax(-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, C)
    x = x + y @ p["attprojw"][l] + p["attprojb"][l]
    h = layernorm(x, p["ln2w"][l], p["ln2b"][l], s["eps"])
    return x + gelu_tanh(h @ p["fcw"][l] + p["fcb"][l]) @ p["fcprojw"][l] + p["fcprojb"][l]


def embed(p, tokens):
    return p["wte"][tokens] + p["wpe"][: tokens.shape[1]]


def logits_from(p, x, s):
    return layernorm(x, p["lnfw"], p["lnfb"], s["eps"]) @ p["wte"].T


def next_token_ce(logits, tokens):
    V = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V),
                                             tokens[:, 1:].reshape(-1))


def run_from(p, x, start, s, record=None):
    for l in range(start, s["L"]):
        x = block(p, l, x, s)
        if record is not None:
            record[l + 1] = x
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--verify", metavar="MODEL_DIR")
    args = ap.parse_args()
    if args.verify:
        raise SystemExit(0 if verify(args.out, args.verify) else 1)
    s = SIZES[args.size]
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(args.seed)
    params = make_params(s, gen)
    small = args.size == "small"
    if small:
        params = {k: exact_in_half_and_bf16(v) for k, v in params.items()}
        write_model(os.path.join(args.out, "model_f16"), params, s, "F16")
        write_model(os.path.join(args.out, "model_bf16"), params, s, "BF16",
                    prefix="transformer.", masks=True)
    write_model(os.path.join(args.out, "model_f32"), params, s, "F32")

    B, T, V, C, L = s["B"], s["T"], s["V"], s["C"], s["L"]
    tokens = torch.randint(0, V, (B, T), generator=gen)
    p64 = {k: v.double().requires_grad_(small) for k, v in params.items()}
    hook, hook2 = s["hook"], s["hook2"]

    # forward (with parameter gradients for the small model)
    resid = [None] * (L + 1)
    resid[0] = embed(p64, tokens)
    x = run_from(p64, resid[0], 0, s, resid)
    logits = logits_from(p64, x, s)
    ce = next_token_ce(logits, tokens)
    out = {"tokens": tokens.int().numpy(), "logits": logits.detach().float().numpy(),
           "resid": torch.stack(resid).detach().float().numpy()}
    if small:
        grads = torch.autograd.grad(ce, [p64[k] for k in LABELS])
        for k, g in zip(LABELS, grads):
            out["grads/" + k] = g.float().numpy()

    # gradients at the hook: restart the forward from a leaf at resid[hook]
    pd = {k: v.detach() for k, v in p64.items()}

    def from_hook():
        xh = resid[hook].detach().clone().requires_grad_(True)
        rec = [None] * (L + 1)
        rec[hook] = xh
        xl = run_from(pd, xh, hook, s, rec)
        return xh, rec, logits_from(pd, xl, s)

    xh, _, lg = from_hook()
    out["grad_ce"] = torch.autograd.grad(next_token_ce(lg, tokens), xh)[0].float().numpy()
    if small:
        target_logp = torch.log_softmax(torch.randn(B, T, V, generator=gen, dtype=torch.float64) * 2, -1)
        xh, _, lg = from_hook()
        kl = (target_logp.exp() * (target_logp - torch.log_softmax(lg, -1))).sum(-1).mean()
        out["kl_target_logp"] = target_logp.float().numpy()
        out["grad_kl"] = torch.autograd.grad(kl, xh)[0].float().numpy()
        mse_target = (resid[hook2].detach() + 0.5 * torch.randn(B, T, C, generator=gen, dtype=torch.float64))
        mse_target = mse_target.float().double()
        xh, rec, lg = from_hook()
        mse_coeff = 2.5
        loss = next_token_ce(lg, tokens) + mse_coeff * ((rec[hook2] - mse_target) ** 2).mean()
        out["mse_target"] = mse_target.float().numpy()
        out["grad_ce_mse"] = torch.autograd.grad(loss, xh)[0].float().numpy()

    with h5py.File(os.path.join(args.out, "ref.h5"), "w") as f:
        for k, v in out.items():
            f.create_dataset(k, data=v)
        f["ce"] = float(ce)
        f.attrs["hook"] = hook
        f.attrs["hook2"] = hook2
        f.attrs["mse_coeff"] = 2.5
        for k in ("L", "C", "NH", "V", "P", "B", "T"):
            f.attrs[k] = s[k]


if __name__ == "__main__":
    main()
