"""Fuzzing evaluate.py settings and data files: hostile input gives one ``error:`` line, never a
traceback, never leftover files, never a hang.

Seeded loops (reproducible; a failing case is printed with its seed and arguments). Three
categories, each run in process through the real entry points (``kanzoo.eval.cli.main`` and
``python -m kanzoo.data``'s ``main``, wrapped by ``kanzoo._cli.run_main`` as the scripts are):

* ``eval_settings``: bad values for every evaluate.py setting, unknown keys, malformed overrides,
  missing/odd checkpoints.
* ``data_files``: a segmentation folder with one damaged image or mask (truncated, random bytes,
  empty, wrong size, odd values, 16-bit, colour, NaN float TIFF, a huge header), evaluated with a
  small saved checkpoint.
* ``text_bytes``: text files of random bytes, latin-1, NUL, BOMs, broken UTF-8 and table files,
  read with every tokenizer kind and ``errors=`` mode.

A case is clean when it exits 0 (valid input), or exits 2 with exactly one ``error:`` line as the
last stderr line and no traceback, leaves nothing in its working folder or output folder, and
finishes within ``CASE_LIMIT_S``. The default suite runs a small budget; ``-m slow`` a large one.
Each category prints ``fuzz <category>: tried N, clean M``.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import string
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kanzoo._cli import run_main

CASE_LIMIT_S = 180  # a hang guard for a loaded 2-core machine, not a speed assertion
SMALL = {"eval_settings": 6, "data_files": 4, "text_bytes": 6}
LARGE = {"eval_settings": 150, "data_files": 80, "text_bytes": 120}


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang(f"case took more than {CASE_LIMIT_S} s")


def run_case(main, argv, *, workdir: Path, output: Path | None = None) -> str | None:
    """Run one case; None when clean, else what went wrong."""
    workdir.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(workdir))
    out, err = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    old_handler = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_LIMIT_S)
    code = 0
    try:
        os.chdir(workdir)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_main(main, argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except _Hang as exc:
        return f"hang: {exc}"
    except BaseException as exc:  # a traceback the user would see
        return f"traceback: {type(exc).__name__}: {str(exc)[:300]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_handler)
        os.chdir(old_cwd)
    text = err.getvalue()
    if "Traceback" in text + out.getvalue():
        return f"traceback in output: {text[-500:]}"
    if code == 0:
        return None
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    if code != 2:
        return f"exit {code}: {text[-300:]}"
    if len(errors) != 1 or lines[-1] != errors[0]:
        return f"expected one final error line, got: {lines[-5:]}"
    left = set(os.listdir(workdir)) - before
    if left:
        return f"files left in the working folder: {sorted(left)}"
    if output is not None and output.exists():
        return f"output folder written on failure: {output}"
    return None


def _report(category: str, results: list[tuple[str, str | None]]) -> None:
    bad = [(case, why) for case, why in results if why is not None]
    print(f"\nfuzz {category}: tried {len(results)}, clean {len(results) - len(bad)}")
    for case, why in bad:
        print(f"  UNCLEAN {case}\n    -> {why}")
    assert not bad, "\n".join(f"{case}\n    -> {why}" for case, why in bad[:10])


def _junk(rng: random.Random, n: int = 12) -> str:
    alphabet = string.ascii_letters + string.digits + "-_./:,;!@#%^&*()[]{}<>?|~ éß中😀\t"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))


# --------------------------------------------------------------------------------- eval settings
def _bad_setting(rng: random.Random, tmp: Path) -> str:
    """One override that evaluate.py must refuse."""
    choice = rng.randrange(17)
    if choice == 0:
        bad = ["-1", "0", "-100000000", "abc", "1.5", "1e400", "[1]", "{a: 1}", "true"]
        return f"max_samples={rng.choice(bad)}"
    if choice == 1:
        return f"batch_size={rng.choice(['0', '-3', 'x', '2.5', 'true', 'null', '[]'])}"
    if choice == 2:
        return f"num_overlays={rng.choice(['-1', 'many', '0.5'])}"
    if choice == 3:
        return f"overlay_max_side={rng.choice(['0', '15', '-5', 'huge'])}"
    if choice == 4:
        return f"threshold={rng.choice(['0', '1', '-0.5', '2', 'nan', 'inf', 'x', 'null', '[0.5]'])}"
    if choice == 5:
        key = rng.choice(["split", "protocol", "resolution", "hd95_convention"])
        return f"{key}={rng.choice(['VAL', 'tset', 'per-image', 'orig', 'both', '1'])}"
    if choice == 6:
        return f"device={rng.choice(['tpu', 'cuda:99', 'gpu', 'cpu:0', 'CUDA', '1'])}"
    if choice == 7:
        return f"{rng.choice(['progress', 'compute_hd95'])}={rng.choice(['maybe', '2', 'yes?', '[]'])}"
    if choice == 8:
        f = tmp / f"file{rng.randrange(10**6)}.txt"
        f.write_text("x")
        return f"output_dir={f if rng.random() < 0.5 else f / 'sub'}"
    if choice == 9:
        key = "".join(rng.choice(string.ascii_lowercase + "_") for _ in range(rng.randint(1, 12)))
        return f"{key}=1"
    if choice == 10:
        return rng.choice(
            ["a=b=c", "x=[1,2", "=3", "checkpoint", "++", "data.=3", "split", "-m", "--cfg=job"]
        )
    if choice == 11:
        empty = tmp / f"empty{rng.randrange(10**6)}"
        empty.mkdir()
        return f"compare={empty}"
    if choice == 12:
        return f"data={rng.choice(['digitz', 'nope', 'image', 'shape'])}"
    if choice == 13:
        key = rng.choice(["image_size", "in_chans", "val_fraction"])
        return f"data.{key}={rng.choice(['0', '-4', 'abc', '1e9', '[]'])}"
    if choice == 14:
        return f"data.{_junk(rng, 6) or 'x'}y=1"
    if choice == 15:
        return f"split={_junk(rng) or '?'}"
    return f"max_samples={_junk(rng) or '-'}"


def _eval_settings(n: int, tmp_path: Path) -> None:
    from kanzoo.eval import cli

    results = []
    for seed in range(n):
        rng = random.Random(seed)
        case_dir = tmp_path / f"case{seed}"
        scratch = tmp_path / f"scratch{seed}"
        scratch.mkdir()
        out = case_dir / "out"
        picks = [_bad_setting(rng, scratch) for _ in range(rng.randint(1, 3))]
        checkpoint = rng.choice(["cnn-digits"] * 4 + [str(scratch / "missing"), "", "a/b/c/d"])
        argv = [f"checkpoint={checkpoint}", "progress=false", f"output_dir={out}", "max_samples=4", *picks]
        if rng.random() < 0.3:
            argv.insert(0, "data=digits")
        rng.shuffle(argv)
        results.append((f"seed {seed}: {argv}", run_case(cli.main, argv, workdir=case_dir, output=out)))
    _report("eval_settings", results)


# ------------------------------------------------------------------------------------- data files
def _good_folder(root: Path, n: int = 5) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "images" / f"m{i}.png")
        m = np.zeros((20, 24), np.uint8)
        m[4:12, 5 + i : 15 + i] = 255
        Image.fromarray(m).save(root / "masks" / f"m{i}.png")


def _damage(rng: random.Random, root: Path) -> tuple[str, list[str]]:
    """Damage one file of the folder; returns a description and extra data settings."""
    i = rng.randrange(5)
    img, msk = root / "images" / f"m{i}.png", root / "masks" / f"m{i}.png"
    target = img if rng.random() < 0.5 else msk
    data = target.read_bytes()
    kind = rng.randrange(14)
    extra: list[str] = []
    if kind == 0:
        target.write_bytes(data[: rng.randint(0, len(data) - 1)])
    elif kind == 1:
        target.write_bytes(rng.randbytes(rng.randint(1, 2000)))
    elif kind == 2:
        target.write_bytes(b"")
    elif kind == 3:
        pos = rng.randint(8, len(data) - 1)
        target.write_bytes(data[:pos] + rng.randbytes(16) + data[pos + 16 :])
    elif kind == 4:  # a different size than its partner
        Image.fromarray(np.zeros((rng.randint(1, 40), rng.randint(1, 40)), np.uint8)).save(target)
    elif kind == 5:  # odd mask values, in binary or multi-class mode
        vals = np.random.default_rng(rng.randrange(10**6)).integers(0, 256, (20, 24), dtype=np.uint8)
        Image.fromarray(vals).save(msk)
        if rng.random() < 0.5:
            extra = ["data.mask_mode=multiclass", f"data.num_classes={rng.randint(2, 5)}"]
    elif kind == 6:  # 16-bit instance mask with large ids
        arr = np.random.default_rng(rng.randrange(10**6)).integers(0, 65535, (20, 24)).astype(np.uint16)
        Image.fromarray(arr).save(msk)
    elif kind == 7:  # a colour mask
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(msk)
        if rng.random() < 0.5:
            extra = ["data.mask_mode=multiclass", "data.value_map={'0,0,0': 0}"]
    elif kind == 8:  # NaN / inf pixels in a float TIFF image
        import tifffile

        arr = np.random.default_rng(2).random((20, 24, 3)).astype(np.float32)
        arr[rng.randrange(20), rng.randrange(24), rng.randrange(3)] = rng.choice([np.nan, np.inf, -np.inf])
        img.unlink()
        tifffile.imwrite(root / "images" / f"m{i}.tif", arr)
    elif kind == 9:  # a PNG header claiming an enormous image (decompression bomb)
        import struct
        import zlib

        w = h = rng.choice([30000, 70000, 2**30])
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
        chunk = b"IHDR" + ihdr
        target.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
                           + struct.pack(">I", zlib.crc32(chunk)))  # fmt: skip
    elif kind == 10:  # an ignore value / value_map that does or does not fit
        extra = [f"data.ignore_value={rng.choice(['255', '7', 'abc', '[1,2]', '300'])}"]
        if rng.random() < 0.5:
            extra += ["data.mask_mode=multiclass", "data.value_map={0: 0, 255: ignore}"]
    elif kind == 11:  # a mask without image, an image without mask
        (rng.choice([img, msk])).unlink()
    elif kind == 12:  # a grey or RGBA image (valid)
        mode = rng.choice(["L", "RGBA", "I;16"])
        arr = np.random.default_rng(3).integers(0, 200, (20, 24, 4) if mode == "RGBA" else (20, 24))
        dtype = np.uint16 if mode == "I;16" else np.uint8
        Image.fromarray(arr.astype(dtype)).save(img)
    else:  # odd data settings
        odd = ["data.image_size=0", "data.image_size=[64]", "data.in_chans=2", "data.val_fraction=1.5",
               "data.layout=zigzag", "data.mask_threshold=abc", "data.split_file=/no/file.json"]  # fmt: skip
        extra = [rng.choice(odd)]
    return f"{target.name} kind {kind}", extra


def _data_files(n: int, tmp_path: Path) -> None:
    import torch

    from kanzoo.eval import cli
    from kanzoo.models import create_model

    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt"
    create_model("unet_tiny", num_classes=1).save_pretrained(ckpt)
    results = []
    for seed in range(n):
        rng = random.Random(1000 + seed)
        root = tmp_path / f"data{seed}"
        _good_folder(root)
        what, extra = _damage(rng, root)
        case_dir = tmp_path / f"case{seed}"
        out = case_dir / "out"
        argv = [f"checkpoint={ckpt}", "data=segmentation_folder", f"data.root={root}", "data.image_size=32",
                f"output_dir={out}", "progress=false", "num_overlays=1", "max_samples=2",
                "compute_hd95=false", *extra]  # fmt: skip
        results.append(
            (f"seed {seed}: {what} {extra}", run_case(cli.main, argv, workdir=case_dir, output=out))
        )
    _report("data_files", results)


# ------------------------------------------------------------------------------------- text bytes
def _text_bytes(rng: random.Random) -> tuple[str, bytes]:
    kind = rng.randrange(9)
    if kind == 0:
        return ".txt", rng.randbytes(rng.randint(0, 4000))
    if kind == 1:
        return ".txt", ("déjà vu — cœur " * rng.randint(1, 200)).encode(
            rng.choice(["latin-1", "cp1252", "utf-16"]), "replace"
        )
    if kind == 2:
        return ".txt", b"\xef\xbb\xbf" + ("hello world\r\n" * rng.randint(1, 300)).encode()
    if kind == 3:
        return ".txt", b"ok text " * rng.randint(0, 300) + b"\xed\xa0\x80" + b"\x00" * rng.randint(0, 50)
    if kind == 4:
        return ".md", ("# title\n" + _junk(rng, 400)).encode("utf-8")
    if kind == 5:
        return ".jsonl", b'{"text": "a"}\n' + rng.randbytes(rng.randint(1, 300))
    if kind == 6:
        return ".json", rng.choice([b"", b"[", b'{"text": 3}', b'[{"text": "\xff"}]', b'{"other": "x"}'])
    if kind == 7:
        return ".csv", b"text\n" + rng.randbytes(rng.randint(1, 300))
    return ".txt", ("valid utf-8 text. " * rng.randint(1, 400)).encode()


def _text(n: int, tmp_path: Path) -> None:
    from kanzoo.data.__main__ import main as data_main

    results = []
    for seed in range(n):
        rng = random.Random(5000 + seed)
        suffix, payload = _text_bytes(rng)
        f = tmp_path / f"corpus{seed}{suffix}"
        f.write_bytes(payload)
        tok = rng.choice(["char", "byte", "bpe", "char", "byte"])
        argv = [
            "text",
            f"path_or_hub_name={f}",
            f"tokenizer={tok}",
            f"block_size={rng.choice([8, 32, 2, 1, 0])}",
        ]
        if rng.random() < 0.4:
            argv.append(f"errors={rng.choice(['strict', 'replace', 'ignore', 'bytes', 'surrogate', '1'])}")
        if rng.random() < 0.3:
            argv.append(f"encoding={rng.choice(['latin-1', 'utf-16', 'cp1252', 'nope', 'ascii'])}")
        if tok == "bpe":
            argv.append("vocab_size=300")
        case_dir = tmp_path / f"case{seed}"
        results.append(
            (f"seed {seed}: {argv} ({len(payload)} bytes)", run_case(data_main, argv, workdir=case_dir))
        )
    _report("text_bytes", results)


# ----------------------------------------------------------------------------------------- tests
@pytest.fixture(autouse=True)
def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def test_fuzz_eval_settings(tmp_path):
    _eval_settings(SMALL["eval_settings"], tmp_path)


def test_fuzz_data_files(tmp_path):
    _data_files(SMALL["data_files"], tmp_path)


def test_fuzz_text_bytes(tmp_path):
    _text(SMALL["text_bytes"], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("category", sorted(LARGE))
def test_fuzz_large_budget(category, tmp_path):
    {"eval_settings": _eval_settings, "data_files": _data_files, "text_bytes": _text}[category](
        LARGE[category], tmp_path
    )
