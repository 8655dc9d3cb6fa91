"""Pixels on demand: where a slice's pixels live (SliceRef), and one bounded cache of decoded files.

Why: holding every pixel of a dataset made `tumorlens audit` on the Kaggle set peak at 5.0 GB
(7,019 slices read to audit 1,311), and a BraTS-sized set of NIfTI volumes would not fit at all.
A Sample now holds a SliceRef and reads its pixels when `sample.image` is first asked for; the
decoded file stays in this cache (least recently used first out) until the byte budget is used.
A whole file is one entry, so the 155 slices of a volume cost one decode, not 155.

Budget: TUMORLENS_CACHE_MB (default 256, of which 2-D files use at most 32). One volume is always
kept even if larger than the budget (it would otherwise be decoded again for every slice).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from tumorlens.data.errors import UnreadableFile
from tumorlens.data.readers import READERS, Slice

DEFAULT_CACHE_MB = 256
DEFAULT_SINGLE_MB = 32  # of which files of one slice may use this much (see SliceCache)


@dataclass(frozen=True)
class SliceRef:
    """Slice `index` of the file at `path`, read by READERS[reader]; mask_path: a separate mask image (figshare PNGs)."""

    path: str
    reader: str
    index: int = 0
    mask_path: str | None = None

    @property
    def file_key(self) -> tuple:
        return (self.path, self.reader, self.mask_path)


def _read_file(ref: SliceRef) -> list[Slice]:
    slices = READERS[ref.reader].load(ref.path)
    if ref.mask_path is not None:
        try:
            (m,) = READERS["image"].load(ref.mask_path)
        except UnreadableFile as exc:
            raise UnreadableFile(f"mask {os.path.basename(ref.mask_path)}: {exc}") from None
        if m.image.shape != slices[0].image.shape:
            raise UnreadableFile(f"mask shape {m.image.shape} differs from image shape {slices[0].image.shape}")
        slices[0].mask = m.image > 0
    for s in slices:  # shared through the cache: nobody may change them in place
        s.image.flags.writeable = False
        if s.mask is not None:
            s.mask.flags.writeable = False
    return slices


class SliceCache:
    """Thread-safe LRU of decoded files by bytes; concurrent readers of one file wait for one decode.

    Files of one slice (every 2-D image) get a small share of the budget (max_single_bytes): a
    stage that reads a dataset once gains nothing from keeping them, and the few re-reads that
    happen (image, then its mask, then the image again) are of the most recent files. Volumes and
    multi-frame files, whose slices are asked for one by one, get the rest.
    """

    def __init__(self, max_bytes: int, max_single_bytes: int | None = None):
        self.max_bytes = max_bytes
        self.max_single_bytes = min(max_bytes, DEFAULT_SINGLE_MB * 1024 * 1024) if max_single_bytes is None \
            else max_single_bytes
        self._entries: dict[bool, OrderedDict[tuple, list[Slice]]] = {True: OrderedDict(), False: OrderedDict()}
        self._bytes = {True: 0, False: 0}
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}
        self.hits = self.misses = 0

    def _lookup(self, key: tuple) -> list[Slice] | None:
        for entries in self._entries.values():
            got = entries.get(key)
            if got is not None:
                entries.move_to_end(key)
                self.hits += 1
                return got
        return None

    def get(self, ref: SliceRef) -> Slice:
        key = ref.file_key
        with self._lock:
            got = self._lookup(key)
            if got is not None:
                return _pick(got, ref)
            file_lock = self._loading.setdefault(key, threading.Lock())
        with file_lock:
            with self._lock:  # another thread may have decoded it while we waited
                got = self._lookup(key)
                if got is not None:
                    return _pick(got, ref)
            try:
                slices = _read_file(ref)
                self._put(key, slices)  # before the lock goes: a later reader finds the entry
                self.misses += 1
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            return _pick(slices, ref)

    def _put(self, key: tuple, slices: list[Slice]) -> None:
        single = len(slices) == 1
        size = sum(s.nbytes for s in slices)
        budget = self.max_single_bytes if single else self.max_bytes - self.max_single_bytes
        with self._lock:
            if self.max_bytes <= 0:
                return
            entries = self._entries[single]
            entries[key] = slices
            self._bytes[single] += size
            while self._bytes[single] > max(budget, 0) and len(entries) > 1:
                _, old = entries.popitem(last=False)
                self._bytes[single] -= sum(s.nbytes for s in old)

    def clear(self) -> None:
        with self._lock:
            for kind in (True, False):
                self._entries[kind].clear()
                self._bytes[kind] = 0

    @property
    def nbytes(self) -> int:
        return self._bytes[True] + self._bytes[False]


def _pick(slices: list[Slice], ref: SliceRef) -> Slice:
    if ref.index >= len(slices):
        raise UnreadableFile(f"slice {ref.index} does not exist (the file now has {len(slices)})")
    return slices[ref.index]


CACHE = SliceCache(int(float(os.environ.get("TUMORLENS_CACHE_MB", DEFAULT_CACHE_MB)) * 1024 * 1024))


def read_slice(ref: SliceRef) -> Slice:
    return CACHE.get(ref)

