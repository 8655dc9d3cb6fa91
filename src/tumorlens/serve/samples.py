"""The bundled sample slices, listed under stable names (the name is looked up, never joined
into a path, so a request cannot reach any other file)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


@dataclass(frozen=True)
class SampleEntry:
    name: str
    source: str  # first folder under the samples root: kaggle, figshare, ...
    label: str | None
    path: Path
    media_type: str

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "label": self.label, "media_type": self.media_type,
                "url": f"/v1/samples/{self.name}"}


def default_samples_root() -> Path:
    from tumorlens import assets

    return Path(assets.__file__).resolve().parent / "samples"


class SampleLibrary:
    """Images under root/<source>/...: labels from class folders, or from a metadata.csv with
    index and class_name columns beside an images/ folder (the figshare layout)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_samples_root()
        self.entries: dict[str, SampleEntry] = {}
        if self.root.is_dir():
            self._scan()

    def _scan(self) -> None:
        labels_by_folder: dict[Path, dict[str, str]] = {}
        for path in sorted(self.root.rglob("*")):
            if path.suffix.lower() not in IMAGE_TYPES or not path.is_file():
                continue
            rel = path.relative_to(self.root)
            if "masks" in rel.parts[:-1] or len(rel.parts) < 2:
                continue
            source = rel.parts[0]
            label = None
            if path.parent.name == "images":
                folder = path.parent.parent
                if folder not in labels_by_folder:
                    labels_by_folder[folder] = _metadata_labels(folder / "metadata.csv")
                label = labels_by_folder[folder].get(path.stem)
            elif len(rel.parts) >= 3:
                label = path.parent.name
            name = "-".join(p for p in (source, label, path.stem) if p)
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            base, k = name, 2
            while name in self.entries:
                name, k = f"{base}-{k}", k + 1
            self.entries[name] = SampleEntry(name, source, label, path, IMAGE_TYPES[path.suffix.lower()])

    def list(self) -> list[dict]:
        return [e.to_dict() for e in self.entries.values()]

    def get(self, name: str) -> SampleEntry | None:
        return self.entries.get(name)


def _metadata_labels(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {row["index"]: row["class_name"] for row in csv.DictReader(fh) if row.get("index") and row.get("class_name")}
