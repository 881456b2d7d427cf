"""Benchmark of tree-ensemble prediction from plain arrays against scikit-learn's compiled one.

    python bench/trees.py [--rows 200000] [--repeats 3]

Fits a ``HistGradientBoostingClassifier`` with the shipped astrocyte model's settings
(``syngraph.models.astrocyte.BOOSTING``) on random data with as many features as the context
stage, converts it (``syngraph.models.trees``) and, ``--repeats`` times in alternation, predicts
``--rows`` rows both ways: ``Trees.leaf_sum`` (numpy, what the pipeline runs) and the baseline,
scikit-learn's ``predict_proba`` on one thread. Prints seconds, rows per second, the ratio, the
largest probability difference and the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    from syngraph.models.astrocyte import BOOSTING, CONTEXT_FEATURES, FEATURES
    from syngraph.models.trees import from_gradient_boosting

    rng = np.random.default_rng(0)
    n_feat = len(FEATURES) + len(CONTEXT_FEATURES)
    x = rng.normal(size=(5000, n_feat))
    y = (x[:, 0] * x[:, 1] + x[:, 2] > 0.5).astype(int)
    with threadpool_limits(1):
        model = HistGradientBoostingClassifier(**BOOSTING, early_stopping=False, random_state=0).fit(x, y)
    trees, baseline = from_gradient_boosting(model)
    xt = rng.normal(size=(args.rows, n_feat))
    ours_s, sk_s = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        p = 1 / (1 + np.exp(-(baseline + trees.leaf_sum(xt))))
        ours_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        with threadpool_limits(1):
            q = model.predict_proba(xt)[:, 1]
        sk_s.append(time.perf_counter() - t)
    a, b = min(ours_s), min(sk_s)
    print(f"{trees.roots.size} trees, depth {trees.depth}, {args.rows} rows, {n_feat} features")
    print(f"numpy leaf_sum      {a:8.2f} s  {args.rows / a:12.0f} rows/s")
    print(f"sklearn predict     {b:8.2f} s  {args.rows / b:12.0f} rows/s (baseline, one thread)")
    print(f"ratio {a / b:.2f}; largest probability difference {np.abs(p - q).max():.1e}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
