"""Training: row selection, loss masking, resume, experts' step split, LoRA (modeling/train)."""

from __future__ import annotations

import hashlib
import math

import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import PeftModel
from safetensors.torch import load_file

from modc_data import autotune
from modc_data.modeling.experts import split_steps, train_experts
from modc_data.modeling.format import IGNORE_INDEX, encode_prompt
from modc_data.modeling.load import load_checkpoint, resolve_mode_token
from modc_data.modeling.loop import lr_lambda
from modc_data.modeling.modc_json import read_modc
from modc_data.modeling.objectives import completion_logprob, pass_at_n_loss
from modc_data.modeling.tokenizer import build_word_tokenizer
from modc_data.modeling.train import CHECKPOINT_DIR, TrainingInterrupted, train_model
from modc_data.modeling.train_data import (
    batch_order,
    collate,
    data_hash,
    encode_rows,
    micro_batches,
)
from modc_data.params_training import (
    LoraParams,
    ModelParams,
    PassAtNParams,
    PretrainedModelParams,
    TrainParams,
)
from modc_data.schema import mode_token
from tests.test_autotune import slow
from tests.tiny_models import TINY_SCRATCH, TINY_TEXTS, save_tiny_base, tiny_llama, tiny_rows

MODES = ["dfs", "bfs"]
SCRATCH = ModelParams(scratch=TINY_SCRATCH)
TRAIN = TrainParams(batch_size=8, lr=3e-3, warmup_steps=2, save_every=4, eval_batches=2, threads=1)


@pytest.fixture(scope="module")
def rows():
    return tiny_rows(48, MODES, "train", seed=0), tiny_rows(16, MODES, "validation", seed=1)


def _train(rows, out_dir, variant="standard", mode=None, steps=12, **kw):
    train, val = rows
    kw.setdefault("model_cfg", SCRATCH)
    kw.setdefault("train_cfg", TRAIN)
    return train_model(
        train, val, variant=variant, mode=mode, modes=MODES, label_source="search_algorithm",
        arm="tiny", steps=steps, out_dir=out_dir, tokenizer_texts=TINY_TEXTS, progress=False, **kw,
    )


# --------------------------------------------------------------------------- pure pieces
WORDS = st.lists(st.sampled_from("numbers target goal + = 1 2 3 4 5 6 7 8 9".split()), min_size=1, max_size=8)


@settings(max_examples=50, deadline=None)
@given(examples=st.lists(st.tuples(WORDS, WORDS), min_size=1, max_size=5), prefix=st.booleans())
def test_labels_mask_exactly_the_prompt_and_padding(examples, prefix):
    tok = build_word_tokenizer(TINY_TEXTS, extra_special_tokens=[mode_token("dfs")])
    frame = pl.DataFrame(
        {"prompt": [" ".join(p) for p, _ in examples], "completion": [" ".join(c) for _, c in examples], "mode": ["dfs"] * len(examples)}
    )
    encoded = encode_rows(tok, frame, prefix)
    batch = collate(encoded, tok.pad_token_id)
    for i, (p, c) in enumerate(examples):
        n_prompt = len(encode_prompt(tok, " ".join(p), "dfs" if prefix else None))
        n = n_prompt + len(c) + 1  # + EOS
        labels, ids = batch["labels"][i], batch["input_ids"][i]
        assert (labels[:n_prompt] == IGNORE_INDEX).all()
        assert torch.equal(labels[n_prompt:n], ids[n_prompt:n])  # completion + EOS are targets
        assert (labels[n:] == IGNORE_INDEX).all() and (batch["attention_mask"][i, n:] == 0).all()
        assert batch["attention_mask"][i, :n].all()
        if prefix:
            assert ids[1] == tok.convert_tokens_to_ids(mode_token("dfs"))


@settings(max_examples=100, deadline=None)
@given(steps=st.integers(1, 10_000), n=st.integers(1, 12))
def test_split_steps_sums_and_is_even(steps, n):
    parts = split_steps(steps, n)
    assert sum(parts) == steps and len(parts) == n and max(parts) - min(parts) <= 1


