"""KAN-GPT under ``torch.compile(fullgraph=True)`` and ``torch.export``: the forward pass and a
static-cache decode step, each compared with the eager model."""

from __future__ import annotations

import pytest
import torch

from kanzoo.models.kan_gpt import KanGPTConfig, KanGPTForCausalLM

transformers = pytest.importorskip("transformers")
from transformers import StaticCache  # noqa: E402
from transformers.integrations.executorch import TorchExportableModuleForDecoderOnlyLM  # noqa: E402

# One block keeps tracing time down; the block is what is traced, so more would only repeat it.
CONFIG = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 32, "vocab_size": 40, "ffn_ratio": 2.0}


@pytest.fixture
def model() -> KanGPTForCausalLM:
    torch._dynamo.reset()
    torch.manual_seed(0)
    return KanGPTForCausalLM(KanGPTConfig(**CONFIG, initializer_range=0.2)).eval()


def _tokens(length: int, batch: int = 2) -> torch.Tensor:
    return torch.randint(0, CONFIG["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(3))


@torch.no_grad()
def _check_fullgraph(model: KanGPTForCausalLM, backend: str) -> None:
    x = _tokens(10)
    full = model(x, use_cache=False).logits
    compiled = torch.compile(model, fullgraph=True, backend=backend)  # any graph break raises
    torch.testing.assert_close(compiled(x, use_cache=False).logits, full, atol=1e-5, rtol=1e-5)

    cache = StaticCache(config=model.config, max_cache_len=16)
    model(x[:, :7], cache=cache)  # eager prefill, compiled decode (as generate does)
    for t in (7, 8, 9):
        step = compiled(x[:, t : t + 1], cache=cache).logits
        torch.testing.assert_close(step[:, -1], full[:, t], atol=1e-5, rtol=1e-5)


def test_fullgraph_compile_of_forward_and_static_cache_decode(model):
    _check_fullgraph(model, backend="eager")  # dynamo's capture is what fullgraph=True checks


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_fullgraph_compile_with_other_backends(model, backend):
    _check_fullgraph(model, backend=backend)


@torch.no_grad()
@pytest.mark.filterwarnings(
    "ignore:While compiling, we found certain side effects"
)  # transformers' output capture
def test_torch_export_of_forward_and_static_cache_decode(model):
    x = _tokens(9)
    full = model(x, use_cache=False).logits
    exported = torch.export.export(model, args=(x,), kwargs={"use_cache": False})
    torch.testing.assert_close(exported.module()(x, use_cache=False).logits, full, atol=1e-5, rtol=1e-5)

    # transformers' own export recipe: a StaticCache held as buffers, one token per call.
    model.generation_config.cache_implementation = "static"
    recipe = TorchExportableModuleForDecoderOnlyLM(model, batch_size=1, max_cache_len=16)
    one = torch.zeros(1, 1, dtype=torch.long)
    program = recipe.export(input_ids=one, cache_position=torch.tensor([0])).module()
    row = x[:1]
    for pos in range(row.shape[1]):  # every position through the exported decode step
        logits = program(input_ids=row[:, pos : pos + 1], cache_position=torch.tensor([pos]))
        torch.testing.assert_close(logits[:, -1], full[:1, pos], atol=1e-5, rtol=1e-5)
