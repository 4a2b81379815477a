"""The configuration reference of the docs, generated from the typed params models.

    python -m modc_data.params_reference > docs/reference/params.md

Every field of every params block (``config.Params`` and the blocks it nests), with its type,
default and meaning, so the reference cannot drift from the code: the meaning is the field's
``description`` or, where it has none, the comment beside or just above it in the module that
defines the block (``config.py``, ``params_blocks.py``, ``params_training.py``,
``params_sampling.py``).
A test regenerates the page and checks it equals the committed one and names every field.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import tokenize
import typing
from collections.abc import Iterator

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from modc_data import config


def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment on its line, or the comment lines just above it."""
    source = inspect.getsource(cls)
    by_line: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = [by_line[n] for n in range(node.lineno, node.end_lineno + 1) if n in by_line]
            above, n = [], node.lineno - 1
            while n >= 1 and lines[n - 1].strip().startswith("#"):
                above.insert(0, by_line.get(n, ""))
                n -= 1
            out[node.target.id] = " ".join(text or above)
    return out


def _models(annotation) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for a in (annotation, *typing.get_args(annotation)):
        for b in (a, *typing.get_args(a)):
            if isinstance(b, type) and issubclass(b, BaseModel) and b not in found:
                found.append(b)
    return found


def _type(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    text = text or re.sub(r"modc_data\.\w+\.", "", str(annotation).replace("typing.", ""))
    return text.replace("NoneType", "None").replace("|", "\\|")


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(block defaults)"
    text = repr(value)
    return f"`{text if len(text) <= 40 else text[:37] + '...'}`".replace("|", "\\|")


def fields(model: type[BaseModel] = config.Params, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(dotted path, type, default, meaning) of every field, depth first. A mapping of blocks
    (``arms``, ``train_jobs``) is listed as ``<name>.<key>.<field>``."""
    comments = _comments(model)
    for name, f in model.model_fields.items():
        path = f"{prefix}{name}"
        blocks = _models(f.annotation)
        # a block's own docstring (not one inherited from pydantic's BaseModel)
        doc = inspect.cleandoc(blocks[0].__dict__.get("__doc__") or "").split("\n\n")[0] if blocks else ""
        meaning = " ".join((f.description or comments.get(name, "") or doc).split())
        meaning = meaning.replace("|", "\\|")
        yield path, _type(f.annotation), _default(f), meaning
        keyed = any(typing.get_origin(a) is dict for a in (f.annotation, *typing.get_args(f.annotation)))
        for sub in blocks:
            yield from fields(sub, f"{path}.<key>." if keyed else f"{path}.")


def params_reference() -> str:
    head = [
        "# Configuration reference",
        "",
        "Every field of a profile (`params.yaml`, `profiles/*.yaml`), generated from the typed "
        "models in `modc_data/config.py` (`python -m modc_data.params_reference`). A stage "
        "validates its blocks when it starts: an unknown key or a bad value fails with the field "
        "named. `<key>` stands for a name you choose (an arm, a train job).",
        "",
    ]
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    rows += [f"| `{path}` | {typ} | {default} | {meaning} |" for path, typ, default, meaning in fields()]
    return "\n".join(head + rows) + "\n"


if __name__ == "__main__":
    print(params_reference(), end="")
