"""Length-grouped training batches, length-sorted evaluation batches, per-batch padding."""

from __future__ import annotations

import numpy as np

from tunelab.nlp.batching import GROUP_FACTOR, grouped_batches, pad_batch, sorted_batches, window_batches
from tunelab.nlp.cache import TokenizedSplit


def _split(lengths: list[int]) -> TokenizedSplit:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.arange(1, offsets[-1] + 1, dtype=np.int32)
    return TokenizedSplit(ids, offsets, np.arange(len(lengths)) % 2)


def test_grouped_batches_cover_every_example_once_and_are_seeded() -> None:
    lengths = np.random.default_rng(0).integers(3, 200, size=1000)
    a = grouped_batches(lengths, 16, np.random.default_rng(7))
    b = grouped_batches(lengths, 16, np.random.default_rng(7))
    c = grouped_batches(lengths, 16, np.random.default_rng(8))
    flat = np.concatenate(a)
    assert sorted(flat.tolist()) == list(range(1000))
    assert all(len(x) <= 16 for x in a)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [x.tolist() for x in a] != [x.tolist() for x in c]


def test_grouped_batches_pad_far_less_than_random_batches() -> None:
    lengths = np.random.default_rng(1).integers(3, 300, size=3200)
    rng = np.random.default_rng(0)
    grouped = grouped_batches(lengths, 16, rng)
    random_batches = np.array_split(rng.permutation(3200), 200)

    def padded(batches: list[np.ndarray]) -> int:
        return sum(int(lengths[b].max()) * len(b) for b in batches)

    # Windows of 4 batches: about two thirds of random batches' padding here (50 gave under 0.6,
    # at the price of accuracy: see test_each_batch_mixes_lengths_of_a_small_window).
    assert padded(grouped) < 0.75 * padded(random_batches)
    # batch order is shuffled: not sorted by length overall
    maxima = [int(lengths[b].max()) for b in grouped]
    assert maxima != sorted(maxima, reverse=True)


def test_each_batch_mixes_lengths_of_a_small_window() -> None:
    # 2,000 distinct lengths, batch 32 (the parity benchmark's shape). A window of 50 batches
    # held 1,600 of them, so each batch spanned ~40 length ranks; a window of 4 batches spans ~500.
    lengths = np.random.default_rng(3).permutation(2000)
    batches = grouped_batches(lengths, 32, np.random.default_rng(0))
    spreads = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    assert np.median(spreads) > 250
    assert sorted(np.concatenate(batches).tolist()) == list(range(2000))


def test_sorting_window_is_small_and_bounded_by_the_data() -> None:
    assert window_batches(2000, 32) == GROUP_FACTOR <= 63 // 4
    assert window_batches(10**6, 32) == GROUP_FACTOR  # large data: still a few batches a window
    assert window_batches(100, 32) == 1  # 4 batches: a quarter is one batch, i.e. random batches
    assert window_batches(0, 32) == 1
    assert window_batches(2000, 32, group_factor=50) == 63 // 4  # at most a quarter of the data


def test_sorted_batches_are_longest_first() -> None:
    lengths = np.array([5, 1, 9, 3, 7])
    batches = sorted_batches(lengths, 2)
    assert [b.tolist() for b in batches] == [[2, 4], [0, 3], [1]]


def test_pad_batch_pads_to_the_longest_example_only() -> None:
    split = _split([3, 5, 2])
    batch = pad_batch(split, np.array([0, 2]), pad_id=0)
    assert batch["input_ids"].shape == (2, 3)
    assert batch["input_ids"][1].tolist() == [9, 10, 0]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [0, 0]
    assert "token_type_ids" not in batch
