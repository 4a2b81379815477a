"""k-means on features, and gradient-cluster labels end to end on planted completion styles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from modc_data.labeling.clustering import assign_to_centers, cluster_features, normalize_rows
from modc_data.labeling.gradient_cluster import label_by_gradient_clusters
from modc_data.params_blocks import GradientClusterParams
from modc_data.schema import check_schema, make_rows, problem_id
from tests.tiny_models import tiny_llama, tiny_tokenizer


def _blobs(sizes, d=16, spread=0.05, seed=0):
    """Clusters around random directions (k-means runs on normalised features)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), d))
    x = np.concatenate(
        [c + spread * rng.normal(size=(n, d)) for c, n in zip(centres, sizes, strict=True)]
    )
    truth = np.repeat(np.arange(len(sizes)), sizes)
    scale = rng.uniform(0.1, 10.0, size=(len(x), 1))  # norms must not matter
    return x * scale, truth


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 4))
def test_fixed_c_recovers_blobs_and_orders_by_size(seed, k):
    sizes = [30 - 5 * i for i in range(k)]
    x, truth = _blobs(sizes, seed=seed)
    res = cluster_features(x, k, n_init=3, seed=seed)
    assert adjusted_rand_score(truth, res.labels) == 1.0
    counts = np.bincount(res.labels)
    assert list(counts) == sorted(counts, reverse=True)
    # distances are to the assigned (nearest) centre
    labels, dist = assign_to_centers(x, res.centers)
    np.testing.assert_array_equal(labels, res.labels)
    np.testing.assert_allclose(dist, res.distances, atol=1e-6)
    assert res.silhouette[k] > 0.8


def test_auto_chooses_the_planted_c():
    x, truth = _blobs([25, 25, 25], seed=3)
    res = cluster_features(x, "auto", auto_range=[2, 3, 4, 5], n_init=3, seed=0)
    assert res.n_clusters == 3
    assert set(res.silhouette) == {2, 3, 4, 5}
    assert max(res.silhouette, key=res.silhouette.get) == 3
    assert adjusted_rand_score(truth, res.labels) == 1.0


def test_same_seed_same_labels():
    x, _ = _blobs([20, 20], spread=1.0, seed=5)  # overlapping: k-means init matters
    a = cluster_features(x, 3, n_init=2, seed=1)
    b = cluster_features(x, 3, n_init=2, seed=1)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_bad_inputs_fail_clearly():
    x, _ = _blobs([3, 3])
    with pytest.raises(ValueError, match="cannot make 8 clusters from 6"):
        cluster_features(x, 8)
    with pytest.raises(ValueError, match=">= 2"):
        cluster_features(x, 1)
    x[2, 0] = np.nan
    with pytest.raises(ValueError, match="row 2 is not finite"):
        normalize_rows(x)


# --------------------------------------------------------------------------- end to end
STYLE_WORDS = {"ab": ("a", "b"), "xy": ("x", "y")}


def _planted_rows(n_per_style: int, n_val: int, seed: int = 0) -> pl.DataFrame:
    """Prompts 'numbers ...'; completions only 'a b a b ..' (mode ab) or 'x y x y ..' (xy)."""
    rng = np.random.default_rng(seed)
    recs = []
    for split, n in (("train", n_per_style), ("validation", n_val)):
        for style, (w0, w1) in STYLE_WORDS.items():
            for _ in range(n):
                nums = " ".join(str(v) for v in rng.integers(1, 10, size=3))
                length = int(rng.integers(3, 9))
                completion = " ".join(w0 if j % 2 == 0 else w1 for j in range(length))
                prompt = f"numbers {nums} target {int(rng.integers(10, 25))}"
                recs.append(
                    dict(
                        problem_id=problem_id("toy", prompt),
                        task="toy",
                        prompt=prompt,
                        completion=completion,
                        answer="",
                        mode=style,
                        label_source="search_algorithm",
                        split=split,
                        correct=True,
                        meta={"budget": 8},
                    )
                )
    return make_rows(recs)


