#!/usr/bin/python3
"""model_ref.py: PyTorch doing what tests/bench/bench_model.c times, for the ratios.

Prints "key value" lines with the same keys as bench_model (fwd_8x128_tok_s,
fwd_1x1024_tok_s, train_tok_s). The GPT-2 is written out here the way Hugging
Face's GPT2Model computes it in torch 1.13 (explicit masked softmax attention,
GELU tanh approximation, fused LayerNorm), float32, under no_grad for the
forward; the training step is forward, CE over the full vocabulary, backward,
clip_grad_norm_, AdamW with weight decay on matrices, as lm-train does.

usage: model_ref.py [--threads N] [--quick]   (no --threads: torch's default)
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


class Block(torch.nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = torch.nn.LayerNorm(C)
        self.c_attn = torch.nn.Linear(C, 3 * C)
        self.c_proj = torch.nn.Linear(C, C)
        self.ln_2 = torch.nn.LayerNorm(C)
        self.c_fc = torch.nn.Linear(C, 4 * C)
        self.mlp_proj = torch.nn.Linear(4 * C, C)

    def forward(self, x, mask):
        B, T, C = x.shape
        hs = C // self.NH
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = [t.view(B, T, self.NH, hs).transpose(1, 2) for t in (q, k, v)]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(mask[:, :, :T, :T] == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(torch.nn.Module):
    def __init__(self, L, C, NH, V, P):
        super().__init__()
        self.wte = torch.nn.Embedding(V, C)
        self.wpe = torch.nn.Embedding(P, C)
        self.h = torch.nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = torch.nn.LayerNorm(C)
        self.register_buffer("mask", torch.tril(torch.ones(P, P)).view(1, 1, P, P))
        for p in self.parameters():
            if p.dim() >= 2:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for blk in self.h:
            x = blk(x, self.mask)
        return self.ln_f(x) @ self.wte.weight.T


def bench_forward(model, B, T, reps):
    idx = torch.randint(0, 50257, (B, T))
    best = 1e30
    with torch.no_grad():
        for r in range(reps + 1):
            t0 = time.perf_counter()
            model(idx)
            t = time.perf_counter() - t0
            if r > 0:
                best = min(best, t)
    print("fwd_%dx%d_tok_s %.1f" % (B, T, B * T / best))


def bench_train(steps):
    model = GPT2(4, 128, 4, 50257, 128)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95))
    data = torch.randint(0, 50257, (200000,))
    B, T = 16, 128

    def step():
        ix = torch.randint(0, len(data) - T - 1, (B,))
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        loss = F.cross_entropy(model(x).view(-1, 50257), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    print("train_tok_s %.1f" % (steps * B * T / (time.perf_counter() - t0)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("torch_threads %d" % torch.get_num_threads())
    model = GPT2(12, 768, 12, 50257, 1024).eval()
    reps = 1 if args.quick else 3
    bench_forward(model, 8, 128, reps)
    bench_forward(model, 1, 1024, reps)
    del model
    bench_train(5 if args.quick else 20)


if __name__ == "__main__":
    main()
