#!/usr/bin/python3
"""Independent reference for src/stats (bootstrap.c, geometry.c).

Run with /usr/bin/python3 (numpy, scipy 1.10). Each subcommand reads the
inputs the C test wrote and prints one JSON object on stdout:

  boot1 X.txt B LEVEL SEED
      numpy mean/median/std(ddof=1); scipy.stats.bootstrap percentile and BCa
      CIs of the mean (one resampling, BCa call, then the percentile interval
      from the same distribution via bootstrap_result); the jackknife
      acceleration by explicit leave-one-out means.
  boot2 A.txt B.txt B LEVEL SEED
      the same for mean(a) - mean(b) (scipy's multi-sample bootstrap), plus the
      pooled-null p-value done with numpy: (count(|d*| >= |d|) + 1) / (B + 1).
  intervals THETA.txt ESTIMATE ACCEL LEVEL
      percentile and BCa endpoints from a given bootstrap distribution, written
      out from the textbook formulas (Efron & Tibshirani 14.3) with scipy's
      convention for ties (#below + #at-or-below) / 2B and numpy's linear
      percentile.
  geom_self D.f32 N DIM        brute force float64 nearest other direction
  geom_cross A.f32 B.f32 NA NB DIM   brute force nearest direction of B
  summary V.f32 N LO HI BINS   numpy quantiles and histogram
"""
import json
import sys

import numpy as np

# scipy is imported where it is needed: the geometry commands start faster.


def load_txt(path):
    return np.loadtxt(path, dtype=np.float64, ndmin=1)


def jackknife_accel(samples, sign):
    """a-hat from leave-one-out statistics, one sample at a time (scipy's
    multi-sample rule), for theta = sum_j sign_j * mean(sample_j)."""
    def theta(xs):
        return sum(s * np.mean(x) for s, x in zip(sign, xs))
    nums, dens = 0.0, 0.0
    for j, x in enumerate(samples):
        n = len(x)
        loo = np.empty(n)
        for i in range(n):
            xs = list(samples)
            xs[j] = np.delete(x, i)
            loo[i] = theta(xs)
        u = (n - 1) * (loo.mean() - loo)
        nums += (u ** 3).sum() / n ** 3
        dens += (u ** 2).sum() / n ** 2
    return nums / (6.0 * dens ** 1.5)


def scipy_cis(data, statistic, B, level, seed):
    from scipy import special, stats
    rng = np.random.default_rng(seed)
    bca = stats.bootstrap(data, statistic, n_resamples=B, confidence_level=level,
                          method='BCa', vectorized=True, random_state=rng, batch=20000)
    pct = stats.bootstrap(data, statistic, n_resamples=0, confidence_level=level,
                          method='percentile', vectorized=True, bootstrap_result=bca)
    est = float(statistic(*data, axis=-1))
    dist = bca.bootstrap_distribution
    frac = ((dist < est).sum() + (dist <= est).sum()) / (2 * dist.size)
    return {
        "pct_lo": float(pct.confidence_interval.low),
        "pct_hi": float(pct.confidence_interval.high),
        "bca_lo": float(bca.confidence_interval.low),
        "bca_hi": float(bca.confidence_interval.high),
        "se": float(bca.standard_error),
        "z0": float(special.ndtri(frac)),
    }


def cmd_boot1(path, B, level, seed):
    x = load_txt(path)
    out = {"mean": float(np.mean(x)), "median": float(np.median(x)),
           "sd": float(np.std(x, ddof=1)), "estimate": float(np.mean(x)),
           "accel": float(jackknife_accel([x], [1.0]))}
    out.update(scipy_cis((x,), lambda a, axis: np.mean(a, axis=axis), B, level, seed))
    return out


