"""Atomic checkpoint directories: publish, completeness, pruning, stale leftovers."""

import json

import pytest

from kanzoo.train import checkpoint as ckpt


def _stage(root, step, *, complete=True, payload="x"):
    final = root / ckpt.checkpoint_name(step)
    tmp = ckpt.stage(final)
    (tmp / "weights.bin").write_text(payload)
    if complete:
        ckpt.write_json_atomic(tmp / ckpt.STATE_FILE, {"step": step})
    return tmp, final


def test_publish_renames_and_replaces_atomically(tmp_path):
    tmp, final = _stage(tmp_path, 5, payload="old")
    ckpt.publish(tmp, final)
    assert not tmp.exists() and (final / "weights.bin").read_text() == "old"
    tmp2, _ = _stage(tmp_path, 5, payload="new")
    ckpt.publish(tmp2, final)
    assert (final / "weights.bin").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00005"]  # no .old-/.tmp- left


def test_incomplete_and_staging_dirs_are_never_the_latest(tmp_path):
    for step in (10, 20):
        ckpt.publish(*_stage(tmp_path, step))
    _stage(tmp_path, 30)  # killed before the rename: only .tmp-step_00030 exists
    (tmp_path / "step_00040").mkdir()  # no completion marker
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [10, 20]
    assert ckpt.latest_checkpoint(tmp_path).name == "step_00020"
    ckpt.remove_stale_tmp(tmp_path)
    assert not (tmp_path / ".tmp-step_00030").exists()
    assert ckpt.latest_checkpoint(tmp_path / "missing") is None
    # an unmarked entry under a name the trainer needs is never deleted: refused
    (tmp_path / ".tmp-step_00050").mkdir()
    with pytest.raises(ckpt.NotOursError, match="not created by kanzoo"):
        ckpt.remove_stale_tmp(tmp_path)
    assert (tmp_path / ".tmp-step_00050").is_dir()


def test_publish_replaces_only_the_trainers_own_old_dirs(tmp_path):
    ckpt.publish(*_stage(tmp_path, 1, payload="a"))
    (tmp_path / ".old-step_00001").mkdir()  # not the trainer's
    tmp, final = _stage(tmp_path, 1, payload="b")
    with pytest.raises(ckpt.NotOursError):
        ckpt.publish(tmp, final)
    assert (final / "weights.bin").read_text() == "a" and (tmp_path / ".old-step_00001").is_dir()


def test_prune_keeps_the_newest(tmp_path):
    for step in (1, 2, 3, 4, 100):
        ckpt.publish(*_stage(tmp_path, step))
    deleted = ckpt.prune(tmp_path, keep=2)
    assert sorted(p.name for p in deleted) == ["step_00001", "step_00002", "step_00003"]
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 100]


def test_read_state_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt.read_state(tmp_path / "nope")
    (tmp_path / "step_00001").mkdir()
    with pytest.raises(ValueError, match="not a complete kanzoo checkpoint"):
        ckpt.read_state(tmp_path / "step_00001")


def test_write_json_atomic_leaves_no_temp_file(tmp_path):
    ckpt.write_json_atomic(tmp_path / "a.json", {"x": float("nan")})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert json.loads((tmp_path / "a.json").read_text(), parse_constant=str) == {"x": "NaN"}
