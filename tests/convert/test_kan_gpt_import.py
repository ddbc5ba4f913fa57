"""from_kan_gpt against a plain-torch rewrite of kan-gpt's efficient-kan GPT forward."""

from __future__ import annotations

import math

import pytest
import torch

from kanzoo.convert.kan_gpt import from_kan_gpt
from kanzoo.models import from_pretrained

G, K = 3, 3


def _grid(n_in: int, uniform: bool) -> torch.Tensor:
    if uniform:
        return (torch.arange(-K, G + K + 1, dtype=torch.float64) * (2 / G) - 1).expand(n_in, -1).clone()
    steps = torch.rand(n_in, G + 2 * K, dtype=torch.float64) * 0.8 + 0.3
    return torch.cat([torch.zeros(n_in, 1, dtype=torch.float64), steps.cumsum(1)], 1) - 2.5


def _kan(prefix: str, n_in: int, n_out: int, uniform: bool) -> dict[str, torch.Tensor]:
    p = f"{prefix}.layers.0."
    return {
        p + "grid": _grid(n_in, uniform),
        p + "base_weight": torch.randn(n_out, n_in, dtype=torch.float64) / math.sqrt(n_in),
        p + "spline_weight": torch.randn(n_out, n_in, G + K, dtype=torch.float64) * 0.5,
        p + "spline_scaler": torch.randn(n_out, n_in, dtype=torch.float64),
    }


def peer_state_dict(n_layer=3, n_embd=48, vocab=23, block=16, uniform=False):
    sd = {
        "transformer.wte.weight": torch.randn(vocab, n_embd, dtype=torch.float64),
        "transformer.wpe.weight": torch.randn(block, n_embd, dtype=torch.float64),
        "transformer.ln_f.weight": 1 + 0.2 * torch.randn(n_embd, dtype=torch.float64),
        "transformer.ln_f.bias": 0.2 * torch.randn(n_embd, dtype=torch.float64),
    }
    for i in range(n_layer):
        h = f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            sd[h + ln + ".weight"] = 1 + 0.2 * torch.randn(n_embd, dtype=torch.float64)
            sd[h + ln + ".bias"] = 0.2 * torch.randn(n_embd, dtype=torch.float64)
        sd[h + "attn.bias"] = torch.tril(torch.ones(block, block)).view(1, 1, block, block)
        sd |= _kan(h + "attn.c_attn", n_embd, 3 * n_embd, uniform or i == 0)
        sd |= _kan(h + "attn.c_proj", n_embd, n_embd, uniform)
        sd |= _kan(h + "mlp.c_fc", n_embd, 4 * n_embd, uniform)
        sd |= _kan(h + "mlp.c_proj", 4 * n_embd, n_embd, uniform)
    sd |= _kan("lm_head", n_embd, vocab, uniform)
    return sd


def _bsplines(x, t):
    # Cox-de Boor recursion with half-open intervals; x (N, in), knots t (in, m).
    x = x[..., None]
    b = ((x >= t[:, :-1]) & (x < t[:, 1:])).to(x.dtype)
    for d in range(1, K + 1):
        b = (x - t[:, : -d - 1]) / (t[:, d:-1] - t[:, : -d - 1]) * b[..., :-1] + (t[:, d + 1 :] - x) / (
            t[:, d + 1 :] - t[:, 1:-d]
        ) * b[..., 1:]
    return b


def _kan_ref(sd, p, x):
    p += ".layers.0."
    lead, x2 = x.shape[:-1], x.reshape(-1, x.shape[-1])
    w = sd[p + "spline_weight"] * sd[p + "spline_scaler"][..., None]
    y = (x2 * torch.sigmoid(x2)) @ sd[p + "base_weight"].T
    y = y + _bsplines(x2, sd[p + "grid"]).flatten(1) @ w.flatten(1).T
    return y.reshape(*lead, -1)


