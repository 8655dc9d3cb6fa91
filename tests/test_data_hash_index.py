"""The near-duplicate index (data/hash_index.py) returns exactly the pairs of the all-pairs search."""

from __future__ import annotations

import numpy as np
import pytest

from tumorlens.data import hash_index
from tumorlens.data.checks import hamming_pairs
from tumorlens.data.hash_index import block_masks, pairs_within


def brute(ha, hb, t):
    """Tiny all-pairs reference, independent of the module: (i, j, d) triples, i < j when hb is None."""
    same = hb is None
    hb = ha if same else hb
    d = np.array([[bin(int(x) ^ int(y)).count("1") for y in hb] for x in ha]).reshape(len(ha), len(hb))
    return sorted((i, j, int(d[i, j])) for i, j in zip(*np.nonzero(d <= t)) if not same or i < j)


def triples(res):
    return list(zip(*(r.tolist() for r in res)))


def planted(n, t, rng, per_distance=6):
    """Random hashes with pairs planted at distances 0..t+1 (t+1: just outside the threshold)."""
    h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    idx = rng.permutation(n)
    k = 0
    for dist in range(t + 2):
        for _ in range(per_distance):
            a, b = idx[k], idx[k + 1]
            k += 2
            bits = rng.choice(64, dist, replace=False)
            h[b] = h[a] ^ np.uint64(sum(1 << int(x) for x in bits))
    return h


@pytest.mark.parametrize("t", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("method", ["index", "auto"])
def test_index_gives_exactly_the_brute_force_pairs(t, method):
    rng = np.random.default_rng(t)
    a = planted(300, t, rng)
    got = triples(pairs_within(a, None, t, method=method))
    assert got == brute(a, None, t)
    dists = {d for _, _, d in got}
    assert set(range(t + 1)) <= dists and t + 1 not in dists  # planted pairs inside found, outside not
    b = a[rng.permutation(300)[:80]] ^ (np.uint64(1) << rng.integers(0, 64, 80).astype(np.uint64))
    assert triples(pairs_within(a, b, t, method=method)) == brute(a, b, t)


def test_blocks_are_disjoint_and_cover_64_bits():
    for t in (0, 2, 7, 62):
        masks = [int(m) for _, m in block_masks(t)]
        assert len(masks) == t + 1 and sum(bin(m).count("1") for m in masks) == 64
        union = 0
        for m in masks:
            assert union & m == 0  # disjoint
            union |= m
        assert union == 2**64 - 1


def test_many_identical_hashes_and_a_crowded_block_in_small_chunks(monkeypatch):
    # Chunks of 1,000 candidates: a bucket of 150 identical hashes (11,175 pairs) and 120 hashes
    # sharing the first block's bits are expanded over many chunks, each pair still found once.
    monkeypatch.setattr(hash_index, "BLOCK_PAIRS", 1_000)
    rng = np.random.default_rng(7)
    a = rng.integers(0, 2**64 - 1, 400, dtype=np.uint64, endpoint=True)
    a[:150] = a[0]
    shift, mask = block_masks(2)[0]
    a[150:270] = (a[150:270] & ~mask) | np.uint64(5 << shift)
    a[300] = a[0] ^ np.uint64(1 << 63)
    got = triples(pairs_within(a, None, 2, method="index"))
    assert got == brute(a, None, 2)
    assert len(got) == 150 * 149 // 2 + 150


def test_empty_and_single_input():
    one = np.array([123], dtype=np.uint64)
    empty = np.zeros(0, np.uint64)
    for ha, hb in [(empty, None), (one, None), (empty, one), (one, empty)]:
        for method in ("index", "auto", "brute"):
            i, j, d = pairs_within(ha, hb, 2, method=method)
            assert len(i) == len(j) == len(d) == 0 and i.dtype == np.int64
    assert triples(pairs_within(one, one, 0)) == [(0, 0, 0)]


def test_auto_falls_back_to_all_pairs_when_blocks_are_short_and_agrees(monkeypatch):
    rng = np.random.default_rng(3)
    a = planted(200, 20, rng, per_distance=2)  # 21 blocks of 3 bits: buckets hold most pairs
    calls = []
    real = hash_index.brute_pairs
    monkeypatch.setattr(hash_index, "brute_pairs", lambda *args: calls.append(1) or real(*args))
    assert triples(pairs_within(a, None, 20)) == brute(a, None, 20)
    assert calls  # auto took all pairs
    assert triples(pairs_within(a, None, 20, method="index")) == brute(a, None, 20)
    assert len(calls) == 1
    assert triples(pairs_within(a, None, 2)) == brute(a, None, 2) and len(calls) == 1  # short threshold: index


def test_hamming_pairs_keeps_its_contract():
    rng = np.random.default_rng(11)
    a = planted(250, 2, rng)
    b = a[:60] ^ np.uint64(1 << 9)
    assert triples(hamming_pairs(a, None, 2)) == brute(a, None, 2)
    assert triples(hamming_pairs(a, b, 2, block=16)) == brute(a, b, 2)


@pytest.mark.parametrize("within", [0, 2, 8])
def test_nearest_distance_through_the_index_is_the_all_pairs_answer(within):
    """The twin share's nearest distances (data/checks.py): through the index, up to `within`, the
    same as comparing every pair; beyond it, within + 1."""
    from tumorlens.data.checks import nearest_distance

    rng = np.random.default_rng(within)
    h = planted(600, within, rng)
    ha, hb = h[:200], h[200:]
    ha[:40] = hb[rng.permutation(len(hb))[:40]] ^ np.uint64(1 << 7)  # Testing slices one bit from a Training one
    ha[40:50] = hb[:10]  # and exact copies
    full = nearest_distance(ha, hb)  # all pairs, exact
    got = nearest_distance(ha, hb, within=within)
    assert (got == np.minimum(full, within + 1)).all()
    assert (full <= within).any()
