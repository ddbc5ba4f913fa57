"""KAN-GPT under transformers' own common model tests (``ModelTesterMixin``, ``ConfigTester``).

The mixins come from the sdist of the installed transformers version, fetched with pip at test
time (see ``_transformers_suite.py``); the model tester below is kanzoo's, written the way
transformers' per-model test modules write theirs. Attention outputs are on (``has_attentions``):
the suite checks ``output_attentions`` through the eager path and SDPA against eager.

Every mixin test kanzoo skips is listed in ``SKIPPED`` (and ``SKIPPED_WITH_KAN_HEAD`` for the
variant with a KAN language-model head, which runs under ``-m slow``) with the reason it cannot
apply to KAN-GPT; the other skips are the mixin's own (no GPU, no flash attention, no DeepSpeed,
not a composite or MoE model, ...).
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _transformers_suite import transformers_test_modules  # noqa: E402

sys.path.pop(0)

_suite = transformers_test_modules()
ModelTesterMixin = _suite.modeling.ModelTesterMixin
ConfigTester = _suite.configuration.ConfigTester
ids_tensor = _suite.modeling.ids_tensor
random_attention_mask = _suite.modeling.random_attention_mask

from kanzoo.models.kan_gpt import KanGPTConfig, KanGPTForCausalLM, KanGPTModel  # noqa: E402

_NAME_TABLES = (
    (_suite.modeling.MODEL_MAPPING_NAMES, "KanGPTModel"),
    (_suite.modeling.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, "KanGPTForCausalLM"),
)

# Mixin tests that cannot apply to KAN-GPT, with the reason. Everything else runs.
SKIPPED: dict[str, str] = {
    "test_generation_tester_mixin_inheritance": (
        "the transformers sdist ships no tests/generation/ (GenerationTesterMixin); generation is "
        "checked against a hand-written decoding loop in tests/models/test_kan_gpt_generation.py"
    ),
}


# ... and, in addition, with a KAN language-model head (KanGPTAllKanModelTest, under -m slow).
SKIPPED_WITH_KAN_HEAD: dict[str, str] = {
    "test_resize_tokens_embeddings": (
        "a KAN language-model head is a KANLinear, not a (vocab, hidden) weight matrix: resizing the "
        "vocabulary is refused with a ValueError (tests/models/test_kan_gpt_contract.py)"
    ),
}


class KanGPTModelTester:
    """Builds a tiny KAN-GPT config and inputs, in the shape transformers' mixins expect."""

    def __init__(
        self,
        parent: unittest.TestCase,
        *,
        batch_size: int = 3,
        seq_length: int = 7,
        is_training: bool = True,
        vocab_size: int = 99,
        hidden_size: int = 32,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        max_position_embeddings: int = 64,
        ffn_layer: str = "kan",
        attn_layer: str = "linear",
        head_layer: str = "linear",
    ) -> None:
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.ffn_layer = ffn_layer
        self.attn_layer = attn_layer
        self.head_layer = head_layer

    def get_config(self) -> KanGPTConfig:
        return KanGPTConfig(
            vocab_size=self.vocab_size,
            n_embd=self.hidden_size,
            n_layer=self.num_hidden_layers,
            n_head=self.num_attention_heads,
            n_positions=self.max_position_embeddings,
            ffn_ratio=2.0,
            ffn_layer=self.ffn_layer,
            attn_layer=self.attn_layer,
            head_layer=self.head_layer,
            pad_token_id=0,
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = random_attention_mask([self.batch_size, self.seq_length])
        labels = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        return self.get_config(), input_ids, attention_mask, labels

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, attention_mask, _ = self.prepare_config_and_inputs()
        return config, {"input_ids": input_ids, "attention_mask": attention_mask}


class KanGPTModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (KanGPTModel, KanGPTForCausalLM)
    has_attentions = True
    # KAN-GPT's _init_weights covers every tensor (the KAN layers' own init included): check it.
    test_can_init_all_missing_weights_before_2023 = True

    @classmethod
    def setUpClass(cls) -> None:
        # The mixin picks the checks for a base model / causal LM by class NAME, from transformers'
        # static tables of its own models; list kanzoo's classes there while this suite runs.
        for table, name in _NAME_TABLES:
            table["kan_gpt"] = name

    @classmethod
    def tearDownClass(cls) -> None:
        for table, _ in _NAME_TABLES:
            table.pop("kan_gpt", None)

    def setUp(self) -> None:
        self.model_tester = KanGPTModelTester(self)
        self.config_tester = ConfigTester(self, config_class=KanGPTConfig, n_embd=37, n_head=1)

    def test_config(self) -> None:
        self.config_tester.run_common_tests()


def _skip(name: str, reason: str):
    def skipped(self):
        self.skipTest(reason)

    skipped.__name__ = name
    return skipped


for _name, _reason in SKIPPED.items():
    assert hasattr(KanGPTModelTest, _name), f"{_name} is no longer a mixin test; update SKIPPED"
    setattr(KanGPTModelTest, _name, _skip(_name, _reason))


@pytest.mark.slow
class KanGPTAllKanModelTest(KanGPTModelTest):
    """The same suite with KAN attention projections and an (untied) KAN language-model head."""

    def setUp(self) -> None:
        super().setUp()
        self.model_tester = KanGPTModelTester(self, attn_layer="kan", head_layer="kan")


for _name, _reason in SKIPPED_WITH_KAN_HEAD.items():
    assert hasattr(KanGPTAllKanModelTest, _name), (
        f"{_name} is no longer a mixin test; update SKIPPED_WITH_KAN_HEAD"
    )
    setattr(KanGPTAllKanModelTest, _name, _skip(_name, _reason))
