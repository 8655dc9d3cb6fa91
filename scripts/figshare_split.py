"""A figshare folder that every tumorlens command can read, restricted to one side of the held-out split.

usage: python scripts/figshare_split.py dev|heldout OUT [--data DIR] [--heldout CSV]

`dev`: the 188 patients a bundled model may be selected on; `heldout`: the 45 patients of
../shared/splits/figshare_heldout_patients.csv, read once, at the end. OUT gets links to the set's
images/ and masks/ and a metadata.csv with only that side's rows (no image is copied).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "figshare-brain-tumor"
HELDOUT = ROOT.parent / "shared" / "splits" / "figshare_heldout_patients.csv"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("side", choices=["dev", "heldout"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--heldout", type=Path, default=HELDOUT)
    args = ap.parse_args(argv)
    with args.heldout.open() as f:
        held = {row["pid"] for row in csv.DictReader(f)}
    with (args.data / "metadata.csv").open() as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if (r["pid"] in held) == (args.side == "heldout")]
        fields = reader.fieldnames
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("images", "masks"):
        link = args.out / name
        if not link.exists():
            link.symlink_to((args.data / name).resolve())
    with (args.out / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{args.out}: {len(rows)} slices of {len({r['pid'] for r in rows})} {args.side} patients")


if __name__ == "__main__":
    main()
