"""The README is the repository's front page: short, and every link in it reaches a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_a_front_page_under_200_lines() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < 200
    assert "make demo" in "\n".join(lines)
    assert "make test" in "\n".join(lines)


def test_every_relative_link_in_the_readme_reaches_a_file() -> None:
    targets = [target for target in LINK.findall((REPO / "README.md").read_text()) if "://" not in target]
    assert len(targets) > 10  # the links into docs/ were found at all
    missing = [target for target in targets if not (REPO / target.split("#")[0]).exists()]
    assert missing == []
