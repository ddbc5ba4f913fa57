"""Deterministic sharded data order: DDP sees what one process sees, resume skips exactly."""

import pytest

from kanzoo.train.sampler import ShardedBatchSampler, ShardedEvalSampler, epoch_permutation


def _batches(world, rank, batch, epoch=0, start=0, n=50, seed=1):
    s = ShardedBatchSampler(num_samples=n, batch_size=batch, world_size=world, rank=rank, seed=seed)
    s.set_epoch(epoch, start)
    return list(s)


def test_ranks_partition_the_single_process_global_batches():
    single = _batches(1, 0, 8)
    r0, r1 = _batches(2, 0, 4), _batches(2, 1, 4)
    assert len(single) == len(r0) == len(r1) == 50 // 8
    for g, a, b in zip(single, r0, r1):
        assert g == a + b


def test_epoch_is_a_permutation_without_repeats_and_changes_per_epoch():
    flat = [i for b in _batches(1, 0, 10) for i in b]
    assert sorted(flat) == list(range(50))
    assert epoch_permutation(50, seed=1, epoch=0) != epoch_permutation(50, seed=1, epoch=1)
    assert epoch_permutation(50, seed=1, epoch=3) == epoch_permutation(50, seed=1, epoch=3)
    assert epoch_permutation(5, seed=1, epoch=0, shuffle=False) == [0, 1, 2, 3, 4]


def test_resume_start_skips_exactly_the_consumed_batches():
    full = _batches(2, 1, 4, epoch=2)
    assert _batches(2, 1, 4, epoch=2, start=3) == full[3:]
    with pytest.raises(ValueError, match="outside epoch"):
        _batches(1, 0, 8, start=100)


def test_dataset_smaller_than_a_global_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ShardedBatchSampler(num_samples=5, batch_size=4, world_size=2, rank=0)


def test_eval_shards_cover_every_index_once():
    seen = []
    for rank in range(3):
        s = ShardedEvalSampler(num_samples=20, batch_size=3, world_size=3, rank=rank)
        seen += [i for b in s for i in b]
    assert sorted(seen) == list(range(20))
    assert len(ShardedEvalSampler(num_samples=20, batch_size=3, max_batches=2)) == 2
