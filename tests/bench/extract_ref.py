#!/usr/bin/python3
"""PyTorch reference for the extraction benchmark (tests/bench/extract.sh).

Does what the C pass does, the way one would write it in PyTorch: a GPT-2 with
random weights run forward only up to blocks.L.hook_resid_pre, the SAE encoder
applied to every token (relu(x W_enc^T + b_enc), all features), density and
maximum per feature, and a running top-k per feature (torch.topk over the kept
values and the new batch). It does less than the C pass (no overlap rule, no
windows, no sampling), so its time is a lower bound for the same work.

    extract_ref.py gpt2s|small N_TOKENS BATCH [BATCH...]

Prints one line per batch size; the shell script keeps the best.
"""
import math
import sys
import time

import torch
import torch.nn.functional as F

KINDS = {
    # name: n_layer, d, heads, vocab, ctx, ratio, layer
    "gpt2s": (12, 768, 12, 50257, 1024, 60, 6),
    "small": (4, 128, 4, 4096, 128, 50, 2),
}


class Block(torch.nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = torch.nn.LayerNorm(d, eps=1e-5)
        self.c_attn = torch.nn.Linear(d, 3 * d)
        self.c_proj = torch.nn.Linear(d, d)
        self.ln_2 = torch.nn.LayerNorm(d, eps=1e-5)
        self.c_fc = torch.nn.Linear(d, 4 * d)
        self.mlp_proj = torch.nn.Linear(4 * d, d)

    def forward(self, x, mask):
        B, T, C = x.shape
        h = self.heads
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, h, C // h).transpose(1, 2)
        k = k.view(B, T, h, C // h).transpose(1, 2)
        v = v.view(B, T, h, C // h).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // h))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


def run(kind, n_tokens, batch, top_k=30):
    n_layer, d, heads, vocab, ctx, ratio, layer = KINDS[kind]
    torch.manual_seed(0)
    wte = torch.randn(vocab, d) * 0.02
    wpe = torch.randn(ctx, d) * 0.02
    blocks = [Block(d, heads) for _ in range(layer)]  # the blocks after the hook never run
    d_sae = ratio * d
    W_enc = (torch.rand(d_sae, d) * 2 - 1) / 27.7
    b_enc = torch.zeros(d_sae)
    mask = torch.triu(torch.ones(ctx, ctx, dtype=torch.bool), diagonal=1)
    n_seq = n_tokens // ctx
    tokens = torch.randint(0, vocab, (n_seq, ctx))
    count = torch.zeros(d_sae, dtype=torch.int64)
    mx = torch.zeros(d_sae)
    top_v = torch.zeros(0, d_sae)
    top_i = torch.zeros(0, d_sae, dtype=torch.int64)
    pos = torch.arange(ctx)
    with torch.inference_mode():
        t0 = time.perf_counter()
        for s0 in range(0, n_seq, batch):
            tok = tokens[s0:s0 + batch]
            x = wte[tok] + wpe[pos]
            for blk in blocks:
                x = blk(x, mask)
            x = x.reshape(-1, d)
            acts = torch.relu(torch.addmm(b_enc, x, W_enc.t()))  # (N, d_sae)
            count += (acts > 0).sum(0)
            mx = torch.maximum(mx, acts.max(0).values)
            idx = torch.arange(s0 * ctx, s0 * ctx + acts.shape[0]).unsqueeze(1).expand_as(acts)
            v = torch.cat([top_v, acts])
            i = torch.cat([top_i, idx])
            top_v, sel = v.topk(min(top_k, v.shape[0]), dim=0)
            top_i = i.gather(0, sel)
        secs = time.perf_counter() - t0
    n = n_seq * ctx
    print(f"torch   {kind:6s} T={ctx:<5d} batch={batch:<3d} d_sae={d_sae:<6d} tokens={n:<7d} "
          f"{n / secs:8.1f} tok/s  threads={torch.get_num_threads()}", flush=True)
    return n / secs


def main():
    kind, n_tokens = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(2)
    best = max(run(kind, n_tokens, int(b)) for b in sys.argv[3:])
    print(f"torch   {kind:6s} best {best:.1f} tok/s")


if __name__ == "__main__":
    main()
