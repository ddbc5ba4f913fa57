"""`python train.py ...` end to end (subprocess): smoke runs of an LM, a classifier and a segmenter
in one Hydra multirun, the `latest` links and the evaluate.py line, and `--help`. (Bad input:
tests/fuzz/test_fuzz_train.py.)"""

import json
import subprocess

import pytest
import torch
from _proc import REPO, env, python


def test_multirun_smoke_trains_lm_classification_and_segmentation(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [
        *python(),
        str(REPO / "train.py"),
        "-m",
        "model=kan_gpt,conv_kan,kan_unet",
        "trainer=smoke",
        "trainer.checkpoint_every=2",
        "logger=jsonl",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    finals = [line for line in proc.stdout.splitlines() if line.startswith("Final checkpoint: ")]
    assert len(finals) == 3
    assert proc.stdout.strip().splitlines()[-1] == finals[-1]
    # no library noise a user cannot act on (accelerate's tied-weight notes, transformers' save bars)
    for noise in ("Removed shared tensor", "Writing model shards", "Loading weights"):
        assert noise not in proc.stdout + proc.stderr
    evaluate = [line for line in proc.stdout.splitlines() if line.startswith("Evaluate it: ")]
    assert evaluate == [
        f.replace("Final checkpoint: ", "Evaluate it: python evaluate.py checkpoint=") for f in finals
    ]
    # runs/<model>/latest (relative to the working directory, like run_dir) -> the finished job
    for job, model in [("0_kan_gpt", "kan_gpt"), ("1_conv_kan", "conv_kan"), ("2_kan_unet", "kan_unet")]:
        link = tmp_path / "runs" / model / "latest"
        assert link.is_symlink() and link.resolve() == (sweep / job).resolve()
        assert (link / "final" / "model.safetensors").is_file()

    import kanzoo

    for job, task in [("1_conv_kan", "classification"), ("2_kan_unet", "segmentation"), ("0_kan_gpt", "lm")]:
        final = sweep / job / "final"
        assert finals.count(f"Final checkpoint: {final}") == 1
        summary = json.loads((final / "train_summary.json").read_text())
        assert summary["task"] == task and summary["steps"] == 3
        assert summary["config"]["data"]["name"] in ("shakespeare", "digits", "shapes")
        records = [json.loads(line) for line in open(sweep / job / "metrics.jsonl")]
        assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
        assert (sweep / job / "loss_curve.png").is_file()
        model = kanzoo.from_pretrained(str(final)).eval()
        with torch.no_grad():
            if task == "lm":
                assert model(input_ids=torch.zeros(1, 8, dtype=torch.long)).logits.shape[:2] == (1, 8)
            else:
                shape = (1, 1, 16, 16) if task == "classification" else (1, 3, 64, 64)
                assert torch.isfinite(model(torch.randn(shape))).all()
    lm_final = sweep / "0_kan_gpt" / "final"
    assert any("token" in p.name for p in lm_final.iterdir()), sorted(p.name for p in lm_final.iterdir())


def test_help_prints_usage_and_the_config_choices(tmp_path, monkeypatch, capsys):
    """What `python train.py --help` runs before Hydra (in-process: no torch start-up per test)."""
    from kanzoo._cli import run_main
    from kanzoo.train import cli

    monkeypatch.chdir(tmp_path)
    doc = (REPO / "train.py").read_text().split('"""')[1]
    with pytest.raises(SystemExit) as exit_:
        run_main(cli.prepare_argv, ["train.py", "--help"], REPO / "configs", doc=doc)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Train a kanzoo model")
    assert "trainer: cpu, default, gpu, smoke" in out and "experiment: kan_vs_mlp_digits" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # two entry points end to end (~1 min)
def test_the_readme_train_then_evaluate_commands_work_as_written(tmp_path):
    """`python train.py model=kan_unet ...`, then the README's
    `python evaluate.py checkpoint=runs/kan_unet/latest/final` and the printed command."""
    train = subprocess.run(
        [*python(), str(REPO / "train.py"), "model=kan_unet", "trainer=smoke"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    lines = train.stdout.strip().splitlines()
    assert lines[-2].startswith("Evaluate it: python evaluate.py checkpoint=") and lines[-2].endswith(
        "/final"
    )
    proc = subprocess.run(
        [
            *python(),
            str(REPO / "evaluate.py"),
            "checkpoint=runs/kan_unet/latest/final",
            "max_samples=4",
            f"output_dir={tmp_path / 'eval'}",
        ],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "eval" / "metrics.json").is_file()
    # and the command exactly as printed
    printed = lines[-2].removeprefix("Evaluate it: python ").split()
    again = subprocess.run(
        [
            *python(),
            str(REPO / printed[0]),
            *printed[1:],
            "max_samples=4",
            f"output_dir={tmp_path / 'eval2'}",
        ],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["optim.lr=abc"], "error: optim.lr must be a finite number > 0, got 'abc'"),
        (["trainer.batch_size=2.5"], "error: trainer.batch_size must be an integer >= 1, got 2.5"),
        (["trainer.max_steps=1e400"], "error: trainer.max_steps must be an integer >= 1, got inf"),
        (
            ["max_steps=1e400"],
            "error: unknown setting 'max_steps' (did you mean recipe.max_steps or trainer.max_steps?)",
        ),
        (["optim.betas=[0.9]"], "error: optim.betas must be two numbers in [0, 1)"),
        (["trainer=smok"], "error: unknown trainer config 'smok'; did you mean smoke?"),
        (["logger=wandbb"], "error: unknown logger config 'wandbb'; did you mean wandb?"),
        (
            ["experiment=kan_vs_twin/lmm"],
            "error: unknown experiment config 'kan_vs_twin/lmm'; did you mean kan_vs_twin/lm",
        ),
        (["trainer.max_step=3"], "error: unknown setting 'trainer.max_step' (did you mean trainer.max_steps"),
        (["seed=abc"], "error: seed must be an integer in [0, 4294967295], got 'abc'"),
        (["run_dir=/dev/null/x"], "error: run_dir=/dev/null/x: /dev/null is not a directory"),
    ],
)
def test_bad_command_lines_fail_with_one_line_naming_the_setting(
    args, expected, tmp_path, monkeypatch, capsys
):
    """In-process (what train.py runs before Hydra): one line, exit status 2, nothing created."""
    from kanzoo._cli import run_main
    from kanzoo.train import cli

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        run_main(cli.prepare_argv, ["train.py", *args, "trainer=smoke"], REPO / "configs")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
