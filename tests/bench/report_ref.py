#!/usr/bin/python3
"""The scipy side of tests/bench/report.sh (run with /usr/bin/python3).

  report_ref.py EXP_DIR B

The intervals the C report computes for the benchmark experiment, with scipy:
for each SAE's scores (EXP_DIR/scores/<sae>.jsonl, last line per feature, the
"scored" ones), scipy.stats.bootstrap BCa with B resamples plus the percentile
interval from the same distribution; for each matched pair in the C report's
summary.json, the two-sample bootstrap of mean(b) - mean(a) the same way and a
pooled-null p-value in numpy with B resamples. Reading the files is not timed.
Prints the time and how far the C endpoints are from scipy's, in bootstrap SEs.
"""
import json
import sys
import time

import numpy as np


def scores(path):
    last = {}
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            last[r["feature"]] = r
    return np.array([r["score"] for r in last.values() if r["status"] == "scored"])


def ci(data, stat, B, rng):
    from scipy import stats
    bca = stats.bootstrap(data, stat, n_resamples=B, method="BCa", vectorized=True, random_state=rng)
    pct = stats.bootstrap(data, stat, n_resamples=0, method="percentile", vectorized=True,
                          bootstrap_result=bca)
    return (bca.standard_error, pct.confidence_interval.low, pct.confidence_interval.high,
            bca.confidence_interval.low, bca.confidence_interval.high)


def pooled_p(a, b, B, rng, batch=20000):
    pool = np.concatenate([a, b])
    obs = abs(a.mean() - b.mean())
    count = 0
    for start in range(0, B, batch):
        m = min(batch, B - start)
        da = pool[rng.integers(0, pool.size, (m, a.size))].mean(axis=1)
        db = pool[rng.integers(0, pool.size, (m, b.size))].mean(axis=1)
        count += int((np.abs(da - db) >= obs * (1 - 1e-12)).sum())
    return (count + 1) / (B + 1)


def main():
    exp, B = sys.argv[1], int(sys.argv[2])
    summ = json.load(open(f"{exp}/report/summary.json"))
    x = {s["name"]: scores(f"{exp}/scores/{s['name']}.jsonl") for s in summ["saes"]}
    import scipy.stats  # noqa: F401  (imported outside the timed region)
    rng = np.random.default_rng(12345)
    t0, c0 = time.perf_counter(), time.process_time()
    per = {k: ci((v,), lambda u, axis: u.mean(axis=axis), B, rng) for k, v in x.items()}
    pairs = []
    for p in summ["pairs"]:
        a, b = x[p["a"]], x[p["b"]]
        r = ci((b, a), lambda u, v, axis: u.mean(axis=axis) - v.mean(axis=axis), B, rng)
        pairs.append((p, r, pooled_p(b, a, B, rng)))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    worst = 0.0
    for s in summ["saes"]:
        c, r = s["scores"]["ci"], per[s["name"]]
        got = c["percentile"] + c["bca"]
        worst = max(worst, max(abs(g - e) / r[0] for g, e in zip(got, r[1:])))
    for p, r, pv in pairs:
        d = p["difference"]
        got = d["percentile"] + d["bca"]
        worst = max(worst, max(abs(g - e) / r[0] for g, e in zip(got, r[1:])))
    print("scipy: %d SAE intervals, %d pairs (CI + p-value), B = %d" % (len(per), len(pairs), B))
    print("p-values C %s vs scipy/numpy %s" % (" ".join("%.4f" % p["difference"]["p_value"] for p, _, _ in pairs),
                                               " ".join("%.4f" % pv for _, _, pv in pairs)))
    print("largest |C - scipy| interval endpoint: %.3f bootstrap SEs" % worst)
    print("scipy_seconds %.3f" % elapsed)
    print("scipy_cpu_seconds %.3f" % cpu)


main()
