"""The README stays true: its settings table is the tap's own, and its commands exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from settings_table import settings_table

README = (ROOT / "README.md").read_text()


def test_settings_table_is_the_taps_about_output():
    assert settings_table() in README, "README settings table drifted: paste `python scripts/settings_table.py`"


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    named = set(re.findall(r"`make ([a-z][a-z-]+)`", README)) | set(re.findall(r"^make ([a-z][a-z-]+)", README, re.MULTILINE))
    assert {"demo", "test"} <= named
    assert named <= targets, f"README names make targets the Makefile lacks: {named - targets}"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_resolves_inside_the_repository():
    broken, outside = [], []
    for page in markdown_files():
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            name, _, anchor = target.partition("#")
            path = (page.parent / name).resolve() if name else page.resolve()
            if not path.is_relative_to(ROOT):
                outside.append(f"{page.name}: {target}")
            elif not path.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not outside, f"links leave the repository: {outside}"
    assert not broken, f"links to missing files or headings: {broken}"


def test_no_page_cites_files_outside_the_repository():
    # any relative path in the text (a link or not) must stay inside the repository, and no page
    # names a folder of the machine it was written on
    for page in markdown_files():
        text = page.read_text()
        for climb in re.findall(r"(?:\.\./)+[\w-][\w./-]*", text):
            assert (page.parent / climb).resolve().is_relative_to(ROOT), f"{page.name}: {climb}"
        assert "/work/" not in text, page.name


def test_readme_stays_short_and_uses_meltano_4_syntax():
    assert len(README.splitlines()) <= 330, "deep material belongs in docs/, linked from the README"
    for page in markdown_files():
        text = page.read_text()
        # Meltano 4: `meltano config <command> <plugin>`, not `meltano config <plugin> <command>`
        assert not re.search(r"meltano config (?!--)[a-z][\w-]* (list|set|unset|reset|print|test)\b", text), page.name
    sections = re.findall(r"^## (.+)$", README, re.MULTILINE)
    order = ["Two commands", "Quick start", "Use it in your own Meltano project", "Settings", "Guarantees",
             "Troubleshooting"]
    assert [s for s in sections if s in order] == order
