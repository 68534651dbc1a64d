#!/usr/bin/python3
"""sae_ref.py: an independent PyTorch (float64) reference for the SAE stage.

Everything is written out here from the paper's definitions (Braun et al. 2024):

  SAE      c = relu(x W_enc^T + b_enc),  x_hat = c D^T + b_dec,
           D = W_dec / ||W_dec||_col  (W_dec is (d_in, d_sae); every column, one
           dictionary direction, normalised inside the forward pass)
  S        lam * mean_tokens ||c||_1 / d_in
  local    mean((x_hat - x)^2) + S
  e2e      KL(P_orig || P_sae) summed over the vocabulary, mean over positions + S
  e2e_ds   kl_coeff KL + S + sum_k ds_coeff/n_points mean((a_k^sae - a_k^orig)^2),
           k = resid_pre of blocks layer+1 .. n_layer-1

The GPT-2 used for the e2e settings is our own few lines below (pre-LN, GELU
tanh, LayerNorm eps 1e-5, causal attention, tied unembedding), with random
weights, written in Hugging Face layout (config.json + model.safetensors, the
safetensors bytes written by hand) so that the C side loads it with lm_load.

Modes (all write DIR/<name>.h5, default ref.h5; e2e also the model in DIR/<name>_model/):
  local   --d-in --d-sae --n --lam [--sparse]   weights, x, losses and gradients
  e2e     --layer --lam --kl-coeff --ds-coeff [--sparse]
          weights, tokens, e2e and e2e_ds losses and gradients (and local at the
          same hook, from the model's activations)
  metrics --layer --context --n-windows   evaluation metrics (metrics.h) of a random
          SAE with dead features over a random token set, written as an autointerp
          token dataset DIR/<name>_tokens.h5: attributes l0, alive, ce_orig, ce_sae,
          kl, mse, explained_variance; datasets feature_density, mse_downstream

usage: sae_ref.py MODE --out DIR [options]
       sae_ref.py multi --out DIR "MODE --name A [options]" "MODE --name B ..."

<name>.h5: /sae/{W_enc (d_sae,d_in), b_enc, W_dec (d_in,d_sae), b_dec}, /x or /tokens,
and one group per setting with attributes (loss, mse, sparsity, kl, ds_mse, l0)
and datasets grad_W_enc, grad_b_enc, grad_W_dec (d_in,d_sae), grad_b_dec.
"""
import argparse
import json
import math
import os
import shlex
import struct
import sys

import h5py
import numpy as np
import torch

torch.set_default_dtype(torch.float64)


# ----------------------------------------------------------------------------
# SAE
def sae_forward(p, x):
    pre = x @ p["W_enc"].T + p["b_enc"]
    c = torch.relu(pre)
    D = p["W_dec"] / p["W_dec"].norm(dim=0, keepdim=True)
    return c, c @ D.T + p["b_dec"]


def sparsity(c, lam, d_in):
    return lam * c.abs().sum(dim=-1).mean() / d_in


def random_sae(gen, d_in, d_sae):
    be, bd = 1 / math.sqrt(d_in), 1 / math.sqrt(d_sae)
    return {
        "W_enc": (torch.rand(d_sae, d_in, generator=gen) * 2 - 1) * be * 3,
        "b_enc": (torch.rand(d_sae, generator=gen) * 2 - 1) * be,
        "W_dec": torch.randn(d_in, d_sae, generator=gen) * (0.5 + torch.rand(d_sae, generator=gen)),
        "b_dec": (torch.rand(d_in, generator=gen) * 2 - 1) * bd,
    }


def make_sparse(p, x, frac=0.01):
    """Shift b_enc so that about frac of the (row, feature) pairs fire on x."""
    with torch.no_grad():
        pre = x.reshape(-1, x.shape[-1]) @ p["W_enc"].T
        n = pre.shape[0]
        if n * frac >= 1:
            p["b_enc"] = -torch.quantile(pre, 1 - frac, dim=0) + 1e-3
        else:  # fewer rows than 1/frac: one row fires in a fraction n*frac of the features
            top = pre.max(dim=0).values
            keep = torch.arange(pre.shape[1]) % round(1 / (n * frac)) == 0
            p["b_enc"] = torch.where(keep, -top + 1e-3, -top - 1)


