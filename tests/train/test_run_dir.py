"""The run directory: nothing of the user's deleted, one writer, storage failures, the model saved
before the final evaluation, the `latest` link (issue 15 items 2, 3, 11, 12; issue 12 item 8)."""

import errno
import json
import os
import threading

import pytest
import torch
from toys import ToyClassifier, toy_data, toy_model

from kanzoo.train import (
    CheckpointWriteError,
    OptimConfig,
    RunDirBusyError,
    RunDirError,
    ScheduleConfig,
    Trainer,
    TrainerConfig,
    read_jsonl,
)
from kanzoo.train.loggers import JsonlLogger
from kanzoo.train.runguard import RunDirLock


def _fit(run_dir, *, model=None, data=None, jsonl=True, **cfg):
    settings = dict(run_dir=str(run_dir), max_steps=4, batch_size=8, progress=False, log_every=2)
    settings.update(cfg)
    trainer = Trainer(
        model=model or toy_model("classification"),
        data=data or toy_data("classification"),
        optim=OptimConfig(lr=1e-2),
        schedule=ScheduleConfig(warmup_steps=1),
        config=TrainerConfig(**settings),
        loggers=[JsonlLogger(path=run_dir / "metrics.jsonl")] if jsonl else [],
        name="toy",
    )
    return trainer, trainer.fit()


def test_files_the_trainer_did_not_create_survive_a_run_even_with_its_prefixes(tmp_path):
    notes = tmp_path / ".old-notes"
    notes.mkdir()
    (notes / "ideas.txt").write_text("keep me")
    (tmp_path / ".tmp-final").mkdir()  # the staging name of final/, but not made by the trainer
    (tmp_path / ".tmp-final" / "mine.txt").write_text("mine")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".tmp-step_00099").mkdir()
    # refused before training starts: the trainer would need those names
    with pytest.raises(FileExistsError, match=r"\.tmp-step_00099 exists and was not created by kanzoo"):
        _fit(tmp_path, jsonl=False)
    (tmp_path / "checkpoints" / ".tmp-step_00099").rmdir()
    with pytest.raises(FileExistsError, match=r"\.tmp-final exists and was not created by kanzoo"):
        _fit(tmp_path, jsonl=False)
    assert (notes / "ideas.txt").read_text() == "keep me"
    assert (tmp_path / ".tmp-final" / "mine.txt").read_text() == "mine"
    assert not (tmp_path / "final").exists()
    (tmp_path / ".tmp-final" / "mine.txt").rename(tmp_path / "mine.txt")
    (tmp_path / ".tmp-final").rmdir()
    _fit(tmp_path, jsonl=False)
    assert (notes / "ideas.txt").read_text() == "keep me" and (tmp_path / "mine.txt").is_file()
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert not list(tmp_path.rglob(".kanzoo-staging"))


def test_the_trainers_own_leftovers_of_a_killed_save_are_removed(tmp_path):
    from kanzoo.train import checkpoint as ckpt

    ckpt.stage(tmp_path / "checkpoints" / "step_00003")  # a save killed half-way
    _fit(tmp_path, jsonl=False)
    assert not (tmp_path / "checkpoints" / ".tmp-step_00003").exists()


def test_a_fresh_run_never_appends_to_existing_metrics(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')
    with pytest.raises(FileExistsError, match="already holds metrics of another run"):
        _fit(tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 9.0}\n'
    # resume=auto of a run killed before its first checkpoint starts over: its records are dropped
    _fit(tmp_path, resume="auto")
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl") if "loss" in r] == [2, 4]


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_runs_lock_is_taken_over(tmp_path, capsys):
    tmp_path.mkdir(exist_ok=True)
    holder = RunDirLock(tmp_path)
    holder.acquire()
    try:
        with pytest.raises(
            RunDirBusyError, match=rf"in use by another training run \(pid {os.getpid()} on host"
        ):
            _fit(tmp_path)
        assert not (tmp_path / "final").exists() and not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.release()
    # a lock file left by a killed run (no live flock): taken over, with a note
    (tmp_path / ".kanzoo.lock").write_text(json.dumps({"pid": 999999, "host": "h", "started": "then"}))
    _fit(tmp_path)
    assert (
        "took over the lock of an earlier run that is no longer running (pid 999999"
        in capsys.readouterr().out
    )
    assert not (tmp_path / ".kanzoo.lock").exists()


def test_run_dir_that_cannot_be_created_is_one_clear_error_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match=r"cannot create run_dir .*file/x: Not a directory"):
        _fit(tmp_path / "file" / "x")
    with pytest.raises(RunDirError, match=r"/dev/null/x"):
        _fit(__import__("pathlib").Path("/dev/null/x"), jsonl=False)
    # a failed start removes the directories it made
    with pytest.raises(ValueError, match="fewer than one global batch"):
        _fit(tmp_path / "new" / "run", batch_size=1000)
    assert not (tmp_path / "new").exists()


