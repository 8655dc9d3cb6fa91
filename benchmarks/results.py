"""What every benchmark shares: where the real data is, and benchmarks/RESULTS.md, in which each
script owns one `## <script name>` section (optionally split into `### ` subsections) and replaces
only that, so scripts can run in any order."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / "RESULTS.md"
# ../shared/data beside the repository (tests and benchmarks that need it skip or stop when it is missing)
SHARED_DATA = REPO.parent / "shared" / "data"
KAGGLE = SHARED_DATA / "brain-tumor-mri"
FIGSHARE = SHARED_DATA / "figshare-brain-tumor"
KAGGLE_TESTING = KAGGLE / "Testing"

_SECTION = r"^## {}\n.*?(?=^## |\Z)"
_SUBSECTION = r"^### {}\n.*?(?=^### |\Z)"


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `## name` of RESULTS.md with body."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {name}\n\n{body.strip()}\n\n"
    pattern = re.compile(_SECTION.format(re.escape(name)), re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def write_subsection(section: str, name: str, body: str) -> None:
    """Replace (or append) `### name` inside the section `## section`, leaving its other subsections."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    sec_re = re.compile(_SECTION.format(re.escape(section)), re.S | re.M)
    m = sec_re.search(text)
    current = m.group(0) if m else f"## {section}\n\n"
    sub_re = re.compile(_SUBSECTION.format(re.escape(name)), re.S | re.M)
    new_sub = f"### {name}\n\n{body.strip()}\n\n"
    current = sub_re.sub(lambda _: new_sub, current) if sub_re.search(current) else current.rstrip() + "\n\n" + new_sub
    current = current.rstrip() + "\n\n"
    text = sec_re.sub(lambda _: current, text) if m else text.rstrip() + "\n\n" + current
    RESULTS.write_text(text)