def _ln(sd, p, x):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * sd[p + ".weight"] + sd[p + ".bias"]


def reference(sd, idx, n_head):
    n_layer = len({k.split(".")[2] for k in sd if k.startswith("transformer.h.")})
    b, t = idx.shape
    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:t]
    for i in range(n_layer):
        h = f"transformer.h.{i}."
        a = _kan_ref(sd, h + "attn.c_attn", _ln(sd, h + "ln_1", x))
        c = x.shape[-1]
        q, k, v = (z.reshape(b, t, n_head, c // n_head).transpose(1, 2) for z in a.split(c, -1))
        s = q @ k.transpose(-1, -2) / math.sqrt(c // n_head)
        s = s.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        y = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, t, c)
        x = x + _kan_ref(sd, h + "attn.c_proj", y)
        u = _kan_ref(sd, h + "mlp.c_fc", _ln(sd, h + "ln_2", x))
        u = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
        x = x + _kan_ref(sd, h + "mlp.c_proj", u)
    return _kan_ref(sd, "lm_head", _ln(sd, "transformer.ln_f", x))


@pytest.mark.parametrize("uniform", [True, False])
def test_logits_match_reference_float64(uniform):
    torch.manual_seed(0)
    sd = peer_state_dict(uniform=uniform)
    model = from_kan_gpt(sd)  # gpt-nano preset: 3 heads inferred
    assert model.config.n_head == 3
    idx = torch.randint(0, 23, (2, 12))
    torch.testing.assert_close(model(idx).logits, reference(sd, idx, 3), rtol=1e-10, atol=1e-10)


def test_wrappers_paths_and_roundtrip(tmp_path):
    torch.manual_seed(1)
    sd = peer_state_dict()
    idx = torch.randint(0, 23, (1, 9))
    ref = reference(sd, idx, 3)
    path = tmp_path / "model.pth"
    torch.save({"state_dict": {"module._orig_mod." + k: v for k, v in sd.items()}}, path)
    model = from_kan_gpt(path, model_type="gpt-nano")
    torch.testing.assert_close(model(idx).logits, ref, rtol=1e-10, atol=1e-10)
    # Round trip in float32 (kanzoo keeps knot buffers in float32 through from_pretrained).
    model32 = from_kan_gpt({k: v.float() for k, v in sd.items()})
    model32.save_pretrained(tmp_path / "out")
    again = from_pretrained(tmp_path / "out").eval()
    torch.testing.assert_close(again(idx).logits, model32(idx).logits, rtol=0, atol=0)


def test_errors(tmp_path):
    torch.manual_seed(2)
    sd = peer_state_dict()
    with pytest.raises(FileNotFoundError):
        from_kan_gpt(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match=r"missing keys \(1\): transformer.h.1.ln_2.bias"):
        from_kan_gpt({k: v for k, v in sd.items() if k != "transformer.h.1.ln_2.bias"})
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): extra.weight"):
        from_kan_gpt({**sd, "extra.weight": torch.zeros(1)})
    bad = dict(sd)
    bad["transformer.h.2.mlp.c_proj.layers.0.base_weight"] = torch.zeros(48, 5)
    with pytest.raises(ValueError, match="mlp.c_proj.layers.0.base_weight"):
        from_kan_gpt(bad)
    with pytest.raises(ValueError, match="contradicts"):
        from_kan_gpt(sd, model_type="gpt-nano", n_head=4)
    with pytest.raises(ValueError, match="gpt-mini"):
        from_kan_gpt(sd, model_type="gpt-mini")
    with pytest.raises(ValueError, match="divisible"):
        from_kan_gpt(sd, n_head=5)
    with pytest.raises(ValueError, match="pass n_head"):
        from_kan_gpt(peer_state_dict(n_layer=2, n_embd=8))
    with pytest.raises(ValueError, match="ORIGINAL_KAN"):
        from_kan_gpt({**sd, "lm_head.act_fun.0.coef": torch.zeros(1)})