def _refusing(monkeypatch, when, err):
    """Make safetensors' writer fail like a full or read-only disk when ``when(path)`` holds."""
    import safetensors.torch as st

    real = st.save_file

    def save_file(tensors, filename, metadata=None):
        if when(str(filename)):
            raise err
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(st, "save_file", save_file)


def test_disk_full_during_a_checkpoint_is_one_line_naming_the_last_good_one(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    full = SafetensorError(
        "Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
        'message: "No space left on device" })'
    )
    _refusing(monkeypatch, lambda f: "step_00004" in f, full)
    with pytest.raises(CheckpointWriteError) as info:
        _fit(tmp_path, checkpoint_every=2, max_steps=6)
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message
    assert "step_00004" in message and "last complete checkpoint is" in message and "step_00002" in message
    assert not (tmp_path / "checkpoints" / ".tmp-step_00004").exists()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00002"]


def test_a_read_only_checkpoint_dir_is_one_clear_line(tmp_path, monkeypatch):
    from kanzoo.train import checkpoint as ckpt

    def stage(final):
        raise OSError(errno.EROFS, "Read-only file system", str(final))

    monkeypatch.setattr(ckpt, "stage", stage)
    with pytest.raises(
        CheckpointWriteError, match=r"cannot write checkpoint .*step_00002: Read-only file system"
    ):
        _fit(tmp_path, checkpoint_every=2)


def test_a_failed_final_save_without_checkpoints_rescues_the_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    _refusing(monkeypatch, lambda f: ".tmp-final" in f, OSError(errno.ENOSPC, "No space left on device"))
    model = ToyClassifier()
    model.save_pretrained = None  # written through safetensors.save_file by the trainer itself
    with pytest.raises(
        CheckpointWriteError,
        match=r"final model .* No space left on device; the trained weights "
        r"were saved to (\S+) instead",
    ) as info:
        _fit(tmp_path, model=model, checkpoint_every=0)
    rescue = str(info.value).split("saved to ")[1].split(" instead")[0]
    saved = load_file(f"{rescue}/model.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(saved[k], v)


class BadVal(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise ValueError(f"val image {i}: label 7 out of range for 3 classes")


def test_the_model_is_saved_before_the_final_evaluation(tmp_path):
    data = toy_data("classification")
    data.val = BadVal()
    with pytest.raises(ValueError, match="label 7 out of range"):
        _fit(tmp_path, data=data, checkpoint_every=0)
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert not (tmp_path / "final" / "train_summary.json").exists()  # written only once complete


def test_latest_link_points_at_the_newest_finished_run_and_is_replaced_atomically(tmp_path, capsys):
    link = tmp_path / "runs" / "toy" / "latest"
    _fit(tmp_path / "runs" / "toy" / "a", latest_link=str(link))
    assert os.readlink(link) == "a" and (link / "final" / "model.safetensors").is_file()
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2] == f"Evaluate it: python evaluate.py checkpoint={tmp_path / 'runs/toy/a/final'}"
    _fit(tmp_path / "elsewhere" / "b", latest_link=str(link))
    assert os.readlink(link) == "../../elsewhere/b" and (link / "final").is_dir()

    from kanzoo.train.outputs import point_latest

    seen_missing, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            if not os.path.islink(link):
                seen_missing.append(1)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(200):  # two "jobs" finishing over and over
        point_latest(link, tmp_path / "runs" / "toy" / ("a" if i % 2 else "b"))
    stop.set()
    t.join()
    assert not seen_missing
    assert not [p for p in link.parent.iterdir() if ".tmp-" in p.name]
