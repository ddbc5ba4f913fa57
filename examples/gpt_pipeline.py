"""Train a tiny KAN-GPT on Shakespeare, save it with its tokenizer, and use it through transformers.

    python examples/gpt_pipeline.py --steps 300 --out runs/kan_gpt_example
    python examples/gpt_pipeline.py --model gpt_nano_matched      # the parameter-matched MLP twin

Everything runs offline on a CPU in a few minutes: the corpus ships with the package, the
tokenizer is character-level, and the saved directory loads with
``AutoModelForCausalLM.from_pretrained`` and ``pipeline("text-generation")`` once ``kanzoo`` is
imported (importing ``kanzoo.models.kan_gpt`` registers the ``kan_gpt`` model type).

KAN-GPT has learned positions: ``generate`` (and so the pipeline) refuses, before it starts, a
request that would run past ``n_positions``. This script caps ``--max-new-tokens`` at what fits
after the prompt and says so.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from transformers import AutoModelForCausalLM, pipeline

import kanzoo.models.kan_gpt  # noqa: F401  (registers kan_gpt with transformers and the zoo)
from kanzoo.data.corpora import shakespeare_documents
from kanzoo.data.tokenizers import CharTokenizer
from kanzoo.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="kan_gpt_nano", help="registered name, e.g. gpt_nano_matched")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--chars", type=int, default=1_000_000, help="corpus characters to use")
    parser.add_argument("--out", default="runs/kan_gpt_example")
    parser.add_argument("--prompt", default="ROMEO:\n")
    parser.add_argument("--max-new-tokens", type=int, default=120)
    args = parser.parse_args()
    torch.manual_seed(0)

    text = "\n\n".join(shakespeare_documents())[: args.chars]
    tok = CharTokenizer.from_text(text)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    split = int(0.95 * len(data))
    train, val = data[:split], data[split:]

    model = create_model(args.model, vocab_size=tok.vocab_size, n_positions=max(128, args.block_size))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {n_params / 1e3:.0f}k parameters, vocab {tok.vocab_size}")

    def batch(source: torch.Tensor) -> torch.Tensor:
        start = torch.randint(0, len(source) - args.block_size, (args.batch_size,))
        return torch.stack([source[s : s + args.block_size] for s in start.tolist()])

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    model.train()
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        x = batch(train)
        loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == 1:
            model.eval()
            with torch.no_grad():
                xv = batch(val)
                val_loss = model(xv, labels=xv).loss.item()
            model.train()
            per_step = (time.perf_counter() - t0) / step
            print(f"step {step:5d}  train {loss.item():.3f}  val {val_loss:.3f}  {per_step:.3f} s/step")

    model.eval()
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    print(f"saved to {args.out}")

    reloaded = AutoModelForCausalLM.from_pretrained(args.out)
    print(f"reloaded as {type(reloaded).__name__}")
    generator = pipeline("text-generation", model=args.out)
    # Positions fed to the model: the prompt plus every new token but the last.
    fits = reloaded.config.n_positions + 1 - len(tok.encode(args.prompt))
    max_new_tokens = max(1, min(args.max_new_tokens, fits))
    if max_new_tokens < args.max_new_tokens:
        print(f"--max-new-tokens capped at {max_new_tokens} (n_positions={reloaded.config.n_positions})")
    sample = generator(args.prompt, max_new_tokens=max_new_tokens, do_sample=True, top_k=10, temperature=0.8)
    print("-" * 60)
    print(sample[0]["generated_text"])


if __name__ == "__main__":
    main()
