"""Word-level tokenizer for models trained from scratch, and mode tokens for prefix models.

What it handles: texts whose words are separated by whitespace (Countdown traces, tiny test
corpora). Each whitespace-separated word is one token; words never seen while building map to
``<unk>``. Decoding joins tokens with single spaces, so ``decode(encode(t)) == t`` whenever ``t``
is words separated by single spaces and every word is in the vocabulary.
What it leaves out: sub-word merges (use a pretrained base's tokenizer for open-vocabulary text).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from modc_data.schema import mode_token

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)


def build_word_tokenizer(
    texts: Iterable[str], extra_special_tokens: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` whose vocabulary is every whitespace-separated word in ``texts``.

    Ids: ``<pad>``=0, ``<unk>``=1, ``<bos>``=2, ``<eos>``=3, then the words by descending count
    (ties alphabetical, so the same texts always give the same ids), then ``extra_special_tokens``
    (e.g. ``<mode:dfs>``), each a single special token. No BOS/EOS is added by ``__call__``:
    ``modc_data.modeling.format`` adds them explicitly (a trained checkpoint's saved tokenizer
    adds BOS: ``add_bos_when_encoding``).
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text.split())
    extra = [t for t in dict.fromkeys(extra_special_tokens) if t not in SPECIAL_TOKENS]
    reserved = set(SPECIAL_TOKENS) | set(extra)
    words = sorted((w for w in counts if w not in reserved), key=lambda w: (-counts[w], w))
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *words])}

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # WhitespaceSplit (not Whitespace): keeps "22-3=19" one word instead of splitting punctuation.
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # The WordPiece decoder with an impossible prefix joins tokens with single spaces and, with
    # cleanup off, leaves punctuation alone: exactly the inverse of whitespace splitting.
    backend.decoder = decoders.WordPiece(prefix="\x00##", cleanup=False)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        clean_up_tokenization_spaces=False,
    )
    if extra:
        tok.add_special_tokens({"extra_special_tokens": extra})
    return tok


def add_mode_tokens(tokenizer, modes: Iterable[str]) -> list[str]:
    """Add ``mode_token(m)`` for each mode as a special (never split) token; return them in order.

    Tokens already present are kept with their ids. The caller must resize the model's
    embeddings (``model.resize_token_embeddings(len(tokenizer))``) when any were new.
    """
    tokens = [mode_token(m) for m in dict.fromkeys(modes)]
    new = [t for t in tokens if t not in tokenizer.get_vocab()]
    if new:
        # transformers 5: "extra_special_tokens"; replace=False extends instead of replacing.
        tokenizer.add_special_tokens(
            {"extra_special_tokens": new}, replace_extra_special_tokens=False
        )
    return tokens


def add_bos_when_encoding(tokenizer) -> None:
    """Make ``tokenizer(text)`` start with BOS, as every training sequence here does.

    Training and our samplers put BOS in front themselves (``format.encode_prompt``, with
    ``add_special_tokens=False``); a saved tokenizer that does not add it would give plain
    ``transformers`` and TRL users prompts the model never saw. A ``TemplateProcessing``
    post-processor on the fast backend is saved in ``tokenizer.json`` and survives
    ``AutoTokenizer.from_pretrained``. A tokenizer without a BOS token (training adds none) and
    one with a slow (Python) backend are left as they are.
    """
    from tokenizers import processors

    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if bos is None or bos_id is None or backend is None:
        return
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )
