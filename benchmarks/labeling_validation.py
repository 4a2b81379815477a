"""Label and validate throughput at the default problem counts (40k train, 2k validation, 2k test).

    python benchmarks/labeling_validation.py

Prints seconds (and rows per second) for: search_algorithm_rows on a synthetic problems table,
apply_mix (balanced), random_rows, and validate_dataset (GX, fresh ephemeral context, import
excluded) on the mixed rows, plus the realised mode shares of the mix.
"""

from __future__ import annotations

import json
import random
import time

import polars as pl

from modc_data.schema import problem_id

SIZES = {"train": 40_000, "validation": 2_000, "test": 2_000}
# Roughly the natural Countdown breakdown at the default budget (most problems solved by both).
CATEGORY_WEIGHTS = {"both": 0.55, "only_dfs": 0.15, "only_bfs": 0.15, "neither": 0.15}


def synthetic_problems(seed: int = 0) -> pl.DataFrame:
    rng = random.Random(seed)
    cats, weights = zip(*CATEGORY_WEIGHTS.items(), strict=True)
    recs = []
    for split, n in SIZES.items():
        for i in range(n):
            key = f"{split} {i}"
            cat = rng.choices(cats, weights)[0]
            rec = {
                "problem_id": problem_id("countdown", key),
                "task": "countdown",
                "split": split,
                "prompt": f"Use {key}",
                "answer": str(i),
                "category": cat,
                "meta": json.dumps({"nums": [1, 2, 3], "target": i}),
            }
            for algo in ("dfs", "bfs"):
                solved = cat in ("both", f"only_{algo}")
                steps = " ".join(f"{algo}{j}" for j in range(rng.randint(5, 40)))
                rec[f"{algo}_trace"] = steps + ("\nANS 1+2+3" if solved else "\nFAIL")
                rec[f"{algo}_solved"] = solved
                rec[f"{algo}_nodes"] = rng.randint(1, 8)
                rec[f"{algo}_answer"] = "1+2+3" if solved else ""
            recs.append(rec)
    return pl.DataFrame(recs)


def timed(label: str, n: int, fn):
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    print(f"{label:<56s} {dt:7.2f} s   {n / dt:10,.0f} rows/s")
    return out


def main() -> None:
    from modc_data.labeling.mixes import apply_mix, mode_shares
    from modc_data.labeling.random_partition import random_rows, uniform_shares
    from modc_data.labeling.search_algorithm import search_algorithm_rows

    problems = synthetic_problems()
    full = timed(
        f"search_algorithm_rows ({problems.height} problems)",
        problems.height,
        lambda: search_algorithm_rows(problems, 8),
    )
    shares = {"dfs": 0.5, "bfs": 0.5}
    mixed = timed(
        f"apply_mix ({full.height} rows)", full.height, lambda: apply_mix(full, shares, 0)
    )
    rand = timed(
        f"random_rows ({mixed.height} rows)", mixed.height, lambda: random_rows(mixed, 2, 7)
    )
    for split, info in mode_shares(mixed).items():
        realised = ", ".join(f"{m}={s:.3f}" for m, s in info["shares"].items())
        print(f"  realised mix {split:<10s} {realised} ({info['n']} rows)")

    t = time.perf_counter()
    import great_expectations  # noqa: F401  (import time reported apart from validation)

    print(f"{'import great_expectations':<56s} {time.perf_counter() - t:7.2f} s")
    from modc_data.validation import validate_dataset

    for name, rows, declared in (
        ("search_algorithm-balanced", mixed, shares),
        ("random-balanced", rand, uniform_shares(2)),
    ):
        report = timed(
            f"validate_dataset {name} ({rows.height} rows)",
            rows.height,
            lambda rows=rows, declared=declared, name=name: validate_dataset(
                rows, declared, 0.1, 20, name
            ),
        )
        print(f"  {len(report.results)} expectations, success={report.success}")


if __name__ == "__main__":
    main()
