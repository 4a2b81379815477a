"""Rademacher projection (statistically, as TRAK's test_jl.py) and the feature store."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.labeling.projection import (
    BLOCK_ROWS,
    META_FILE,
    FeatureMeta,
    RademacherProjection,
    commit_rows,
    open_feature_store,
)


def test_norms_and_inner_products_preserved():
    """JL: <Px, Py> ~ <x, y> with error ~ sqrt(2/d) |x||y|; P spans several generated blocks."""
    n_params, dim = 2 * BLOCK_ROWS + 123, 1024
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(24, n_params, generator=gen)
    x[:8] *= 10.0  # different scales: the error bound is relative
    px = RademacherProjection(n_params, dim, seed=3).project(x).double()
    x = x.double()
    norms = x.norm(dim=1)
    ratio = px.norm(dim=1) / norms
    tol = 6 * (2 / dim) ** 0.5  # ~6 standard deviations of the relative error
    assert (ratio - 1).abs().max() < tol
    assert abs(ratio.mean() - 1) < 0.03  # no bias: the mean of 24 ratios has sd ~0.005
    err = (px @ px.T - x @ x.T) / torch.outer(norms, norms)
    assert err.abs().max() < tol
    # and it is not the identity of a degenerate matrix: the error is really there, at ~1/sqrt(d)
    assert err.abs().max() > 0.1 / dim**0.5


@settings(max_examples=25, deadline=None)
@given(
    n_params=st.integers(1, 3 * BLOCK_ROWS),
    dim=st.integers(1, 64),
    seed=st.integers(0, 2**32),
    split=st.integers(1, 5),
)
def test_same_seed_same_matrix_and_chunking_does_not_matter(n_params, dim, seed, split):
    a = RademacherProjection(n_params, dim, seed, cache_bytes=0)  # regenerate every block
    b = RademacherProjection(n_params, dim, seed)
    c = RademacherProjection(n_params, dim, seed, cache_bytes=a.packed_bytes)  # bits only
    m = a.matrix()
    assert m.shape == (n_params, dim)
    for cached in (b, c):
        assert torch.equal(m, cached.matrix())
        assert torch.equal(m, cached.matrix())  # second read comes from the cache
    assert torch.allclose(m.abs(), torch.full_like(m, dim**-0.5))
    x = torch.randn(6, n_params, generator=torch.Generator().manual_seed(seed % 1000))
    whole = a.project(x)
    parts = torch.cat([b.project(c) for c in x.split(split)])
    assert torch.allclose(whole, parts, atol=1e-3, rtol=1e-5)  # BLAS sums per batch shape
    # fp32 sums of up to 12k terms of size ~1: compare against float64 with an absolute margin
    exact = (x.double() @ m.double()).float()
    assert torch.allclose(whole, exact, atol=1e-3, rtol=1e-4)


def test_other_seed_other_matrix_and_signs_balanced():
    m0 = RademacherProjection(5000, 64, seed=0).matrix()
    m1 = RademacherProjection(5000, 64, seed=1).matrix()
    agree = (m0.sign() == m1.sign()).float().mean().item()
    assert 0.45 < agree < 0.55  # independent signs agree half the time
    assert abs((m0 > 0).float().mean().item() - 0.5) < 0.02


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_projection_matches_cpu():
    proj = RademacherProjection(3 * BLOCK_ROWS + 5, 32, seed=2)
    x = torch.randn(4, proj.n_params)
    got = proj.project(x.cuda()).cpu()
    assert torch.allclose(got, proj.project(x), atol=1e-3, rtol=1e-4)


def test_project_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"expected \[B, 10\]"):
        RademacherProjection(10, 4).project(torch.zeros(2, 11))


def _meta(**kw):
    base = dict(seed=0, dim=4, n_params=10, model_hash="m", n_examples=5, dataset_hash="d")
    return FeatureMeta(**{**base, **kw})


def test_store_round_trip_and_resume_point(tmp_path):
    feats, stored = open_feature_store(tmp_path, _meta())
    assert stored.rows_done == 0 and feats.shape == (5, 4)
    feats[:3] = np.arange(12, dtype=np.float32).reshape(3, 4)
    commit_rows(tmp_path, feats, stored, 3)
    del feats
    again, stored2 = open_feature_store(tmp_path, _meta())
    assert stored2.rows_done == 3
    np.testing.assert_array_equal(again[:3], np.arange(12, dtype=np.float32).reshape(3, 4))
    assert json.loads((tmp_path / META_FILE).read_text())["rows_done"] == 3


@pytest.mark.parametrize(
    "field,value",
    [
        ("seed", 1),
        ("dim", 8),
        ("n_params", 11),
        ("model_hash", "x"),
        ("n_examples", 6),
        ("dataset_hash", "y"),
    ],
)
def test_store_mismatch_names_the_field(tmp_path, field, value):
    open_feature_store(tmp_path, _meta())
    with pytest.raises(ValueError, match=rf"field '{field}' is .* this run has"):
        open_feature_store(tmp_path, dataclasses.replace(_meta(), **{field: value}))


def test_store_with_missing_array_fails_clearly(tmp_path):
    open_feature_store(tmp_path, _meta())
    (tmp_path / "features.npy").unlink()
    with pytest.raises(ValueError, match="features.npy is missing"):
        open_feature_store(tmp_path, _meta())
