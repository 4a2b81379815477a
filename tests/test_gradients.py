"""Per-example gradients (vmap vs loop vs the library's own loss) and resumable featurisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

from modc_data.labeling.gradient_cluster import label_by_gradient_clusters
from modc_data.labeling.gradient_features import featurize, group_rows, length_order
from modc_data.labeling.gradients import (
    encode_pairs,
    gradient_params,
    gradients_loop,
    gradients_vmap,
)
from modc_data.labeling.projection import (
    FEATURES_FILE,
    META_FILE,
    RademacherProjection,
    read_feature_meta,
)
from modc_data.modeling.format import IGNORE_INDEX
from modc_data.modeling.load import load_checkpoint
from modc_data.modeling.train import train_model
from modc_data.params_blocks import GradientClusterParams
from modc_data.params_training import LoraParams, ModelParams, PretrainedModelParams, TrainParams
from tests.tiny_models import (
    TINY_SCRATCH,
    TINY_TEXTS,
    save_tiny_base,
    tiny_llama,
    tiny_rows,
    tiny_tokenizer,
)

PAIRS = [
    ("numbers 3 7 9 target 22", "7 + 9 = 16 , 16 + 3 = 19 fail"),
    ("numbers 2 5 8 target 18", "8 * 2 = 16 goal"),
    ("numbers 1 4 6 target 10", "6 + 4 = 10 , 10 * 1 = 10 goal answer ( 6 + 4 ) * 1"),
    ("numbers 3 7 9 target 22", "answer"),
    ("numbers 2 5 8 target 18", "8 + 5 = 13 , 13 + 2 = 15 fail"),
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _lora(model):
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.1)
    return get_peft_model(model, cfg)


def test_vmap_equals_loop_on_scratch_model(tok):
    model = tiny_llama(tok, seed=1)
    ex = encode_pairs(tok, PAIRS)
    assert len({len(i) for i, _ in ex}) > 2  # chunk needs real padding
    g_vmap = gradients_vmap(model, ex, tok.pad_token_id)
    g_loop = gradients_loop(model, ex)
    n_params = sum(p.numel() for p in model.parameters())
    assert g_vmap.shape == g_loop.shape == (len(PAIRS), n_params)
    for i in range(len(PAIRS)):
        assert _rel(g_vmap[i], g_loop[i]) < 1e-5
    # distinct examples have distinct gradients (no row got another's values)
    assert _rel(g_loop[0], g_loop[1]) > 0.1


def test_gradient_is_summed_completion_logprob(tok):
    """Against transformers' own loss: mean CE over completion tokens x their count = -log p(y|x)."""
    model = tiny_llama(tok, seed=2)
    params = gradient_params(model)
    for ids, labels in encode_pairs(tok, PAIRS[:3]):
        model.zero_grad()
        out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
        n_completion = sum(1 for t in labels[1:] if t != IGNORE_INDEX)
        (-out.loss * n_completion).backward()
        want = torch.cat([p.grad.reshape(-1) for p in params.values()])
        got = gradients_loop(model, [(ids, labels)])[0]
        assert _rel(got, want) < 1e-5


def test_prompt_tokens_do_not_enter_the_objective(tok):
    """Changing only a prompt token's label (masked) leaves the gradient unchanged."""
    model = tiny_llama(tok, seed=3)
    ids, labels = encode_pairs(tok, PAIRS[:1])[0]
    other = [labels[0], *[IGNORE_INDEX if t == IGNORE_INDEX else t for t in labels[1:]]]
    g1 = gradients_loop(model, [(ids, labels)])
    g2 = gradients_vmap(model, [(ids, other)])
    assert _rel(g2, g1) < 1e-5


def test_model_state_restored_and_dropout_off(tok):
    from modc_data.modeling.models import build_scratch_model

    model = build_scratch_model(TINY_SCRATCH, tok, seed=4, attn_implementation="sdpa")
    model.config.attention_dropout = 0.5  # would make two passes differ if dropout stayed on
    model.train()
    ex = encode_pairs(tok, PAIRS[:2])
    a, b = gradients_vmap(model, ex), gradients_vmap(model, ex)
    assert torch.equal(a, b)
    assert model.training and model.config._attn_implementation == "sdpa"


def test_peft_lora_takes_adapter_grads(tok):
    model = _lora(tiny_llama(tok, seed=5))
    params = gradient_params(model)
    assert params and all("lora_" in n for n in params)
    ex = encode_pairs(tok, PAIRS)
    g_vmap = gradients_vmap(model, ex, tok.pad_token_id)
    g_loop = gradients_loop(model, ex)
    assert _rel(g_vmap, g_loop) < 1e-5
    # fresh LoRA: B = 0, so dA = 0 and all the signal is in B (documented in gradient_params)
    offset, a_norm, b_norm = 0, 0.0, 0.0
    for name, p in params.items():
        block = g_loop[:, offset : offset + p.numel()]
        offset += p.numel()
        if "lora_A" in name:
            a_norm += block.norm().item()
        else:
            b_norm += block.norm().item()
    assert a_norm == 0.0 and b_norm > 0.0


