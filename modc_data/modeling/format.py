"""How a (prompt, completion, mode) triple becomes token ids, for training and for sampling.

The prompt and the completion (after one separating space, ``completion_text``) are tokenized
separately and concatenated, so the prompt's ids at sampling time are exactly the ids the model
was trained on (no merge across the boundary), and the loss mask is simply "every id after the
prompt". A prefix model sees its mode token, a single added special token, in front of the
prompt.
"""

from __future__ import annotations

from modc_data.schema import mode_token

IGNORE_INDEX = -100


def prompt_text(prompt: str, mode: str | None = None) -> str:
    """Model-side prompt: ``"<mode:dfs> " + prompt`` for a prefix model, else the prompt."""
    return f"{mode_token(mode)} {prompt}" if mode is not None else prompt


def encode_prompt(tokenizer, prompt: str, mode: str | None = None) -> list[int]:
    """Ids fed to ``generate``: optional BOS, then the (mode-prefixed) prompt."""
    ids = tokenizer(prompt_text(prompt, mode), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return ([bos] if bos is not None else []) + list(ids)


def completion_text(completion: str) -> str:
    """The completion as it follows the prompt: with its separating space. Published rows carry
    the space already (TRL's prompt-completion convention: ``prompt + completion`` is the text);
    the pipeline's own rows do not. Both encode the same."""
    return completion if completion[:1].isspace() else " " + completion


def encode_example(
    tokenizer, prompt: str, completion: str, mode: str | None = None
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one training row; labels are IGNORE_INDEX over the prompt."""
    p = encode_prompt(tokenizer, prompt, mode)
    c = list(tokenizer(completion_text(completion), add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        c.append(tokenizer.eos_token_id)
    return p + c, [IGNORE_INDEX] * len(p) + c


def mode_token_id(tokenizer, mode: str) -> int:
    """Id of ``mode``'s single special token; ValueError when the tokenizer lacks it."""
    token = mode_token(mode)
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id or token not in tokenizer.get_vocab():
        raise ValueError(f"tokenizer has no mode token {token!r}; add it (tokenizer.add_mode_tokens)")
    return int(tid)


def encode_free_example(
    tokenizer, prompt: str, completion: str, mode: str
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a *free* training row of a prefix model: the plain prompt, then the
    mode token as the first target token, then the completion. Trained on a share of rows, the
    model learns to choose a mode itself when sampled without one (its first-token distribution
    over the mode tokens is q(m|x)); the rest of the rows keep the token in the prompt."""
    p = encode_prompt(tokenizer, prompt, None)
    c = [mode_token_id(tokenizer, mode)]
    c += list(tokenizer(completion_text(completion), add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        c.append(tokenizer.eos_token_id)
    return p + c, [IGNORE_INDEX] * len(p) + c
