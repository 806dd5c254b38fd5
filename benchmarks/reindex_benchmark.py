"""Reindex cost on a large folder: nothing changed and 1% changed, against a full rebuild.

    python benchmarks/reindex_benchmark.py [--data ../shared/data] [--files 10000] [--changed 0.01] [--repeat 3]

The folder holds one file per Wikipedia summary from ``wiki-distractors`` (generated paragraphs when the data is
absent). A full ingest into an empty knowledge base is the rebuild; then the unchanged folder is reindexed, and
again after editing ``--changed`` of the files. Prints medians over ``--repeat`` runs and the ratios to the rebuild.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.squad_corpus import write_distractors
from kb import KnowledgeBase

WORDS = ("river market engine harvest signal garden winter copper ledger canyon orbit meadow lantern "
         "harbor quartz violet summit thunder pillar atlas").split()


def write_folder(data: Path, folder: Path, files: int) -> str:
    """``files`` text files; says where their text came from."""
    if (data / "wiki-distractors").exists() and write_distractors(data, folder, files) == files:
        return "wiki-distractors summaries"
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(files):
        text = " ".join(rng.choice(WORDS) for _ in range(120))
        (folder / f"{number:05d}.txt").write_text(f"Document {number}. {text}.", encoding="utf-8")
    return "generated paragraphs"


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of files edited (default 0.01)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default=None, help="sentence-transformers folder (default: packaged MiniLM)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        origin = write_folder(args.data, folder, args.files)
        files = sorted(folder.iterdir())
        overrides = {"device": "cpu"} | ({"text_model": args.model} if args.model else {})
        with KnowledgeBase.open(Path(tmp) / "kb", **overrides) as kb:
            kb.encoder.encode(["warm up"])
            full = kb.ingest(folder)
            print(f"{len(files)} files ({origin}); full ingest: {full.seconds:.1f}s, "
                  f"{kb.stats().chunks} chunks, encoder {full.encoder_seconds:.1f}s")
            unchanged = [timed(lambda: kb.ingest(folder)) for _ in range(args.repeat)]
            edited = []
            rng = random.Random(1)
            for round_number in range(args.repeat):
                for path in rng.sample(files, max(1, int(len(files) * args.changed))):
                    path.write_text(path.read_text(encoding="utf-8") + f" Edited in round {round_number}.",
                                    encoding="utf-8")
                edited.append(timed(lambda: kb.ingest(folder)))
        no_change, one_percent = statistics.median(unchanged), statistics.median(edited)
        print(f"reindex, nothing changed: {no_change:.2f}s median = {no_change / full.seconds:.2%} of the full ingest")
        print(f"reindex, {args.changed:.0%} changed: {one_percent:.2f}s median = "
              f"{one_percent / full.seconds:.2%} of the full ingest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
