#!/usr/bin/python3
"""interp_score_ref.py: numpy reference for the feature scores of src/interp/score.c.

Reads a JSON file {"cases": [{"truth": [...], "sim": [...], "len": [...]}]} and
writes {"cases": [{"r": r|null, "r2": ..., "status": ..., "win_r": [...]}]}:
r is the Pearson correlation over the whole concatenation (np.corrcoef, float64),
computed independently of the C code; a constant vector gives null with status
"constant_true" / "constant_simulation", as the project's rule says (never 0).

Usage: interp_score_ref.py IN.json OUT.json
"""
import json
import sys

import numpy as np


def corr(t, s):
    t = np.asarray(t, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    if t.size == 0:
        return None, "empty"
    if np.all(t == t[0]):
        return None, "constant_true"
    if np.all(s == s[0]):
        return None, "constant_simulation"
    return float(np.corrcoef(t, s)[0, 1]), "ok"


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)["cases"]
    out = []
    for c in cases:
        r, status = corr(c["truth"], c["sim"])
        wins, at = [], 0
        for n in c["len"]:
            wr, _ = corr(c["truth"][at:at + n], c["sim"][at:at + n])
            wins.append(wr)
            at += n
        out.append({"r": r, "r2": None if r is None else r * r, "status": status, "win_r": wins})
    with open(sys.argv[2], "w") as f:
        json.dump({"cases": out}, f)


if __name__ == "__main__":
    main()
