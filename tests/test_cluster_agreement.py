"""ARI of discovered clusters against known partitions, beside TF-IDF, length and random
baselines: a partition that is the truth scores 1 and its baselines' intervals behave."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.evaluation.label_reports import gradient_cluster_section
from modc_data.labeling.cluster_agreement import METHODS, agreement_table

TEACHERS = ["alice", "bob"]


def _texts(truth, rng):
    words = {"alice": "therefore we conclude carefully that", "bob": "answer quick"}
    return [f"{words[t]} {rng.integers(1000)} " * (1 + (t == "alice") * 3) for t in truth]


def test_true_partition_scores_one_and_text_baselines_find_style():
    rng = np.random.default_rng(0)
    truth = [TEACHERS[i % 2] for i in range(60)]
    clusters = [f"cluster:{i % 2}" for i in range(60)]
    table = agreement_table(clusters, _texts(truth, rng), {"teacher": truth}, seed=0, n_boot=50)
    ari = table["teacher"]["ari"]
    assert set(ari) == set(METHODS)
    assert ari["gradient"]["value"] == pytest.approx(1.0)
    assert ari["tfidf"]["value"] == pytest.approx(1.0) and ari["length"]["value"] == pytest.approx(1.0)
    assert abs(ari["random"]["value"]) < 0.05 and ari["random"]["low"] < 0 < ari["random"]["high"]
    assert table["teacher"]["contingency"] == {"cluster:0": {"alice": 30}, "cluster:1": {"bob": 30}}
    text = gradient_cluster_section({"m": {"n_clusters": 2, "baselines": table}})
    assert "| teacher | 60 | +1.000" in text


@settings(max_examples=15, deadline=None)
@given(st.integers(10, 80), st.integers(0, 1000))
def test_unknown_rows_left_out_and_intervals_hold_the_point(n, seed):
    rng = np.random.default_rng(seed)
    truth = [TEACHERS[i] for i in rng.integers(0, 2, n)]
    clusters = [f"cluster:{i}" for i in rng.integers(0, 2, n)]
    ref = [t if i % 3 else None for i, t in enumerate(truth)]
    table = agreement_table(clusters, _texts(truth, rng), {"t": ref}, seed=seed, n_boot=30)
    if len(set(clusters)) < 2 or "t" not in table:
        return
    assert table["t"]["n"] == sum(r is not None for r in ref)
    assert sum(sum(r.values()) for r in table["t"]["contingency"].values()) == table["t"]["n"]
    for s in table["t"]["ari"].values():
        assert -1 <= s["low"] <= s["high"] <= 1