@settings(max_examples=50, deadline=None)
@given(n_rows=st.integers(1, 50), steps=st.integers(1, 30), batch=st.integers(1, 16), seed=st.integers(0, 5))
def test_batch_order_is_seeded_and_balanced(n_rows, steps, batch, seed):
    order = batch_order(n_rows, steps, batch, seed)
    assert order.shape == (steps, batch)
    assert torch.equal(order, batch_order(n_rows, steps, batch, seed))
    counts = torch.bincount(order.flatten(), minlength=n_rows)
    full_epochs = steps * batch // n_rows
    assert counts.min() >= full_epochs and counts.max() <= full_epochs + 1


def test_lr_schedule_warms_up_then_decays():
    f = lr_lambda(10, 100, min_ratio=0.1)
    warm = [f(s) for s in range(11)]
    assert warm == sorted(warm) and math.isclose(f(10), 1.0)
    decay = [f(s) for s in range(10, 101)]
    assert decay == sorted(decay, reverse=True) and math.isclose(f(100), 0.1)


# --------------------------------------------------------------------------- training runs
def test_prefix_model_trains_saves_and_reloads(rows, tmp_path):
    result = _train(rows, tmp_path / "prefix", "prefix", steps=60)
    assert result.steps == 60 and result.examples == 60 * TRAIN.batch_size and result.tokens > 0
    # Learned something: well below the uniform-guess loss over the vocabulary.
    model, tok, info = load_checkpoint(tmp_path / "prefix")
    assert result.eval_loss < 0.6 * math.log(len(tok))
    assert info.variant == "prefix" and info.modes == MODES and info.train["steps"] == 60
    assert info.mode_tokens == {m: mode_token(m) for m in MODES}
    assert info.data_hash == data_hash(rows[0]["id"].to_list())
    assert not (tmp_path / "prefix" / CHECKPOINT_DIR).exists()  # resume state dropped when done
    for m in MODES:
        token = resolve_mode_token(info, m)
        assert len(tok(token, add_special_tokens=False)["input_ids"]) == 1
        ids = encode_prompt(tok, "numbers 3 4 target 7", m)
        out = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
        assert out.shape[1] > len(ids)


def test_expert_trains_only_on_its_mode(rows, tmp_path):
    _train(rows, tmp_path / "bfs", "expert", mode="bfs", steps=4)
    info = read_modc(tmp_path / "bfs")
    expected = rows[0].filter(pl.col("mode") == "bfs")["id"].to_list()
    assert info.mode == "bfs" and info.modes == ["bfs"] and info.data_hash == data_hash(expected)
    assert info.train["train_rows"] == len(expected) and info.train["val_rows"] == 8


def test_zero_row_mode_fails_before_training(rows, tmp_path):
    train, val = rows
    with pytest.raises(ValueError, match=r"no training rows for mode 'bfs' in arm 'tiny'"):
        train_model(
            train.filter(pl.col("mode") == "dfs"), val, variant="expert", mode="bfs", modes=MODES,
            label_source="search_algorithm", arm="tiny", model_cfg=SCRATCH, train_cfg=TRAIN,
            steps=4, out_dir=tmp_path / "x", progress=False,
        )
    with pytest.raises(ValueError, match=r"mode\(s\) \['bfs'\]"):
        train_experts(
            train.filter(pl.col("mode") == "dfs"), val, modes=MODES, label_source="search_algorithm",
            arm="tiny", model_cfg=SCRATCH, train_cfg=TRAIN, steps=4, out_dir=tmp_path / "y", progress=False,
        )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_unknown_base_fails_before_training(rows, tmp_path):
    cfg = ModelParams(base="pretrained", pretrained=PretrainedModelParams(name_or_path=str(tmp_path / "missing")))
    with pytest.raises(FileNotFoundError, match="model.pretrained.name_or_path"):
        _train(rows, tmp_path / "out", model_cfg=cfg)