def pooled_pvalue(a, b, B, seed):
    rng = np.random.default_rng(seed)
    pool = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    count, done = 0, 0
    while done < B:
        m = min(20000, B - done)
        da = pool[rng.integers(0, pool.size, (m, a.size))].mean(axis=1)
        db = pool[rng.integers(0, pool.size, (m, b.size))].mean(axis=1)
        count += int((np.abs(da - db) >= observed * (1 - 1e-12)).sum())
        done += m
    return (count + 1) / (B + 1)


def cmd_boot2(path_a, path_b, B, level, seed):
    a, b = load_txt(path_a), load_txt(path_b)
    out = {"estimate": float(a.mean() - b.mean()),
           "accel": float(jackknife_accel([a, b], [1.0, -1.0]))}
    out.update(scipy_cis((a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                         B, level, seed))
    out["p_value"] = pooled_pvalue(a, b, B, seed + 1)
    return out


def cmd_intervals(path, estimate, accel, level):
    from scipy import special
    t = np.sort(load_txt(path))
    alpha = (1 - level) / 2
    frac = ((t < estimate).sum() + (t <= estimate).sum()) / (2 * t.size)
    z0 = special.ndtri(frac)
    za = special.ndtri(alpha)
    ends = []
    for z in (za, -za):
        ends.append(special.ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z))))
    return {"pct_lo": float(np.percentile(t, 100 * alpha)),
            "pct_hi": float(np.percentile(t, 100 * (1 - alpha))),
            "bca_lo": float(np.percentile(t, 100 * ends[0])),
            "bca_hi": float(np.percentile(t, 100 * ends[1])),
            "z0": float(z0), "se": float(np.std(t, ddof=1))}


def unit_rows(path, n, d):
    m = np.fromfile(path, dtype=np.float32).astype(np.float64).reshape(n, d)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def best_and_gap(sim):
    """max per row, its index, and the gap to the runner-up (ties are ambiguous)."""
    order = np.argsort(-sim, axis=1, kind='stable')
    rows = np.arange(sim.shape[0])
    best = sim[rows, order[:, 0]]
    second = sim[rows, order[:, 1]] if sim.shape[1] > 1 else np.full(sim.shape[0], -np.inf)
    return {"cos": best.tolist(), "nn": order[:, 0].tolist(),
            "gap": np.minimum(best - second, 1e9).tolist()}


def cmd_geom_self(path, n, d):
    u = unit_rows(path, n, d)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    return best_and_gap(sim)


def cmd_geom_cross(path_a, path_b, na, nb, d):
    return best_and_gap(unit_rows(path_a, na, d) @ unit_rows(path_b, nb, d).T)


def cmd_summary(path, n, lo, hi, bins):
    v = np.fromfile(path, dtype=np.float32).astype(np.float64)[:n]
    q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
    inside = v[(v >= lo) & (v <= hi)]
    counts, _ = np.histogram(inside, bins=bins, range=(lo, hi))
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)), "min": float(v.min()),
            "max": float(v.max()), "q05": q[0], "q25": q[1], "median": q[2], "q75": q[3],
            "q95": q[4], "counts": counts.tolist(), "below": int((v < lo).sum()),
            "above": int((v > hi).sum())}


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "boot1":
        out = cmd_boot1(args[0], int(args[1]), float(args[2]), int(args[3]))
    elif cmd == "boot2":
        out = cmd_boot2(args[0], args[1], int(args[2]), float(args[3]), int(args[4]))
    elif cmd == "intervals":
        out = cmd_intervals(args[0], float(args[1]), float(args[2]), float(args[3]))
    elif cmd == "geom_self":
        out = cmd_geom_self(args[0], int(args[1]), int(args[2]))
    elif cmd == "geom_cross":
        out = cmd_geom_cross(args[0], args[1], int(args[2]), int(args[3]), int(args[4]))
    elif cmd == "summary":
        out = cmd_summary(args[0], int(args[1]), float(args[2]), float(args[3]), int(args[4]))
    else:
        sys.exit("stats_ref.py: unknown command " + cmd)
    json.dump(out, sys.stdout, default=float)
    print()


if __name__ == "__main__":
    main(sys.argv)
