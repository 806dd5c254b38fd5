"""The direction of imports between the project's packages, read from the source (lazy imports included).

- ``ingestion/``, ``retrieval/`` and ``answering/`` do not import each other: types that cross them live in ``kb``.
- ``training/`` sits above them (it fine-tunes their models, and must cut passages exactly as the reader does), and
  nothing but the ``kb`` command imports ``training/``.
- ``kb/storage`` imports no upper layer: no pipeline, no training, and not the facade of ``kb``.
- Only ``kb/storage`` imports SQLAlchemy, and only its migrations import Alembic (opening a current database
  never pays for it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kb", "ingestion", "retrieval", "answering", "training")
PIPELINES = ("ingestion", "retrieval", "answering")
FACADE = ("kb.knowledge_base", "kb.cli", "kb.doctor", "kb.scheduler", "kb.sources", "kb.spaces", "kb.docs")


def _imports() -> dict[str, set[str]]:
    """Each module of the project (dotted name) and the absolute names it imports, anywhere in its body."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            names: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
            found[module] = names
    return found


IMPORTS = _imports()


def _within(name: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _offences(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{module} imports {name}" for module, names in IMPORTS.items() if _within(module, importers)
                  for name in names if _within(name, forbidden))


def test_the_pipelines_do_not_import_each_other_or_training() -> None:
    offences = [offence for pipeline in PIPELINES
                for offence in _offences((pipeline,), tuple(p for p in (*PIPELINES, "training") if p != pipeline))]
    assert offences == []


def test_only_the_kb_command_imports_training() -> None:
    offences = [offence for offence in _offences(PACKAGES, ("training",))
                if not offence.startswith(("training", "kb.cli"))]
    assert offences == []


def test_storage_imports_no_upper_layer() -> None:
    assert _offences(("kb.storage",), (*PIPELINES, "training", *FACADE)) == []


def test_only_storage_imports_sqlalchemy() -> None:
    outside = {module for module, names in IMPORTS.items()
               if not _within(module, ("kb.storage",)) and any(_within(name, ("sqlalchemy",)) for name in names)}
    assert outside == set(), "SQL outside kb/storage: put it behind the storage API"


def test_only_the_migrations_import_alembic() -> None:
    outside = {module for module, names in IMPORTS.items()
               if not _within(module, ("kb.storage.migrations",)) and any(_within(name, ("alembic",)) for name in names)}
    assert outside == set(), "Alembic belongs in kb/storage/migrations, imported only to change the schema"


def test_the_checks_see_the_imports() -> None:
    """The reader of imports finds what is certainly there, so the checks above cannot pass by reading nothing."""
    assert "sqlalchemy" in " ".join(IMPORTS["kb.storage.database"])
    assert "alembic" in IMPORTS["kb.storage.migrations.env"]
    assert "kb.errors" in IMPORTS["ingestion.schedule"] and len(IMPORTS) > 100
