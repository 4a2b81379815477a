"""pyproject's pytest ``filterwarnings``: deprecations our code triggers fail a test, others' don't.

Each check issues a real warning under the filters pytest installed for this test, from a frame
whose module is the one a warning is attributed to in practice (``warnings`` takes the module
name from the frame's ``__name__``).
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
from transformers import DynamicCache

from tests.tiny_models import tiny_llama, tiny_tokenizer


def _warn_from(module: str, category: type[Warning]) -> list[warnings.WarningMessage]:
    """Issue ``category`` from a frame of ``module``; return what was recorded (not raised)."""
    code = compile("import warnings\nwarnings.warn('deprecated thing', category)", f"<{module}>", "exec")
    with warnings.catch_warnings(record=True) as seen:  # keeps pytest's filters, records the rest
        exec(code, {"__name__": module, "category": category})
    return [w for w in seen if issubclass(w.category, category)]


@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
@pytest.mark.parametrize("module", ["modc_data", "modc_data.sampling.hf"])
def test_deprecation_from_modc_data_fails(module, category):
    with pytest.raises(category, match="deprecated thing"):
        _warn_from(module, category)


@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
@pytest.mark.parametrize("module", ["transformers.generation.utils", "datasets", "modc_dataset"])
def test_deprecation_from_other_packages_does_not_fail(module, category):
    seen = _warn_from(module, category)  # no exception
    # DeprecationWarnings of other packages are hidden, FutureWarnings shown (Python's default)
    assert len(seen) == (1 if category is FutureWarning else 0)


def test_deprecated_forward_keyword_fails():
    """transformers renamed forward's ``past_key_values`` to ``cache`` (5.24 warns); the old
    name warns from torch's Module.__call__ (the caller of forward), which the filters catch."""
    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    if "cache" not in inspect.signature(model.forward).parameters:
        pytest.skip("this transformers has no `cache` keyword, so `past_key_values` is current")
    ids = torch.tensor([[2, 5, 6]])
    with pytest.raises(FutureWarning, match="past_key_values"):
        model(input_ids=ids, past_key_values=DynamicCache(config=model.config), use_cache=True)
    model(input_ids=ids, cache=DynamicCache(config=model.config), use_cache=True)  # no warning
