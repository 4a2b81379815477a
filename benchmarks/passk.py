"""pass@k throughput: 10,000 problems x n=1024 samples, every k in 1, 2, 4, …, 1024.

Run: ``python benchmarks/passk.py`` (or ``make bench``). Prints seconds for the plain estimator,
the two-mode ModC split (n=1024 per mode) and a 1000-resample bootstrap of both curves.
Target: each estimator call <= 1 s.
"""

from __future__ import annotations

import time

import numpy as np

from modc_data.evaluation.bootstrap import percentile_interval, resample_indices
from modc_data.evaluation.passk import default_ks, pass_at_k_curve, pass_at_k_modc

P, N, M = 10_000, 1024, 2
TARGET_S = 1.0


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    rng = np.random.default_rng(0)
    ks = default_ks(N)
    p = rng.beta(0.3, 1.5, size=(P, M))  # skewed per-problem success rates, as after SFT
    c = rng.binomial(N, p)
    n = np.full((P, M), N)
    t_plain, plain = best_of(lambda: pass_at_k_curve(n[:, 0], c[:, 0], ks))
    t_split, split = best_of(lambda: pass_at_k_modc(n, c, ks))
    idx = resample_indices(P, 1000, seed=0)
    t_boot, _ = best_of(lambda: percentile_interval(split, idx, 0.95), repeats=1)
    print(f"problems={P} n={N} modes={M} ks={len(ks)} (1..{N})")
    print(f"pass_at_k (plain):      {t_plain:.3f} s  {'OK' if t_plain <= TARGET_S else 'SLOW'}")
    print(f"pass_at_k_modc (split): {t_split:.3f} s  {'OK' if t_split <= TARGET_S else 'SLOW'}")
    print(f"bootstrap B=1000:       {t_boot:.3f} s")
    print(
        f"mean pass@1={plain[:, 0].mean():.4f} pass@{N}={plain[:, -1].mean():.4f} "
        f"modc pass@{N}={split[:, -1].mean():.4f}"
    )


if __name__ == "__main__":
    main()
