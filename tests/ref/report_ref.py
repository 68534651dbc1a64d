#!/usr/bin/python3
"""Independent numpy/scipy check of a report's summary.json (run with /usr/bin/python3).

  report_ref.py EXP_DIR SUMMARY_JSON

Reads EXP_DIR/saes/sweep.json and EXP_DIR/scores/<sae>.jsonl itself (last line of a
feature wins, as the score stage's records are appended), and checks what the C
report wrote:
  * per SAE: counts of scored / no_score / failed (and failures by reason), mean,
    median and sd (ddof 1) of the scores, to 1e-12;
  * the CI of the mean against scipy.stats.bootstrap (BCa and percentile, same B,
    a different random stream): endpoints must agree within 0.15 bootstrap SE,
    which the Monte Carlo error of B >= 2000 resamples stays well inside;
  * pair selection by its own brute force (per layer, type pair and seed, the
    closest in |log L0 ratio| and in |log CE-increase ratio|, ties to the first in
    sweep order), the log ratios, and each pair's difference of means (b - a),
    its CI (same tolerance) and pooled-null p-value (within 0.02 absolute or a
    factor 2 for small p).
Prints one line per problem and exits 1 when there is any.
"""
import json
import math
import sys

import numpy as np
from scipy import stats

TYPES = ["local", "e2e", "e2e_ds"]
PAIRS = [("local", "e2e"), ("local", "e2e_ds"), ("e2e", "e2e_ds")]
problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)


def close(a, b, tol, what):
    check(a is not None and b is not None and abs(a - b) <= tol, f"{what}: C {a} vs reference {b} (tol {tol})")


def read_scores(path):
    last = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rec = json.loads(line)
                last[rec["feature"]] = rec
    return last


def bootstrap_ci(data, stat, B, level):
    rng = np.random.default_rng(12345)
    bca = stats.bootstrap(data, stat, n_resamples=B, method="BCa", confidence_level=level,
                          vectorized=True, random_state=rng)
    pct = stats.bootstrap(data, stat, n_resamples=0, method="percentile", confidence_level=level,
                          vectorized=True, bootstrap_result=bca)
    return bca.standard_error, (pct.confidence_interval.low, pct.confidence_interval.high), \
        (bca.confidence_interval.low, bca.confidence_interval.high)


def pooled_p(a, b, B):
    rng = np.random.default_rng(777)
    pool = np.concatenate([a, b])
    obs = abs(a.mean() - b.mean())
    da = pool[rng.integers(0, pool.size, (B, a.size))].mean(axis=1)
    db = pool[rng.integers(0, pool.size, (B, b.size))].mean(axis=1)
    return (int((np.abs(da - db) >= obs * (1 - 1e-12)).sum()) + 1) / (B + 1)


def log_ratio(x, y):
    if x is None or y is None or not (x > 0 and y > 0):
        return None
    return math.log(y / x)


def main():
    exp_dir, summary_path = sys.argv[1], sys.argv[2]
    sweep = json.load(open(f"{exp_dir}/saes/sweep.json"))["saes"]
    summ = json.load(open(summary_path))
    B, level = summ["bootstrap"]["resamples"], summ["bootstrap"]["level"]
    by_name = {s["name"]: s for s in summ["saes"]}
    scores = {}
    for s in sweep:
        name = s["name"]
        got = by_name[name]["scores"]
        try:
            recs = read_scores(f"{exp_dir}/scores/{name}.jsonl")
        except FileNotFoundError:
            check(got["status"] == "not_computed", f"{name}: status {got['status']} without a score file")
            continue
        x = np.array([r["score"] for r in recs.values() if r["status"] == "scored"], dtype=np.float64)
        scores[name] = x
        failed = {}
        for r in recs.values():
            if r["status"] == "failed":
                failed[r["reason"]] = failed.get(r["reason"], 0) + 1
        check(got["n_scored"] == x.size, f"{name}: n_scored {got['n_scored']} vs {x.size}")
        check(got["n_failed"] == sum(failed.values()), f"{name}: n_failed")
        check(got["n_no_score"] == sum(r["status"] == "no_score" for r in recs.values()), f"{name}: n_no_score")
        check(got["failed_reasons"] == failed, f"{name}: failed_reasons {got['failed_reasons']} vs {failed}")
        close(got["mean"], float(x.mean()), 1e-12, f"{name} mean")
        close(got["median"], float(np.median(x)), 1e-12, f"{name} median")
        close(got["sd"], float(x.std(ddof=1)), 1e-12, f"{name} sd")
        se, pct, bca = bootstrap_ci((x,), lambda v, axis: v.mean(axis=axis), B, level)
        ci = got["ci"]
        close(ci["se"], se, 0.05 * se, f"{name} bootstrap se")
        for k in range(2):
            close(ci["percentile"][k], pct[k], 0.15 * se, f"{name} percentile[{k}]")
            close(ci["bca"][k], bca[k], 0.15 * se, f"{name} bca[{k}]")

    # pairs, by brute force
    expected = []
    layers = sorted({s["layer"] for s in sweep})
    seeds = sorted({s["seed"] for s in sweep})
    for layer in layers:
        for ta, tb in PAIRS:
            for seed in seeds:
                for crit, key in (("l0", "l0"), ("ce_increase", "ce_increase")):
                    best = None
                    for i, a in enumerate(sweep):
                        if (a["layer"], a["type"], a["seed"]) != (layer, ta, seed):
                            continue
                        for j, b in enumerate(sweep):
                            if (b["layer"], b["type"], b["seed"]) != (layer, tb, seed):
                                continue
                            g = log_ratio(a[key], b[key])
                            if g is None:
                                continue
                            if best is None or abs(g) < best[0]:
                                best = (abs(g), a["name"], b["name"])
                    if best:
                        expected.append((crit, best[1], best[2], best[0]))
    got_pairs = summ["pairs"]
    check(len(got_pairs) == len(expected), f"pairs: C has {len(got_pairs)}, reference {len(expected)}")
    sw = {s["name"]: s for s in sweep}
    for p, (crit, a, b, gap) in zip(got_pairs, expected):
        check((p["criterion"], p["a"], p["b"]) == (crit, a, b),
              f"pair: C ({p['criterion']}, {p['a']}, {p['b']}) vs reference ({crit}, {a}, {b})")
        close(p["gap"], gap, 1e-12, f"pair {a}/{b} gap")
        close(p["log_ratio"]["l0"], log_ratio(sw[a]["l0"], sw[b]["l0"]), 1e-12, f"pair {a}/{b} log ratio l0")
        if a in scores and b in scores and p["difference"]:
            xa, xb = scores[a], scores[b]
            d = p["difference"]
            close(d["estimate"], float(xb.mean() - xa.mean()), 1e-12, f"pair {a}/{b} difference")
            se, pct, bca = bootstrap_ci((xb, xa), lambda u, v, axis: u.mean(axis=axis) - v.mean(axis=axis),
                                        B, level)
            for k in range(2):
                close(d["percentile"][k], pct[k], 0.15 * se, f"pair {a}/{b} percentile[{k}]")
                close(d["bca"][k], bca[k], 0.15 * se, f"pair {a}/{b} bca[{k}]")
            pr = pooled_p(xb, xa, B)
            ok = abs(d["p_value"] - pr) <= 0.02 or (pr < 0.05 and 0.5 <= d["p_value"] / pr <= 2)
            check(ok, f"pair {a}/{b} p-value: C {d['p_value']} vs reference {pr}")
    for msg in problems:
        print(msg)
    print(f"report_ref: {len(summ['saes'])} SAEs, {len(got_pairs)} pairs, {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


main()
