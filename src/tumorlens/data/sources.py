"""open_dataset: any dataset layout a user brings -> one SampleSet.

Layouts recognised (autodetected, or forced with kind=...):
- "split_class_folders": <root>/<split>/<class>/... with split folders named like
  Training/Testing/Validation (the Kaggle layout); meta["split"] is the folder name as written.
- "class_folders": <root>/<class>/... ; the tool splits it later (see splits.py).
- "figshare_converted": <root>/metadata.csv + images/N.png (+ masks/N.png).
- "figshare_mat": Cheng's original .mat files anywhere under root (labels come from the files).
- "dicom", "nifti": DICOM or NIfTI files; label = the class folder they sit in, if any, else None.
- "images": image files with no class folders; only with allow_unlabeled=True.
A folder may mix formats inside class folders; the file format decides the reader, the folders
decide label and split.

Opening reads headers only (sizes, slice counts, labels and patient ids from .mat and DICOM
headers, and a cheap end-of-file check for JPEG and PNG): the pixels are read when a stage asks
for them (Sample.image; see sample.py and lazy.py). Unreadable files never stop a read: each goes
to SampleSet.skipped with its reason, whether found at open time or when its pixels are first
read (SampleSet.drop_unreadable). A dataset with nothing readable, or an image folder without
labels, raises DatasetError naming the path and the layout that was expected.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from tumorlens.data.errors import DatasetError, UnreadableFile
from tumorlens.data.lazy import SliceRef
from tumorlens.data.readers import READERS, reader_for_path
from tumorlens.data.readers.figshare import is_converted_folder, read_converted_rows
from tumorlens.data.sample import Sample, SampleSet, SkippedFile

__all__ = ["open_dataset", "parse_class_map", "DatasetError", "KINDS", "SPLIT_NAMES"]

KINDS = ("split_class_folders", "class_folders", "figshare_converted", "figshare_mat", "dicom", "nifti", "images")
# Folder names taken as a split rather than a class (compared lower-case).
SPLIT_NAMES = {"train", "training", "test", "testing", "val", "valid", "validation"}
# Files that live beside data and are not data: never reported as skipped.
_IGNORED_SUFFIXES = {".md", ".txt", ".csv", ".json", ".yaml", ".yml", ".html", ".pdf", ".zip", ".py", ".db"}
_IGNORED_NAMES = {"sha256sums", "md5sums", "license", "readme", "thumbs.db", "desktop.ini"}

EXPECTED_LAYOUTS = (
    "expected one of: <root>/Training|Testing/<class>/<images>, <root>/<class>/<images>, "
    "a figshare folder (metadata.csv + images/), Cheng .mat files, DICOM files or NIfTI volumes"
)


@dataclass(frozen=True)
class _Task:
    path: Path
    fmt: str  # "image" | "dicom" | "nifti" | "mat"
    label: str | None
    split: str | None


def parse_class_map(text: str | dict | None) -> dict[str, str]:
    """'tumor_a=glioma,no=notumor' (or a dict) -> {'tumor_a': 'glioma', 'no': 'notumor'}."""
    if text is None:
        return {}
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise DatasetError(f"class map entry {part!r} has no '='; expected old=new[,old=new...]")
        old, new = (s.strip() for s in part.split("=", 1))
        if not old or not new:
            raise DatasetError(f"class map entry {part!r} is incomplete; expected old=new")
        out[old] = new
    return out


def open_dataset(
    path: str | Path,
    class_map: dict | str | None = None,
    kind: str | None = None,
    *,
    allow_unlabeled: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> SampleSet:
    """Read a dataset (folder or single file) into a SampleSet; see the module docstring for layouts.

    class_map renames classes (several old names may map to one new name); naming a class the
    dataset does not have is an error, so a typo cannot pass silently.
    """
    # Absolute (not resolved) paths: sample paths then match across runs from different folders.
    root = Path(path).expanduser().absolute()
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder; {EXPECTED_LAYOUTS}")
    if kind is not None and kind not in KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    mapping = parse_class_map(class_map)
    workers = workers or min(4, os.cpu_count() or 1)

    if root.is_file():
        fmt = _file_format(root)
        if fmt is None:
            raise DatasetError(f"{root}: not a supported file (JPEG/PNG/BMP/TIFF, DICOM, NIfTI, .mat)")
        samples, skipped = _read_tasks([_Task(root, fmt, None, None)], root, workers, progress)
        detected = {"image": "images", "mat": "figshare_mat"}.get(fmt, fmt)
        allow_unlabeled = True  # one file is a thing to predict on, not a dataset to train from
    elif kind == "figshare_converted" or (kind is None and is_converted_folder(root)):
        if not is_converted_folder(root):
            raise DatasetError(f"{root}: not a figshare converted folder; expected metadata.csv and images/")
        samples, skipped = _read_converted(root, workers, progress)
        detected = "figshare_converted"
    else:
        tasks, skipped_walk, detected = _plan_folder(root, kind)
        if not tasks:
            found = f" ({len(skipped_walk)} unsupported file(s), e.g. {skipped_walk[0].path})" if skipped_walk else ""
            raise DatasetError(f"{root}: no image, DICOM, NIfTI or .mat files found{found}; {EXPECTED_LAYOUTS}")
        samples, skipped = _read_tasks(tasks, root, workers, progress)
        skipped = skipped_walk + skipped

    if not samples:
        first = f"; first: {skipped[0].path}: {skipped[0].reason}" if skipped else ""
        raise DatasetError(f"{root}: no readable slices ({len(skipped)} file(s) could not be read{first})")
    labels_found = {s.label for s in samples if s.label is not None}
    if not labels_found and not allow_unlabeled and detected in ("images", "class_folders", "split_class_folders"):
        raise DatasetError(
            f"{root}: images have no labels; expected class folders (<root>/<class>/*.jpg or "
            f"<root>/Training/<class>/*.jpg) or a figshare metadata.csv"
        )
    unknown = set(mapping) - labels_found
    if unknown:
        raise DatasetError(
            f"{root}: class map names {sorted(unknown)}, which the dataset does not have (classes: {sorted(labels_found)})"
        )
    for s in samples:
        if s.label is not None:
            s.label = mapping.get(s.label, s.label)
    classes = sorted({s.label for s in samples if s.label is not None})
    return SampleSet(samples=samples, classes=classes, root=str(root), kind=detected, skipped=skipped)


# -- planning: which files, with which label and split -------------------------------------------
def _file_format(path: Path) -> str | None:
    reader = reader_for_path(path)
    return reader.name if reader is not None else None


def _is_ignorable(path: Path) -> bool:
    name = path.name.lower()
    return name.startswith(".") or path.suffix.lower() in _IGNORED_SUFFIXES or name in _IGNORED_NAMES


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def _walk(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))  # ._x.jpg: macOS metadata
    return sorted(files, key=_natural_key)


def _plan_folder(root: Path, kind: str | None) -> tuple[list[_Task], list[SkippedFile], str]:
    files = _walk(root)
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    has_splits = any(d.name.lower() in SPLIT_NAMES and any(c.is_dir() for c in d.iterdir()) for d in subdirs)
    if kind == "split_class_folders" and not has_splits:
        raise DatasetError(f"{root}: no split folders (Training/, Testing/, ...) containing class folders")
    use_splits = kind == "split_class_folders" or (kind in (None, "dicom", "nifti", "figshare_mat") and has_splits)
    use_classes = kind != "images"

    tasks, skipped = [], []
    formats = set()
    data_in_subdirs = None  # computed on first need: are there data files below the subfolders?
    for f in files:
        fmt = _file_format(f)
        rel = f.relative_to(root).parts
        if fmt is None:
            # Stray notes beside the data are fine; an unknown file inside a class folder is reported.
            if len(rel) > 1 and not _is_ignorable(f):
                skipped.append(SkippedFile(str(f), f"unsupported file type ({f.suffix or 'no suffix'})"))
            continue
        if kind in ("dicom", "nifti") and fmt != kind or kind == "figshare_mat" and fmt != "mat":
            continue
        split, label = None, None
        folders = rel[:-1]
        if use_splits:
            if folders and folders[0].lower() in SPLIT_NAMES:
                split, folders = folders[0], folders[1:]
            elif fmt != "mat":
                skipped.append(SkippedFile(str(f), "not inside a split folder (Training/, Testing/, ...)"))
                continue
        if use_classes and fmt != "mat":  # a .mat file carries its own label
            if folders:
                label = folders[0]
            else:
                if data_in_subdirs is None:
                    data_in_subdirs = bool(subdirs) and _any_data_below(subdirs)
                if use_splits or data_in_subdirs:
                    skipped.append(SkippedFile(str(f), "not inside a class folder"))
                    continue
        formats.add(fmt)
        tasks.append(_Task(f, fmt, label, split))

    if kind is not None:
        detected = kind
    elif formats == {"mat"}:
        detected = "figshare_mat"
    elif formats == {"dicom"}:
        detected = "dicom"
    elif formats == {"nifti"}:
        detected = "nifti"
    elif any(t.label for t in tasks):
        detected = "split_class_folders" if use_splits else "class_folders"
    else:
        detected = "images"
    return tasks, skipped, detected


def _any_data_below(subdirs: list[Path]) -> bool:
    for d in subdirs:
        for f in d.rglob("*"):
            if f.is_file() and _file_format(f) is not None:
                return True
    return False


# -- opening: headers only -----------------------------------------------------------------------
# Header facts that become Sample fields (or only served the check at open time), not meta.
_HEADER_ONLY = ("label", "patient_id", "has_mask", "end_marker", "shape", "bytes_needed", "bytes_stored")


def _open_task(task: _Task) -> tuple[list[Sample], SkippedFile | None]:
    reader = READERS[task.fmt]
    try:
        with reader.read(task.path) as header:
            verify = getattr(reader, "verify", None)
            if verify is not None:
                verify(header)
            facts = header.meta
            n, shape = header.n_slices, (header.height, header.width)
    except UnreadableFile as exc:
        return [], SkippedFile(str(task.path), str(exc))
    label = task.label if task.label is not None else facts.get("label")
    base = {k: v for k, v in facts.items() if k not in _HEADER_ONLY}
    base["height"], base["width"] = shape
    if task.split:
        base["split"] = task.split
    out = []
    for k in range(n):
        meta = dict(base)
        if task.fmt == "nifti":
            meta["slice_index"] = k
        elif n > 1:  # frames of a multi-frame DICOM
            meta["frame_index"] = meta["slice_index"] = k
        out.append(Sample(label=label, patient_id=facts.get("patient_id"), path=str(task.path), meta=meta,
                          ref=SliceRef(str(task.path), task.fmt, k), shape=shape, has_mask=bool(facts.get("has_mask"))))
    return out, None


def _read_tasks(tasks: list[_Task], root: Path, workers: int, progress: bool):
    samples, skipped = [], []
    # Threads: header reads are mostly file opening, which overlaps well.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_open_task, tasks)
        bar = tqdm(
            results, total=len(tasks), desc=f"opening {root.name}", unit="file",
            disable=not progress, mininterval=0.5,
        )
        for got, skip in bar:
            samples.extend(got)
            if skip is not None:
                skipped.append(skip)
    return samples, skipped


def _open_converted_row(root: Path, row: dict) -> Sample:
    """One row of metadata.csv -> a lazy Sample (image and mask headers checked), or raise UnreadableFile."""
    index = str(row["index"]).strip()
    image_path = root / "images" / f"{index}.png"
    if not image_path.is_file():
        raise UnreadableFile("listed in metadata.csv but images/ has no such file")
    raster = READERS["image"]
    with raster.read(image_path) as header:
        raster.verify(header)
        shape, facts = (header.height, header.width), dict(header.meta)
    mask_path = root / "masks" / f"{index}.png"
    has_mask = mask_path.is_file()
    if has_mask:
        try:
            with raster.read(mask_path) as mh:
                raster.verify(mh)
                mshape = (mh.height, mh.width)
        except UnreadableFile as exc:
            raise UnreadableFile(f"mask {mask_path.name}: {exc}") from None
        if mshape != shape:
            raise UnreadableFile(f"mask shape {mshape} differs from image shape {shape}")
    facts.pop("end_marker", None)
    meta = {**facts, "height": shape[0], "width": shape[1],
            "figshare_index": int(index) if index.isdigit() else index, "original_size": row.get("original_size")}
    if row.get("label"):
        meta["label_code"] = int(row["label"]) if str(row["label"]).strip().isdigit() else row["label"]
    pid = str(row.get("pid") or "").strip() or None
    ref = SliceRef(str(image_path), "image", 0, str(mask_path) if has_mask else None)
    return Sample(label=str(row["class_name"]).strip() or None, patient_id=pid, path=str(image_path), meta=meta,
                  ref=ref, shape=shape, has_mask=has_mask)


def _read_converted(root: Path, workers: int, progress: bool):
    rows = read_converted_rows(root)

    def one(row):
        try:
            return _open_converted_row(root, row), None
        except UnreadableFile as exc:
            return None, SkippedFile(str(root / "images" / f"{row.get('index')}.png"), str(exc))

    samples, skipped = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        bar = tqdm(
            pool.map(one, rows), total=len(rows), desc=f"opening {root.name}", unit="slice",
            disable=not progress, mininterval=0.5,
        )
        for s, skip in bar:
            if s is not None:
                samples.append(s)
            else:
                skipped.append(skip)
    return samples, skipped