def f32(p):
    """Round the weights to float32 so that both sides start from the same numbers."""
    return {k: v.float().double() for k, v in p.items()}


def write_sae(h, p):
    g = h.create_group("sae")
    for k, v in p.items():
        g.create_dataset(k, data=v.detach().numpy().astype(np.float32))


def write_result(h, name, terms, p):
    g = h.create_group(name)
    for k, v in terms.items():
        g.attrs[k] = float(v)
    for k, v in p.items():
        g.create_dataset("grad_" + k, data=v.grad.detach().numpy().astype(np.float32))
        v.grad = None


def leaf(p):
    return {k: v.clone().requires_grad_(True) for k, v in p.items()}


# ----------------------------------------------------------------------------
# GPT-2
def make_gpt2(gen, L, C, NH, V, P):
    def rn(*shape, std):
        return torch.randn(*shape, generator=gen) * std

    p = {"wte.weight": rn(V, C, std=0.5), "wpe.weight": rn(P, C, std=0.3),
         "ln_f.weight": 1 + rn(C, std=0.1), "ln_f.bias": rn(C, std=0.1)}
    for l in range(L):
        h = f"h.{l}."
        p[h + "ln_1.weight"] = 1 + rn(C, std=0.1)
        p[h + "ln_1.bias"] = rn(C, std=0.1)
        p[h + "attn.c_attn.weight"] = rn(C, 3 * C, std=0.25)
        p[h + "attn.c_attn.bias"] = rn(3 * C, std=0.1)
        p[h + "attn.c_proj.weight"] = rn(C, C, std=0.2)
        p[h + "attn.c_proj.bias"] = rn(C, std=0.1)
        p[h + "ln_2.weight"] = 1 + rn(C, std=0.1)
        p[h + "ln_2.bias"] = rn(C, std=0.1)
        p[h + "mlp.c_fc.weight"] = rn(C, 4 * C, std=0.2)
        p[h + "mlp.c_fc.bias"] = rn(4 * C, std=0.1)
        p[h + "mlp.c_proj.weight"] = rn(4 * C, C, std=0.1)
        p[h + "mlp.c_proj.bias"] = rn(C, std=0.1)
    return {k: v.float().double() for k, v in p.items()}


