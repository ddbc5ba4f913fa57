"""Fuzzing train.py's command line, the trainer/optim/schedule/logger settings and training faults.

Every hostile case must end in ONE `error: ...` line (exit status 2 through ``kanzoo._cli``), with
no traceback, nothing left in the working or run directory, within a time limit per case. A
settings case may also be accepted, but then every value must hold its documented type and range.

Cases are seeded (reproducible). The default suite runs a small budget per category; ``-m slow``
runs every systematic case plus a large random budget. Counts per category are printed
(``pytest -s``) and attached to the test report (``record_property``).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import shutil
import string
import sys
from pathlib import Path

import pytest
from _cli_case import REPO, CaseTimeout, Tally, listing, problems, run_entry, time_limit

CONFIG_DIR = REPO / "configs"
if str(REPO / "tests" / "train") not in sys.path:
    sys.path.insert(0, str(REPO / "tests" / "train"))  # the toy models and data
CASE_LIMIT_S = 60.0  # per case; generous for a loaded 2-core machine (a case takes ~1 s quiet)

# ----------------------------------------------------------------------------- CLI
#: Bad values per setting (written independently of kanzoo's rules, from the documented ranges).
BAD_VALUES = {
    "trainer.max_steps": ["0", "-1", "1.5", "1e400", "abc", "true", "[1]", "null", "inf"],
    "trainer.batch_size": ["0", "2.5", "abc", "-3", "{a:1}", "null"],
    "trainer.grad_accum_steps": ["0", "1.5", "x"],
    "trainer.eval_batch_size": ["0", "-1", "0.5", "abc"],
    "trainer.device": ["tpu", "GPU", "1", "[cpu]"],
    "trainer.mixed_precision": ["fp8", "yes", "16"],
    "trainer.clip_grad_norm": ["-1", "nan", "abc", "[1]"],
    "trainer.log_every": ["0", "-2", "0.5"],
    "trainer.eval_every": ["-1", "1.5", "x"],
    "trainer.eval_max_batches": ["0", "-1", "2.5"],
    "trainer.checkpoint_every": ["-5", "x"],
    "trainer.keep_checkpoints": ["0", "1.5"],
    "trainer.progress": ["maybe", "1", "0.0", "[true]"],
    "trainer.detect_nonfinite": ["sometimes", "2"],
    "trainer.compile": ["fast", "1"],
    "trainer.seed": ["-1", "4294967296", "1.5", "abc"],
    "trainer.num_workers": ["-1", "1.5"],
    "trainer.num_threads": ["0", "-2", "x"],
    "trainer.dist_timeout_s": ["0", "-1", "inf", "nan", "abc"],
    "trainer.heartbeat_s": ["-1", "inf", "x"],
    "trainer.grid_update_samples": ["0", "x"],
    "trainer.resume": ["[a]", "1"],
    "optim.lr": ["abc", "0", "-1e-3", "inf", "nan", "[0.1]", "true"],
    "optim.weight_decay": ["-1", "nan", "abc"],
    "optim.betas": ["[0.9]", "[0.9,1.0]", "[a,b]", "0.9", "[0.9,0.99,0.999]", "[-0.1,0.9]"],
    "optim.eps": ["0", "-1e-8", "x"],
    "optim.name": ["rmsprop"],
    "optim.schedule.name": ["cosin", "step", "1"],
    "optim.schedule.warmup_steps": ["-1", "1.5", "x"],
    "optim.schedule.warmup_ratio": ["1.0", "-0.1", "2", "x"],
    "optim.schedule.min_lr_ratio": ["1.5", "-0.1", "x"],
    "logger.jsonl.path": ["[a]", "1"],
    "seed": ["-1", "abc", "1.5"],
    "run_dir": ["/dev/null/x"],
}
BAD_CHOICES = [
    "trainer=smok",
    "optim=adamx",
    "logger=jsonll",
    "logger=wandbb",
    "experiment=foo",
    "experiment=kan_vs_twin/lmm",
    "model=kan_gptt",
    "data=shakespear",
]
MALFORMED = [
    "trainer.max_steps",
    "=3",
    "trainer.max_steps==3",
    "trainer.max_steps=[",
    "trainer.max_steps='",
    "seed=0,1",
    "--bogus",
    "trainer..max_steps=3",
    "optim.lr=${nope}",
    "optim.lr=${oc.env:KANZOO_NO_SUCH_VAR}",
    "trainer.max_steps=${trainer.max_steps}",
]
VALID_NOISE = ["trainer=smoke", "logger=none", "seed=1", "trainer.log_every=2", "optim.lr=0.01"]


def _typos(key: str, rng: random.Random) -> str:
    head, _, last = key.rpartition(".")
    i = rng.randrange(len(last))
    kind = rng.choice(["drop", "swap", "add"])
    if kind == "drop" and len(last) > 2:
        last = last[:i] + last[i + 1 :]
    elif kind == "swap" and i < len(last) - 1:
        last = last[:i] + last[i + 1] + last[i] + last[i + 2 :]
    else:
        last = last[:i] + rng.choice(string.ascii_lowercase) + last[i:]
    return f"{head}.{last}" if head else last


def _known_keys() -> set[str]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("train", overrides=["trainer=smoke"]), resolve=False)
    GlobalHydra.instance().clear()
    keys: set[str] = set()

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                path = f"{prefix}.{k}" if prefix else k
                keys.add(path)
                walk(v, path)

    walk(cfg, "")
    return keys


def cli_cases(n_random: int, *, systematic: bool, seed: int = 0) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    known = _known_keys()
    cases = []
    if systematic:
        cases += [("bad value", [f"{k}={v}"]) for k, values in BAD_VALUES.items() for v in values]
        cases += [("bad choice", [c]) for c in BAD_CHOICES] + [("malformed", [m]) for m in MALFORMED]
    for _ in range(n_random):
        kind = rng.choice(["bad value", "bad value", "unknown key", "bad choice", "malformed"])
        if kind == "bad value":
            key = rng.choice(sorted(BAD_VALUES))
            bad = [f"{key}={rng.choice(BAD_VALUES[key])}"]
        elif kind == "unknown key":
            typo = _typos(rng.choice(sorted(k for k in BAD_VALUES if k in known)), rng)
            if typo in known:
                continue
            bad = [f"{typo}=1"]
        elif kind == "bad choice":
            bad = [rng.choice(BAD_CHOICES)]
        else:
            bad = [rng.choice(MALFORMED)]
        keys = {a.split("=")[0] for a in bad}
        # a valid override of the same key would win (Hydra: the last one counts)
        noise = [a for a in rng.sample(VALID_NOISE, rng.randint(0, 2)) if a.split("=")[0] not in keys]
        args = noise + bad
        rng.shuffle(args)
        if "trainer=smoke" not in args and not any(a.startswith("trainer=") for a in args):
            args.append("trainer=smoke")
        cases.append((kind, args))
    return cases


def _run_cli_case(args: list[str], cwd: Path, capsys) -> list[str]:
    from kanzoo._cli import run_main
    from kanzoo.train import cli

    before, here = listing(cwd), os.getcwd()
    os.chdir(cwd)
    code, issues = 0, []
    try:
        with time_limit(CASE_LIMIT_S):
            run_main(cli.prepare_argv, ["train.py", *args], CONFIG_DIR)
    except SystemExit as exit_:
        code = exit_.code
    except CaseTimeout as err:
        issues.append(str(err))
    except Exception as err:  # a traceback in a real run
        issues.append(f"raised {type(err).__name__}: {' '.join(str(err).split())[:120]}")
    finally:
        os.chdir(here)
    err = capsys.readouterr().err
    if not issues:
        issues = problems(code, err) if code != 0 else ["accepted"]
    left = listing(cwd) - before
    if left:
        issues.append(f"left {sorted(left)[:3]}")
    return issues


def _fuzz_cli(tmp_path, capsys, record_property, *, n_random, systematic):
    tally = Tally()
    for i, (kind, args) in enumerate(cli_cases(n_random, systematic=systematic)):
        cwd = tmp_path / f"case{i}"
        cwd.mkdir()
        tally.record(kind, " ".join(args), _run_cli_case(args, cwd, capsys))
    os.environ.pop("KANZOO_NEW_OUTPUT", None)
    record_property("fuzz_cli", tally.report())
    print(f"\nfuzz train.py command line: {tally.report()}")
    assert not tally.failures, "\n".join(tally.failures[:20])


def test_fuzz_command_line_small(tmp_path, capsys, record_property):
    _fuzz_cli(tmp_path, capsys, record_property, n_random=24, systematic=False)


@pytest.mark.slow
def test_fuzz_command_line_large(tmp_path, capsys, record_property):
    _fuzz_cli(tmp_path, capsys, record_property, n_random=300, systematic=True)


def test_real_processes_exit_2_with_one_line_and_leave_nothing(tmp_path):
    """A real `python train.py` run that fails inside the Hydra job (after Hydra made its run dir);
    the checks before Hydra runs are fuzzed in-process above."""
    for args in (["model=cnn", "data=image_folder", "data.path=/no/such/folder"],):
        cwd = tmp_path / args[0].split("=")[0]
        cwd.mkdir()
        proc = run_entry([str(REPO / "train.py"), *args, "trainer=smoke"], cwd=cwd, timeout=300)
        assert problems(proc.returncode, proc.stderr) == [], proc.stderr[-2000:]
        assert listing(cwd) == set(), sorted(listing(cwd))


# ------------------------------------------------------------------------ settings
def _check_settings_example(values: dict, what: str) -> list[str]:
    """Build a settings object from ``values``: a one-line ValueError, or valid values."""
    from kanzoo.train import OptimConfig, ScheduleConfig, TrainerConfig
    from kanzoo.train.loggers import check_logger_spec

    build = {
        "trainer": lambda v: TrainerConfig.from_dict({"run_dir": "x", **v}),
        "optim": OptimConfig.from_dict,
        "schedule": ScheduleConfig.from_dict,
        "logger": check_logger_spec,
    }[what]
    try:
        obj = build(values)
    except ValueError as err:
        text = str(err)
        if "\n" in text or not text:
            return ["a multi-line or empty message"]
        named = [k for k in (values if isinstance(values, dict) else {}) if str(k) in text or repr(k) in text]
        return [] if named or "must be a mapping" in text else [f"message names no setting: {text[:80]}"]
    except Exception as err:
        return [f"raised {type(err).__name__}: {str(err)[:80]}"]
    return _invariants(obj, what)


def _invariants(obj, what: str) -> list[str]:
    """Documented types and ranges of an accepted settings object (independent of kanzoo's rules)."""
    bad = []

    def need(cond, name):
        if not cond:
            bad.append(f"accepted {what}.{name}={getattr(obj, name, obj)!r}")

    def is_int(x):
        return isinstance(x, int) and not isinstance(x, bool)

    def is_num(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)

    if what == "trainer":
        for name in (
            "max_steps",
            "batch_size",
            "grad_accum_steps",
            "log_every",
            "keep_checkpoints",
            "grid_update_samples",
        ):
            need(is_int(getattr(obj, name)) and getattr(obj, name) >= 1, name)
        for name in ("eval_every", "checkpoint_every", "grid_update_every", "num_workers"):
            need(is_int(getattr(obj, name)) and getattr(obj, name) >= 0, name)
        for name in ("eval_batch_size", "eval_max_batches", "num_threads"):
            v = getattr(obj, name)
            need(v is None or (is_int(v) and v >= 1), name)
        for name in (
            "progress",
            "compile",
            "detect_nonfinite",
            "save_best",
            "save_pretrained_in_checkpoints",
        ):
            need(isinstance(getattr(obj, name), bool), name)
        need(obj.device in ("auto", "cpu", "gpu"), "device")
        need(obj.mixed_precision in ("auto", "no", "bf16", "fp16"), "mixed_precision")
        need(is_int(obj.seed) and 0 <= obj.seed < 2**32, "seed")
        need(
            obj.clip_grad_norm is None or (is_num(obj.clip_grad_norm) and obj.clip_grad_norm >= 0),
            "clip_grad_norm",
        )
        need(is_num(obj.dist_timeout_s) and 0 < obj.dist_timeout_s < math.inf, "dist_timeout_s")
        need(is_num(obj.heartbeat_s) and 0 <= obj.heartbeat_s < math.inf, "heartbeat_s")
    elif what == "optim":
        need(is_num(obj.lr) and 0 < obj.lr < math.inf, "lr")
        need(is_num(obj.weight_decay) and 0 <= obj.weight_decay < math.inf, "weight_decay")
        need(is_num(obj.eps) and 0 < obj.eps < math.inf, "eps")
        need(len(obj.betas) == 2 and all(is_num(b) and 0 <= b < 1 for b in obj.betas), "betas")
    elif what == "schedule":
        need(obj.name in ("cosine", "linear", "constant"), "name")
        need(obj.warmup_steps is None or (is_int(obj.warmup_steps) and obj.warmup_steps >= 0), "warmup_steps")
        need(is_num(obj.warmup_ratio) and 0 <= obj.warmup_ratio < 1, "warmup_ratio")
        need(is_num(obj.min_lr_ratio) and 0 <= obj.min_lr_ratio <= 1, "min_lr_ratio")
    return bad


SETTING_KEYS = {
    "trainer": [
        "max_steps",
        "batch_size",
        "eval_batch_size",
        "device",
        "mixed_precision",
        "seed",
        "clip_grad_norm",
        "log_every",
        "eval_max_batches",
        "checkpoint_every",
        "keep_checkpoints",
        "progress",
        "compile",
        "num_threads",
        "dist_timeout_s",
        "heartbeat_s",
        "resume",
        "max_step",
    ],
    "optim": ["lr", "weight_decay", "betas", "eps", "name", "fused", "lrr"],
    "schedule": ["name", "warmup_steps", "warmup_ratio", "min_lr_ratio", "warmup"],
    "logger": ["jsonl", "wandb", "tensorboard"],
}


def _fuzz_settings(record_property, n_examples):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=6),
        st.sampled_from(["cpu", "auto", "bf16", "cosine", "adamw", "1e-3", "nan", "inf", "true"]),
    )
    values = st.one_of(
        scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=3), scalars, max_size=2)
    )
    tally = Tally()
    for what, keys in SETTING_KEYS.items():
        if what == "logger":
            inner = st.dictionaries(
                st.sampled_from(["path", "project", "mode", "tags", "name", "pth"]), values, max_size=3
            )
            strategy = st.one_of(
                st.dictionaries(st.sampled_from(keys), st.one_of(st.none(), inner, values), max_size=2),
                values,
            )
        else:
            strategy = st.dictionaries(st.sampled_from(keys), values, max_size=4)

        def make_check(what, strategy):
            @settings(
                max_examples=n_examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(strategy)
            def check(example):
                tally.record(what, repr(example)[:120], _check_settings_example(example, what))

            return check

        make_check(what, strategy)()
    record_property("fuzz_settings", tally.report())
    print(f"\nfuzz trainer/optim/schedule/logger settings: {tally.report()}")
    assert not tally.failures, "\n".join(tally.failures[:20])


def test_fuzz_settings_small(record_property):
    _fuzz_settings(record_property, 100)


@pytest.mark.slow
def test_fuzz_settings_large(record_property):
    _fuzz_settings(record_property, 3000)


# -------------------------------------------------------------------------- faults
def _toy_trainer(run_dir: Path, model=None, **cfg):
    from toys import toy_data, toy_model

    from kanzoo.train import OptimConfig, Trainer, TrainerConfig
    from kanzoo.train.loggers import JsonlLogger

    settings = dict(
        run_dir=str(run_dir),
        max_steps=8,
        batch_size=8,
        progress=False,
        log_every=2,
        checkpoint_every=4,
        seed=1,
    )
    settings.update(cfg)
    return Trainer(
        model=model or toy_model("lm", dropout=0.1),
        data=toy_data("lm"),
        optim=OptimConfig(lr=5e-3),
        config=TrainerConfig(**settings),
        loggers=[JsonlLogger(path=run_dir / "metrics.jsonl")],
        name="toy",
    )


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A run killed after its step-4 checkpoint (the directory a resume starts from)."""
    root = tmp_path_factory.mktemp("killed")
    trainer = _toy_trainer(root / "run", max_steps=4)
    trainer.fit()
    shutil.rmtree(root / "run" / "final")
    (root / "run" / "train_summary.json").unlink()
    return root / "run"


CHECKPOINT_FILES = [
    "model.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "scheduler.json",
    "process_0.json",
    "process_0.safetensors",
    "trainer_state.json",
    "model/model.safetensors",
]


def _mutations(rng: random.Random, n: int, systematic: bool):
    kinds = [
        "truncate",
        "random bytes",
        "empty",
        "pickle",
        "json list",
        "json string",
        "json deep",
        "flip a byte",
        "delete",
    ]
    pairs = [(f, k) for f in CHECKPOINT_FILES for k in kinds] if systematic else []
    pairs += [(rng.choice(CHECKPOINT_FILES), rng.choice(kinds)) for _ in range(n)]
    # without its completion marker a checkpoint is an interrupted save: resume=auto starts over
    return [p for p in pairs if p != ("trainer_state.json", "delete")]


def _mutate(path: Path, kind: str, rng: random.Random) -> None:
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[: rng.randrange(max(len(data), 1))])
    elif kind == "random bytes":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"state": [1, 2, 3]}))
    elif kind == "json list":
        path.write_text("[1, 2, 3]")
    elif kind == "json string":
        path.write_text('"os.system"')
    elif kind == "json deep":
        path.write_text("[" * 5000 + "]" * 5000)
    elif kind == "flip a byte":
        i = rng.randrange(len(data))
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1 :])
    elif kind == "delete":
        path.unlink()


def _run_fault(make, expect_failed_start: bool, run_dir: Path) -> list[str]:
    from kanzoo.train import TrainingError

    before = listing(run_dir)
    try:
        with time_limit(CASE_LIMIT_S):
            make().fit()
    except (ValueError, OSError, TrainingError) as err:
        text = str(err)
        issues = [] if text and "\n" not in text else ["a multi-line or empty message"]
    except CaseTimeout as err:
        return [str(err)]
    except Exception as err:
        return [f"raised {type(err).__name__}: {' '.join(str(err).split())[:120]}"]
    else:
        return ["resumed from a damaged checkpoint" if expect_failed_start else "no error"]
    if expect_failed_start and listing(run_dir) != before:
        issues.append(f"a failed start changed the run dir: {sorted(listing(run_dir) ^ before)[:4]}")
    return issues


def _fuzz_faults(killed_run, tmp_path, record_property, *, n, systematic, monkeypatch):
    rng = random.Random(1)
    tally = Tally()
    for i, (name, kind) in enumerate(_mutations(rng, n, systematic)):
        run = tmp_path / f"ckpt{i}"
        shutil.copytree(killed_run, run, symlinks=True)
        _mutate(run / "checkpoints" / "step_00004" / name, kind, rng)
        issues = _run_fault(lambda run=run: _toy_trainer(run, resume="auto"), True, run)
        tally.record("damaged checkpoint", f"{name}: {kind}", issues)

    # a live second writer, a run_dir that is a file, a checkpoint of another model size
    from kanzoo.train.runguard import RunDirLock

    run = tmp_path / "locked"
    shutil.copytree(killed_run, run, symlinks=True)
    lock = RunDirLock(run)
    lock.acquire()
    tally.record("run dir", "held lock", _run_fault(lambda: _toy_trainer(run, resume="auto"), True, run))
    lock.release()
    (tmp_path / "afile").write_text("x")
    tally.record(
        "run dir",
        "run_dir is a file",
        _run_fault(lambda: _toy_trainer(tmp_path / "afile" / "r"), True, tmp_path),
    )
    state = killed_run / "checkpoints" / "step_00004" / "trainer_state.json"
    for key, value in [
        ("step", -1),
        ("step", "x"),
        ("epoch_samples", 3),
        ("history", 5),
        ("world_size", 0),
        ("files", [1]),
        ("step", 10**30),
    ]:
        run = tmp_path / f"state_{key}_{value}"[:60]
        shutil.copytree(killed_run, run, symlinks=True)
        doc = json.loads(state.read_text())
        doc[key] = value
        (run / "checkpoints" / "step_00004" / "trainer_state.json").write_text(json.dumps(doc))
        issues = _run_fault(lambda run=run: _toy_trainer(run, resume="auto"), True, run)
        tally.record("trainer state", f"{key}={value!r}", issues)

    # training faults: they end the run with one line (not failed starts: outputs may exist)
    import torch

    class InfGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * math.inf

    from toys import toy_model

    for at in rng.sample(range(1, 8), 2 if not systematic else 7):
        nan_model, grad_model = toy_model("lm"), toy_model("lm")
        for model, how in ((nan_model, "nan loss"), (grad_model, "inf gradient")):
            forward, calls = model.forward, [0]

            def faulty(*a, _forward=forward, _calls=calls, _how=how, _model=model, _at=at, **k):
                _calls[0] += _model.training
                out = _forward(*a, **k)
                if _calls[0] > _at and out.loss is not None:
                    out.loss = out.loss * math.nan if _how == "nan loss" else InfGrad.apply(out.loss)
                return out

            model.forward = faulty
            run = tmp_path / f"{how.replace(' ', '_')}_{at}"
            issues = _run_fault(lambda run=run, model=model: _toy_trainer(run, model=model), False, run)
            tally.record("training fault", f"{how} after {at} steps", issues)

    # the storage refuses the k-th file the trainer writes
    import safetensors.torch as st

    real = st.save_file
    for k in rng.sample(range(1, 9), 3 if not systematic else 8):  # 8 files per run: 4 per checkpoint
        count = [0]

        def refusing(tensors, filename, metadata=None, _count=count, _k=k):
            _count[0] += 1
            if _count[0] == _k:
                raise OSError(28, "No space left on device", str(filename))
            return real(tensors, filename, metadata=metadata)

        monkeypatch.setattr(st, "save_file", refusing)
        run = tmp_path / f"full_{k}"
        issues = _run_fault(lambda run=run: _toy_trainer(run), False, run)
        monkeypatch.setattr(st, "save_file", real)
        if not issues:
            leftovers = [p for p in listing(run) if ".tmp-" in p or ".kanzoo.lock" in p]
            issues = [f"left {leftovers[:3]}"] if leftovers else []
        tally.record("storage", f"save #{k} fails", issues)
    record_property("fuzz_faults", tally.report())
    print(f"\nfuzz training faults: {tally.report()}")
    assert not tally.failures, "\n".join(tally.failures[:20])


def test_fuzz_training_faults_small(killed_run, tmp_path, record_property, monkeypatch):
    _fuzz_faults(killed_run, tmp_path, record_property, n=10, systematic=False, monkeypatch=monkeypatch)


@pytest.mark.slow
def test_fuzz_training_faults_large(killed_run, tmp_path, record_property, monkeypatch):
    _fuzz_faults(killed_run, tmp_path, record_property, n=60, systematic=True, monkeypatch=monkeypatch)
