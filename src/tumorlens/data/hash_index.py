"""Exact near-duplicate search over 64-bit perceptual hashes: every pair within a Hamming threshold.

Why an index: comparing all pairs costs n^2/2 XOR + popcounts, about 5e11 at a million slices
(hours on this machine), while the answer is a few pairs per slice.

How it stays exact (pigeonhole, i.e. multi-index hashing with sub-radius 0): cut the 64 bits into
threshold + 1 disjoint blocks. Two hashes that differ in at most `threshold` bits cannot differ in
every one of the threshold + 1 blocks, so they agree exactly on at least one. For each block the
hashes are sorted by that block's value; hashes with equal values (a bucket) are the candidates,
and each candidate's full 64-bit distance is checked. No pair within the threshold is missed, and
none beyond it is returned. A pair that agrees on several blocks is kept only from the first block
it agrees on, so each pair comes out once without a global de-duplication.

Skewed buckets (many identical hashes, e.g. near-blank images, or many hashes sharing one block)
are expanded in chunks of at most BLOCK_PAIRS candidates, so memory stays bounded by the chunk and
the answer, not by a bucket's square. Where the buckets would yield more candidates than a
fraction of all pairs (large thresholds make blocks short), the blockwise all-pairs comparison is
cheaper and is used instead; both give the same pairs.

FAISS (`IndexBinaryMultiHash`) does the same with C++ hash tables; measured by
benchmarks/bench_hash_index.py on 1,000,000 hashes it was several times slower than this numpy
version and used more memory (and returns each pair from both sides), so it is not a dependency.
"""

from __future__ import annotations

import numpy as np

# A chunk holds at most this many candidate pairs (about 40 bytes each while checked), so memory
# stays flat however large a bucket is.
BLOCK_PAIRS = 2_000_000
# Use all pairs instead of the index when the buckets yield more than this share of all pairs
# (large thresholds: short blocks, full buckets). A candidate costs about 1.5 all-pairs comparisons
# here (bench_hash_index.py: the skewed run's extra candidates against all pairs on 50k), so the
# index stops paying near 0.6; 0.5 leaves a margin.
BRUTE_SHARE = 0.5

_EMPTY = np.zeros(0, np.int64)


