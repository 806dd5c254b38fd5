"""Exact identifiers in hybrid search: how often a query that is a code ranks the one file holding it first.

    python benchmarks/identifier_benchmark.py [--files 300] [--model FOLDER] [--encoder-backend torch]

Writes ``--files`` files, each "Record <code>. <twelve common words, 'order' among them>." (tests/identifiers.py),
ingests them with the packaged MiniLM, and for every fusion, before ("listed": a candidate missing from one
retriever's top list counts 0 there) and after true scores, asks each code alone and with a common word added
("order <code>"), counting the codes whose file comes first and within the top 10, with search latency.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.retrieval_benchmark import default_model
from kb import KnowledgeBase
from tests.identifiers import COMMON_WORD, write_coded_files

FUSIONS = ("calibrated", "rrf", "relative")


def measure(kb: KnowledgeBase, codes: dict[str, str], template: str) -> dict[str, float]:
    """Share of codes whose file is first and in the top 10 for queries ``template.format(code)``; latency."""
    first = top10 = 0
    latencies = []
    for value, name in codes.items():
        started = time.perf_counter()
        names = [Path(hit.path).name for hit in kb.search(template.format(value), k=10)]
        latencies.append((time.perf_counter() - started) * 1000)
        first += bool(names) and names[0] == name
        top10 += name in names
    return {"first": first / len(codes), "top10": top10 / len(codes), "p50_ms": statistics.median(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--model", default=None, help="sentence-transformers folder (default: packaged MiniLM)")
    parser.add_argument("--encoder-backend", default="torch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        codes = write_coded_files(Path(tmp) / "files", args.files)
        with KnowledgeBase.open(Path(tmp) / "kb", text_model=args.model or default_model(), device="cpu",
                                encoder_backend=args.encoder_backend, clip_model="none") as kb:
            kb.ingest(Path(tmp) / "files")
            kb.search("warm up", k=10)  # loads what the first search would, outside the measured latencies
            print(f"{len(codes)} files, one code each; share of codes whose file ranks first / in the top 10")
            print(f"{'fusion':<24}{'code: first':>12}{'top 10':>8}{'p50 ms':>8}"
                  f"{f'{COMMON_WORD} code: first':>20}{'top 10':>8}{'p50 ms':>8}")
            for fusion in FUSIONS:
                for true_scores in (False, True):
                    kb.settings.fusion.method, kb.settings.fusion.true_scores = fusion, true_scores
                    alone = measure(kb, codes, "{}")
                    beside = measure(kb, codes, COMMON_WORD + " {}")
                    name = fusion + ("" if true_scores else " (listed)")
                    print(f"{name:<24}{alone['first']:>12.3f}{alone['top10']:>8.3f}{alone['p50_ms']:>8.1f}"
                          f"{beside['first']:>20.3f}{beside['top10']:>8.3f}{beside['p50_ms']:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
