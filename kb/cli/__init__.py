"""The ``kb`` command: ingest, search and ask; keep sources up to date on a schedule; check, repair, evaluate.

Start-up stays short: this module imports no model library, and the knowledge base and its pipelines are imported
only by the commands that use them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from kb.cli import show
from kb.cli.logs import configure_logging
from kb.cli.progress import Progress
from kb.cli.terminal import is_terminal, one_line
from kb.cli.train import UNANSWERABLE_SHARE_HELP, add_train_parser, run_train, share
from kb.config import CONFIG_FILE
from kb.errors import InvalidRequestError, KbError
from kb.types import Filters

if TYPE_CHECKING:
    from kb.knowledge_base import KnowledgeBase


def _version() -> str:
    try:
        return version("multimodal-kb")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kb", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"kb {_version()}")
    parser.add_argument("--kb", metavar="DIR", help="knowledge base directory (default: $KB_HOME or ./.kb)")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="ingest a folder (incrementally)")
    ingest.add_argument("folder")

    search = commands.add_parser("search", help="search the knowledge base by text, or by image with --image")
    search.add_argument("query", nargs="?")
    search.add_argument("--image", metavar="FILE", help="find images and passages near this image")
    search.add_argument("--modality", action="append", choices=["text", "image"],
                        help="only this kind of result (repeatable; default both)")
    search.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    search.add_argument("--mode", choices=["hybrid", "dense", "keyword"], default="hybrid")
    search.add_argument("--path", action="append", metavar="GLOB", help="only paths matching this glob")
    search.add_argument("--type", action="append", metavar="EXT", help="only this file type (pdf, docx, ...)")
    search.add_argument("--modified-after", type=datetime.fromisoformat, metavar="DATE")
    search.add_argument("--modified-before", type=datetime.fromisoformat, metavar="DATE")
    search.add_argument("--full", action="store_true",
                        help="print each hit's whole text (default: the part that best matches the query)")

    preview = commands.add_parser("preview", help="write the stored preview of an image hit to a JPEG file")
    preview.add_argument("chunk", type=int, help="the image hit's chunk id")
    preview.add_argument("out", type=Path)

    commands.add_parser("stats", help="show what the knowledge base holds")
    commands.add_parser("reembed", help="re-embed every chunk and rebuild keyword postings with the configured models")

    ask = commands.add_parser("ask", help="answer a question from the knowledge base, with citations")
    ask.add_argument("question")
    ask.add_argument("-k", type=int, default=5, help="passages retrieved and read (default 5)")
    ask.add_argument("--answers", type=int, default=3, help="answers returned at most (default 3)")

    evaluate = commands.add_parser("eval", help="evaluate on a benchmark file")
    benchmarks = evaluate.add_subparsers(dest="benchmark", required=True)
    squad = benchmarks.add_parser("squad", help="SQuAD v1.1/v2.0 file: reader on gold contexts, or open mode")
    squad.add_argument("file", type=Path)
    squad.add_argument("--mode", choices=["reader", "open"], default="reader",
                       help="reader: each question on its gold paragraph; open: retrieve from all paragraphs")
    squad.add_argument("--distractors", type=Path, metavar="DIR", help="open mode: a folder ingested as well")
    squad.add_argument("-k", "--k", type=int, default=5, help="open mode: passages retrieved and read")
    squad.add_argument("--limit", type=int, metavar="N", help="only the first N questions")
    squad.add_argument("--out", type=Path, default=Path("squad-eval.json"), help="JSON results file")
    squad.add_argument("--tune-threshold", action="store_true",
                       help="reader mode: choose the no-answer threshold that maximises F1 on this file, and record "
                       "it in the reader folder's training.json (tune on validation data, not on a test set)")
    squad.add_argument("--unanswerable-share", type=share, metavar="SHARE",
                       help="with --tune-threshold: " + UNANSWERABLE_SHARE_HELP)
    add_train_parser(commands)

    source = commands.add_parser("source", help="manage the folders kept up to date")
    source_commands = source.add_subparsers(dest="source_command", required=True)
    add = source_commands.add_parser("add", help="register a folder, optionally on a schedule")
    add.add_argument("folder")
    when = add.add_mutually_exclusive_group()
    when.add_argument("--schedule", metavar="CRON", help='cron expression, e.g. "*/30 * * * *"')
    when.add_argument("--every", metavar="INTERVAL", help="interval, e.g. 15m, 2h, 1d")
    source_commands.add_parser("list", help="list the sources and when each is next due")
    remove = source_commands.add_parser("remove", help="forget a folder and delete its documents")
    remove.add_argument("folder")

    scheduler = commands.add_parser("scheduler", help="run due reindex jobs until stopped (SIGTERM or Ctrl-C)")
    scheduler.add_argument("--poll", type=float, default=30.0, metavar="SECONDS", help="longest sleep, 0.05 to 86400 (default 30)")
    reindex = commands.add_parser("reindex", help="reindex one source, or every source, now")
    reindex.add_argument("source", nargs="?")
    jobs = commands.add_parser("jobs", help="history of ingest and reindex runs")
    jobs.add_argument("--limit", type=int, default=20)
    doctor = commands.add_parser("doctor", help="check database, indexes and files agree")
    doctor.add_argument("--repair", action="store_true", help="fix what is found")

    for command in (ingest, reindex):
        command.add_argument("--allow-removal", action="store_true",
                             help="remove the documents of missing files even when the folder is empty or more than "
                             "max_removed_share of them are missing (default: keep them, as for an unmounted share)")
        command.add_argument("--reread", action="store_true",
                             help="read again the unchanged files that failed or were read only in part (after "
                             "installing OCR or raising a limit)")
        command.add_argument("--verbose", "-v", action="store_true",
                             help="also list empty files and files read only in part, with why")
        command.add_argument("--strict", action="store_true",
                             help="exit with status 1 when any file failed (default: 1 only when every file tried failed)")
    json_commands = (ingest, search, ask, commands.choices["stats"], add, source_commands.choices["list"],
                     reindex, jobs, doctor)
    for command in json_commands:
        command.add_argument("--json", action="store_true", help="print JSON for machines")
    return parser


def _emit(args: argparse.Namespace, value: BaseModel | list[Any], human: Callable[[], None]) -> None:
    """JSON with --json (exact, unescaped), else the human-readable form."""
    if getattr(args, "json", False):
        data = [item.model_dump(mode="json") for item in value] if isinstance(value, list) \
            else value.model_dump(mode="json")
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        human()


def _filters(args: argparse.Namespace) -> Filters | None:
    filters = Filters(path_glob=args.path, file_types=args.type, modified_after=args.modified_after,
                      modified_before=args.modified_before)
    return None if filters.is_empty() else filters


def _ingest(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    with Progress() as progress:
        report = knowledge_base.ingest(args.folder, progress=progress, allow_removal=args.allow_removal,
                                       reread=args.reread)
    _emit(args, report, lambda: show.report(report, args.verbose))
    return 1 if report.read_nothing() or (args.strict and report.failed) else 0


def _search(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    if (args.query is None) == (args.image is None):
        raise InvalidRequestError("give a query, or --image FILE")
    hits = knowledge_base.search(args.query, k=args.k, mode=args.mode, filters=_filters(args),
                                 modalities=args.modality, image=args.image)
    _emit(args, hits, lambda: show.hits(hits, args.query, knowledge_base.keywords, args.full, is_terminal()))
    return 0


def _preview(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    args.out.write_bytes(knowledge_base.image_preview(args.chunk))
    print(f"wrote {args.out}")
    return 0


def _stats(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    stats = knowledge_base.stats()
    _emit(args, stats, lambda: show.stats(stats))
    return 0


def _reembed(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    print(f"re-embedded {knowledge_base.reembed()} chunks")
    return 0


def _source(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    if args.source_command == "add":
        # An empty --schedule "" or --every "" is an error of validation, not a request to unschedule.
        schedule = args.schedule if args.every is None else f"every {args.every}"
        info = knowledge_base.add_source(args.folder, schedule)
        _emit(args, info, lambda: show.sources([info]))
    elif args.source_command == "list":
        found = knowledge_base.sources()
        _emit(args, found, lambda: show.sources(found))
    else:
        print(f"removed the source; {knowledge_base.remove_source(args.folder)} documents deleted")
    return 0


def _scheduler(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    import signal

    def on_report(report: Any) -> None:
        show.run_reports([report])
        sys.stdout.flush()

    scheduler = knowledge_base.scheduler(poll_seconds=args.poll, on_report=on_report)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: scheduler.stop())
    print(f"scheduler running for {knowledge_base.directory}; SIGTERM or Ctrl-C stops it", flush=True)
    scheduler.run()
    print("scheduler stopped", flush=True)
    return 0


def _reindex(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    with Progress() as progress:
        reports = knowledge_base.reindex(args.source, progress=progress, allow_removal=args.allow_removal,
                                         reread=args.reread)
    _emit(args, reports, lambda: show.run_reports(reports, args.verbose))
    failed = any(report.read_nothing() or (args.strict and report.failed) for report in reports)
    return 1 if failed else 0


def _jobs(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    found = knowledge_base.jobs(args.limit)
    _emit(args, found, lambda: show.jobs(found))
    return 0


def _doctor(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    report = knowledge_base.doctor(repair=args.repair)
    _emit(args, report, lambda: show.doctor(report, args.repair))
    return 0 if report.healthy else 1


def _ask(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    result = knowledge_base.ask(args.question, k=args.k, top_k=args.answers)
    _emit(args, result, lambda: show.answers(result, knowledge_base.keywords, terminal=is_terminal()))
    return 0


def _writable_file(path: Path) -> None:
    """Refuse an ``--out`` that cannot be written before the work runs, not after it, when its results are lost."""
    if path.is_dir():
        raise InvalidRequestError(f"--out {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise InvalidRequestError(f"--out {path}: the folder {path.parent} does not exist")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise InvalidRequestError(f"--out {path} cannot be written (permission denied)")


def _evaluate(args: argparse.Namespace) -> int:
    from answering.squad_eval import evaluate

    if args.kb is not None:  # its settings come from KB_* variables, its knowledge base (open mode) is temporary
        raise InvalidRequestError("kb eval uses no knowledge base, so --kb would be ignored: leave it out, and give "
                                  "models and settings as KB_* variables (KB_READER_MODEL=...)")
    _writable_file(args.out)
    if args.unanswerable_share is not None and not args.tune_threshold:
        raise InvalidRequestError("--unanswerable-share is what --tune-threshold tunes for; give both")
    tuned_for = {} if args.unanswerable_share is None else {"unanswerable_share": args.unanswerable_share}
    report = evaluate(args.file, args.mode, {}, k=args.k, distractors=args.distractors, limit=args.limit,
                      tune_threshold=args.tune_threshold, **tuned_for)
    print(report.table())
    args.out.write_text(report.model_dump_json(by_alias=True, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {args.out}")
    return 0


COMMANDS: dict[str, Callable[[KnowledgeBase, argparse.Namespace], int]] = {
    "ingest": _ingest, "search": _search, "ask": _ask, "stats": _stats, "reembed": _reembed, "preview": _preview,
    "source": _source, "scheduler": _scheduler, "reindex": _reindex, "jobs": _jobs, "doctor": _doctor,
}


def _check_before_opening(args: argparse.Namespace, directory: Path) -> None:
    """Refuse, before anything is created, what cannot work: a command other than ``ingest`` and ``source add`` (the
    two that create a knowledge base) where none exists, as after a mistyped ``--kb``, or either of those two for a
    folder that does not exist."""
    creates = args.command == "ingest" or (args.command == "source" and args.source_command == "add")
    if creates and not Path(args.folder).expanduser().is_dir():
        raise NotADirectoryError(f"{args.folder} is not a folder; nothing was changed")
    if not creates and not (directory / CONFIG_FILE).exists():
        raise FileNotFoundError(f"no knowledge base at {directory}; `kb ingest FOLDER` creates it")


def run(args: argparse.Namespace) -> int:
    if args.command == "eval":
        configure_logging(None)
        return _evaluate(args)
    from kb.knowledge_base import KnowledgeBase, knowledge_base_dir

    directory = knowledge_base_dir(args.kb)
    if args.command == "train":
        configure_logging(None)
        return run_train(args, directory)
    _check_before_opening(args, directory)
    with KnowledgeBase.open(directory) as knowledge_base:
        configure_logging(directory)
        return COMMANDS[args.command](knowledge_base, args)


def _describe(error: BaseException) -> str:
    """One line for the user: a settings or filter mistake without pydantic's tutorial links."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, issue['loc'])) + ': ' if issue['loc'] else ''}"
                         f"{str(issue['msg']).removeprefix('Value error, ')}" for issue in error.errors())
    if isinstance(error, OSError) and not isinstance(error, KbError) and error.strerror:
        where = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
        return one_line(f"{where}: {error.strerror}" if where else error.strerror)  # not "[Errno 21] ..."
    return one_line(str(error))


def _printable_anywhere() -> None:
    """A character the output's encoding lacks (a Chinese file name or the job list's arrow on a Latin-1 terminal)
    is printed as an escape (``\\u2192``), not raised as an error after the work is done."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    _printable_anywhere()
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except BrokenPipeError:  # `kb jobs | head`: the reader left; Python must not fail again flushing at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command ended by it
    except (KbError, ValidationError, OSError) as error:
        # OSError: what the system refused (--kb naming a file, a folder without write permission, an image path
        # that is a folder) is the user's to fix, with the path and reason, not a traceback.
        print(f"kb: error: {_describe(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kb: interrupted; work committed so far is kept", file=sys.stderr)
        return 130
