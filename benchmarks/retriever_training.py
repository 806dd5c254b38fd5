"""The retriever and the reranker trained on the company's questions, and weak supervision from its documents.

    python benchmarks/retriever_training.py train retriever --out /work/models/retriever-minilm
    python benchmarks/retriever_training.py train reranker --out /work/models/reranker-minilm
    python benchmarks/retriever_training.py train weak --out /work/models/retriever-weak   # --from-kb, no questions
    python benchmarks/retriever_training.py evaluate --retriever trained=/work/models/retriever-minilm \\
        --reranker /work/models/reranker-minilm --rerank-candidates 3 5 --threads 1

Training data: squad2-train-part's answerable questions with their paragraphs (development data; negatives mined
from those paragraphs, BM25 and dense, as ``kb train`` does). Weak supervision: ``kb train retriever --from-kb``
on a knowledge base of the evaluation corpus written as Markdown (each paragraph under its article's title as a
heading, each distractor under its own title): titles and headings are the only queries, no question is used.
Evaluation: xquad-en without the 5 titles it shares with the held-out squad2-dev-part (1,090 questions over 215
paragraphs) plus 2,000 Wikipedia distractors, one file each; recall@1/@5 of the gold paragraph and search latency
at k = 5, dense and hybrid, for the base MiniLM and each retriever (one ingestion, then ``reembed`` per retriever),
then each reranker on top of the last retriever given, once per ``--rerank-candidates`` value (the fused hits it
reads) and ``--rerank-weights`` value (its probability's share of the blended score), on ``--reranker-backend``;
each retriever's ``reembed`` is timed (the embedding cost of the corpus with that model). ``--on validation`` asks
instead the questions of the squad2-train-part articles that training holds out for validation, over that file's
694 paragraphs plus the distractors: where the rerank weight was chosen, so that xquad-en stays a measure. ``--retriever``
takes any sentence-transformers folder, trained or not (e.g. ``mpnet=/work/models/all-mpnet-base-v2``);
``--encoder-backend`` sets kb's ``encoder_backend`` for all of them (default ``auto``). ``--threads 1`` sets
torch's threads (which ONNX Runtime and OpenVINO follow) for ingestion, mining, training and search alike: on cores
busy with other work, one thread was several times faster per query.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.retrieval_benchmark import default_model, evaluate
from benchmarks.squad_corpus import DATASETS, DISTRACTORS, squad_titles, write_distractors, write_squad_corpus

K = 5


def held_out_titles(data: Path) -> set[str]:
    return squad_titles(data / DATASETS["squad2-dev-part"])


def validation_titles(data: Path) -> set[str]:
    """The squad2-train-part articles ``kb train`` holds out for validation with its default options (questions
    neither the trained retriever nor the reranker saw): where settings such as the rerank weight are chosen."""
    from training import TrainOptions
    from training.pairs import split_pairs, squad_pairs

    defaults = TrainOptions.model_fields
    _, validation = split_pairs(squad_pairs([data / DATASETS["squad2-train-part"]]).pairs,
                                defaults["validation_fraction"].default, defaults["seed"].default)
    return {pair.group for pair in validation}


def write_markdown_corpus(data: Path, folder: Path, distractors: int) -> None:
    """The evaluation corpus as a company's Markdown documents: a paragraph under its article's title, a distractor
    under its own title (the material ``--from-kb`` learns from)."""
    held_out = held_out_titles(data)
    articles = json.loads((data / DATASETS["xquad-en"]).read_text(encoding="utf-8"))["data"]
    folder.mkdir(parents=True, exist_ok=True)
    for number, article in enumerate(articles):
        if article["title"] in held_out:
            continue
        for index, paragraph in enumerate(article["paragraphs"]):
            (folder / f"{number:03d}-{index:03d}.md").write_text(
                f"# {article['title'].replace('_', ' ')}\n\n{paragraph['context']}\n", encoding="utf-8")
    summaries = json.loads((data / DISTRACTORS).read_text(encoding="utf-8"))
    for number, (title, entry) in enumerate(list(summaries.items())[:distractors]):
        text = (entry.get("extract") or "").strip()
        if text:
            (folder / f"d{number:05d}.md").write_text(f"# {entry.get('title') or title}\n\n{text}\n", encoding="utf-8")


def train(args: argparse.Namespace) -> int:
    from training import TrainOptions, train_reranker, train_retriever

    options = TrainOptions(out=args.out, base_model=args.base_model, epochs=args.epochs, batch_size=args.batch_size,
                           learning_rate=args.learning_rate, max_seconds=args.max_seconds, threads=args.threads,
                           max_seq_length=args.max_seq_length,
                           resume=args.resume, overwrite=args.overwrite)
    squad = [args.data / DATASETS["squad2-train-part"]]
    if args.what == "retriever":
        card = train_retriever(squad, options, hard_negatives=args.hard_negatives)
    elif args.what == "reranker":
        card = train_reranker(squad, options, hard_negatives=args.hard_negatives)
    else:
        from kb import KnowledgeBase

        with tempfile.TemporaryDirectory() as tmp:
            write_markdown_corpus(args.data, Path(tmp) / "docs", args.distractors)
            with KnowledgeBase.open(Path(tmp) / "kb", text_model=default_model(), clip_model="none", ocr="off",
                                    device="cpu") as knowledge_base:
                knowledge_base.ingest(Path(tmp) / "docs")
            card = train_retriever([], options, kb_dir=Path(tmp) / "kb", from_kb=True,
                                   hard_negatives=args.hard_negatives)
    print(card.model_dump_json(indent=2))
    return 0


def measure(args: argparse.Namespace) -> int:
    from kb import KnowledgeBase

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        if args.on == "validation":
            questions = write_squad_corpus(args.data, "squad2-train-part", corpus,
                                           question_titles=validation_titles(args.data))
        else:
            questions = write_squad_corpus(args.data, "xquad-en", corpus, held_out_titles(args.data))
        questions = questions[:args.max_questions]
        write_distractors(args.data, corpus / "distractors", args.distractors)
        retrievers = ([] if args.no_base else [("base MiniLM", default_model())]) + \
            [tuple(item.split("=", 1)) for item in args.retriever]
        kb_dir = Path(tmp) / "kb"
        backend = {"encoder_backend": args.encoder_backend}
        for number, (name, model) in enumerate(retrievers):
            with KnowledgeBase.open(kb_dir, text_model=model, device="cpu", clip_model="none", ocr="off",
                                    **backend) as kb:
                kb.encoder.encode(["warm up"])  # loads (and exports, once per backend) the model untimed
                if number == 0:
                    report = kb.ingest(corpus)
                    print(name, "ingest", json.dumps({"seconds": report.seconds,
                                                      "encoder_seconds": report.encoder_seconds}), flush=True)
                started = time.perf_counter()  # every retriever's vectors, the base's too: the embedding cost
                chunks = kb.reembed()
                embed_seconds = time.perf_counter() - started
                kb.search("warm up", k=K)
                for mode in ("dense", "hybrid"):
                    results[f"{name}, {mode}"] = {**evaluate(
                        lambda q, m=mode: [h.path for h in kb.search(q, k=K, mode=m)], questions),
                        "reembed_s": embed_seconds, "chunks": chunks, "backend": kb.settings.text_encoder.backend}
                    print(name, mode, json.dumps(results[f"{name}, {mode}"]), flush=True)
        name, model = retrievers[-1]  # the rerankers read the last retriever's hybrid hits (the space now built)
        for reranker, candidates, weight in itertools.product(args.reranker, args.rerank_candidates,
                                                              args.rerank_weights):
            with KnowledgeBase.open(kb_dir, text_model=model, device="cpu", clip_model="none", ocr="off",
                                    reranker_model=reranker, rerank_candidates=candidates, rerank_weight=weight,
                                    reranker_backend=args.reranker_backend, **backend) as kb:
                kb.search("warm up", k=K)
                label = f"{name}, hybrid + reranker {Path(reranker).name} ({candidates} candidates, weight {weight})"
                results[label] = evaluate(lambda q: [h.path for h in kb.search(q, k=K)], questions)
                print(label, json.dumps(results[label]), flush=True)
    print(f"\n{'retriever, mode':<72}{'R@1':>7}{'R@5':>7}{'p50 ms':>9}{'p95 ms':>9}{'embed s':>9}")
    for name, figures in results.items():
        print(f"{name:<72}{figures['recall@1']:>7.3f}{figures['recall@5']:>7.3f}{figures['p50_ms']:>9.1f}"
              f"{figures['p95_ms']:>9.1f}{figures.get('reembed_s', float('nan')):>9.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--distractors", type=int, default=2000)
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("train")
    training.add_argument("what", choices=["retriever", "reranker", "weak"])
    training.add_argument("--out", type=Path, required=True)
    training.add_argument("--base-model", default=None, help="the model to start from (default: kb train's)")
    training.add_argument("--epochs", type=float, default=None)
    training.add_argument("--batch-size", type=int, default=None)
    training.add_argument("--learning-rate", type=float, default=None)
    training.add_argument("--hard-negatives", type=int, default=1)
    training.add_argument("--max-seq-length", type=int, default=None)
    training.add_argument("--max-seconds", type=float, default=None)
    training.add_argument("--threads", type=int, default=None)
    training.add_argument("--resume", action="store_true")
    training.add_argument("--overwrite", action="store_true")
    evaluation = commands.add_parser("evaluate")
    evaluation.add_argument("--on", choices=["xquad", "validation"], default="xquad",
                            help="xquad: xquad-en's 1,090 development questions (the default); validation: the "
                                 "questions of the squad2-train-part articles training held out, over all its "
                                 "paragraphs (where settings are chosen)")
    evaluation.add_argument("--retriever", action="append", default=[], metavar="NAME=FOLDER")
    evaluation.add_argument("--reranker", action="append", default=[], metavar="FOLDER")
    evaluation.add_argument("--no-base", action="store_true",
                            help="leave the base MiniLM out (the first --retriever is the one ingested)")
    evaluation.add_argument("--rerank-candidates", type=int, nargs="+", default=[3],
                            help="fused hits each reranker reads; several values: one measurement each")
    evaluation.add_argument("--rerank-weights", type=float, nargs="+", default=[0.1],
                            help="the cross-encoder's share of a reranked hit's score (1: its order alone); several "
                                 "values: one measurement each")
    evaluation.add_argument("--reranker-backend", default="auto", help="kb's reranker_backend setting")
    evaluation.add_argument("--max-questions", type=int, default=None, help="ask only the first N questions")
    evaluation.add_argument("--encoder-backend", default="auto",
                            help="the text encoder's backend (kb's encoder_backend setting), for every retriever")
    evaluation.add_argument("--json", type=Path, default=None)
    evaluation.add_argument("--threads", type=int, default=None,
                            help="torch threads (default: torch's; on busy cores 1 can be faster)")
    args = parser.parse_args()
    if args.command == "evaluate" and args.no_base and not args.retriever:
        parser.error("--no-base needs a --retriever")
    if not args.data.is_dir():
        print(f"no data folder at {args.data}; pass --data", file=sys.stderr)
        return 2
    if args.threads:  # ingestion and searches too, not only the training steps
        import torch

        torch.set_num_threads(args.threads)
    return train(args) if args.command == "train" else measure(args)


if __name__ == "__main__":
    sys.exit(main())