def test_non_fp32_model_refused_before_work(tok):
    model = tiny_llama(tok).to(torch.bfloat16)
    with pytest.raises(ValueError, match="dtype=torch.float32"):
        featurize(model, tok, PAIRS, "/nonexistent-never-created", dim=4)


def test_too_long_example_refused(tok):
    model = tiny_llama(tok)
    long = [("numbers", " ".join(["1"] * 200))]
    with pytest.raises(ValueError, match="example 0 is .* max_position_embeddings"):
        featurize(model, tok, long, "/nonexistent-never-created", dim=4)


def test_resumed_featurisation_equals_uninterrupted(tok, tmp_path):
    model = tiny_llama(tok, seed=6)
    pairs = PAIRS * 3
    # buffer_bytes=1: project and commit every chunk of 4 (the default groups whole chunks)
    kw = {"dim": 16, "seed": 1, "chunk_size": 4, "buffer_bytes": 1}
    full, info = featurize(model, tok, pairs, tmp_path / "a", **kw)
    full = np.array(full)
    assert info["rows_resumed"] == 0 and info["method"] == "vmap"
    assert full.shape == (15, 16) and np.isfinite(full).all() and (np.abs(full).sum(1) > 0).all()

    # Interrupt: rows past rows_done hold garbage, as after a crash mid-chunk. Rows are done in
    # length order, so rows_done = 8 means the 8 shortest examples.
    order = length_order(encode_pairs(tok, pairs))
    assert sorted(order) == list(range(15)) and list(order) != list(range(15))
    part, _ = featurize(model, tok, pairs, tmp_path / "b", **kw)
    # (commits happen at chunk boundaries, so resuming at 8 repeats the very same chunks)
    part[order[8:]] = np.nan
    part.flush()
    meta = json.loads((tmp_path / "b" / META_FILE).read_text())
    meta["rows_done"] = 8
    (tmp_path / "b" / META_FILE).write_text(json.dumps(meta))
    del part
    resumed, info = featurize(model, tok, pairs, tmp_path / "b", **kw)
    assert info["rows_resumed"] == 8
    np.testing.assert_array_equal(np.array(resumed), full)
    assert read_feature_meta(tmp_path / "b").rows_done == 15

    # projecting all 15 rows together (the default buffer) gives the same features
    grouped, _ = featurize(model, tok, pairs, tmp_path / "g", dim=16, seed=1, chunk_size=4)
    np.testing.assert_allclose(np.array(grouped), full, rtol=1e-4, atol=1e-5)

    # the loop computes the same features
    loop, info = featurize(model, tok, pairs, tmp_path / "c", dim=16, seed=1, method="loop")
    assert info["method"] == "loop"
    np.testing.assert_allclose(np.array(loop), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "change,field",
    [
        ({"seed": 2}, "seed"),
        ({"dim": 8}, "dim"),
        ({"pairs": PAIRS[::-1]}, "dataset_hash"),
        ({"model_seed": 7}, "model_hash"),
    ],
)
def test_reusing_a_store_from_another_run_fails_naming_the_field(tok, tmp_path, change, field):
    featurize(tiny_llama(tok, seed=6), tok, PAIRS, tmp_path, dim=16, seed=1)
    model = tiny_llama(tok, seed=change.get("model_seed", 6))
    with pytest.raises(ValueError, match=rf"field '{field}'"):
        featurize(
            model,
            tok,
            change.get("pairs", PAIRS),
            tmp_path,
            dim=change.get("dim", 16),
            seed=change.get("seed", 1),
        )


