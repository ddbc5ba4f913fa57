"""timm's own model tests (``tests/test_models.py`` of the installed timm's sdist) over kanzoo's timm names.

The suite is fetched with pip (``_sdist.sdist_root``) and imported unmodified. Its tests are
parametrized at import time over ``timm.list_models(...)`` with name and module filters (``vit_*``
for the "non-standard" ViT-like models, ``FEAT_INTER_FILTERS`` listing timm's own model modules
for the ``forward_intermediates`` tests) that never select a kanzoo model, or over a fixed list of
timm models. This module takes the suite's test functions, drops their ``model_name``
parametrization and re-parametrizes them over ``kanzoo.models._timm.timm_model_names()``; every
other mark (batch size, timeouts) and the test bodies, with their input-size caps, are the suite's.

Which kanzoo model gets which test follows the suite's own lists: a kanzoo name counts as
"non-standard" when the timm architecture it extends (the name without its ``kan_`` prefix,
e.g. ``vit_tiny``) matches the suite's ``NON_STD_FILTERS``, as timm's ViTs do. Non-standard
models take ``test_model_default_cfgs_non_std`` instead of ``test_model_default_cfgs``, and the
tests the suite runs on fixed lists of CNNs at 64x64 inputs (``test_reset_classifier_keeps_pool``,
``test_features_only_grad_checkpointing_backward``) run on the standard (Conv-KAN/CNN) names only.

Not run: the TorchScript tests (``test_model_forward_torchscript``,
``test_model_forward_fx_torchscript``). KAN layers compute through ``torch.autograd.Function``
subclasses (the memory-lean basis recomputation) and take ``**kwargs`` constructors and
spec strings/partials, none of which TorchScript compiles; ``torch.fx`` (with the KAN layers as
leaf modules, registered with timm's tracer), ``torch.export`` and ``torch.compile`` are the
supported graph paths.

Cost (see ``_DEFAULT``): the default suite runs every test on ``conv_kan_tiny``, ``cnn_tiny`` and
``kan_vit_tiny`` and the config test on ``kan_vit_tiny_patch16_224``; ``-m slow`` runs all the
parametrizations (the small sizes, every 224x224 KAN-ViT up to the 86M-parameter ViT-B/16 shape).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import sys
import types
import warnings
from collections.abc import Callable

import pytest
from _sdist import sdist_root

import kanzoo.models  # noqa: F401  (registers the kanzoo names with timm before the suite lists them)
from kanzoo.models._timm import timm_model_names

# The default suite runs every test on one model per architecture at its small size, and the
# ImageNet-shaped KAN-ViT-Ti/16 (fixed 224x224 input) through the config test only; the other
# parametrizations (wider or deeper copies of the same architectures, 224x224 forward/backward
# passes, the 22M/86M ViT-S/B shapes) run under -m slow, which runs all of them.
_DEFAULT = {"conv_kan_tiny": "*", "cnn_tiny": "*", "kan_vit_tiny": "*"}
_DEFAULT_TESTS = {"kan_vit_tiny_patch16_224": "test_model_default_cfgs_non_std"}


def _load_suite() -> types.ModuleType:
    try:
        root = sdist_root("timm")
    except pytest.skip.Exception as skip:  # KANZOO_SKIP_ECOSYSTEM: skip this whole module
        pytest.skip(str(skip), allow_module_level=True)
    name = "_timm_sdist_test_models"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, root / "tests" / "test_models.py")
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        # the suite's CI-group marks (forward, backward, cfg, ...) are registered in timm's own config
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


_suite = _load_suite()
_NAMES = timm_model_names()


def _non_std(name: str) -> bool:
    counterpart = name.removeprefix("kan_")
    return any(fnmatch.fnmatchcase(counterpart, f) for f in _suite.NON_STD_FILTERS)


# test -> (name -> the test's other model-specific arguments, or None when it does not apply)
_Args = Callable[[str], "tuple | None"]


def _every(name: str) -> tuple:
    return ()


def _standard(name: str) -> tuple | None:
    return None if _non_std(name) else ()


def _non_standard(name: str) -> tuple | None:
    return () if _non_std(name) else None


def _at_64px(name: str) -> tuple:
    # the suite runs these at 64x64 inputs; a (non-dynamic) ViT is built for that size
    return ({"img_size": 64},) if _non_std(name) else ({},)


_TESTS: dict[str, _Args] = {
    "test_model_forward": _every,
    "test_model_backward": _every,
    "test_model_default_cfgs": _standard,
    "test_model_default_cfgs_non_std": _non_standard,
    "test_model_forward_features": _every,
    "test_model_forward_intermediates": _every,
    "test_model_forward_intermediates_features": _every,
    "test_model_forward_fx": _every,
    "test_model_backward_fx": _every,
    "test_reset_classifier_keeps_pool": _standard,
    "test_head_hidden_size": _at_64px,
    "test_features_only_grad_checkpointing_backward": _standard,
    "test_model_init_weights_after_to_empty": lambda n: _at_64px(n) if _non_std(n) else None,
}


def _param(test: str, name: str, extra: tuple):
    default = name in _DEFAULT or _DEFAULT_TESTS.get(name) == test
    return pytest.param(name, *extra, id=name, marks=() if default else pytest.mark.slow)


def _reparametrize(test: str, args_for: _Args) -> types.FunctionType:
    """A copy of the suite's ``test`` parametrized over the kanzoo names (its other marks kept)."""
    fn = getattr(_suite, test)
    copy = types.FunctionType(fn.__code__, fn.__globals__, test, fn.__defaults__, fn.__closure__)
    copy.__doc__, copy.__qualname__, copy.__module__ = fn.__doc__, test, __name__
    copy.__kwdefaults__ = fn.__kwdefaults__
    marks = list(getattr(fn, "pytestmark", []))

    def takes_model_name(mark) -> bool:
        return mark.name == "parametrize" and "model_name" in str(mark.args[0]).replace(" ", "").split(",")

    (by_name,) = [m for m in marks if takes_model_name(m)] or [None]
    if by_name is None:
        raise RuntimeError(f"timm's {test} is no longer parametrized over model_name; update this harness")
    params = [_param(test, n, extra) for n in _NAMES if (extra := args_for(n)) is not None]
    by_kanzoo = pytest.mark.parametrize(by_name.args[0], params).mark
    copy.pytestmark = [m for m in marks if m is not by_name] + [by_kanzoo]
    return copy


for _test, _args_for in _TESTS.items():
    globals()[_test] = _reparametrize(_test, _args_for)

cfg_device = _suite.cfg_device  # the suite's fixture, used by its config tests
