#!/usr/bin/python3
"""sae_ref.py: the PyTorch side of tests/bench/sae.sh: the same SAE training step
as bench_sae.c, written the way one would in PyTorch (dense SAE, frozen model
under no_grad / requires_grad False, torch.optim.Adam), timed on this machine.

usage: sae_ref.py gpt2s|small sae|local|local4|e2e|e2e_ds BATCH STEPS

local4 trains 4 SAEs (lambda 4, 2, 1, 0.5) on one forward pass per batch, as the
C side does for a sweep; tok/s then counts 4 per token of data.

Same sizes, initialisation (nn.Linear default encoder, orthogonal decoder),
sparsity calibration (b_enc lowered so ~50 features fire per token on 64 rows
spread over the batch), loss, clipping (10) and Adam (lr 5e-5, the end of the
paper's schedule, so that the calibrated sparsity holds during the timed steps)
as bench_sae.c. Run with OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large> (sae.sh does). Prints one line.
"""
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F

KINDS = {
    "gpt2s": dict(L=12, C=768, NH=12, V=50257, T=1024, ratio=60, layer=6),
    "small": dict(L=4, C=128, NH=4, V=4096, T=128, ratio=50, layer=2),
}
TARGET_L0 = 50
LR = 5e-5


def make_model(k, gen):
    C, V, T, L = k["C"], k["V"], k["T"], k["L"]

    def u(*shape):
        return (torch.rand(*shape, generator=gen) * 2 - 1) * 0.02

    m = {"wte": u(V, C), "wpe": u(T, C), "lnfw": torch.ones(C), "lnfb": u(C), "blocks": []}
    for _ in range(L):
        m["blocks"].append(dict(
            ln1w=torch.ones(C), ln1b=u(C), qkvw=u(C, 3 * C), qkvb=u(3 * C),
            projw=u(C, C), projb=u(C), ln2w=torch.ones(C), ln2b=u(C),
            fcw=u(C, 4 * C), fcb=u(4 * C), fcprojw=u(4 * C, C), fcprojb=u(C)))
    return m


def block(b, x, NH, mask):
    B, T, C = x.shape
    h = F.layer_norm(x, (C,), b["ln1w"], b["ln1b"], 1e-5)
    q, k, v = torch.addmm(b["qkvb"], h.view(-1, C), b["qkvw"]).view(B, T, 3 * C).split(C, -1)
    hs = C // NH
    q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
    att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hs))
    att = torch.softmax(att.masked_fill(mask[:T, :T], float("-inf")), -1)
    y = (att @ v).transpose(1, 2).reshape(B * T, C)
    x = x + torch.addmm(b["projb"], y, b["projw"]).view(B, T, C)
    h = F.layer_norm(x, (C,), b["ln2w"], b["ln2b"], 1e-5)
    h = F.gelu(torch.addmm(b["fcb"], h.view(-1, C), b["fcw"]), approximate="tanh")
    return x + torch.addmm(b["fcprojb"], h, b["fcprojw"]).view(B, T, C)


def logits(m, x):
    C = x.shape[-1]
    return F.layer_norm(x, (C,), m["lnfw"], m["lnfb"], 1e-5) @ m["wte"].T


class SAE(torch.nn.Module):
    def __init__(self, d_in, d_sae):
        super().__init__()
        self.enc = torch.nn.Linear(d_in, d_sae)
        self.dec = torch.nn.Linear(d_sae, d_in)
        torch.nn.init.orthogonal_(self.dec.weight)

    def forward(self, x):
        c = torch.relu(self.enc(x))
        D = self.dec.weight / self.dec.weight.norm(dim=0, keepdim=True)
        return c, F.linear(c, D, self.dec.bias)


def main():
    kind, typ, B, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    k = KINDS[kind]
    torch.set_num_threads(2)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    m = make_model(k, gen)
    T, C, L, NH = k["T"], k["C"], k["layer"], k["NH"]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    n_saes = 4 if typ == "local4" else 1
    saes = [SAE(C, k["ratio"] * C) for _ in range(n_saes)]
    opts = [torch.optim.Adam(s.parameters(), lr=LR) for s in saes]
    lams = [4.0 / 2 ** i for i in range(n_saes)]
    kl_coeff, ds_coeff = 0.5, 2.5
    batches = [torch.randint(0, k["V"], (B, T), generator=gen) for _ in range(steps + 1)]

    def prefix(tok):
        with torch.no_grad():
            x = m["wte"][tok] + m["wpe"][:T]
            for b in m["blocks"][:L]:
                x = block(b, x, NH, mask)
        return x

    x0 = prefix(batches[0])
    with torch.no_grad():  # calibrate the sparsity on 64 rows spread over the batch
        rows = x0.reshape(-1, C)[:: max(1, B * T // 64)][:64]
        for sae in saes:
            pre = sae.enc(rows).flatten()
            thr = pre.kthvalue(pre.numel() - rows.shape[0] * TARGET_L0).values
            sae.enc.bias -= thr
    n_points = k["L"] - 1 - L

    def step(tok, x_given=None):
        x = x_given if x_given is not None else prefix(tok)
        if typ == "local4":  # one forward, then each SAE's step on it
            return [sae_step(x, saes[i], opts[i], lams[i]) for i in range(n_saes)][0]
        return sae_step(x, saes[0], opts[0], lams[0])

    def sae_step(x, sae, opt, lam):
        if typ in ("e2e", "e2e_ds"):
            with torch.no_grad():
                orig = [x]
                y = x
                for b in m["blocks"][L:]:
                    y = block(b, y, NH, mask)
                    orig.append(y)
                logp = torch.log_softmax(logits(m, y), -1)
        c, xh = sae(x)
        s = lam * c.sum(-1).mean() / C
        if typ in ("sae", "local", "local4"):
            loss = ((xh - x) ** 2).mean() + s
        else:
            y, ds = xh, 0
            for i, b in enumerate(m["blocks"][L:]):
                y = block(b, y, NH, mask)
                if typ == "e2e_ds" and i + 1 <= n_points:
                    ds = ds + ((y - orig[i + 1]) ** 2).mean()
            logq = torch.log_softmax(logits(m, y), -1)
            kl = (logp.exp() * (logp - logq)).sum(-1).mean()
            loss = (kl_coeff * kl + ds_coeff / n_points * ds if typ == "e2e_ds" else kl) + s
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 10.0)
        opt.step()
        return (c > 0).float().sum(-1).mean().item()

    given = [prefix(t) for t in batches] if typ == "sae" else [None] * len(batches)
    step(batches[0], given[0])  # warm-up
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        l0 = step(batches[i], given[i])
    secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch   {kind:<6} {typ:<7} B={B:<2} T={T:<5} d_sae={k['ratio'] * C:<6} "
          f"{steps * B * T * n_saes / secs:9.1f} tok/s  {1000 * secs / steps:8.1f} ms/step  L0 {l0:6.1f}  "
          f"peak RSS {rss:7.0f} MB")


if __name__ == "__main__":
    main()
