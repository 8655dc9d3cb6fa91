"""Reading many samples' pixels chunk by chunk, so that memory stays at one or two chunks.

Threads: PIL, zlib, pydicom's numpy and h5py release the GIL while decoding, so reading overlaps
well, and the next chunk is read while the caller works on the current one. A sample whose file
turns out to be damaged is left out of its chunk (and keeps the reason in sample.error): one bad
file costs one image, not the run.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TypeVar

import numpy as np
from tqdm.auto import tqdm

from tumorlens.data.errors import UnreadableFile

if TYPE_CHECKING:
    from tumorlens.data.sample import Sample

T = TypeVar("T")
RAY_CHUNK = 64  # images per Ray task when reading on a cluster (a task costs ~10 ms; 64 images ~0.5 s)


@dataclass
class Chunk:
    """Readable samples of one chunk: positions in the set, the samples, their images (same order)."""

    indices: np.ndarray
    samples: list[Sample]
    images: list[np.ndarray]


def _image_or_none(s: Sample) -> np.ndarray | None:
    try:
        return s.image
    except UnreadableFile:
        return None


def iter_chunks(samples: Sequence[Sample], size: int = 64, *, workers: int | None = None, progress: bool = False,
                desc: str = "reading") -> Iterator[Chunk]:
    """Chunk(indices, samples, images) for consecutive runs of `size` samples, unreadable ones left out."""
    workers = workers or min(4, os.cpu_count() or 1)
    starts = list(range(0, len(samples), size))
    bar = tqdm(total=len(samples), desc=desc, unit="img", disable=not progress, mininterval=0.5)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        def submit(start: int) -> list[Future]:
            return [pool.submit(_image_or_none, s) for s in samples[start : start + size]]

        pending = submit(starts[0]) if starts else []
        for n, start in enumerate(starts):
            current = pending
            pending = submit(starts[n + 1]) if n + 1 < len(starts) else []  # read ahead while the caller works
            images = [f.result() for f in current]
            ok = [j for j, im in enumerate(images) if im is not None]
            yield Chunk(np.array([start + j for j in ok], dtype=np.int64), [samples[start + j] for j in ok],
                        [images[j] for j in ok])
            bar.update(len(current))
    bar.close()


def map_images(fn: Callable[[np.ndarray], T], samples: Sequence[Sample], *, workers: int | None = None,
               progress: bool = False, desc: str = "reading", chunk: int = 256, ray: str | None = None,
               ray_workers: int | None = None) -> list[T | None]:
    """fn(image) for every sample, read and computed by threads in chunks; None where the file is unreadable.

    ray: a Ray cluster ('auto' or its address): the chunks go to `ray_workers` Ray workers instead,
    which read the pixels themselves (fn must be picklable; only sample references go out, only
    fn's results and what the read taught each sample (Sample.read_facts) come back)."""
    if ray:  # smaller chunks: a task each, spread over the workers
        return _map_images_on_ray(fn, samples, ray, ray_workers, progress, desc, min(chunk, RAY_CHUNK))
    workers = workers or min(4, os.cpu_count() or 1)

    def one(s: Sample):
        im = _image_or_none(s)
        return None if im is None else fn(im)

    out: list[T | None] = []
    bar = tqdm(total=len(samples), desc=desc, unit="img", disable=not progress, mininterval=0.5)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(samples), chunk):  # bounded: never more than one chunk of results in flight
            part = list(pool.map(one, samples[start : start + chunk]))
            out.extend(part)
            bar.update(len(part))
    bar.close()
    return out


def _map_images_on_ray(fn, samples, address, workers, progress, desc, chunk) -> list:
    from tumorlens.cluster import ordered_map

    parts = [list(samples[s : s + chunk]) for s in range(0, len(samples), chunk)]
    out: list = []
    for n, (results, facts) in enumerate(ordered_map(partial(ImagesWorker, fn), parts, address=address,
                                                     workers=workers, actors=False, progress=progress, desc=desc,
                                                     unit_sizes=[len(p) for p in parts])):
        for s, f in zip(parts[n], facts):
            s.learn(f)
        out.extend(results)
    return out


class ImagesWorker:
    """map_images on a Ray worker, for one chunk of samples: fn's results and each sample's read facts."""

    def __init__(self, fn: Callable[[np.ndarray], T]):
        self.fn = fn

    def __call__(self, samples: list[Sample]) -> tuple[list, list]:
        return map_images(self.fn, samples), [s.read_facts() for s in samples]
