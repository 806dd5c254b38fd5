"""The configuration reference in docs/configuration.md, generated from the settings model: ``python -m kb.docs``
rewrites it, ``python -m kb.docs --check`` fails when it is not current (a test runs the check). For a checkout of
the project: the docs are not part of an installed package."""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from kb.config import FLAT_NAMES, GROUPS, MACHINE_SETTINGS, field_of

CONFIGURATION = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BEGIN = "<!-- settings table: generated from kb/config.py by `python -m kb.docs`; edit the model, not this table -->"
END = "<!-- end of the generated settings table -->"


def _default(field: FieldInfo) -> str:
    """The default as the reference shows it: ``none``, ``true``, ``2,048``, or the value in backticks."""
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is None or value is PydanticUndefined:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return f"`{value}`"


def _takes_json(field: FieldInfo) -> bool:
    """Whether the environment variable holds JSON (lists and mappings, as pydantic-settings reads them)."""
    annotation = field.annotation
    return typing.get_origin(annotation) in (dict, list) or annotation in (dict, list)


def _row(name: str) -> str:
    field = field_of(name)
    env = f"`KB_{name.upper()}`" + (" (JSON)" if _takes_json(field) else "")
    meaning = (field.description or "").replace("|", "\\|")
    if name in MACHINE_SETTINGS:
        meaning += " (this machine's: not recorded in `kb.json`)"
    return f"| `{name}` | {env} | `{'.'.join(FLAT_NAMES[name])}` | {_default(field)} | {meaning} |"


def _section(title: str, summary: str, names: list[str]) -> str:
    return "\n".join([f"## {title}", "", " ".join(summary.split()), "",
                      "| setting | env | attribute | default | meaning |", "| --- | --- | --- | --- | --- |",
                      *map(_row, names)])


def settings_table() -> str:
    """One table per group of the model, the global settings first; one row per setting: its flat name and
    environment variable, where the model holds it, its default and its description."""
    sections = [_section("Global", "Settings of the whole knowledge base.",
                         [name for name, path in FLAT_NAMES.items() if len(path) == 1])]
    sections += [_section(f"`{group}`", model.__doc__ or "", [name for name, path in FLAT_NAMES.items()
                                                               if path[:-1] == (group,)])
                 for group, model in GROUPS.items()]
    return "\n\n".join(sections)


def render(document: str) -> str:
    """``document`` with the text between its markers replaced by the current settings table."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{CONFIGURATION} lacks the markers of the generated table")
    return document[: start + len(BEGIN)] + "\n\n" + settings_table() + "\n\n" + document[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kb.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is not current")
    args = parser.parse_args(argv)
    current = CONFIGURATION.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print(f"{CONFIGURATION} is not current: run python -m kb.docs", file=sys.stderr)
            return 1
        return 0
    CONFIGURATION.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