def write_gpt2(d, p, L, C, NH, V, P):
    os.makedirs(d, exist_ok=True)
    cfg = {"model_type": "gpt2", "n_layer": L, "n_embd": C, "n_head": NH, "vocab_size": V,
           "n_positions": P, "n_ctx": P, "layer_norm_epsilon": 1e-5,
           "activation_function": "gelu_new"}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    header, blobs, off = {}, [], 0
    for k in sorted(p):
        b = p[k].float().numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(p[k].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def layernorm(x, w, b):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def gelu(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def block(p, l, x, NH):
    B, T, C = x.shape
    h = f"h.{l}."
    a = layernorm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"])
    q, k, v = (a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]).split(C, dim=-1)
    hs = C // NH
    q, k, v = (t.reshape(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
    att = q @ k.transpose(-1, -2) / math.sqrt(hs)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    att = torch.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, C)
    x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
    m = layernorm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"])
    m = gelu(m @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"])
    return x + m @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]


def resid_stream(p, tokens, L, NH):
    """resid[0..L]: resid[l] = blocks.l.hook_resid_pre, resid[L] = last resid_post."""
    T = tokens.shape[1]
    x = p["wte.weight"][tokens] + p["wpe.weight"][:T]
    out = [x]
    for l in range(L):
        x = block(p, l, x, NH)
        out.append(x)
    return out


def run_from(p, x, start, L, NH):
    out = {}
    for l in range(start, L):
        x = block(p, l, x, NH)
        out[l + 1] = x
    return out


def logits_of(p, x):
    return layernorm(x, p["ln_f.weight"], p["ln_f.bias"]) @ p["wte.weight"].T


# ----------------------------------------------------------------------------
def mode_local(a):
    gen = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.n, a.d_in, generator=gen).float().double() * 2
    p = random_sae(gen, a.d_in, a.d_sae)
    if a.sparse:
        make_sparse(p, x)
    p = leaf(f32(p))
    with h5py.File(os.path.join(a.out, a.name + ".h5"), "w") as h:
        write_sae(h, p)
        h.create_dataset("x", data=x.numpy().astype(np.float32))
        c, xh = sae_forward(p, x)
        mse = ((xh - x) ** 2).mean()
        s = sparsity(c, a.lam, a.d_in)
        (mse + s).backward()
        l0 = (c > 0).double().sum(-1).mean()
        write_result(h, "local", dict(loss=mse + s, mse=mse, sparsity=s, l0=l0), p)
        h.attrs["lam"] = a.lam


def mode_e2e(a):
    L, C, NH, V, P, B, T = 3, 32, 4, 97, 32, 2, 16
    gen = torch.Generator().manual_seed(a.seed)
    mp = make_gpt2(gen, L, C, NH, V, P)
    write_gpt2(os.path.join(a.out, a.name + "_model"), mp, L, C, NH, V, P)
    tokens = torch.randint(0, V, (B, T), generator=gen)
    resid = resid_stream(mp, tokens, L, NH)
    x = resid[a.layer]
    p = random_sae(gen, C, a.d_sae)
    if a.sparse:
        make_sparse(p, x)
    p = leaf(f32(p))
    logp = torch.log_softmax(logits_of(mp, resid[L]), -1)
    n_points = L - 1 - a.layer
    with h5py.File(os.path.join(a.out, a.name + ".h5"), "w") as h:
        write_sae(h, p)
        h.create_dataset("tokens", data=tokens.numpy().astype(np.int32))
        h.attrs["layer"] = a.layer
        h.attrs["lam"] = a.lam
        h.attrs["kl_coeff"] = a.kl_coeff
        h.attrs["ds_coeff"] = a.ds_coeff
        for setting in ("local", "e2e", "e2e_ds"):
            c, xh = sae_forward(p, x)
            s = sparsity(c, a.lam, C)
            mse = ((xh - x) ** 2).mean()
            ds = run_from(mp, xh, a.layer, L, NH)
            logq = torch.log_softmax(logits_of(mp, ds[L]), -1)
            kl = (logp.exp() * (logp - logq)).sum(-1).mean()
            terms = [((ds[k] - resid[k]) ** 2).mean() for k in range(a.layer + 1, L)]
            ds_sum = sum(terms) if terms else torch.zeros(())
            ds_mean = ds_sum / n_points if n_points else torch.zeros(())
            if setting == "local":
                loss = mse + s
            elif setting == "e2e":
                loss = kl + s
            else:
                loss = a.kl_coeff * kl + s + (a.ds_coeff / n_points * ds_sum if n_points else 0)
            loss.backward()
            l0 = (c > 0).double().sum(-1).mean()
            write_result(h, setting, dict(loss=loss, mse=mse, sparsity=s, kl=kl, ds_mse=ds_mean,
                                          l0=l0), p)


def parser():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["local", "e2e", "metrics"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="ref", help="output file DIR/<name>.h5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--d-in", type=int, default=32)
    ap.add_argument("--d-sae", type=int, default=256)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--lam", type=float, default=2.0)
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--kl-coeff", type=float, default=0.5)
    ap.add_argument("--ds-coeff", type=float, default=2.5)
    ap.add_argument("--sparse", action="store_true")
    ap.add_argument("--context", type=int, default=16)
    ap.add_argument("--n-windows", type=int, default=13)
    return ap


def write_token_dataset(path, ids, V):
    """A token dataset in autointerp's layout (src/tok/dataset.h)."""
    with h5py.File(path, "w") as h:
        h.create_dataset("tokens", data=np.asarray(ids, dtype=np.uint16))
        h.create_dataset("doc_offsets", data=np.array([0, len(ids)], dtype=np.int64))
        h.attrs["format"] = "autointerp-tokens"
        h.attrs["format_version"] = np.int64(1)
        h.attrs["tokenizer"] = "random"
        h.attrs["vocab_size"] = np.int64(V)
        h.attrs["eot_id"] = np.int64(-1)
        h.attrs["bos_id"] = np.int64(-1)
        h.attrs["n_tokens"] = np.int64(len(ids))
        h.attrs["n_documents"] = np.int64(1)
        h.attrs["sources"] = "sae_ref.py"


def mode_metrics(a):
    """Metrics over consecutive windows of a.context tokens (every whole window)."""
    L, C, NH, V, P = 3, 32, 4, 97, 32
    T, n_win = a.context, a.n_windows
    gen = torch.Generator().manual_seed(a.seed)
    mp = make_gpt2(gen, L, C, NH, V, P)
    write_gpt2(os.path.join(a.out, a.name + "_model"), mp, L, C, NH, V, P)
    ids = torch.randint(0, V, (n_win * T + T // 2,), generator=gen)
    write_token_dataset(os.path.join(a.out, a.name + "_tokens.h5"), ids.numpy(), V)
    tokens = ids[: n_win * T].reshape(n_win, T)
    resid = resid_stream(mp, tokens, L, NH)
    x = resid[a.layer]
    p = random_sae(gen, C, a.d_sae)
    p["b_enc"][::4] = -1e3  # a quarter of the features never fire
    p = f32(p)
    with torch.no_grad():
        c, xh = sae_forward(p, x)
        ds = run_from(mp, xh, a.layer, L, NH)
        lo = torch.log_softmax(logits_of(mp, resid[L]), -1)
        ls = torch.log_softmax(logits_of(mp, ds[L]), -1)
        nxt = tokens[:, 1:]
        ce_o = -lo[:, :-1].gather(-1, nxt[..., None]).mean()
        ce_s = -ls[:, :-1].gather(-1, nxt[..., None]).mean()
        kl = (lo.exp() * (lo - ls)).sum(-1).mean()
        xf, xhf = x.reshape(-1, C), xh.reshape(-1, C)
        sse = ((xhf - xf) ** 2).sum()
        sst = ((xf - xf.mean(0)) ** 2).sum()
        counts = (c > 0).reshape(-1, a.d_sae).sum(0)
        n = xf.shape[0]
    with h5py.File(os.path.join(a.out, a.name + ".h5"), "w") as h:
        write_sae(h, p)
        h.attrs["layer"] = a.layer
        h.attrs["context"] = T
        h.attrs["l0"] = float(counts.sum() / n)
        h.attrs["alive"] = int((counts > 0).sum())
        h.attrs["ce_orig"] = float(ce_o)
        h.attrs["ce_sae"] = float(ce_s)
        h.attrs["kl"] = float(kl)
        h.attrs["mse"] = float(sse / (n * C))
        h.attrs["explained_variance"] = float(1 - sse / sst)
        h.create_dataset("feature_density", data=(counts.double() / n).numpy())
        h.create_dataset("mse_downstream", data=np.array(
            [float(((ds[k] - resid[k]) ** 2).mean()) for k in range(a.layer + 1, L + 1)]))


def main():
    """Either one case from argv, or "multi --out DIR 'case args' ..." (several cases
    in one process: importing torch dominates the run time)."""
    argv = sys.argv[1:]
    if argv and argv[0] == "multi":
        out = argv[argv.index("--out") + 1]
        cases = [c for i, c in enumerate(argv[1:]) if argv[i] != "--out" and c != "--out"]
    else:
        out, cases = None, [argv]
    for c in cases:
        args = shlex.split(c) if isinstance(c, str) else c
        if out is not None:
            args = args + ["--out", out]
        a = parser().parse_args(args)
        os.makedirs(a.out, exist_ok=True)
        {"local": mode_local, "e2e": mode_e2e, "metrics": mode_metrics}[a.mode](a)
        print("ok", a.mode, a.name)


if __name__ == "__main__":
    main()
