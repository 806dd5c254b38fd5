"""The libraries that replaced hand-written modules, measured against another checkout's modules (the old ones).

    python benchmarks/library_benchmark.py --compare /path/to/older/checkout [--markdown DIR]... [--expressions 3000]

Schedules: random five-field cron expressions (lists, ranges, steps, one-value ranges) and start times; the next
run from both, counted equal or different, and each difference classed (cron's rule that a day field starting with
``*``, such as ``*/2``, restricts nothing). Markdown: every ``.md`` file under the given folders through both
loaders (same title, multiset Jaccard of the visible words, time), then adversarial inputs (seconds each).
The older checkout is e.g. ``git worktree add /tmp/before <commit>``.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import random
import re
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADVERSARIAL = {
    "front matter title line of 200 KB of spaces": "---\ntitle: x" + " " * 200_000 + "y\n---\n\nbody\n",
    "200k opening brackets": "[" * 200_000,
    "100k image openers ![": "![" * 100_000,
    "1M image openers ![ (2 MB)": "![" * 1_000_000,
    "200k alternating emphasis": "*a " * 66_666,
    "100k backtick runs": "`a``" * 50_000,
    "2,000 nested list items": "".join("  " * i + "- x\n" for i in range(2000)),
    "20k <img without an end": "<img src=a " * 20_000,
    "50k unclosed <!--": "<!--" * 50_000,
    "5 MB on one line": "word " * 1_000_000,
}


def modules(tree: Path, *names: str) -> list[ModuleType]:
    """``names`` imported from the checkout at ``tree`` (the project's packages reloaded from there)."""
    for loaded in list(sys.modules):
        if loaded.split(".")[0] in ("kb", "ingestion"):
            del sys.modules[loaded]
    sys.path.insert(0, str(tree))
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(str(tree))


def cron_field(rng: random.Random, low: int, high: int) -> str:
    kind = rng.randrange(6)
    first = rng.randint(low, high)
    last = rng.randint(first, high)
    return ["*", str(first), f"{first}-{last}", f"*/{rng.randint(1, max(1, (high - low) // 2))}",
            ",".join(str(rng.randint(low, high)) for _ in range(rng.randint(2, 4))),
            f"{first}-{last}/{rng.randint(1, 5)}"][kind]


def next_runs(schedule: ModuleType, cases: list[tuple[str, datetime]]) -> tuple[list[Any], float]:
    out: list[Any] = []
    start = time.perf_counter()
    for expression, moment in cases:
        try:
            out.append(schedule.next_run(schedule.validate_schedule(expression), moment))
        except Exception as error:  # an old or new refusal: compared like a result
            out.append(type(error).__name__)
    return out, time.perf_counter() - start


def compare_schedules(old_tree: Path, count: int) -> None:
    rng = random.Random(7)
    fields = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    cases = [(" ".join(cron_field(rng, *field) for field in fields),
              datetime(2020, 1, 1) + timedelta(minutes=rng.randrange(60 * 24 * 365 * 8))) for _ in range(count)]
    (old,) = modules(old_tree, "ingestion.schedule")
    (new,) = modules(ROOT, "ingestion.schedule")
    old_runs, old_seconds = next_runs(old, cases)
    new_runs, new_seconds = next_runs(new, cases)
    differ = [(case, a, b) for case, a, b in zip(cases, old_runs, new_runs) if a != b]
    star_rule = [item for item in differ if any(field.startswith("*") and field != "*"
                                                for field in (item[0][0].split()[2], item[0][0].split()[4]))]
    print(f"schedules: {count} random cron expressions and start times: equal {count - len(differ)}, "
          f"differ {len(differ)}, of which the star-prefixed day rule {len(star_rule)}, other {len(differ) - len(star_rule)}")
    for (expression, moment), a, b in [item for item in differ if item not in star_rule][:5]:
        print(f"  other: {expression!r} after {moment}: old {a}, new {b}")
    print(f"  time for all: old {old_seconds:.2f} s, new {new_seconds:.2f} s")


def load_markdown(tree: Path, files: list[Path]) -> tuple[dict[Path, Any], float, Any]:
    markdown, base = modules(tree, "ingestion.loaders.markdown", "ingestion.loaders.base")
    loader, documents = markdown.MarkdownLoader(), {}
    loader.extract(files[0], b"# Warm-up\n\nText *with* [a link](x).\n", base.Limits(max_images=0), files[0].parent,
                   None)
    start = time.perf_counter()
    for path in files:
        documents[path] = loader.extract(path, path.read_bytes(), base.Limits(max_images=0), path.parent, None)
    return documents, time.perf_counter() - start, (markdown, base)


def compare_markdown(old_tree: Path, folders: list[Path]) -> None:
    files = sorted(path for folder in folders for path in folder.rglob("*.md") if path.is_file())
    if files:
        old, old_seconds, _ = load_markdown(old_tree, files)
        new, new_seconds, _ = load_markdown(ROOT, files)
        words = [collections.Counter(re.findall(r"\w+", documents[path].text)) for documents in (old, new)
                 for path in files]
        overlaps = [sum((a & b).values()) / max(1, sum((a | b).values()))
                    for a, b in zip(words[:len(files)], words[len(files):])]
        same_title = sum(old[path].title == new[path].title for path in files)
        megabytes = sum(path.stat().st_size for path in files) / 2**20
        print(f"markdown: {len(files)} files ({megabytes:.1f} MB): same title {same_title}/{len(files)}; visible-word "
              f"overlap median {statistics.median(overlaps):.4f}, min {min(overlaps):.4f}, identical words "
              f"{sum(o == 1 for o in overlaps)}; time old {old_seconds:.2f} s, new {new_seconds:.2f} s")
    for label, tree in (("old", old_tree), ("new", ROOT)):
        markdown, base = modules(tree, "ingestion.loaders.markdown", "ingestion.loaders.base")
        markdown.MarkdownLoader().extract(Path("warm-up.md"), b"# Warm-up\n", base.Limits(), Path("."), None)
        for name, text in ADVERSARIAL.items():
            start = time.perf_counter()
            markdown.MarkdownLoader().extract(Path("adversarial.md"), text.encode(),
                                              base.Limits(max_images=0, max_chars=10**9), Path("."), None)
            print(f"  {label} {name:44} {time.perf_counter() - start:7.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=Path, required=True, help="a checkout with the hand-written modules")
    parser.add_argument("--markdown", type=Path, action="append", default=[], help="folders of .md files")
    parser.add_argument("--expressions", type=int, default=3000)
    args = parser.parse_args()
    compare_schedules(args.compare, args.expressions)
    compare_markdown(args.compare, args.markdown)


if __name__ == "__main__":
    main()
