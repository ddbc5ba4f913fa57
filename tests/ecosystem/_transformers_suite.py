"""Import transformers' own common model tests (``ModelTesterMixin``, ``ConfigTester``) from its sdist.

The sdist of the installed transformers version is fetched with pip at test time
(:func:`_sdist.sdist_root`); nothing of it is copied into this repository. Its ``tests/`` folder is
imported as the package ``transformers_sdist_tests`` (kanzoo's own ``tests/`` is not a package, and
``tests`` would clash with it), so ``tests/test_modeling_common.py`` keeps its relative imports.

The sdist ships ``tests/test_modeling_common.py`` and ``tests/test_configuration_common.py`` but
not the three modules they import relatively. Those get stand-ins, registered before the import:

- ``exporters/test_export.py`` (``ExportTesterMixin``): an empty mixin. kanzoo tests
  ``torch.export`` of KAN-GPT itself (tests/ecosystem/test_transformers_kan_gpt.py).
- ``generation/test_utils.py`` (``GenerationTesterMixin``): an empty class that kanzoo's test case
  does NOT inherit; the generation checks are kanzoo's own, against a hand-written decoding loop.
- ``utils/test_configuration_utils.py`` (``config_common_kwargs``): built here from the fields of
  ``transformers.PreTrainedConfig`` and the keyword arguments its ``__post_init__`` consumes, each
  with a non-default value, so ``ConfigTester.check_config_arguments_init`` checks that every
  standard transformers config key is accepted and kept.

``test_configuration_common`` also calls ``direct_transformers_import(<sdist>/tests)`` at import
(its result is unused there, and ``tests/`` has no ``__init__.py``): during that import the call
returns the installed ``transformers`` instead.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import types
import warnings
from pathlib import Path

import pytest

PACKAGE = "transformers_sdist_tests"

__all__ = ["PACKAGE", "config_common_kwargs", "transformers_test_modules"]


def config_common_kwargs() -> dict:
    """A non-default value for every key a transformers config takes from any model's ``config.json``."""
    from transformers import PreTrainedConfig

    base = PreTrainedConfig()
    values = {
        "return_dict": False,
        "output_hidden_states": True,
        "output_attentions": True,
        "chunk_size_feed_forward": 5,
        "architectures": ["KanGPTForCausalLM"],
        "id2label": {0: "label"},
        "label2id": {"label": "0"},
        "problem_type": "regression",
        "is_encoder_decoder": False,  # True would change what the config means; the default is kept
        "dtype": "float16",
        "transformers_version": None,
    }
    fields = {f.name for f in dataclasses.fields(PreTrainedConfig)}
    missing = fields - set(values)
    if missing:  # a field added by a newer transformers: the suite must learn about it
        raise RuntimeError(f"no test value for the PreTrainedConfig field(s) {sorted(missing)}")
    values.pop("transformers_version")  # written by to_dict, not an input
    values.pop("is_encoder_decoder")
    for key, value in values.items():
        if key != "dtype" and getattr(base, key) == value:
            raise RuntimeError(f"test value of {key!r} equals the default {value!r}")
    return values


class _NoExportTests:
    """Stand-in for the sdist's missing ``exporters/test_export.py::ExportTesterMixin``."""


class _GenerationTesterMixinNotShipped:
    """Stand-in for the sdist's missing ``generation/test_utils.py::GenerationTesterMixin``."""


def _stub(name: str, **attrs: object) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__file__ = f"<kanzoo stand-in for {name}>"
    sys.modules[name] = module


def transformers_test_modules() -> types.SimpleNamespace:
    """``modeling`` (test_modeling_common) and ``configuration`` (test_configuration_common) modules.

    Skips the calling module when ``KANZOO_SKIP_ECOSYSTEM`` is set; a failed download is an error.
    """
    if os.environ.get("KANZOO_SKIP_ECOSYSTEM", "").strip().lower() in ("1", "true", "yes"):
        pytest.skip("KANZOO_SKIP_ECOSYSTEM is set: ecosystem suites are skipped", allow_module_level=True)
    try:
        import parameterized  # noqa: F401  (transformers' test suite needs it)
    except ImportError as err:
        raise RuntimeError(
            "transformers' test suite needs 'parameterized' (pip install parameterized)"
        ) from err
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from _sdist import sdist_root
    finally:
        sys.path.pop(0)
    tests_dir = sdist_root("transformers") / "tests"
    for needed in ("test_modeling_common.py", "test_configuration_common.py"):
        if not (tests_dir / needed).is_file():
            raise RuntimeError(f"the transformers sdist has no tests/{needed} ({tests_dir})")

    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(tests_dir)]
        package.__file__ = str(tests_dir / "__init__.py")
        sys.modules[PACKAGE] = package
        for sub in ("exporters", "generation", "utils"):
            if not (tests_dir / sub).exists():
                sub_package = types.ModuleType(f"{PACKAGE}.{sub}")
                sub_package.__path__ = []
                sys.modules[f"{PACKAGE}.{sub}"] = sub_package
        _stub(f"{PACKAGE}.exporters.test_export", ExportTesterMixin=_NoExportTests)
        _stub(f"{PACKAGE}.generation.test_utils", GenerationTesterMixin=_GenerationTesterMixinNotShipped)
        _stub(f"{PACKAGE}.utils.test_configuration_utils", config_common_kwargs=config_common_kwargs())

    import transformers.utils as hf_utils

    original = hf_utils.direct_transformers_import
    hf_utils.direct_transformers_import = lambda *args, **kwargs: sys.modules["transformers"]
    try:
        with warnings.catch_warnings():  # their pytest marks (flash_attn_test, ...) are not registered here
            warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
            modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
            configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    finally:
        hf_utils.direct_transformers_import = original
    return types.SimpleNamespace(modeling=modeling, configuration=configuration, tests_dir=tests_dir)
