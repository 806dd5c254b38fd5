"""The schema migration from version 4 (the keyword figures: every posting copied, the figures counted) on a
sizeable knowledge base, and the open of a current one, for comparing the code that runs migrations.

    nice -n 19 python benchmarks/migration_benchmark.py [--chunks 20000] [--repeat 5] [--postgresql]

N chunks of real text (storage_scale's windows of the wiki summaries, its loader: the write unit, 100 chunks per
document, 32-dimensional stand-in vectors) are loaded once and taken back to schema version 4; each repeat opens a
fresh copy (SQLite: the file copied; PostgreSQL from ``pgserver``: a database made from it as a template) and times
``open_database`` (the migration), then opens the migrated copy again (the cheap path). Medians. The project's
modules are imported from PYTHONPATH, so setting it to another checkout times that checkout on the same data.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from benchmarks.storage_scale import chunk_texts, clustered_vectors, load
from kb.config import Settings
from kb.keywords import SimpleTokenizer
from kb.storage.database import default_url, open_database
from kb.storage.store import Store
from tests.databases import back_to_version_4_keywords, execute_sql


def timed_open(url: str) -> float:
    started = time.perf_counter()
    open_database(url).kw["bind"].dispose()
    return time.perf_counter() - started


def sqlite_copies(root: Path) -> tuple[str, Callable[[int], str]]:
    """The original's URL, and a function making its numbered copies."""
    def copy(number: int) -> str:
        folder = root / f"copy{number}"
        folder.mkdir()
        shutil.copy(root / "original" / "kb.sqlite", folder / "kb.sqlite")
        return default_url(folder)

    (root / "original").mkdir()
    return default_url(root / "original"), copy


def postgresql_copies(root: Path) -> tuple[str, Callable[[int], str]]:
    import pgserver

    server = pgserver.get_server(root / "pg", cleanup_mode="stop")
    server.psql("CREATE DATABASE original;")

    def copy(number: int) -> str:
        admin = create_engine(f"postgresql+psycopg://postgres@/postgres?host={root / 'pg'}",
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE copy{number} TEMPLATE original"))
        admin.dispose()
        return f"postgresql+psycopg://postgres@/copy{number}?host={root / 'pg'}"

    return f"postgresql+psycopg://postgres@/original?host={root / 'pg'}", copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgresql", action="store_true", help="PostgreSQL from pgserver instead of SQLite")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    texts = chunk_texts(args.data, args.chunks)
    tokenizer = SimpleTokenizer()
    terms = [tokenizer.tokenize(chunk) for chunk in texts]
    with tempfile.TemporaryDirectory(prefix="kb-migration-benchmark-") as folder:
        root = Path(folder)
        url, copy = (postgresql_copies if args.postgresql else sqlite_copies)(root)
        store = Store(root / "original", Settings(database_url=url if args.postgresql else None))
        load(store, clustered_vectors(args.chunks, 32, seed=1), texts, terms, commit=5_000)
        store.close()
        kind = "postgresql" if args.postgresql else "sqlite"
        execute_sql(url, *back_to_version_4_keywords(kind), "UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        migrations, opens = [], []
        for number in range(args.repeat):
            copied = copy(number)
            migrations.append(timed_open(copied))
            opens.append(timed_open(copied))
        print(f"{kind}, {args.chunks} chunks: migration from version 4 "
              f"median {statistics.median(migrations):.3f} s (runs {', '.join(f'{t:.3f}' for t in migrations)}); "
              f"opening the migrated database median {1000 * statistics.median(opens):.1f} ms")


if __name__ == "__main__":
    main()