class _ItemLlama(torch.nn.Module):
    """A real Llama whose forward reads a tensor value in Python, which vmap cannot trace."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, input_ids, **kw):
        if input_ids.sum().item() < 0:  # data-dependent control flow
            raise AssertionError("unreachable")
        return self.inner(input_ids=input_ids, **kw)


def test_auto_falls_back_to_loop_when_vmap_fails(tok, tmp_path):
    model = _ItemLlama(tiny_llama(tok, seed=8))
    with pytest.raises(RuntimeError):
        featurize(model, tok, PAIRS, tmp_path / "v", dim=8, method="vmap")
    with pytest.warns(RuntimeWarning, match="falling back"):
        got, info = featurize(model, tok, PAIRS, tmp_path / "a", dim=8, method="auto")
    assert info["method"] == "loop"
    want, _ = featurize(model.inner, tok, PAIRS, tmp_path / "l", dim=8, method="loop")
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-6)


def test_rows_stay_in_input_order_though_computed_by_length(tok, tmp_path):
    model = tiny_llama(tok, seed=6)
    feats, info = featurize(model, tok, PAIRS, tmp_path, dim=16, seed=1, chunk_size=2)
    examples = encode_pairs(tok, PAIRS)
    assert list(length_order(examples)) != list(range(len(PAIRS)))  # the order is not trivial
    proj = RademacherProjection(info["n_params"], 16, seed=1)
    for i, ex in enumerate(examples):
        want = proj.project(gradients_loop(model, [ex]))[0].numpy()
        np.testing.assert_allclose(feats[i], want, rtol=1e-4, atol=1e-5)
    assert read_feature_meta(tmp_path).order == "length"


def test_group_rows_fills_the_buffer_with_whole_chunks():
    # 1M parameters of fp32 = 4 MB a row: 1 GiB holds 256 rows, i.e. 8 whole chunks of 32
    assert group_rows(32, 2**20, 2**30, 10_000) == 256
    assert group_rows(32, 2**20, 2**30 - 1, 10_000) == 224  # never a partial chunk
    assert group_rows(32, 2**30, 2**30, 10_000) == 32  # at least one chunk
    assert group_rows(32, 2**20, 2**30, 100) == 100  # never more than the examples


# --------------------------------------------------------------------------- LoRA reference
@pytest.fixture(scope="module")
def lora_standard(tmp_path_factory):
    """A trained LoRA standard checkpoint over a tiny local base (B != 0, so dA != 0 too)."""
    root = tmp_path_factory.mktemp("lora-ref")
    base = save_tiny_base(root / "base")
    cfg = ModelParams(
        base="pretrained",
        pretrained=PretrainedModelParams(
            name_or_path=str(base), lora=LoraParams(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
        ),
    )
    train = TrainParams(batch_size=8, lr=1e-2, warmup_steps=0, eval_batches=1, threads=1)
    train_model(
        tiny_rows(24), tiny_rows(8, split="validation", seed=1), variant="standard", mode=None,
        modes=["dfs", "bfs"], label_source="search_algorithm", arm="tiny", model_cfg=cfg,
        train_cfg=train, steps=8, out_dir=root / "standard", tokenizer_texts=TINY_TEXTS,
        progress=False,
    )
    return root / "standard"


def test_lora_checkpoint_loads_frozen_by_default_and_is_refused(lora_standard):
    model, _, _ = load_checkpoint(lora_standard)
    with pytest.raises(ValueError, match=r"trainable=True"):
        gradient_params(model)


def test_lora_reference_gradients_are_finite_nonzero_and_vmap_equals_loop(lora_standard):
    model, tok, _ = load_checkpoint(lora_standard, trainable=True)
    params = gradient_params(model)
    assert params and all(".lora_A." in n or ".lora_B." in n for n in params)
    assert {n.split(".lora_")[0] for n in params if ".lora_A." in n} == {
        n.split(".lora_")[0] for n in params if ".lora_B." in n
    }  # both factors of every adapted module
    base_grads = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    assert base_grads == []  # the base stays frozen
    ex = encode_pairs(tok, PAIRS)
    g_vmap = gradients_vmap(model, ex, tok.pad_token_id)
    g_loop = gradients_loop(model, ex)
    assert g_loop.shape == (len(PAIRS), sum(p.numel() for p in params.values()))
    assert torch.isfinite(g_loop).all() and (g_loop.norm(dim=1) > 0).all()
    for i in range(len(PAIRS)):
        assert _rel(g_vmap[i], g_loop[i]) < 1e-5
    # trained adapter: both factors carry signal (a fresh one has dA = 0, see above)
    offset, norms = 0, {"lora_A": 0.0, "lora_B": 0.0}
    for name, p in params.items():
        norms["lora_A" if ".lora_A." in name else "lora_B"] += g_loop[:, offset : offset + p.numel()].norm().item()
        offset += p.numel()
    assert norms["lora_A"] > 0 and norms["lora_B"] > 0
    assert _rel(g_loop[0], g_loop[1]) > 0.1


def test_lora_reference_gives_gradient_cluster_labels(lora_standard, tmp_path):
    model, tok, _ = load_checkpoint(lora_standard, trainable=True)
    rows = tiny_rows(16)
    cfg = GradientClusterParams(projection_dim=32, n_clusters=2, n_init=2, chunk_size=8)
    labeled, report = label_by_gradient_clusters(rows, model, tok, cfg, tmp_path)
    assert labeled.height == rows.height
    assert set(labeled["mode"]) <= {"cluster:0", "cluster:1"} and labeled["mode"].n_unique() == 2
    assert set(labeled["label_source"]) == {"gradient_cluster"}
    assert report["n_clusters"] == 2
    store = tmp_path / "features"
    assert read_feature_meta(store).rows_done == rows.height
    feats = np.load(store / FEATURES_FILE)
    assert np.isfinite(feats).all() and (np.abs(feats).sum(1) > 0).all()
