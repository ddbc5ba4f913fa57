"""Fuzz the checkpoint validation layer: corrupt files, dtype swaps, NaN/inf, shape lies, config
mutations and importer inputs, through ``kanzoo.from_pretrained``, evaluate.py, ``python -m kanzoo.viz``
and ``python -m kanzoo.convert``.

Seeded loops (reproducible; the seed and case are named on failure). In-process cases assert a
``ValueError``/``OSError`` subclass with a one-line message naming the file (or a clean load where
the mutation is harmless, e.g. a changed metadata string); entry-point cases assert one ``error:``
line, exit status 2, no traceback and nothing left behind. Every case runs under a time limit.
The default suite runs a small budget (mostly in-process); ``-m slow`` runs a large one with
subprocesses. Tried/clean counts per category are printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import struct
import sys
from pathlib import Path

import pytest
import torch
from _cli_case import REPO, Tally, listing, problems, run_entry, time_limit
from safetensors.torch import load_file, save_file

import kanzoo
from kanzoo.models import pretrained_dir

sys.path.insert(0, str(REPO / "tests" / "convert"))
from test_kan_gpt_import import peer_state_dict  # noqa: E402

FAMILIES = ("kan_gpt-shakespeare", "cnn-digits")
CASE_LIMIT_S = 60.0
POOL = [
    "abc", "", [], {}, None, True, False, -1, 0, 2**31, 10**6, 10**12, 10**30, 1e308, -1e-9, 0.5,
    [[[[]]]], "os.system", "__import__('os')", {"a": {"b": {"c": 1}}}, [1, "x", None], 3.0,
]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Mutations
# ----------------------------------------------------------------------------------------------


def mutate_bytes(good: bytes, rng: random.Random) -> tuple[str, bytes, bool]:
    """A corrupted weights file: (description, bytes, whether loading must fail)."""
    (n,) = struct.unpack("<Q", good[:8])
    kind = rng.choice(["truncate", "header_flip", "length", "garbage", "append", "prefix", "empty"])
    if kind == "truncate":
        cut = rng.randrange(0, len(good))
        return f"truncate at {cut}", good[:cut], True
    if kind == "header_flip":
        out = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(8, 8 + n)] = rng.randrange(256)
        return "header byte flips", bytes(out), False  # may hit a metadata string: harmless
    if kind == "length":
        value = rng.choice([0, 1, n - 1, n + 1, len(good), 2**63 - 1, rng.randrange(2**64)])
        return f"header length {value}", struct.pack("<Q", value) + good[8:], value != n
    if kind == "garbage":
        size = rng.randint(1, 4096)
        return f"{size} random bytes", bytes(rng.randrange(256) for _ in range(size)), True
    if kind == "append":
        return "junk appended", good + b"\x00" * rng.randint(1, 64), True
    if kind == "prefix":
        head = rng.choice([b"\x80\x04\x95", b"PK\x03\x04", b"{", b"\x00" * 8])
        return f"prefix {head!r}", head + good[len(head) :], True
    return "empty", b"", True


def mutate_tensors(state: dict, rng: random.Random) -> tuple[str, bool]:
    """Edit ``state`` in place: (description, whether loading must fail)."""
    floats = sorted(k for k, v in state.items() if v.is_floating_point() and v.numel())
    key = rng.choice(floats)
    kind = rng.choice(["nan", "inf", "int", "bool", "fp8", "half", "shape", "drop", "extra"])
    value = state[key]
    if kind in ("nan", "inf"):
        value = value.clone()
        value.view(-1)[rng.randrange(value.numel())] = float(kind) * rng.choice([1, -1])
        state[key] = value
        return f"{kind} in {key}", True
    if kind in ("int", "bool", "fp8"):
        dtype = {"int": torch.int32, "bool": torch.bool, "fp8": torch.float8_e5m2}[kind]
        state[key] = value.to(dtype)
        return f"{key} as {dtype}", True
    if kind == "half":
        state[key] = value.to(rng.choice([torch.float16, torch.bfloat16, torch.float64]))
        return f"{key} in another float dtype", False
    if kind == "shape":
        state[key] = value.reshape(-1) if value.dim() != 1 else value.reshape(1, -1)
        return f"{key} reshaped to {tuple(state[key].shape)}", True
    if kind == "drop":
        del state[key]
        return f"{key} dropped", True
    state["fuzz.extra"] = torch.zeros(3)
    return "extra tensor", True


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"x": value}
    return value


def mutate_config(data: dict, rng: random.Random) -> str:
    """Edit a config dict in place; returns a description. Loading may succeed (harmless edits)."""
    kind = rng.choice(["value", "value", "value", "unknown", "family", "nesting"])
    fields = sorted(k for k in data if k not in ("kanzoo_version", "transformers_version"))
    if kind == "value":
        key = rng.choice(fields)
        data[key] = rng.choice(POOL)
        return f"{key}={data[key]!r:.40}"
    if kind == "unknown":
        data[f"fuzz_{rng.randrange(100)}"] = rng.choice(POOL)
        return "unknown key"
    if kind == "family":
        data["kanzoo_model"] = rng.choice(POOL)
        return f"kanzoo_model={data['kanzoo_model']!r:.40}"
    key = rng.choice(fields)
    data[key] = _nested(rng.choice([5, 40, 500]))
    return f"{key} nested"


# ----------------------------------------------------------------------------------------------
# Case runners
# ----------------------------------------------------------------------------------------------


def check_load(ckpt: Path, *, must_fail: bool) -> list[str]:
    """Load in-process; what is wrong with the outcome (empty: clean)."""
    try:
        with time_limit(CASE_LIMIT_S):
            model = kanzoo.from_pretrained(ckpt)
    except (ValueError, OSError) as err:
        msg = str(err)
        issues = []
        if "\n" in msg:
            issues.append("multi-line message")
        if str(ckpt) not in msg:
            issues.append(f"message does not name the checkpoint: {msg[:120]}")
        return issues
    except Exception as err:  # noqa: BLE001 - the fuzz records anything else as a defect
        return [f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"]
    if must_fail:
        return ["loaded without an error"]
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    return [f"loaded non-finite {bad[:3]}"] if bad else []


def check_import(source, *, must_fail: bool) -> list[str]:
    from kanzoo.convert.kan_gpt import from_kan_gpt

    try:
        with time_limit(CASE_LIMIT_S):
            from_kan_gpt(source, n_head=1)
    except (ValueError, OSError) as err:
        msg = str(err)
        issues = ["multi-line message"] if "\n" in msg else []
        if isinstance(source, Path) and str(source) not in msg:
            issues.append(f"message does not name the file: {msg[:120]}")
        return issues
    except Exception as err:  # noqa: BLE001
        return [f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"]
    return ["imported without an error"] if must_fail else []


def check_entry_in_process(main, argv: list[str], cwd: Path) -> list[str]:
    """An entry point's main through ``run_main`` in this process: exit 2, one line, nothing left."""
    from kanzoo._cli import run_main

    before = listing(cwd)
    err = io.StringIO()
    code = None
    try:
        with time_limit(CASE_LIMIT_S), contextlib.redirect_stderr(err):
            code = run_main(main, argv)
    except SystemExit as stop:
        code = stop.code
    except Exception as exc:  # noqa: BLE001
        return [f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"]
    issues = problems(code, err.getvalue())
    if listing(cwd) != before:
        issues.append(f"left files: {sorted(listing(cwd) - before)[:3]}")
    return issues


def _evaluate_main(argv):
    from kanzoo.eval.cli import main

    return main(argv, config_dir=REPO / "configs")


def _viz_main(argv):
    from kanzoo.viz.__main__ import main

    return main(argv)


def _convert_main(argv):
    from kanzoo.convert.__main__ import main

    return main(argv)


# ----------------------------------------------------------------------------------------------
# The fuzz run
# ----------------------------------------------------------------------------------------------


def _fresh(name: str, root: Path, i: int) -> Path:
    out = root / f"case{i}" / name
    shutil.copytree(pretrained_dir() / name, out)
    return out


def fuzz(tmp_path: Path, *, seed: int, per_family: dict[str, int], subprocess_cases: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    i = 0
    for name in FAMILIES:
        good = (pretrained_dir() / name / "model.safetensors").read_bytes()
        for _ in range(per_family["bytes"]):
            i += 1
            ckpt = _fresh(name, tmp_path, i)
            what, payload, must_fail = mutate_bytes(good, rng)
            (ckpt / "model.safetensors").write_bytes(payload)
            tally.record("weights file bytes", f"{name} {what}", check_load(ckpt, must_fail=must_fail))
        for _ in range(per_family["tensors"]):
            i += 1
            ckpt = _fresh(name, tmp_path, i)
            state = load_file(str(ckpt / "model.safetensors"))
            what, must_fail = mutate_tensors(state, rng)
            save_file(state, str(ckpt / "model.safetensors"))
            tally.record(
                "tensors (dtype/NaN/shape/keys)", f"{name} {what}", check_load(ckpt, must_fail=must_fail)
            )
        for _ in range(per_family["config"]):
            i += 1
            ckpt = _fresh(name, tmp_path, i)
            data = json.loads((ckpt / "config.json").read_text())
            what = mutate_config(data, rng)
            (ckpt / "config.json").write_text(json.dumps(data))
            tally.record("config.json", f"{name} {what}", check_load(ckpt, must_fail=False))
    base = peer_state_dict(n_layer=1, n_embd=8)
    for _ in range(per_family["importer"]):
        i += 1
        sd = {k: v.clone() for k, v in base.items()}
        what, must_fail = mutate_tensors(sd, rng)
        if ".attn.bias " in what and ("dropped" in what or " as torch.int" in what or "bool" in what):
            must_fail = False  # kan-gpt's causal mask: optional, checked by value (0/1) and dropped
        if rng.random() < 0.5:
            path = tmp_path / f"peer{i}.safetensors"
            save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
            if rng.random() < 0.4:
                what2, payload, must_fail2 = mutate_bytes(path.read_bytes(), rng)
                path.write_bytes(payload)
                what, must_fail = f"{what}, then {what2}", must_fail or must_fail2
            tally.record("importer input (kan_gpt)", what, check_import(path, must_fail=must_fail))
        else:
            tally.record("importer input (kan_gpt)", what, check_import(sd, must_fail=must_fail))
    # Entry points: in-process through run_main (cheap), plus real subprocesses in the slow budget.
    entries = [
        ("evaluate.py", _evaluate_main, ["python", "evaluate.py"], lambda c: [f"checkpoint={c}"]),
        ("kanzoo.viz", _viz_main, ["-m", "kanzoo.viz"], lambda c: [f"checkpoint={c}", "list=true"]),
        ("kanzoo.convert", _convert_main, ["-m", "kanzoo.convert"], None),
    ]
    good = (pretrained_dir() / FAMILIES[1] / "model.safetensors").read_bytes()
    for k in range(per_family["entry"] + subprocess_cases):
        label, main, cmd, args = entries[k % len(entries)]
        i += 1
        cwd = tmp_path / f"entry{i}"
        cwd.mkdir()
        what, payload, must_fail = mutate_bytes(good, rng)
        if not must_fail:
            what, payload = "empty", b""
        if args is None:
            src = cwd / "peer.safetensors"
            src.write_bytes(payload)
            argv = ["kan_gpt", str(src), str(cwd / "out")]
        else:
            ckpt = _fresh(FAMILIES[1], cwd, 0)
            (ckpt / "model.safetensors").write_bytes(payload)
            argv = args(ckpt)
        if k < per_family["entry"]:
            tally.record(f"{label} (in-process)", what, check_entry_in_process(main, argv, cwd))
        else:
            before = listing(cwd)
            script = cmd[1:] if cmd[0] == "python" else cmd
            try:
                run = run_entry([*script, *argv], cwd=REPO if label == "evaluate.py" else cwd, timeout=300)
                issues = problems(run.returncode, run.stderr)
            except Exception as exc:  # noqa: BLE001 - a timeout is a hang
                issues = [f"{type(exc).__name__}"]
            if listing(cwd) != before:
                issues.append("left files behind")
            tally.record(f"{label} (subprocess)", what, issues)
    return tally


def _assert_clean(tally: Tally) -> None:
    print(f"\ncheckpoint fuzz: {tally.report()}")
    assert not tally.failures, "\n".join(tally.failures[:20])


def test_fuzz_checkpoints_small(tmp_path):
    budget = {"bytes": 6, "tensors": 6, "config": 8, "importer": 8, "entry": 3}
    _assert_clean(fuzz(tmp_path, seed=15, per_family=budget, subprocess_cases=0))


@pytest.mark.slow
def test_fuzz_checkpoints_large(tmp_path):
    budget = {"bytes": 60, "tensors": 60, "config": 80, "importer": 80, "entry": 12}
    _assert_clean(fuzz(tmp_path, seed=1015, per_family=budget, subprocess_cases=6))
