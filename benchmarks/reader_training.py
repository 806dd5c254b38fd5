"""Train the reader from the packaged MiniLM on the SQuAD train parts, then evaluate it on XQuAD English.

Training data: squad2-train-part + squad1-train-part (development data), validation held out from them by article.
Evaluation: ``kb eval squad`` in reader mode on xquad-en without the 5 titles it shares with the held-out
squad2-dev-part (1,090 questions), for each variant asked for: a torch precision, and for int8 the Linear layers
left in float32 (regular expressions, the ``reader_int8_float_layers`` setting), or a ``reader_backend``;
optionally the held-out squad2-dev-part too, at the threshold the card holds (tuned on the validation split) and at
any ``--threshold`` given.

    python benchmarks/reader_training.py train --out /work/models/reader-minilm [--resume]
    python benchmarks/reader_training.py cloze --out /work/models/cloze-wiki.json   # then kb train reader on it,
    python benchmarks/reader_training.py cloze --recurring --out /work/models/recurring-wiki.json  # (and on both)
    python benchmarks/reader_training.py train --out /work/models/reader-cloze --base-model THAT_READER
    python benchmarks/reader_training.py train --out /work/models/reader-all --no-validation ...  # the recipe refit
    python benchmarks/reader_training.py train --out /work/models/student --teacher READER [--teacher READER2]
    python benchmarks/reader_training.py evaluate --model /work/models/reader-minilm \
        --variant float32 --variant int8 --variant 'int8:qa_outputs' --variant 'int8:qa_outputs,layer\\.\\d+\\.output\\.dense$'
    python benchmarks/reader_training.py evaluate --model /work/models/reader-minilm2 \
        --variant openvino --variant openvino-int8 --variant openvino-int8-static \
        --variant openvino-int8-static@/work/models/reader-minilm2-attention-float   # another graph of the same model
    python benchmarks/reader_training.py tune --model /work/models/reader-minilm [--unanswerable-share 0.2]
    python benchmarks/reader_training.py ask --model /work/models/reader-minilm --threshold 0.1 --threshold 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.squad_corpus import DATASETS, DISTRACTORS, squad_titles


def xquad_without_held_out(data: Path, folder: Path) -> Path:
    """xquad-en minus the articles whose titles are in squad2-dev-part, as a SQuAD file in ``folder``."""
    held_out = squad_titles(data / DATASETS["squad2-dev-part"])
    xquad = json.loads((data / DATASETS["xquad-en"]).read_text(encoding="utf-8"))
    xquad["data"] = [article for article in xquad["data"] if article["title"] not in held_out]
    path = folder / "xquad-en-dev.json"
    path.write_text(json.dumps(xquad), encoding="utf-8")
    return path


def train(args: argparse.Namespace) -> int:
    from training.options import Distillation, TrainOptions
    from training.reader import train_reader

    files = [args.data / DATASETS["squad2-train-part"], args.data / DATASETS["squad1-train-part"]]
    options = TrainOptions(out=args.out, base_model=args.base_model, epochs=args.epochs, batch_size=args.batch_size,
                           learning_rate=args.learning_rate, max_seq_length=args.max_seq_length,
                           max_seconds=args.max_seconds, resume=args.resume, overwrite=args.overwrite,
                           checkpoint_minutes=args.checkpoint_minutes, threads=args.threads,
                           data_seed=args.data_seed, use_validation=args.use_validation)
    distillation = Distillation(teachers=args.teacher, weight=args.distillation_weight,
                                temperature=args.temperature) if args.teacher else None
    card = train_reader(files, options, distillation=distillation)
    print(card.model_dump_json(indent=2))
    return 0


def cloze(args: argparse.Namespace) -> int:
    """Cloze questions (``kb train reader --from-kb``'s) from the wiki-distractors summaries, less the articles of
    xquad-en and squad2-dev-part, as a SQuAD file: a stand-in for a company's documents with no questions."""
    from training.cloze import cloze_questions

    evaluated = {title.replace("_", " ") for name in ("xquad-en", "squad2-dev-part")
                 for title in squad_titles(args.data / DATASETS[name])}
    summaries = json.loads((args.data / DISTRACTORS).read_text(encoding="utf-8"))
    passages = [(title, entry["extract"]) for title, entry in sorted(summaries.items()) if title not in evaluated]
    squad, skipped = cloze_questions(passages, per_passage=args.per_passage, seed=args.seed,
                                     recurring=args.recurring)
    articles: dict[str, dict] = {}
    paragraphs: dict[int, dict] = {}
    for question in squad.questions:
        title, context = squad.paragraphs[question.paragraph]
        article = articles.setdefault(title, {"title": title, "paragraphs": []})
        if question.paragraph not in paragraphs:
            paragraphs[question.paragraph] = {"context": context, "qas": []}
            article["paragraphs"].append(paragraphs[question.paragraph])
        paragraphs[question.paragraph]["qas"].append(
            {"id": question.id, "question": question.question,
             "answers": [{"text": question.answers[0], "answer_start": question.answer_starts[0]}]})
    args.out.write_text(json.dumps({"version": "1.1", "data": list(articles.values())}, ensure_ascii=False),
                        encoding="utf-8")
    print(f"{len(squad.questions)} cloze questions from {len(passages)} summaries ({len(summaries) - len(passages)} "
          f"evaluation articles left out; skipped: {dict(skipped)}) in {args.out}")
    for question in squad.questions[: args.show]:
        print(f"  {question.question} -> {question.answers[0]}")
    return 0


def tune(args: argparse.Namespace) -> int:
    """Tune (again) the trained reader's no-answer threshold on its validation split, as ``kb train reader`` does
    after training, and record it on its card."""
    from answering.squad_eval import tune_as_asked, tuning_description
    from kb.cards import read_card, write_card
    from kb.config import Settings
    from training.squad_data import load_squad_files, split_by_title

    card = read_card(args.model)
    if card is None:
        print(f"no training card in {args.model}", file=sys.stderr)
        return 2
    if card.hyperparameters.get("no_validation"):
        print(f"{args.model} trained on every question of its data (no validation): tune it with kb eval squad "
              "--tune-threshold on questions it never saw", file=sys.stderr)
        return 2
    if card.validation_data:  # given files: the reader trained on every question of its data
        validation, _ = load_squad_files([Path(file.path) for file in card.validation_data])
        split = card.validation_split
    else:
        squad, _ = load_squad_files([Path(file.path) for file in card.data])
        _, validation, split = split_by_title(squad, 0.1, card.hyperparameters.get("seed", 0))
    settings = Settings(reader_model=str(args.model), device="cpu",
                        reader_max_seq_length=card.hyperparameters["max_seq_length"],
                        reader_stride=card.hyperparameters["stride"])
    card.no_answer_threshold = tune_as_asked(validation, settings, args.unanswerable_share)
    card.threshold_tuned_on = f"the validation questions ({split}), {tuning_description(args.unanswerable_share)}"
    write_card(args.model, card)
    print(f"no-answer threshold {card.no_answer_threshold:.4f} recorded in {args.model}/training.json")
    return 0


def ask(args: argparse.Namespace) -> int:
    """The reader through ``ask`` on xquad-en minus the held-out titles: a knowledge base holds every other article
    (by title), and every question is asked of it, so the questions on the other articles have no answer there.
    Prints F1 on the questions it can answer and the share of the others it abstains on, at each threshold."""
    from answering.squad_eval import load_squad, paragraphs_knowledge_base
    from answering.squad_metrics import best_scores
    from answering.threshold import model_threshold

    thresholds = sorted({*args.threshold, model_threshold(str(args.model))})
    with tempfile.TemporaryDirectory() as tmp:
        squad = load_squad(xquad_without_held_out(args.data, Path(tmp)))
        held = set(sorted({title for title, _ in squad.paragraphs})[::2])
        corpus = squad.model_copy(update={"paragraphs": [(title, context) for title, context in squad.paragraphs
                                                         if title in held], "questions": []})
        reads = []
        with paragraphs_knowledge_base(corpus, Path(tmp), {"reader_model": str(args.model), "device": "cpu"}) \
                as (knowledge_base, _):
            started = time.perf_counter()
            for question in squad.questions:
                result = knowledge_base.ask(question.question, k=args.k, top_k=1, threshold=0.0)
                best = result.answers[0] if result.answers else None
                golds = question.answers if squad.paragraphs[question.paragraph][0] in held else []
                reads.append((best.text if best else "", best.score if best else 0.0, golds))
            seconds = time.perf_counter() - started
    answerable = [read for read in reads if read[2]]
    unanswerable = [read for read in reads if not read[2]]
    print(f"{len(answerable)} questions on the {len(held)} articles held, {len(unanswerable)} on the others; "
          f"k={args.k}; {seconds / len(reads) * 1000:.0f} ms per question")
    results = {}
    for threshold in thresholds:
        f1 = 100 * sum(best_scores(text if score >= threshold else "", golds)[1]
                       for text, score, golds in answerable) / len(answerable)
        abstained = 100 * sum(1 for text, score, _ in unanswerable if score < threshold or not text) / len(unanswerable)
        results[threshold] = {"answerable_f1": round(f1, 1), "unanswerable_abstained": round(abstained, 1)}
        print(f"threshold {threshold:.3f}: F1 {f1:.1f} on the answerable, abstains on {abstained:.1f}% of the others")
    if args.json:
        args.json.write_text(json.dumps({str(t): r for t, r in results.items()}, indent=2), encoding="utf-8")
    return 0


def variant_settings(variant: str) -> dict[str, object]:
    """The reader settings a ``--variant`` names: a ``reader_backend`` other than torch (``openvino``,
    ``openvino-int8-static``, ...), else a torch precision with the Linear layers left in float32 under int8
    (``int8:REGEX,REGEX``)."""
    from typing import get_args

    from kb.config import ReaderBackend

    if variant in get_args(ReaderBackend) and variant != "torch":
        return {"reader_backend": variant}
    precision, _, layers = variant.partition(":")
    return {"reader_backend": "torch", "reader_precision": precision,
            "reader_int8_float_layers": [layer for layer in layers.split(",") if layer]}


def evaluate(args: argparse.Namespace) -> int:
    import torch

    from answering.squad_eval import evaluate as squad_evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    args.variant = args.variant or ["float32"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        if "xquad" in args.sets:
            sets["xquad-en minus held-out titles"] = xquad_without_held_out(args.data, Path(tmp))
        if "held-out" in args.sets:
            sets["squad2-dev-part (held out)"] = args.data / DATASETS["squad2-dev-part"]
        for name, path in sets.items():
            first: dict[str, str] | None = None
            for variant in args.variant:
                setting, _, folder = variant.partition("@")
                overrides = {"reader_model": folder or str(args.model), "device": "cpu", **variant_settings(setting)}
                if args.threshold is not None:
                    overrides["reader_no_answer_threshold"] = args.threshold
                started = time.perf_counter()
                report = squad_evaluate(path, "reader", overrides, limit=args.limit)
                figures = report.model_dump(by_alias=True, exclude={"predictions", "tuned"}, exclude_none=True)
                figures["wall_seconds"] = round(time.perf_counter() - started, 1)
                if first is None:
                    first, first_f1 = report.predictions, report.f1
                else:
                    figures |= paired(path, args.limit, first, report.predictions, report.f1 - first_f1)
                results[f"{name}, {variant}"] = figures
                print(f"{name}, {variant}:", json.dumps(figures), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


def paired(path: Path, limit: int | None, first: dict[str, str], other: dict[str, str],
           difference: float) -> dict[str, float | int]:
    """A variant against the first, question by question: its F1 difference with the standard error of that
    difference, and how many answers differ."""
    from answering.int8 import paired_standard_error
    from answering.squad_eval import load_squad

    squad = load_squad(path, limit)
    return {"f1_vs_first": round(difference, 3), "f1_vs_first_se": round(paired_standard_error(squad, first, other), 3),
            "answers_changed": sum(first[key] != other[key] for key in first)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("train")
    training.add_argument("--out", type=Path, required=True)
    training.add_argument("--base-model", default=None, help="default: the packaged MiniLM")
    training.add_argument("--epochs", type=float, default=2.0)
    training.add_argument("--batch-size", type=int, default=16)
    training.add_argument("--learning-rate", type=float, default=1e-4)
    training.add_argument("--max-seq-length", type=int, default=None)
    training.add_argument("--max-seconds", type=float, default=None)
    training.add_argument("--checkpoint-minutes", type=float, default=10.0)
    training.add_argument("--threads", type=int, default=None)
    training.add_argument("--data-seed", type=int, default=None, help="training order only (soup ingredients)")
    training.add_argument("--no-validation", action="store_false", dest="use_validation",
                          help="train on every question (the validation articles too) and keep the last step")
    training.add_argument("--resume", action="store_true")
    training.add_argument("--teacher", type=Path, action="append", default=[], help="distil from these readers")
    training.add_argument("--distillation-weight", type=float, default=0.5)
    training.add_argument("--temperature", type=float, default=2.0)
    training.add_argument("--overwrite", action="store_true")
    cloze_file = commands.add_parser("cloze")
    cloze_file.add_argument("--out", type=Path, required=True)
    cloze_file.add_argument("--seed", type=int, default=0)
    cloze_file.add_argument("--per-passage", type=int, default=1, help="cloze questions asked of each summary")
    cloze_file.add_argument("--recurring", action="store_true",
                            help="recurring-span questions: the answer found again with its sentence taken out")
    cloze_file.add_argument("--show", type=int, default=20, help="print the first N questions")
    tuning = commands.add_parser("tune")
    tuning.add_argument("--model", type=Path, required=True)
    tuning.add_argument("--unanswerable-share", type=float, default=0.2)
    asking = commands.add_parser("ask")
    asking.add_argument("--model", type=Path, required=True)
    asking.add_argument("-k", type=int, default=5)
    asking.add_argument("--threshold", type=float, action="append", default=[],
                        help="thresholds to score besides the card's; repeatable")
    asking.add_argument("--json", type=Path, default=None)
    evaluation = commands.add_parser("evaluate")
    evaluation.add_argument("--model", type=Path, required=True)
    evaluation.add_argument("--variant", action="append", default=[],
                            help="PRECISION[:REGEX,REGEX...] on torch (layers left in float32 under int8), or a "
                            "reader_backend (openvino, openvino-int8, openvino-int8-static, ...), each optionally "
                            "@FOLDER for another copy of the model (another calibrated graph); repeatable; each after "
                            "the first is also compared with it question by question (F1 difference, its standard "
                            "error, answers changed)")
    evaluation.add_argument("--limit", type=int, default=None, help="only the first N questions of each set")
    evaluation.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    evaluation.add_argument("--threshold", type=float, default=None, help="default: the model's card")
    evaluation.add_argument("--sets", nargs="+", choices=["xquad", "held-out"], default=["xquad"],
                            help="xquad: xquad-en minus the held-out titles; held-out: squad2-dev-part (report only, "
                            "never tune on it)")
    evaluation.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no data folder at {args.data}; pass --data", file=sys.stderr)
        return 2
    return {"train": train, "cloze": cloze, "tune": tune, "ask": ask, "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
