"""Tiny models and datasets for trainer tests (independent of kanzoo.models / kanzoo.data)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset


class _Saveable(nn.Module):
    def save_pretrained(self, directory):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
            str(directory / "model.safetensors"),
        )
        (directory / "config.json").write_text(json.dumps({"kanzoo_model": type(self).__name__}))


class ToyLM(_Saveable):
    """Embedding -> dropout -> linear head; HF-style loss with the shift inside."""

    def __init__(self, vocab: int = 16, dim: int = 16, dropout: float = 0.1, sleep: float = 0.0):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab)
        self.sleep = sleep

    def forward(self, input_ids, labels=None):
        if self.sleep:
            time.sleep(self.sleep)
        h = self.drop(torch.relu(self.fc(self.norm(self.emb(input_ids)))))
        logits = self.head(h)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        return SimpleNamespace(logits=logits, loss=loss)


class ToyClassifier(_Saveable):
    def __init__(self, in_features: int = 16, classes: int = 3, hidden: int = 32, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )

    def forward(self, pixel_values):
        return self.net(pixel_values)


class ToySegmenter(_Saveable):
    def __init__(self, in_chans: int = 1, classes: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 1))

    def forward(self, pixel_values):
        return self.net(pixel_values)


class LMData(Dataset):
    """Sequences of a noisy repeating pattern: learnable next-token structure."""

    def __init__(self, n: int = 64, block: int = 12, vocab: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, vocab, (n, 1), generator=g)
        self.ids = (start + torch.arange(block)) % vocab

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class ClsData(Dataset):
    """Gaussian blobs: class c has mean shifted along feature c; 4x4 'images'."""

    def __init__(self, n: int = 96, classes: int = 3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % classes
        x = torch.randn(n, 16, generator=g) * 0.5
        x[torch.arange(n), self.y] += 2.0
        self.x = x.view(n, 1, 4, 4)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


class SegData(Dataset):
    """Bright squares on noise; the mask marks the square."""

    def __init__(self, n: int = 32, size: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            img = torch.randn(1, size, size, generator=g) * 0.3
            mask = torch.zeros(size, size, dtype=torch.long)
            r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
            mask[r : r + 6, c : c + 6] = 1
            img[0][mask.bool()] += 1.5
            self.items.append({"pixel_values": img, "mask": mask, "id": f"img{i}"})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def toy_data(task: str, **kw):
    """A DataModule-like namespace for ``task``."""
    if task == "lm":
        return SimpleNamespace(
            task="lm",
            train=LMData(64, seed=0),
            val=LMData(16, seed=1),
            collate_fn=None,
            info={"vocab_size": 16, "block_size": 12},
        )
    if task == "classification":
        return SimpleNamespace(
            task="classification",
            train=ClsData(96, seed=0),
            val=ClsData(30, seed=1),
            collate_fn=None,
            info={"num_classes": 3},
        )
    return SimpleNamespace(
        task="segmentation",
        train=SegData(32, seed=0),
        val=SegData(8, seed=1),
        collate_fn=None,
        info={"num_classes": 2},
    )


def toy_model(task: str, **kw):
    torch.manual_seed(kw.pop("init_seed", 0))
    return {"lm": ToyLM, "classification": ToyClassifier, "segmentation": ToySegmenter}[task](**kw)
