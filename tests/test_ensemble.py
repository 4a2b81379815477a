"""Gradient features over several reference checkpoints (modc_data.labeling.ensemble)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.labeling.clustering import normalize_rows
from modc_data.labeling.ensemble import (
    combine,
    featurize_references,
    partition_stability,
    reference_key,
    restrict_params,
)
from modc_data.labeling.gradient_features import featurize
from modc_data.labeling.gradients import gradient_params
from modc_data.labeling.projection import META_FILE, RademacherProjection
from tests.test_gradients import PAIRS  # the same five Countdown-like pairs
from tests.tiny_models import tiny_llama, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_each_reference_gets_its_own_store_with_the_single_reference_features(tok, tmp_path):
    models = [tiny_llama(tok, seed=s) for s in (1, 2)]
    feats = featurize_references(models, tok, PAIRS * 2, tmp_path, dim=16, seed=3, chunk_size=4)
    assert len(feats) == 2 and all(f.shape == (10, 16) for f in feats)
    stores = sorted(p.name for p in tmp_path.iterdir())
    assert stores == sorted(f"ref-{reference_key(m, None)}" for m in models)
    # each equals featurize on that model alone: same projection seed, same rows
    for m, f in zip(models, feats, strict=True):
        alone, _ = featurize(m, tok, PAIRS * 2, tmp_path / "alone" / str(id(m)), dim=16, seed=3,
                             chunk_size=4)
        np.testing.assert_array_equal(np.asarray(alone), f)
    assert not np.allclose(feats[0], feats[1])  # two references, two feature sets


def test_ensemble_is_seeded_and_resumes_an_interrupted_reference(tok, tmp_path):
    models = [tiny_llama(tok, seed=s) for s in (1, 2)]
    kw = {"dim": 16, "seed": 3, "chunk_size": 2}
    full = featurize_references(models, tok, PAIRS * 3, tmp_path / "a", **kw)
    again = featurize_references(models, tok, PAIRS * 3, tmp_path / "b", **kw)
    for f, g in zip(full, again, strict=True):
        np.testing.assert_array_equal(f, g)
    other = featurize_references(models, tok, PAIRS * 3, tmp_path / "c", dim=16, seed=4, chunk_size=2)
    assert not np.allclose(other[0], full[0])  # the projection seed changes the features

    # the second reference's store stopped after 4 rows, as after a crash: the rerun resumes it
    store = tmp_path / "b" / f"ref-{reference_key(models[1], None)}"
    meta = json.loads((store / META_FILE).read_text())
    meta["rows_done"] = 4
    (store / META_FILE).write_text(json.dumps(meta))
    infos = {}
    resumed = featurize_references(models, tok, PAIRS * 3, tmp_path / "b", **kw,
                                   on_reference=lambda i, info: infos.update({i: info}))
    assert infos[0]["rows_resumed"] == 15 and infos[1]["rows_resumed"] == 4
    for f, g in zip(full, resumed, strict=True):  # rows 4.. recomputed, in a smaller group
        np.testing.assert_allclose(f, g, rtol=1e-5, atol=1e-6)


def test_layers_restrict_the_gradients_and_are_restored(tok, tmp_path):
    model = tiny_llama(tok, seed=1)
    names = list(gradient_params(model))
    with restrict_params(model, r"layers\.0\.") as kept:
        assert kept and all("layers.0." in n for n in kept)
        assert set(gradient_params(model)) == set(kept)
    assert list(gradient_params(model)) == names  # all require grad again
    first, = featurize_references([model], tok, PAIRS, tmp_path, dim=8, seed=0, layers=r"layers\.0\.")
    every, = featurize_references([model], tok, PAIRS, tmp_path, dim=8, seed=0)
    assert len(list(tmp_path.iterdir())) == 2  # one store per (reference, layers)
    # the restricted features are the projection of exactly those parameters' gradients
    from modc_data.labeling.gradients import encode_pairs, gradients_loop
    with restrict_params(model, r"layers\.0\.") as kept:
        grads = gradients_loop(model, encode_pairs(tok, PAIRS))
        proj = RademacherProjection(grads.shape[1], 8, 0).project(grads).numpy()
    np.testing.assert_allclose(first, proj, rtol=1e-4, atol=1e-5)
    assert not np.allclose(first, every)


def test_a_pattern_matching_nothing_fails_before_work_and_restores(tok, tmp_path):
    model = tiny_llama(tok, seed=1)
    with pytest.raises(ValueError, match=r"matches none of the model's .*fix the pattern"):
        featurize_references([model], tok, PAIRS, tmp_path, dim=8, layers=r"nope\.")
    assert all(p.requires_grad for p in model.parameters())
    assert not any(tmp_path.iterdir())


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 12), r=st.integers(1, 4), d=st.integers(1, 6), seed=st.integers(0, 2**16)
)
def test_concat_distances_are_the_mean_of_the_references(n, r, d, seed):
    rng = np.random.default_rng(seed)
    sets = [rng.normal(size=(n, d)).astype(np.float32) * rng.uniform(0.01, 100) for _ in range(r)]
    x = combine(sets, "concat")
    assert x.shape == (n, r * d)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    cos = np.mean([normalize_rows(s) @ normalize_rows(s).T for s in sets], axis=0)
    np.testing.assert_allclose(x @ x.T, cos, atol=1e-5)
    m = combine(sets, "mean")
    np.testing.assert_allclose(m, np.mean([normalize_rows(s) for s in sets], axis=0), atol=1e-6)


def test_combine_refuses_misaligned_sets():
    with pytest.raises(ValueError, match="row counts"):
        combine([np.ones((3, 2)), np.ones((4, 2))])
    with pytest.raises(ValueError, match="equal widths"):
        combine([np.ones((3, 2)), np.ones((3, 5))], "mean")
    with pytest.raises(ValueError, match="no feature sets"):
        combine([])


def test_stability_is_one_for_agreeing_references_and_low_for_noise():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0, 0], [0, 5.0, 0]])
    truth = rng.integers(0, 2, 200)
    agreeing = [centres[truth] + rng.normal(scale=0.3, size=(200, 3)) for _ in range(3)]
    res = partition_stability(agreeing, 2, seed=0)
    assert res["stability"] == pytest.approx(1.0) and len(res["pairs"]) == 3
    noise = [rng.normal(size=(200, 3)) for _ in range(3)]
    assert partition_stability(noise, 2, seed=0)["stability"] < 0.2
    assert partition_stability(agreeing[:1], 2)["stability"] == 1.0


def test_restrict_params_restores_after_an_error(tok):
    model = tiny_llama(tok, seed=1)
    with pytest.raises(RuntimeError, match="boom"), restrict_params(model, r"layers\.0\."):
        raise RuntimeError("boom")
    assert all(p.requires_grad for p in model.parameters())