def test_resume_after_interruption_matches_uninterrupted(rows, tmp_path):
    # bf16 set, not measured: two runs timed under different load could pick different dtypes
    fixed = TRAIN.model_copy(update={"bf16": "off"})
    full = _train(rows, tmp_path / "full", steps=10, train_cfg=fixed)
    with pytest.raises(TrainingInterrupted):
        _train(rows, tmp_path / "resumed", steps=10, stop_after=6, train_cfg=fixed)
    assert (tmp_path / "resumed" / CHECKPOINT_DIR).exists()  # saved at step 4 (save_every=4)
    assert not (tmp_path / "resumed" / "model.safetensors").exists()  # no half checkpoint
    resumed = _train(rows, tmp_path / "resumed", steps=10, train_cfg=fixed)
    assert resumed.steps == full.steps == 10 and resumed.tokens == full.tokens
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert math.isclose(full.eval_loss, resumed.eval_loss, rel_tol=1e-4)


def test_resume_refuses_a_checkpoint_of_another_run(rows, tmp_path):
    with pytest.raises(TrainingInterrupted):
        _train(rows, tmp_path / "run", steps=10, stop_after=5)
    with pytest.raises(ValueError, match="different run"):
        _train(rows, tmp_path / "run", steps=11)


def test_experts_steps_sum_to_standard(rows, tmp_path):
    results = train_experts(
        *rows, modes=MODES, label_source="search_algorithm", arm="tiny", model_cfg=SCRATCH,
        train_cfg=TRAIN, steps=7, out_dir=tmp_path / "experts", tokenizer_texts=TINY_TEXTS, progress=False,
    )
    assert [r.steps for r in results.values()] == [4, 3]
    group = read_modc(tmp_path / "experts")
    assert group.variant == "experts" and group.train["steps"] == 7
    for m in MODES:
        model, tok, info = load_checkpoint(tmp_path / "experts" / group.experts[m])
        assert info.mode == m
        # Shared vocabulary: every expert maps words to the same ids.
        assert tok.get_vocab() == build_word_tokenizer(TINY_TEXTS).get_vocab()


def test_shared_start_experts_account_for_every_step(rows, tmp_path):
    fixed = TRAIN.model_copy(update={"bf16": "off"})
    kw = dict(modes=MODES, label_source="search_algorithm", arm="tiny", model_cfg=SCRATCH,
              train_cfg=fixed, tokenizer_texts=TINY_TEXTS, progress=False)
    results = train_experts(*rows, steps=10, out_dir=tmp_path / "experts", shared_steps=4, **kw)
    assert [r.steps for r in results.values()] == [3, 3]  # the 6 steps after the shared 4
    group = read_modc(tmp_path / "experts")
    shared = group.train["shared"]
    assert group.train["steps"] == 10 == shared["steps"] + sum(r.steps for r in results.values())
    assert group.train["shared_steps"] == 4
    assert group.train["tokens"] == shared["tokens"] + sum(r.tokens for r in results.values())
    assert not (tmp_path / "experts" / "shared").exists()  # removed once the group is complete
    train, _ = rows
    # the shared model, trained alone, is where each expert started: same weights as a standard
    # model of 4 steps; after it each expert sees only its own mode's rows
    standard = _train(rows, tmp_path / "standard", steps=4, train_cfg=fixed)
    assert standard.tokens == shared["tokens"]
    start = read_modc(tmp_path / "experts" / group.experts["dfs"]).train["init_from"]
    digest = hashlib.sha256((tmp_path / "standard" / "model.safetensors").read_bytes()).hexdigest()
    assert start == {"path": "shared", "weights_sha256": digest[:16]}
    for m in MODES:
        info = read_modc(tmp_path / "experts" / group.experts[m])
        assert info.train["train_rows"] == train.filter(pl.col("mode") == m).height
    # a shared start changes the experts: not the same weights as experts from the seeded init
    plain = train_experts(*rows, steps=6, out_dir=tmp_path / "plain", **kw)
    assert [r.steps for r in plain.values()] == [3, 3]
    a = load_file(str(tmp_path / "experts" / group.experts["dfs"] / "model.safetensors"))
    b = load_file(str(tmp_path / "plain" / group.experts["dfs"] / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_shared_steps_must_leave_expert_steps(rows, tmp_path):
    with pytest.raises(ValueError, match=r"shared_steps \(6\) must be in \[0, steps=6\)"):
        train_experts(*rows, modes=MODES, label_source="search_algorithm", arm="tiny", model_cfg=SCRATCH,
                      train_cfg=TRAIN, steps=6, out_dir=tmp_path / "e", tokenizer_texts=TINY_TEXTS,
                      progress=False, shared_steps=6)
    assert not (tmp_path / "e").exists()


def test_lora_prefix_trains_and_reloads_over_local_base(rows, tmp_path):
    base = save_tiny_base(tmp_path / "base")
    cfg = ModelParams(
        base="pretrained",
        pretrained=PretrainedModelParams(
            name_or_path=str(base), lora=LoraParams(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
        ),
    )
    result = _train(rows, tmp_path / "lora", "prefix", steps=6, model_cfg=cfg)
    assert result.steps == 6
    out = tmp_path / "lora"
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert not (out / "model.safetensors").exists()  # adapter only, not a copy of the base
    model, tok, info = load_checkpoint(out)
    assert isinstance(model, PeftModel) and info.base["name_or_path"] == str(base)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # lora_B starts at 0: it trained
    ids = encode_prompt(tok, "numbers 3 4 target 7", "dfs")
    assert ids[1] == tok.convert_tokens_to_ids(mode_token("dfs"))
    # The directory alone fixes the model: reloading under another global seed (which would
    # change any row that was not saved, e.g. the mode tokens') gives identical logits.
    torch.manual_seed(123)
    again, _, _ = load_checkpoint(out)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.tensor([ids])).logits, again(torch.tensor([ids])).logits)
    gen = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] > len(ids)


