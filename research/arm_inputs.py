"""What the research scripts share: an arm's training inputs read from a built pipeline, as the
train stage reads them (``stages/train.py``). Not a script itself."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def arm_inputs(root: Path, params, arm_key: str) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(train rows, validation rows, tokenizer texts) of ``arm_key`` under ``root``: the texts
    are every problem's prompt and the train and validation completions, the train stage's one
    vocabulary for all variants."""
    arm = params.arms[arm_key]
    art = Path(root) / "artifacts"
    rows = pl.read_parquet(art / "datasets" / arm.label_source / f"{arm.mix}.parquet")
    train_rows = rows.filter(pl.col("split") == "train")
    val_rows = rows.filter(pl.col("split") == "validation")
    problems = pl.read_parquet(art / "data" / "problems.parquet", columns=["prompt"])
    texts = problems["prompt"].to_list() + train_rows["completion"].to_list() + val_rows["completion"].to_list()
    return train_rows, val_rows, texts