def test_planted_styles_are_recovered(tmp_path):
    rows = _planted_rows(n_per_style=20, n_val=5)
    tok = tiny_tokenizer(["a b x y", "numbers target", *map(str, range(30))])
    model = tiny_llama(tok, seed=0)
    cfg = GradientClusterParams(projection_dim=64, n_clusters="auto", auto_range=[2, 3], n_init=3)
    out, report = label_by_gradient_clusters(rows, model, tok, cfg, tmp_path)

    check_schema(out, "labeled rows")
    assert out["id"].to_list() == rows["id"].to_list()  # same rows, same order
    assert set(out["label_source"]) == {"gradient_cluster"}
    assert report["n_clusters"] == 2 and set(report["silhouette"]) == {"2", "3"}
    assert set(out["mode"]) == {"cluster:0", "cluster:1"}
    for split in ("train", "validation"):
        part = out.filter(pl.col("split") == split)
        truth = [json.loads(m)["original_mode"] for m in part["meta"]]
        assert adjusted_rand_score(truth, part["mode"].to_list()) >= 0.9
        assert report["agreement"][split]["ari"] >= 0.9
    metas = [json.loads(m) for m in out["meta"]]
    assert all(m["budget"] == 8 and m["cluster_distance"] >= 0 for m in metas)
    table = report["agreement"]["train"]["contingency"]
    assert sum(sum(v.values()) for v in table.values()) == 40
    assert report["cluster_sizes"]["train"] == {"cluster:0": 20, "cluster:1": 20}

    # a second run reuses the stored features (nothing recomputed) and gives the same labels
    again, report2 = label_by_gradient_clusters(rows, model, tok, cfg, tmp_path)
    assert report2["features_rows_resumed"] == rows.height
    assert again.equals(out)


def test_max_examples_and_missing_truth_column(tmp_path):
    rows = _planted_rows(n_per_style=6, n_val=1)
    tok = tiny_tokenizer(["a b x y", "numbers target", *map(str, range(30))])
    model = tiny_llama(tok, seed=0)
    with pytest.raises(ValueError, match="true_mode_column 'style'"):
        label_by_gradient_clusters(
            rows, model, tok, GradientClusterParams(), tmp_path, true_mode_column="style"
        )
    cfg = GradientClusterParams(projection_dim=16, max_examples=5, n_init=2)
    out, report = label_by_gradient_clusters(rows, model, tok, cfg, tmp_path)
    assert out.filter(pl.col("split") == "train").height == 5
    assert report["n_train_rows_left_out"] == 7
    assert out.filter(pl.col("split") == "validation").height == 2


def test_stage_feature_cache_is_keyed_by_reference_model(tmp_path, monkeypatch):
    """A retrained reference model gets a fresh feature store (the stale one is removed) instead
    of failing on the store's metadata; the same inputs find the same store (resume)."""
    import importlib.util

    from modc_data import pipeline
    from modc_data.params_blocks import GradientClusterParams
    from tests.tiny_models import tiny_rows

    spec = importlib.util.spec_from_file_location(
        "gc_stage", Path(__file__).resolve().parents[1] / "stages" / "gradient_cluster.py"
    )
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    monkeypatch.setattr(pipeline, "ARTIFACTS", tmp_path / "artifacts")
    rows, cfg = tiny_rows(8, ["dfs", "bfs"], "train", seed=0), GradientClusterParams()
    torch.manual_seed(0)
    first, second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)  # two different "models"
    a = stage.cache_dir("balanced", first, rows, cfg)
    a.mkdir(parents=True)
    assert stage.cache_dir("balanced", first, rows, cfg) == a and a.exists()
    b = stage.cache_dir("balanced", second, rows, cfg)
    assert b != a and not a.exists()
    assert stage.cache_dir("balanced", second, rows.head(4), cfg) != b
