"""Stage `validate@<arm>`: great-expectations suite over one labeled dataset.

    python stages/validate.py search_algorithm-skewed   # reads params.yaml: validation, labels
Writes artifacts/validation/<arm>.json (report; a DVC metric), GX data docs under
artifacts/validation/<arm>_docs/, and artifacts/validation/<arm>.ok (the dataset's hash: what
training depends on, so changing a validation-only param never retrains). A failing suite exits
non-zero, naming each failed expectation, and `dvc repro` stops before training.
"""

import sys

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import frame_hash, write_text
from modc_data.labeling import mixes
from modc_data.labeling.random_partition import uniform_shares
from modc_data.labeling.search_algorithm import ALGORITHMS
from modc_data.pipeline import StageError
from modc_data.validation import exit_code, format_summary, validate_dataset, write_report


def declared_shares(params, arm, rows: pl.DataFrame) -> dict[str, float] | None:
    """The mix a dataset must show: the params mix, or uniform over the source's modes; None for
    the rejection mix (no fixed shares: validation reports the realised ones)."""
    if arm.label_source == "search_algorithm":
        return mixes.declared_shares(params.labels.mixes[arm.mix])
    if arm.label_source == "random":
        return uniform_shares(params.labels.random.n_modes)
    if arm.label_source == "teacher_id":
        # a model teacher is one mode; a dataset teacher one per listed value of its column
        modes = []
        for t in params.distill.teachers:
            if t.kind == "model":
                modes.append(f"teacher:{t.name}")
            elif t.include:
                modes.extend(f"teacher:{v}" for v in t.include)
            else:
                train = rows.filter(pl.col("split") == "train")
                modes.extend(sorted(set(train["mode"].to_list())))
        modes = sorted(set(modes))
    elif isinstance(params.gradient_cluster.n_clusters, int):
        modes = [f"cluster:{i}" for i in range(params.gradient_cluster.n_clusters)]
    else:  # C chosen by silhouette: the clusters found are the declared set
        modes = sorted(rows.filter(pl.col("split") == "train")["mode"].unique().to_list())
    return {m: 1.0 / len(modes) for m in modes}


def main(params, argv):
    if len(argv) != 1 or argv[0] not in params.arms:
        raise StageError(f"usage: validate.py <arm>; arms are {sorted(params.arms)}")
    key = argv[0]
    arm = params.arms[key]
    path = pipeline.ARTIFACTS / "datasets" / arm.label_source / f"{arm.mix}.parquet"
    rows = pl.read_parquet(path)
    cfg = params.validation
    report = validate_dataset(
        rows,
        declared_shares(params, arm, rows),
        cfg.source_tolerance.get(arm.label_source, cfg.tolerance),
        cfg.min_rows_per_mode,
        key,
        modes=ALGORITHMS,  # used only by a mix with no fixed shares (search-algorithm rows)
    )
    out = pipeline.ARTIFACTS / "validation"
    write_report(report, out / f"{key}.json", html_dir=out / f"{key}_docs" if cfg.data_docs else None)
    print(format_summary(report))
    code = exit_code(report)
    if code:
        print(f"[validate] {path}: validation failed; fix the data or params before training",
              file=sys.stderr)
        sys.exit(code)
    write_text(frame_hash(rows) + "\n", out / f"{key}.ok")


if __name__ == "__main__":
    pipeline.run(main)
