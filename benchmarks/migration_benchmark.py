"""The schema migration from version 4 (the keyword figures: every posting copied, the figures counted) on a
sizeable knowledge base, and the open of a current one, for comparing the code that runs migrations.

    nice -n 19 python -m benchmarks.migration_benchmark [--chunks 20000] [--repeat 5] [--postgresql]
        [--compare /path/to/older/checkout]

N chunks of real text (storage_scale's windows of the wiki summaries, its loader: the write unit, 100 chunks per
document, 32-dimensional stand-in vectors) are loaded once and taken back to schema version 4. Each repeat opens a
fresh copy (SQLite: the file copied; PostgreSQL from ``pgserver``: a database made from it as a template) in a new
process, which times ``open_database`` twice: the migration, then the migrated database (the cheap path). With
--compare, another checkout's code does the same on its own copies, in turn with this one's, and the ratios are
printed. Medians, because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from benchmarks.storage_scale import chunk_texts, clustered_vectors, load
from kb.config import Settings
from kb.keywords import SimpleTokenizer
from kb.storage.database import default_url
from kb.storage.store import Store
from tests.databases import back_to_version_4_keywords, execute_sql

ROOT = Path(__file__).resolve().parent.parent


PROBE = """
import sys, time
from kb.storage.database import open_database
for _ in range(2):
    started = time.perf_counter()
    open_database(sys.argv[1]).kw["bind"].dispose()
    print(time.perf_counter() - started)
"""


def timed_opens(checkout: Path, url: str) -> list[float]:
    """Seconds to open ``url`` with ``checkout``'s code in a new process: migrating it, then opening it again."""
    done = subprocess.run([sys.executable, "-c", PROBE, url], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(checkout)})
    return [float(line) for line in done.stdout.split()]


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
    parser.add_argument("--compare", type=Path, help="another checkout of the project, timed in turn with this one")
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
        checkouts = {"this checkout": ROOT, **({"compared": args.compare.resolve()} if args.compare else {})}
        timings: dict[str, list[list[float]]] = {name: [] for name in checkouts}
        for number in range(args.repeat):
            for offset, (name, checkout) in enumerate(checkouts.items()):
                timings[name].append(timed_opens(checkout, copy(len(checkouts) * number + offset)))
        print(f"{kind}, {args.chunks} chunks, {args.repeat} runs, medians:")
        for name, runs in timings.items():
            migration, opening = (statistics.median(run[step] for run in runs) for step in (0, 1))
            print(f"  {name}: migration from version 4 {migration:.3f} s "
                  f"(runs {', '.join(f'{run[0]:.3f}' for run in runs)}); opening it migrated {1000 * opening:.1f} ms")
        if args.compare:
            ratio = statistics.median(new[0] / old[0] for new, old in zip(timings["this checkout"],
                                                                         timings["compared"]))
            print(f"  migration time, this checkout / compared, median of the runs' ratios: {ratio:.2f}")

if __name__ == "__main__":
    main()
