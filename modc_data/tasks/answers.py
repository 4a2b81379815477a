"""Final answers of free-form solutions, and whether two are mathematically equal.

What it handles: the last ``\\boxed{...}`` (nested braces included; else the last number) and
equality with math-verify, so ``\\boxed{1/2}``, ``0.5`` and ``\\frac{1}{2}`` agree. Used by the
math and GSM tasks and by packaged datasets' verdicts. What it leaves out: prompts and problems
(``tasks.math``).
"""

from __future__ import annotations

import re
import threading

from math_verify import parse, verify

# An optional sign, digits with optional thousands commas, an optional decimal part, or a
# plain fraction a/b. Used only when a solution has no \boxed{}.
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``; None if absent.

    Written by hand because a regex cannot match nested braces: we walk from the opening brace,
    counting depth, so ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``. An unclosed box is
    ignored (a truncated generation has no final answer).
    """
    for match in reversed(list(_BOXED.finditer(text))):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    return None


def extract_answer(text: str) -> str:
    """Final answer of a solution: last boxed content, else the last number, else ``""``."""
    boxed = last_boxed(text)
    if boxed:  # an empty \boxed{} answers nothing; fall back to the last number
        return boxed
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else ""


_GSM_FINAL = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
# The <<48/2=24>> calculator annotations of GSM8K solutions.
_GSM_CALC = re.compile(r"<<[^<>]*>>")


def gsm_answer(text: str) -> str:
    """Final answer of a GSM-style completion: the first ``#### N``; else the math rule (last
    ``\\boxed{}``, else the last number); ``""`` when there is none. Commas are dropped."""
    m = _GSM_FINAL.search(text)
    if m:
        return m.group(1).replace(",", "")
    return extract_answer(_GSM_CALC.sub("", text))


def _timeout() -> int | None:
    # math-verify's timeout uses signal.alarm, which only works in the main thread; elsewhere
    # (a DataLoader or thread pool) we run without it rather than crash.
    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse(answer: str) -> list:
    """math-verify parse of a bare answer, read as LaTeX in ``$...$`` first.

    LaTeX first because the plain-expression reader takes only a prefix of ``1+x^2`` (giving 1)
    and reads ``\\sqrt 2`` as 2; the plain reader is the fallback for what LaTeX rejects.
    """
    t = _timeout()
    return parse(f"${answer}$", parsing_timeout=t) or parse(answer, parsing_timeout=t)


def answers_equal(gold: str, predicted: str) -> bool:
    """True when ``predicted`` is mathematically equal to ``gold`` (both bare answer strings)."""
    if not predicted.strip() or not gold.strip():
        return False
    if gold.strip() == predicted.strip():
        return True
    g, p = _parse(gold), _parse(predicted)
    if not g or not p:
        return False
    try:
        return bool(verify(g, p, timeout_seconds=_timeout()))
    except Exception:  # noqa: BLE001 - sympy can raise anything on odd input; that is "wrong"
        return False
