#!/usr/bin/python3
"""The scipy/numpy side of tests/bench/stats.sh (run with /usr/bin/python3).

  stats_ref.py boot DIR B
      The same work as `bench_stats boot`: for each of the 6 score vectors in
      DIR/scores.txt, scipy.stats.bootstrap BCa with B resamples, then the
      percentile interval from the same bootstrap distribution
      (bootstrap_result, n_resamples=0); for pairs (0,1), (2,3), (4,5), the
      two-sample bootstrap of mean(a) - mean(b) the same way plus a pooled-null
      p-value in numpy with B resamples. Prints the time, and how far the C
      intervals in DIR/c_results.txt are from scipy's, in bootstrap SEs.
  stats_ref.py geom DIR N D
      numpy brute force nearest-other-direction cosine for DIR/dict.f32
      (float32, as the C code): normalise, U U^T, diagonal out, row max.
      Prints the time and the largest difference from DIR/nn.f32.
"""
import sys
import time

import numpy as np


def mean_stat(x, axis):
    return np.mean(x, axis=axis)


def diff_stat(a, b, axis):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def ci_pair(data, stat, B, rng):
    from scipy import stats
    bca = stats.bootstrap(data, stat, n_resamples=B, method='BCa', vectorized=True, random_state=rng)
    pct = stats.bootstrap(data, stat, n_resamples=0, method='percentile', vectorized=True,
                          bootstrap_result=bca)
    return (float(stat(*data, axis=-1)), float(bca.standard_error),
            pct.confidence_interval.low, pct.confidence_interval.high,
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


def cmd_boot(d, B):
    x = np.loadtxt(d + "/scores.txt")
    import scipy.stats  # noqa: F401  (import outside the timed region, as C links GSL beforehand)
    rng = np.random.default_rng(12345)
    t0, c0 = time.perf_counter(), time.process_time()
    results = [("mean", ci_pair((x[k],), mean_stat, B, rng)) for k in range(x.shape[0])]
    pvals = []
    for p in range(3):
        a, b = x[2 * p], x[2 * p + 1]
        results.append(("diff", ci_pair((a, b), diff_stat, B, rng)))
        pvals.append(pooled_p(a, b, B, rng))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0

    c_rows, c_p = [], []
    for line in open(d + "/c_results.txt"):
        f = line.split()
        if f[0] == "p":
            c_p.append(float(f[1]))
        else:
            c_rows.append([float(v) for v in f[1:]])
    worst = 0.0
    for (_, r), c in zip(results, c_rows):
        se = r[1]
        for k in (2, 3, 4, 5):
            worst = max(worst, abs(c[k] - r[k]) / se)
    print("scipy p-values %s vs C %s" % (" ".join("%.5f" % p for p in pvals),
                                         " ".join("%.5f" % p for p in c_p)))
    print("largest |C - scipy| interval endpoint: %.3f bootstrap SEs "
          "(Monte-Carlo noise of two runs at B=%d: ~0.012-0.016 SE per endpoint)" % (worst, B))
    print("scipy_seconds %.3f" % elapsed)
    print("scipy_cpu_seconds %.3f" % cpu)


def cmd_geom(d, n, dim):
    D = np.fromfile(d + "/dict.f32", dtype=np.float32).reshape(n, dim)
    c_nn = np.fromfile(d + "/nn.f32", dtype=np.float32)
    t0 = time.perf_counter()
    U = D / np.linalg.norm(D, axis=1, keepdims=True)
    G = U @ U.T
    np.fill_diagonal(G, -np.inf)
    best = G.max(axis=1)
    elapsed = time.perf_counter() - t0
    print("numpy %d x %d: largest |C - numpy| %.2e" % (n, dim, float(np.abs(best - c_nn).max())))
    import resource
    print("numpy_geom_seconds %.3f" % elapsed)
    print("numpy_geom_peak_rss_mib %.1f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))


if __name__ == "__main__":
    if sys.argv[1] == "boot":
        cmd_boot(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "geom":
        cmd_geom(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit("usage: stats_ref.py boot DIR B | geom DIR N D")