# --------------------------------------------------------------------------- micro-batches
@settings(max_examples=50, deadline=None)
@given(lengths=st.lists(st.integers(1, 30), min_size=1, max_size=20), parts=st.integers(1, 6))
def test_micro_batches_partition_the_batch_by_length(lengths, parts):
    examples = [([7] * n, [IGNORE_INDEX] * n) for n in lengths]
    slices = micro_batches(examples, parts)
    assert len(slices) == min(parts, len(examples)) and all(slices)
    flat = [len(x) for part in slices for x, _ in part]
    assert flat == sorted(lengths)  # every row once, shortest first


def test_micro_batches_give_the_whole_batch_gradient(rows, tmp_path):
    """Length-sorted slices with token-share weights train the same model as one batch (fp32)."""
    cfg = TRAIN.model_copy(update={"bf16": "off", "micro_batches": 1})
    whole = _train(rows, tmp_path / "one", steps=3, train_cfg=cfg)
    sliced = _train(rows, tmp_path / "three", steps=3, train_cfg=cfg.model_copy(update={"micro_batches": 3}))
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "three" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    assert whole.tokens == sliced.tokens and whole.steps == sliced.steps
    # and the slices do differ from a batch that drops rows: the check is not vacuous
    _train(rows, tmp_path / "half", steps=3, train_cfg=cfg.model_copy(update={"batch_size": 4}))
    c = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert any(not torch.allclose(a[k], c[k], rtol=1e-4, atol=1e-6) for k in a)


# --------------------------------------------------------------------------- pass@N objective
# bf16 set, not measured: runs compared with each other must not pick dtypes by timing
PASS_N = TRAIN.model_copy(update={"objective": "pass_at_n", "bf16": "off",
                                  "pass_at_n": PassAtNParams(N=8, warmup_steps=3)})


