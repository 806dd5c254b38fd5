"""``kb train reader|retriever|reranker|clip|quantize-reader``: its arguments and its run. The trainers are
imported only when a training starts, so the parser costs nothing."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kb.errors import InvalidRequestError

if TYPE_CHECKING:
    from training.options import Distillation

KINDS = (("reader", "SQuAD v1.1/v2.0 JSON files"),
         ("retriever", "SQuAD files or JSONL {query, positive[, negatives]}"),
         ("reranker", "SQuAD files or JSONL {query, positive[, negatives]}"),
         ("clip", "JSONL {image: path relative to the file, caption (or captions: a list)}"))
UNANSWERABLE_SHARE_HELP = ("share of questions the knowledge base cannot answer, which the no-answer threshold is "
                           "tuned for (default 0.2; higher abstains more)")
FROM_KB = {"reader": "cloze questions made from its passages (a date, number, name or title blanked out)",
           "retriever": "titles and headings as queries for their passages",
           "reranker": "titles and headings as queries for their passages",
           "clip": "its images with their captions, alt texts and OCR text"}


def number_within(low: float, high: float, what: str) -> Callable[[str], float]:
    """An argparse type: a number from ``low`` to ``high`` (not NaN), else refused as not ``what``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


share = number_within(0.0, 1.0, "a share from 0 to 1")
temperature = number_within(0.01, 100.0, "a temperature from 0.01 to 100")
points = number_within(0.0, 100.0, "a number of F1 points from 0 to 100")


def add_train_parser(commands: Any) -> None:
    train = commands.add_parser("train", help="fine-tune the reader, the retriever, a reranker or CLIP on your data")
    kinds = train.add_subparsers(dest="kind", required=True)
    for kind, data_help in KINDS:
        command = kinds.add_parser(kind, help=f"train a {kind} from {data_help}")
        command.add_argument("data", nargs="*", type=Path, metavar="DATA", help=data_help)
        command.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the trained model")
        command.add_argument("--base-model", metavar="NAME", help="model to start from (name or folder)")
        command.add_argument("--validation", type=Path, action="append", default=[], metavar="FILE",
                             help="validation data (default: held out from DATA by article or document)")
        command.add_argument("--no-validation", action="store_false", dest="use_validation",
                             help="train on every example and keep the last step, scoring and tuning nothing: for a "
                             "recipe already chosen with validation")
        command.add_argument("--epochs", type=float)
        command.add_argument("--max-seconds", type=float, help="stop after this long, keeping the best checkpoint "
                             "(the last step with --no-validation)")
        command.add_argument("--batch-size", type=int)
        command.add_argument("--learning-rate", type=float)
        command.add_argument("--max-seq-length", type=int, help="tokens per example (reader: per window; clip: "
                             "refused, captions have the model's own length)")
        command.add_argument("--threads", type=int, help="CPU threads (default: every core)")
        command.add_argument("--seed", type=int, help="seeds the validation split, the new layers' starting weights "
                             "and the training order (default 0)")
        command.add_argument("--data-seed", type=int, help="seeds the training order alone: runs that differ only "
                             "here can be averaged into a model soup (default: --seed)")
        command.add_argument("--device", help="torch device (default: cuda when there is one)")
        command.add_argument("--overwrite", action="store_true", help="replace what --out holds")
        command.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
        command.add_argument("--from-kb", action="store_true",
                             help="also learn from the knowledge base (--kb): " + FROM_KB[kind])
        if kind in ("retriever", "reranker"):
            command.add_argument("--hard-negatives", type=int, default=1 if kind == "retriever" else 3,
                                 help="negatives mined per question from the knowledge base (--kb when it exists, "
                                 "else the training passages): BM25 and dense neighbours that are not the answer")
            command.add_argument("--mining-model", metavar="NAME",
                                 help="bi-encoder whose dense neighbours are the negatives when there is no --kb "
                                 "(default: " + ("the base model" if kind == "retriever"
                                                 else "the packaged all-MiniLM-L6-v2") + ")")
        if kind == "reader":
            command.add_argument("--unanswerable-share", type=share, metavar="SHARE",
                                 help=UNANSWERABLE_SHARE_HELP)
            command.add_argument("--teacher", type=Path, action="append", default=[], metavar="DIR",
                                 help="distil: also learn this trained reader's answer distributions on every window "
                                 "(repeatable: their logits are averaged); it must share the base model's vocabulary")
            command.add_argument("--distillation-weight", type=share, metavar="SHARE",
                                 help="share of the loss from the teachers (default 0.5; the rest from the gold spans)")
            command.add_argument("--temperature", type=temperature,
                                 help="softens the teachers' and the student's distributions (default 2)")
        if kind == "clip":
            command.add_argument("--pretrained", help="open_clip tag or checkpoint file to start from "
                                 "(default: the clip_pretrained setting)")
    quantize = kinds.add_parser("quantize-reader", help="calibrate a reader's int8 graph on SQuAD files and "
                                "record its validation F1 and the data-free int8 export's beside float32's (kb train "
                                "reader does it after training)")
    quantize.add_argument("model", type=Path, metavar="MODEL",
                          help="the reader's folder (the graph goes into MODEL/int8)")
    quantize.add_argument("data", nargs="*", type=Path, metavar="DATA",
                          help="SQuAD files to calibrate on (default: the training files on MODEL's card)")
    quantize.add_argument("--validation", type=Path, action="append", default=[], metavar="FILE",
                          help="questions to score float32 and int8 on (default: articles held out from DATA)")
    quantize.add_argument("--windows", type=int, default=300, help="calibration windows (default 300)")
    quantize.add_argument("--float", action="append", default=[], metavar="REGEX", dest="float_operations",
                          help="graph operations left in float32, by ONNX name (e.g. 'output/dense/MatMul' for the "
                          "attention and feed-forward outputs); repeatable")
    quantize.add_argument("--max-f1-drop", type=points, metavar="POINTS", help="accuracy control: put the operations "
                          "whose int8 costs most back in float, one by one, until F1 over up to 500 of the calibration "
                          "questions (never the validation ones) is at most "
                          "POINTS below float32's; minutes longer to make, and a slower graph the more it puts back")


