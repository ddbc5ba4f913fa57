"""Turn the MLPs of a GPT-2 into KAN layers without changing its outputs, then fine-tune it.

    python examples/kanify_gpt2.py                          # small random GPT-2, char tokenizer
    python examples/kanify_gpt2.py --model path/to/gpt2     # a local checkpoint dir (or a hub id
                                                            # when the hub is reachable)

``kanify(model, include="*.mlp.*", preserve=True)`` swaps every ``Conv1D`` of the MLPs for a
``KANLinear`` whose identity base branch carries the old weight and bias and whose spline branch
starts at zero: the logits are the same, and training then shapes the new edge functions. Runs
offline on a CPU in well under a minute with the defaults.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from kanzoo.data.corpora import shakespeare_documents
from kanzoo.data.tokenizers import CharTokenizer
from kanzoo.layers import set_compile
from kanzoo.layers.kanify import kanify


def load(model_id: str | None, text: str):
    """``(model, encode)``: a pretrained model with its tokenizer, or a small random GPT-2."""
    if model_id:
        if not os.path.isdir(model_id):
            os.environ.setdefault("HF_HUB_OFFLINE", "0")
        tok = AutoTokenizer.from_pretrained(model_id)
        model = AutoModelForCausalLM.from_pretrained(model_id)
        return model, lambda s: tok(s)["input_ids"]
    tok = CharTokenizer.from_text(text)
    cfg = GPT2Config(vocab_size=tok.vocab_size, n_positions=128, n_embd=64, n_layer=2, n_head=4,
                     bos_token_id=0, eos_token_id=0)  # fmt: skip
    return GPT2LMHeadModel(cfg), tok.encode


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="local dir or hub id; default: a small random GPT-2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--grid-size", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile the KAN basis kernels")
    args = parser.parse_args()
    torch.manual_seed(0)
    set_compile(args.compile)  # compiling pays off on long runs, not on a 20-step demo

    text = "\n\n".join(shakespeare_documents())[:200_000]
    model, encode = load(args.model, text)
    data = torch.tensor(encode(text), dtype=torch.long)

    def batch() -> torch.Tensor:
        start = torch.randint(0, len(data) - args.block_size, (args.batch_size,))
        return torch.stack([data[s : s + args.block_size] for s in start.tolist()])

    probe = batch()
    model.eval()
    with torch.no_grad():
        before = model(probe).logits
    n_before = sum(p.numel() for p in model.parameters())
    # LayerNorm'd inputs of c_fc and GELU outputs feeding c_proj live mostly in [-3, 3].
    kanify(model, include="*.mlp.*", preserve=True, grid_size=args.grid_size, grid_range=(-3.0, 3.0))
    n_after = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        after = model(probe).logits
    print(model.kanify_summary)
    print(f"parameters: {n_before / 1e6:.2f}M -> {n_after / 1e6:.2f}M")
    print(f"max |logits before - after| = {(after - before).abs().max().item():.2e}")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    model.train()
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        ids = batch()
        loss = model(ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step == 1 or step % 5 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.4f}  ({time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()
