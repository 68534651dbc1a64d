#!/usr/bin/python3
"""llama_ref.py: an independent PyTorch reference for src/model/llama.c.

Written from the Llama maths, not from the C code: RoPE through complex
multiplication (torch.polar), grouped-query attention by repeating the key/value
heads, masked softmax, autograd for every gradient. Everything runs in float64 so
that the C float32 results are compared against the exact answer.

Subcommands (all outputs are raw little-endian arrays the C test reads):
  random-model OUT.bin SEED
      a small random Llama in llama2.c "version 0" format with n_kv_heads <
      n_heads and a separate classifier (negative vocab_size in the header)
  run MODEL.bin OUTDIR B T HOOK MSE_HOOK SEED
      random tokens (B,T) -> tokens.i32; logits (B,T,V) -> logits.f32; resid
      (L+1,B,T,C) -> resid.f32; d/d resid[HOOK] of the mean next-token CE ->
      grad_ce.f32; random target log-probs (B,T,V) -> target_logp.f32 and an MSE
      target at resid[MSE_HOOK] (B,T,C) -> mse_target.f32; d/d resid[HOOK] of
      mean-over-positions KL(target || model) + mean squared error at MSE_HOOK ->
      grad_kl.f32
  greedy MODEL.bin N ID...
      prints N greedily generated ids after the prompt ids, one line
"""
import sys

import numpy as np
import torch

torch.set_grad_enabled(False)
DT = torch.float64
EPS = 1e-5
THETA = 10000.0


