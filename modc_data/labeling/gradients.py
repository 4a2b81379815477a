"""Per-example gradients ``g(x, y) = d/dtheta log p_theta(y | x)`` under a reference model.

What it handles:
- which parameters theta are (``gradient_params``): every trainable parameter of a model trained
  from scratch; for a PEFT model its LoRA factors, A *and* B (load it trainable);
- the gradient of the completion's log-likelihood, **summed** over completion tokens (prompt ids
  masked with ``IGNORE_INDEX``), in fp32 with the model in eval mode (dropout off);
- two ways to compute a chunk of them: ``torch.func`` (``functional_call`` + ``vmap`` + ``grad``,
  one call per chunk, needs eager attention because SDPA has no vmap rule) and a loop (one
  example at a time, ordinary autograd), the loop doubling as the fallback when vmap fails;
- ``encode_pairs``: (prompt, completion) pairs -> examples, checked against the context length;
- ``model_hash``: what identifies the gradients' parameters (names, shapes, values).

What it leaves out: streaming gradients through a projection into the resumable feature store
(``gradient_features.py``), clustering (``clustering.py``) and turning clusters into rows
(``gradient_cluster.py``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch.func import functional_call, grad, vmap

from modc_data.modeling.format import IGNORE_INDEX, encode_example
from modc_data.modeling.objectives import completion_logprob

log = logging.getLogger(__name__)

Example = tuple[list[int], list[int]]  # (input_ids, labels) as made by format.encode_example


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


# LoRA factor weights in peft's parameter names: ``...q_proj.lora_A.default.weight`` (Linear)
# and ``...embed_tokens.lora_embedding_A.default`` (Embedding).
_LORA_FACTOR = re.compile(r"\.lora_(?:embedding_)?[AB]\.")


def gradient_params(model) -> dict[str, torch.nn.Parameter]:
    """The parameters gradients are taken with respect to, by name, in a fixed order.

    A model trained from scratch: every parameter with ``requires_grad`` (all of them). A PEFT
    model: its trainable LoRA factors, ``lora_A`` *and* ``lora_B`` of every adapted module; the
    base is frozen, and other trainable adapter tensors (a prefix model's mode-token rows,
    ``modules_to_save`` copies) are left out, so features of a LoRA reference are a function of
    its LoRA update ``dW = s B A`` alone. Load a LoRA checkpoint with
    ``load_checkpoint(path, trainable=True)``: peft loads adapters frozen otherwise.

    Why both factors: for a trained adapter they see the full weight gradient ``dW`` from
    complementary sides, ``dB = s dW A^T`` (dW projected onto A's r input directions) and
    ``dA = s B^T dW`` (onto B's r output directions), and both are informative; LESS (Xia et
    al., 2024), whose recipe this follows, uses both. With a freshly initialised adapter
    ``B = 0``, so ``dA`` is exactly zero and B carries all the signal; zero coordinates cost
    compute but do not change distances after projection. The cost: A has ``r * d_in`` and B
    ``d_out * r`` entries per module, so taking both roughly doubles P, and with it the
    projection's ``P x dim`` work, against B alone.
    """
    if _is_peft(model):
        params = {
            n: p
            for n, p in model.named_parameters()
            if p.requires_grad and _LORA_FACTOR.search(n)
        }
        if not params:
            raise ValueError(
                "gradient_params: the PEFT reference model has no trainable LoRA parameters; "
                "load it with load_checkpoint(path, trainable=True) (peft loads adapters frozen "
                "by default), or use a LoRA adapter (other PEFT methods are not supported)"
            )
    else:
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not params:
            raise ValueError(
                "gradient_params: the reference model has no trainable parameters; do not "
                "freeze it (requires_grad=False) before computing gradient features"
            )
    bad = {n: p.dtype for n, p in model.named_parameters() if p.dtype != torch.float32}
    if bad:
        name, dtype = next(iter(bad.items()))
        raise ValueError(
            f"gradient_params: parameter {name!r} is {dtype}; gradient features are computed in "
            "fp32, load the reference model with dtype=torch.float32"
        )
    if _is_peft(model):
        log.info("gradient features over %d LoRA factor tensors", len(params))
    return params


def model_hash(model, params: Mapping[str, torch.Tensor] | None = None) -> str:
    """sha256 (16 hex) of the names, shapes and values of ``params`` (default: gradient_params)."""
    params = gradient_params(model) if params is None else params
    h = hashlib.sha256()
    for name, p in params.items():
        h.update(f"{name}:{tuple(p.shape)}\x1f".encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@contextmanager
def eval_eager(model) -> Iterator[None]:
    """Eval mode and eager attention for the duration; both restored afterwards."""
    was_training = model.training
    config = model.config
    previous = getattr(config, "_attn_implementation", None)
    if previous != "eager":
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")
        else:  # older models: the attention classes read the config at forward time
            config._attn_implementation = "eager"
    model.eval()
    try:
        yield
    finally:
        if previous not in (None, "eager"):
            if hasattr(model, "set_attn_implementation"):
                model.set_attn_implementation(previous)
            else:
                config._attn_implementation = previous
        model.train(was_training)


def _completion_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over completion tokens of log p(token | prefix). logits [T, V], labels [T] -> scalar.

    Summed, not averaged: the sum is log p(y | x) of the whole completion, the quantity whose
    gradient the method is defined on; a mean would divide each example's gradient by its length
    and so reweight long and short completions against each other.
    """
    return completion_logprob(logits, labels)


def _output(out: torch.Tensor | None, batch: int, n_params: int, device) -> torch.Tensor:
    """``out[:batch]`` when a buffer is given (checked), else a new ``[batch, n_params]`` tensor.

    Reusing one buffer across chunks matters on a CPU: a fresh array of B * P floats (~110 MB for
    32 examples of a 0.9M-parameter model) is above glibc's mmap threshold, so every chunk would
    page-fault it in again, which cost as much as the gradients themselves.
    """
    if out is None:
        return torch.empty(batch, n_params, dtype=torch.float32, device=device)
    if out.dim() != 2 or out.shape[0] < batch or out.shape[1] != n_params:
        raise ValueError(
            f"gradients: out buffer has shape {tuple(out.shape)}, need at least [{batch}, {n_params}]"
        )
    return out[:batch]


def _pad(examples: Sequence[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the chunk's longest example: ids [B, T] with ``pad_id``, labels with IGNORE."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
    return ids, labels


def gradients_vmap(
    model, examples: Sequence[Example], pad_id: int = 0, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Flattened per-example gradients ``[B, P]`` (fp32) of one chunk, with one vmapped call.

    ``out``: an optional fp32 buffer of at least ``[B, P]`` to write into (its first B rows are
    returned); ``gradient_features.featurize`` passes one buffer for all chunks.

    Padding is on the right and no attention mask is passed: under causal attention a real token
    never attends to a later (pad) position, so pads cannot change any real token's logits, and
    leaving the mask out avoids the mask-building code, which has data-dependent branches that
    vmap cannot trace. Pad positions carry IGNORE_INDEX labels, so they add nothing to the sum.
    """
    params = gradient_params(model)
    names = list(params)
    trainable = {n: p.detach() for n, p in params.items()}
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in trainable}
    frozen.update({n: b for n, b in model.named_buffers()})
    device = next(iter(trainable.values())).device
    ids, labels = (t.to(device) for t in _pad(examples, pad_id))

    def logprob(train_params, ids_one, labels_one):
        out = functional_call(
            model,
            (train_params, frozen),
            args=(),
            kwargs={"input_ids": ids_one.unsqueeze(0), "use_cache": False},
        )
        return _completion_logprob(out.logits[0], labels_one)

    with eval_eager(model):
        grads = vmap(grad(logprob), in_dims=(None, 0, 0))(trainable, ids, labels)
    n = len(examples)
    dest = _output(out, n, sum(p.numel() for p in trainable.values()), device)
    torch.cat([grads[name].reshape(n, -1) for name in names], dim=1, out=dest)
    return dest


def gradients_loop(
    model, examples: Sequence[Example], out: torch.Tensor | None = None
) -> torch.Tensor:
    """Flattened per-example gradients ``[B, P]`` (fp32), one example and backward pass at a time.

    ``out``: as for ``gradients_vmap``.
    """
    params = gradient_params(model)
    names = list(params)
    device = next(iter(params.values())).device
    dest = _output(out, len(examples), sum(p.numel() for p in params.values()), device)
    with eval_eager(model):
        for row, (ids, labels) in enumerate(examples):
            logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits
            lp = _completion_logprob(logits[0], torch.tensor(labels, device=device))
            g = torch.autograd.grad(lp, [params[n] for n in names], allow_unused=True)
            torch.cat(
                [
                    (gi if gi is not None else torch.zeros_like(params[n])).reshape(-1)
                    for gi, n in zip(g, names, strict=True)
                ],
                out=dest[row],
            )
    return dest


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int | None = None):
    """(prompt, completion) pairs -> examples via ``format.encode_example``; checks lengths first."""
    examples = [encode_example(tokenizer, p, c) for p, c in pairs]
    if max_length is not None:
        for i, (ids, _) in enumerate(examples):
            if len(ids) > max_length:
                raise ValueError(
                    f"example {i} is {len(ids)} tokens, longer than the reference model's "
                    f"max_position_embeddings={max_length}; shorten the completions or use a "
                    "reference model with a longer context"
                )
    return examples
