"""Left padding, column trimming and the training pairs of PrefixSamples / EvalSamples."""

from __future__ import annotations

import numpy as np

from pitrec.data.batches import PAD, EvalSamples, PrefixSamples, left_pad, trim_columns


def arrays(*seqs):
    return [np.array(s, dtype=np.int64) for s in seqs]


def test_left_pad_keeps_the_most_recent_items_right_aligned():
    out = left_pad(arrays([1, 2, 3], [4], []), 2)
    assert out.tolist() == [[2, 3], [PAD, 4], [PAD, PAD]]
    assert out.dtype == np.int64
    assert left_pad(arrays([1, 2]), 0).shape == (1, 0)


def test_trim_columns():
    assert trim_columns(np.array([[PAD, PAD, 3], [PAD, 4, 5]])).tolist() == [[PAD, 3], [4, 5]]
    assert trim_columns(np.array([[PAD, PAD], [PAD, PAD]])).tolist() == [[PAD], [PAD]]
    assert trim_columns(np.array([[1, 2]])).tolist() == [[1, 2]]


def test_prefix_samples_history_is_the_previous_items():
    train = arrays([10, 11, 12, 13], [20], [30, 31])
    samples = PrefixSamples(train, max_history=2)
    assert len(samples) == 4  # 3 + 0 + 1 pairs
    pairs = sorted(zip(samples.user.tolist(), samples.target.tolist(),
                       [tuple(h[h != PAD].tolist()) for h in samples.history]))
    assert pairs == [(0, 11, (10,)), (0, 12, (10, 11)), (0, 13, (11, 12)), (2, 31, (30,))]
    for u, t, h in zip(samples.user, samples.target, samples.history):
        seq = train[u].tolist()
        end = seq.index(int(t))
        assert h[h != PAD].tolist() == seq[max(0, end - 2):end]


def test_prefix_batches_cover_every_pair_once_and_trim():
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 50, size=n) for n in rng.integers(1, 12, size=40)]
    samples = PrefixSamples(train, max_history=5)
    for bucket in (True, False):
        idx = samples.batch_indices(7, np.random.default_rng(1), bucket=bucket)
        assert sorted(np.concatenate(idx).tolist()) == list(range(len(samples)))
    kept = samples.batch_indices(7, np.random.default_rng(1), drop_last=True)
    assert all(len(b) == 7 for b in kept) and len(kept) == len(samples) // 7
    batch = samples.batch(np.array([0, 1]))
    assert batch.history.shape[1] == max(1, int(samples.length[[0, 1]].max()))
    assert batch.target.tolist() == samples.target[[0, 1]].tolist()


def test_eval_samples_cut_to_max_history_and_batch_in_order():
    samples = EvalSamples(arrays([1, 2, 3, 4], [5]), np.array([9, 8]), max_history=3)
    assert samples.history.tolist() == [[2, 3, 4], [PAD, PAD, 5]]
    batches = list(samples.batches(1))
    assert [b.target.tolist() for b in batches] == [[9], [8]]
    assert batches[1].history.tolist() == [[5]] and batches[1].user.tolist() == [1]