class Llama:
    def __init__(self, path):
        raw = open(path, "rb").read()
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = np.frombuffer(raw[:28], "<i4")
        self.shared = vocab > 0
        vocab = abs(int(vocab))
        self.dim, self.hidden, self.n_layers = int(dim), int(hidden), int(n_layers)
        self.n_heads, self.n_kv, self.vocab, self.seq_len = int(n_heads), int(n_kv), vocab, int(seq_len)
        self.hs = self.dim // self.n_heads
        floats = np.frombuffer(raw[28:], "<f4")
        pos = 0

        def take(*shape):
            nonlocal pos
            n = int(np.prod(shape))
            t = torch.from_numpy(floats[pos:pos + n].copy()).to(DT).reshape(shape)
            pos += n
            return t

        L, C, H, KV = self.n_layers, self.dim, self.hidden, self.n_kv * self.hs
        self.emb = take(vocab, C)
        self.rms_att = take(L, C)
        self.wq, self.wk, self.wv, self.wo = take(L, C, C), take(L, KV, C), take(L, KV, C), take(L, C, C)
        self.rms_ffn = take(L, C)
        self.w1, self.w2, self.w3 = take(L, H, C), take(L, C, H), take(L, H, C)
        self.rms_final = take(C)
        pos += self.seq_len * self.hs  # stored cos/sin tables, recomputed below
        self.wcls = self.emb if self.shared else take(vocab, C)
        assert pos == floats.size, "file size does not match its header"

    def rotate(self, x):
        # x (B,T,heads,hs): pairs (2i, 2i+1) are complex numbers turned by t*theta^(-2i/hs)
        B, T, nh, hs = x.shape
        inv = THETA ** (-torch.arange(0, hs, 2, dtype=DT) / hs)
        angle = torch.outer(torch.arange(T, dtype=DT), inv)
        turn = torch.polar(torch.ones_like(angle), angle)  # (T, hs/2)
        xc = torch.view_as_complex(x.reshape(B, T, nh, hs // 2, 2).contiguous())
        return torch.view_as_real(xc * turn[None, :, None, :]).reshape(B, T, nh, hs)

    @staticmethod
    def norm(x, w):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w

    def block(self, x, l):
        B, T, C = x.shape
        xn = self.norm(x, self.rms_att[l])
        q = self.rotate((xn @ self.wq[l].T).view(B, T, self.n_heads, self.hs))
        k = self.rotate((xn @ self.wk[l].T).view(B, T, self.n_kv, self.hs))
        v = (xn @ self.wv[l].T).view(B, T, self.n_kv, self.hs)
        rep = self.n_heads // self.n_kv
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B,nh,T,hs)
        scores = q @ k.transpose(-1, -2) / self.hs ** 0.5
        future = torch.ones(T, T, dtype=torch.bool).triu(1)
        probs = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        att = (probs @ v).transpose(1, 2).reshape(B, T, C)
        x = x + att @ self.wo[l].T
        xn = self.norm(x, self.rms_ffn[l])
        gate = torch.nn.functional.silu(xn @ self.w1[l].T) * (xn @ self.w3[l].T)
        return x + gate @ self.w2[l].T

    def resids_from(self, x, start):
        """[resid[start], ..., resid[L]] starting from resid[start] = x."""
        out = [x]
        for l in range(start, self.n_layers):
            out.append(self.block(out[-1], l))
        return out

    def logits(self, resid_last):
        return self.norm(resid_last, self.rms_final) @ self.wcls.T

    def forward(self, tokens):
        return self.resids_from(self.emb[tokens], 0)


def save(path, t, dtype="<f4"):
    np.ascontiguousarray(t.detach().numpy().astype(dtype)).tofile(path)


def cmd_random_model(out, seed):
    g = np.random.default_rng(seed)
    dim, hidden, L, nh, nkv, vocab, seq_len = 48, 100, 3, 6, 2, 97, 160
    hs, kv = dim // nh, nkv * dim // nh

    def mat(rows, cols):
        return g.normal(0, 1 / np.sqrt(cols), (rows, cols))

    def stack(f):
        return np.stack([f() for _ in range(L)])

    parts = [g.normal(0, 1, (vocab, dim)),
             stack(lambda: 1 + 0.2 * g.normal(size=dim)),
             stack(lambda: mat(dim, dim)), stack(lambda: mat(kv, dim)),
             stack(lambda: mat(kv, dim)), stack(lambda: mat(dim, dim)),
             stack(lambda: 1 + 0.2 * g.normal(size=dim)),
             stack(lambda: mat(hidden, dim)), stack(lambda: mat(dim, hidden)),
             stack(lambda: mat(hidden, dim)),
             1 + 0.2 * g.normal(size=dim)]
    ang = np.outer(np.arange(seq_len), THETA ** (-np.arange(0, hs, 2) / hs))
    parts += [np.cos(ang), np.sin(ang), mat(vocab, dim)]
    with open(out, "wb") as f:
        f.write(np.array([dim, hidden, L, nh, nkv, -vocab, seq_len], "<i4").tobytes())
        for p in parts:
            f.write(np.asarray(p, "<f4").tobytes())


def cmd_run(model_path, outdir, B, T, hook, mse_hook, seed):
    m = Llama(model_path)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, m.vocab, (B, T), generator=g)
    tokens[:, 0] = 1
    resids = m.forward(tokens)
    logits = m.logits(resids[-1])
    save(f"{outdir}/tokens.i32", tokens, "<i4")
    save(f"{outdir}/logits.f32", logits)
    save(f"{outdir}/resid.f32", torch.stack(resids))

    target_logp = torch.log_softmax(torch.randn(B, T, m.vocab, generator=g, dtype=DT) * 2, -1)
    mse_target = resids[mse_hook] + 0.5 * torch.randn(B, T, m.dim, generator=g, dtype=DT)
    save(f"{outdir}/target_logp.f32", target_logp)
    save(f"{outdir}/mse_target.f32", mse_target)

    with torch.enable_grad():
        x = resids[hook].clone().requires_grad_(True)
        lp = torch.log_softmax(m.logits(m.resids_from(x, hook)[-1]), -1)
        ce = -lp[:, :-1].gather(-1, tokens[:, 1:, None]).mean()
        (grad_ce,) = torch.autograd.grad(ce, x)

        x = resids[hook].clone().requires_grad_(True)
        rs = m.resids_from(x, hook)
        lp = torch.log_softmax(m.logits(rs[-1]), -1)
        kl = (target_logp.exp() * (target_logp - lp)).sum(-1).mean()
        mse = (rs[mse_hook - hook] - mse_target).pow(2).mean()
        (grad_kl,) = torch.autograd.grad(kl + mse, x)
    save(f"{outdir}/grad_ce.f32", grad_ce)
    save(f"{outdir}/grad_kl.f32", grad_kl)
    print(f"ce {ce.item():.6f} kl {kl.item():.6f} mse {mse.item():.6f}")


def cmd_greedy(model_path, n, prompt):
    m = Llama(model_path)
    ids = list(prompt)
    for _ in range(n):
        logits = m.logits(m.forward(torch.tensor([ids]))[-1][0, -1])
        ids.append(int(torch.argmax(logits)))
    print(" ".join(str(i) for i in ids[len(prompt):]))


def main(argv):
    torch.set_num_threads(1)
    if argv[1] == "random-model":
        cmd_random_model(argv[2], int(argv[3]))
    elif argv[1] == "run":
        cmd_run(argv[2], argv[3], *map(int, argv[4:9]))
    elif argv[1] == "greedy":
        cmd_greedy(argv[2], int(argv[3]), [int(a) for a in argv[4:]])
    else:
        sys.exit(f"unknown subcommand {argv[1]}")


if __name__ == "__main__":
    main(sys.argv)