def _mean_pass_loss(out_dir, rows, n: int, prefix: bool) -> float:
    """Mean pass@n loss of the checkpoint on ``rows``, all rows in one padded batch."""
    model, tok, _ = load_checkpoint(out_dir)
    batch = collate(encode_rows(tok, rows, prefix), tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return float(pass_at_n_loss(completion_logprob(logits, batch["labels"]), n).mean())


def test_completion_logprob_ignores_padding_and_prompt(rows):
    """A row's log p(completion | prompt) is the same alone and padded inside a batch."""
    tok = build_word_tokenizer(TINY_TEXTS)
    model = tiny_llama(tok).eval()
    examples = encode_rows(tok, rows[0].head(6), False)
    batch = collate(examples, tok.pad_token_id)
    with torch.no_grad():
        together = completion_logprob(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"])
        for i, ex in enumerate(examples):
            one = collate([ex], tok.pad_token_id)
            alone = completion_logprob(model(input_ids=one["input_ids"]).logits, one["labels"])
            # and by hand: sum of log-softmax at each completion token
            logp = torch.log_softmax(model(input_ids=one["input_ids"]).logits[0].float(), -1)
            ids, labels = ex
            by_hand = sum(float(logp[t - 1, labels[t]]) for t in range(1, len(ids)) if labels[t] != IGNORE_INDEX)
            torch.testing.assert_close(together[i], alone[0], rtol=1e-5, atol=1e-5)
            assert math.isclose(float(alone[0]), by_hand, rel_tol=1e-5)


@pytest.mark.parametrize("variant", ["standard", "prefix"])
def test_pass_at_n_training_lowers_the_pass_at_n_loss(rows, tmp_path, variant):
    """Few steps of pass@8 (3 of them CE warm-up) lower the mean pass@8 loss on the training rows;
    for prefix the probability is of the completion under its mode token."""
    cfg = PASS_N.model_copy(update={"save_every": 100})
    _train(rows, tmp_path / "early", variant, steps=4, train_cfg=cfg)
    result = _train(rows, tmp_path / "late", variant, steps=40, train_cfg=cfg)
    prefix = variant == "prefix"
    early = _mean_pass_loss(tmp_path / "early", rows[0], 8, prefix)
    late = _mean_pass_loss(tmp_path / "late", rows[0], 8, prefix)
    assert late < 0.7 * early, (early, late)
    info = read_modc(tmp_path / "late")
    assert result.objective == "pass_at_n" and info.train["objective"] == "pass_at_n"
    assert info.train["pass_at_n"] == {"N": 8, "warmup_steps": 3}
    assert info.params["train"]["objective"] == "pass_at_n"


def test_pass_at_n_resume_matches_uninterrupted(rows, tmp_path):
    """Interrupted at step 6 (saved at 4, after the 3 CE warm-up steps) and resumed: same model."""
    full = _train(rows, tmp_path / "full", steps=10, train_cfg=PASS_N)
    with pytest.raises(TrainingInterrupted):
        _train(rows, tmp_path / "resumed", steps=10, stop_after=6, train_cfg=PASS_N)
    resumed = _train(rows, tmp_path / "resumed", steps=10, train_cfg=PASS_N)
    assert resumed.tokens == full.tokens
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # The run is recorded as pass@N. (Its weights need not differ from a CE run's here: on a
    # barely trained model p ~ 0, so w(p, N) ~ 1 for every row and the pass@N gradient is CE's
    # up to one scale factor per step, which clipping and Adam remove; the loss-level tests in
    # test_objectives.py cover where the two differ.)
    train_info = read_modc(tmp_path / "resumed").train
    assert train_info["objective"] == "pass_at_n" and train_info["pass_at_n"]["N"] == 8


def test_pass_at_n_micro_batches_weigh_rows_not_tokens(rows, tmp_path):
    """Length-sorted slices weighted by row share give the whole batch's mean per-example loss
    gradient: same model as one slice (fp32), although the slices' token shares differ."""
    cfg = PASS_N.model_copy(update={"bf16": "off", "micro_batches": 1, "pass_at_n": PassAtNParams(N=8)})
    _train(rows, tmp_path / "one", steps=3, train_cfg=cfg)
    _train(rows, tmp_path / "three", steps=3, train_cfg=cfg.model_copy(update={"micro_batches": 3}))
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "three" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_pass_at_n_experts_split_the_warmup(rows, tmp_path):
    cfg = PASS_N.model_copy(update={"pass_at_n": PassAtNParams(N=4, warmup_steps=3)})
    train_experts(
        *rows, modes=MODES, label_source="search_algorithm", arm="tiny", model_cfg=SCRATCH,
        train_cfg=cfg, steps=7, out_dir=tmp_path / "experts", tokenizer_texts=TINY_TEXTS, progress=False,
    )
    group = read_modc(tmp_path / "experts")
    assert group.train["objective"] == "pass_at_n" and group.train["pass_at_n"]["warmup_steps"] == 3
    warmups = [read_modc(tmp_path / "experts" / group.experts[m]).train["pass_at_n"]["warmup_steps"] for m in MODES]
    assert warmups == [2, 1]  # split like the steps (4 + 3): as many CE examples as the standard model


def test_pass_at_n_warmup_covering_the_run_is_refused(rows, tmp_path):
    cfg = PASS_N.model_copy(update={"pass_at_n": PassAtNParams(N=8, warmup_steps=12)})
    with pytest.raises(ValueError, match=r"train.pass_at_n.warmup_steps \(12\) must be < steps \(12\)"):
        _train(rows, tmp_path / "x", steps=12, train_cfg=cfg)
    # experts: refused before the first expert trains (3 + 3 warm-up of 4 + 3 steps)
    cfg = PASS_N.model_copy(update={"pass_at_n": PassAtNParams(N=8, warmup_steps=6)})
    with pytest.raises(ValueError, match=r"split over 2 experts is \[3, 3\], not below their steps \[4, 3\]"):
        train_experts(
            *rows, modes=MODES, label_source="search_algorithm", arm="tiny", model_cfg=SCRATCH,
            train_cfg=cfg, steps=7, out_dir=tmp_path / "y", tokenizer_texts=TINY_TEXTS, progress=False,
        )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
# --------------------------------------------------------------------------- bf16 / threads auto


def _refuse(name, step):
    raise AssertionError(f"a set value must not be measured (timed {name})")


@pytest.mark.parametrize("slow_one", ["on", "off"])
def test_bf16_auto_picks_the_faster_and_records_it(rows, tmp_path, slow_one, bf16_candidate):
    result = _train(rows, tmp_path / "m", steps=3, timer=slow(slow_one))
    assert result.bf16 is (slow_one == "off")
    verdict = read_modc(tmp_path / "m").train["autotune"]["bf16"]
    assert verdict["source"] == "measured" and verdict["choice"] == ("on" if result.bf16 else "off")
    assert verdict["timings_ms"][slow_one] > verdict["timings_ms"][verdict["choice"]]
    assert read_modc(tmp_path / "m").train["bf16"] is result.bf16


def test_measuring_leaves_training_as_it_was(rows, tmp_path, bf16_candidate):
    fixed = _train(rows, tmp_path / "fixed", steps=6, train_cfg=TRAIN.model_copy(update={"bf16": "off"}))
    auto = _train(rows, tmp_path / "auto", steps=6, timer=slow("on"))
    assert not auto.bf16 and auto.autotune["bf16"]["source"] == "measured"
    a = load_file(str(tmp_path / "fixed" / "model.safetensors"))
    b = load_file(str(tmp_path / "auto" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert fixed.eval_loss == auto.eval_loss


@pytest.mark.parametrize("setting", ["on", "off"])
def test_user_set_bf16_and_threads_are_never_overridden(rows, tmp_path, setting):
    cfg = TRAIN.model_copy(update={"bf16": setting, "threads": 1})
    result = _train(rows, tmp_path / setting, steps=2, train_cfg=cfg, timer=_refuse)
    assert result.bf16 is (setting == "on") and result.threads == 1
    assert result.autotune["bf16"] == {"setting": "train.bf16", "choice": setting, "source": "user",
                                       "timings_ms": {}, "key": ""}
    assert result.autotune["threads"] == {"threads": 1, "source": "user"}


def test_resumed_run_keeps_its_dtype(rows, tmp_path):
    with pytest.raises(TrainingInterrupted):
        _train(rows, tmp_path / "run", steps=10, stop_after=5, timer=slow("on"))
    # The machine "changed its mind": without the saved choice auto would now pick bf16.
    resumed = _train(rows, tmp_path / "run", steps=10, timer=slow("off"))
    assert not resumed.bf16 and resumed.autotune["bf16"]["source"] == "resume"


def test_threads_auto_uses_the_free_cores(rows, tmp_path):
    cfg = TRAIN.model_copy(update={"threads": "auto", "bf16": "off"})
    result = _train(rows, tmp_path / "m", steps=2, train_cfg=cfg)
    assert result.autotune["threads"]["source"] == "auto"
    assert 1 <= result.threads <= len(autotune.usable_cpus())
    assert 0 <= result.autotune["threads"]["busy_cores"]
    assert torch.get_num_threads() == 1  # the caller's setting is restored