def run_train(args: argparse.Namespace, kb_dir: Path) -> int:
    from kb.cards import summarise
    from training import train

    if args.kind == "quantize-reader":
        return _quantize_reader(args)

    distillation = _distillation(args) if args.kind == "reader" else None
    card = train(args.kind, args.data, out=args.out, kb_dir=kb_dir, from_kb=getattr(args, "from_kb", False),
                 hard_negatives=getattr(args, "hard_negatives", None), mining_model=getattr(args, "mining_model", None),
                 clip_pretrained=getattr(args, "pretrained", None),
                 unanswerable_share=getattr(args, "unanswerable_share", None), distillation=distillation,
                 base_model=args.base_model, epochs=args.epochs, max_seconds=args.max_seconds,
                 batch_size=args.batch_size, learning_rate=args.learning_rate,
                 max_seq_length=args.max_seq_length, validation=args.validation,
                 use_validation=args.use_validation, threads=args.threads, seed=args.seed, data_seed=args.data_seed,
                 device=args.device, overwrite=args.overwrite, resume=args.resume)
    print(summarise(card, args.out))
    return 0


def _distillation(args: argparse.Namespace) -> Distillation | None:
    """The reader's ``--teacher`` options; the weight and temperature alone are refused (they would do nothing)."""
    from training import Distillation

    tuning = {name: value for name, value in (("weight", args.distillation_weight), ("temperature", args.temperature))
              if value is not None}
    if not args.teacher:
        if tuning:
            raise InvalidRequestError("--distillation-weight and --temperature say how a --teacher teaches; give one")
        return None
    return Distillation(teachers=args.teacher, **tuning)


def _quantize_reader(args: argparse.Namespace) -> int:
    from answering.backends import INT8_F1_TOLERANCE, chosen_backend
    from training.int8 import quantize_reader

    card = quantize_reader(args.model, args.data, args.validation, windows=args.windows,
                           float_operations=args.float_operations, max_f1_drop=args.max_f1_drop)
    graph, weights = card.int8, card.int8_weights
    assert graph is not None  # quantize_reader records it, or raises
    print(f"validation: {graph.validation}\n  calibrated int8 graph: {graph.against_float32()}\n"
          + (f"  data-free int8 ({weights.graph}): {weights.against_float32()}\n" if weights else "") +
          f"the calibrated graph: {args.model / graph.graph}, calibrated on {graph.calibrated_on}\n"
          + (f"accuracy control: {graph.accuracy_control}\n" if graph.accuracy_control else "") +
          f"reader_backend=auto reads on a CPU here with {chosen_backend('auto', 'cpu', 'float32', str(args.model))} "
          f"(an int8 form only where its F1 loss plus one standard error is within {INT8_F1_TOLERANCE}, the "
          "data-free one only on CPUs that multiply int8 natively)")
    return 0
