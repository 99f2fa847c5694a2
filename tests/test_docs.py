"""The front page and the docs/ pages: short README, the blocks that ``make demo`` and
``make study`` rewrite, and relative links (files and section anchors) that resolve."""

from __future__ import annotations

import re
from pathlib import Path

from scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#"):
            found.add(_slug(line.lstrip("#")))
    return found


def test_slug_rule():
    assert _slug(" `make demo`") == "make-demo"
    assert _slug(" OMat24 (fairchem) files") == "omat24-fairchem-files"


def test_front_page_is_short_and_the_generated_blocks_exist():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    summary = load_script("examples/demo_summary.py")
    table = load_script("studies/study_table.py")
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    for doc, begin, end in ((page, summary.START, summary.END), (text, table.BEGIN, table.END),
                            ((ROOT / "docs" / "study.md").read_text(), table.BEGIN, table.END)):
        assert doc.count(begin) == 1 and doc.count(end) == 1
        assert doc.index(begin) < doc.index(end)
    assert "--doc docs/benchmarks.md" in (ROOT / "Makefile").read_text()
    assert "make test" in text and "make test" in (ROOT / ".ci" / "run").read_text()


def test_relative_links_and_anchors_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.name}: {target} (no such section)")
    assert not broken, broken