def block_masks(threshold: int) -> list[tuple[int, np.uint64]]:
    """(shift, mask) of the threshold + 1 disjoint bit blocks covering the 64 bits, sizes within 1."""
    m = threshold + 1
    sizes = [64 // m + (k < 64 % m) for k in range(m)]
    out, shift = [], 0
    for s in sizes:
        out.append((shift, np.uint64(((1 << s) - 1) << shift)))
        shift += s
    return out


def brute_pairs(ha: np.ndarray, hb: np.ndarray | None, threshold: int, block: int | None = None):
    """Reference: all pairs, block by block (XOR + popcount); same contract as `pairs_within`."""
    same = hb is None
    hb = ha if same else hb
    block = block or max(1, BLOCK_PAIRS // max(len(hb), 1))
    ii, jj, dd = [], [], []
    for start in range(0, len(ha), block):
        d = np.bitwise_count(ha[start : start + block, None] ^ hb[None, :])
        if same:  # keep the upper triangle only: each pair once, no self-pairs
            rows = np.arange(start, start + d.shape[0])[:, None]
            d = np.where(np.arange(len(hb))[None, :] > rows, d, 255)
        i, j = np.nonzero(d <= threshold)
        ii.append(i + start)
        jj.append(j)
        dd.append(d[i, j])
    cat = lambda xs: np.concatenate(xs).astype(np.int64) if xs else _EMPTY  # noqa: E731
    return cat(ii), cat(jj), cat(dd)


def _ranges(ka: np.ndarray, kb_sorted: np.ndarray, same: bool):
    """For each hash of a (by position in ka): the [lo, hi) range of equal keys in sorted b."""
    lo = np.searchsorted(kb_sorted, ka, side="left")
    hi = np.searchsorted(kb_sorted, ka, side="right")
    if same:  # ka is kb_sorted itself: partners are the later positions of the run, each pair once
        lo = np.arange(len(ka), dtype=np.int64) + 1
    return lo.astype(np.int64), hi.astype(np.int64)


def _candidates(lo, hi):
    """Yield (query positions, target positions) in chunks of about BLOCK_PAIRS candidate pairs."""
    cnt = hi - lo
    q = np.flatnonzero(cnt > 0)
    if len(q) == 0:
        return
    cnt, lo = cnt[q], lo[q]
    ends = np.cumsum(cnt)
    # A chunk: the queries whose candidates end in one BLOCK_PAIRS stretch; at most BLOCK_PAIRS plus
    # its first query's (one query with a huge bucket forms its own chunk).
    edges = np.arange(BLOCK_PAIRS, int(ends[-1]) + BLOCK_PAIRS, BLOCK_PAIRS)
    bounds = np.unique(np.concatenate([[0], np.searchsorted(ends, edges, side="right"), [len(q)]]))
    for s, e in zip(bounds[:-1], bounds[1:]):
        c = cnt[s:e]
        total = int(c.sum())
        if total == 0:
            continue
        start = np.repeat(np.cumsum(c) - c, c)
        yield np.repeat(q[s:e], c), np.repeat(lo[s:e], c) + (np.arange(total) - start)


def pairs_within(ha: np.ndarray, hb: np.ndarray | None, threshold: int, block: int | None = None,
                 method: str = "auto"):
    """All (i, j, distance) with Hamming(ha[i], hb[j]) <= threshold; with hb None, pairs i < j in ha.

    Sorted by (i, j), as the all-pairs comparison gives them. method: "auto" (the index unless its
    buckets are so full that all pairs is cheaper), "index" or "brute". `block`: rows per block of
    the all-pairs comparison.
    """
    ha = np.ascontiguousarray(ha, dtype=np.uint64)
    same = hb is None
    hb = ha if same else np.ascontiguousarray(hb, dtype=np.uint64)
    if threshold < 0 or len(ha) == 0 or len(hb) == 0:
        return _EMPTY, _EMPTY.copy(), _EMPTY.copy()
    if method == "brute" or threshold >= 63:  # >= 63: blocks of one bit, nothing to gain
        return brute_pairs(ha, None if same else hb, threshold, block)
    if method not in ("auto", "index"):
        raise ValueError(f"method must be 'auto', 'index' or 'brute', got {method!r}")

    blocks = block_masks(threshold)
    plans = []
    n_candidates = 0
    for shift, mask in blocks:
        kb = (hb & mask) >> np.uint64(shift)
        order = np.argsort(kb, kind="stable")  # stable: within a bucket of ha, positions keep i < j
        kb_sorted = kb[order]
        ka = kb_sorted if same else (ha & mask) >> np.uint64(shift)
        lo, hi = _ranges(ka, kb_sorted, same)
        n_candidates += int((hi - lo).clip(min=0).sum())
        plans.append((order, lo, hi))
        if method == "auto":
            all_pairs = len(ha) * (len(ha) - 1) // 2 if same else len(ha) * len(hb)
            if n_candidates > BRUTE_SHARE * all_pairs:
                return brute_pairs(ha, None if same else hb, threshold, block)

    ii, jj, dd = [], [], []
    for k, (order, lo, hi) in enumerate(plans):
        earlier = [m for _, m in blocks[:k]]
        for qp, tp in _candidates(lo, hi):
            i = order[qp] if same else qp
            j = order[tp]
            x = ha[i] ^ hb[j]
            d = np.bitwise_count(x)
            keep = d <= threshold
            for m in earlier:  # found already from an earlier block it agrees on
                keep &= (x & m) != 0
            ii.append(i[keep])
            jj.append(j[keep])
            dd.append(d[keep])
    if not ii:
        return _EMPTY, _EMPTY.copy(), _EMPTY.copy()
    i, j, d = (np.concatenate(v).astype(np.int64) for v in (ii, jj, dd))
    o = np.lexsort((j, i))
    return i[o], j[o], d[o]
