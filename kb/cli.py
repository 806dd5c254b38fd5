"""The ``kb`` command: ingest, search and ask; keep sources up to date on a schedule; check, repair, evaluate."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from ingestion.loaders import LoadError
from ingestion.schedule import ScheduleError
from kb.config import CONFIG_FILE
from kb.encoders import ModelNotFoundError
from kb.knowledge_base import KnowledgeBase, NotAnImageError, knowledge_base_dir
from kb.sources import SourceNotFoundError
from kb.storage.database import SchemaError
from kb.storage.lock import WriterBusyError
from kb.storage.store import EncoderMismatchError
from kb.types import AskResult, DoctorReport, Filters, Hit, IngestReport, Job, SourceInfo, Stats
from retrieval.retriever import ImageSearchUnavailable

EXPECTED_ERRORS = (ModelNotFoundError, EncoderMismatchError, WriterBusyError, SchemaError, NotADirectoryError,
                   FileNotFoundError, SourceNotFoundError, ScheduleError, ValidationError, ValueError,
                   ImageSearchUnavailable, LoadError, NotAnImageError)


@contextmanager
def _progress_bar() -> Iterator[Callable[[int, int, str], None]]:
    """A tqdm bar on stderr (silent when stderr is not a terminal), created once the total is known."""
    bars: list[tqdm] = []

    def update(done: int, total: int, path: str) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="file", file=sys.stderr, disable=None, dynamic_ncols=True))
        bars[0].set_postfix_str(path[-40:], refresh=False)
        bars[0].update(done - bars[0].n)

    try:
        yield update
    finally:
        for bar in bars:
            bar.close()


def _print_report(report: IngestReport) -> None:
    for failure in report.failed:
        print(f"failed   {failure.path}: {failure.reason}")
    for skipped in report.skipped:
        print(f"skipped  {skipped.path}: {skipped.reason}")
    for notice in report.notices:
        print(f"notice   {notice}")
    print(report.summary())


def _print_hits(hits: list[Hit]) -> None:
    if not hits:
        print("no results")
    for rank, hit in enumerate(hits, start=1):
        page = f" p.{hit.page}" if hit.page is not None else ""
        if hit.image is not None:  # an image, or a passage carrying the image it is the text of
            where = "" if hit.image.name == Path(hit.path).name else f" {hit.image.name}"
            span = f" [{hit.start}:{hit.end}]" if hit.modality == "text" else ""
            print(f"{rank}. [image] {hit.path}{page}{where}{span} ({hit.image.width}x{hit.image.height}, "
                  f"chunk {hit.image.chunk_id}) score={hit.score:.4f}")
        else:
            print(f"{rank}. {hit.path}{page} [{hit.start}:{hit.end}] score={hit.score:.4f}")
        snippet = " ".join(hit.text.split())
        if snippet:
            print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}")


def _print_answers(result: AskResult, emphasis: bool) -> None:
    """The best answer with its highlighted passages and places, other answers, or why there is none."""
    if result.status == "reader_unavailable":
        print(f"no answer: {result.message}. Retrieved evidence, best first:")
        _print_hits(result.evidence)
        return
    if not result.answers:
        why = f" (no-answer probability {result.no_answer_score:.2f})" if result.no_answer_score is not None else ""
        print(f"no answer: the knowledge base does not seem to hold one{why}")
        if result.evidence:
            print("closest passages:")
            _print_hits(result.evidence)
        return
    before, after = ("\033[1m", "\033[0m") if emphasis else (">>>", "<<<")
    best = result.answers[0]
    print(f"answer: {best.text}  (score {best.score:.2f})")
    for citation in best.sources:
        page = f" p.{citation.page}" if citation.page is not None else ""
        print(f"  from {citation.path}{page} [{citation.start}:{citation.end}] score={citation.score:.2f}")
        print(f"    {' '.join(citation.highlighted(before, after).split())}")
    for image in best.images:
        page = f" p.{image.page}" if image.page is not None else ""
        assert image.image is not None
        print(f"  image {image.path}{page} {image.image.name} (chunk {image.chunk_id})")
    for other in result.answers[1:]:
        source = other.sources[0]
        page = f" p.{source.page}" if source.page is not None else ""
        print(f"other answer: {other.text}  (score {other.score:.2f}) from {source.path}{page} "
              f"[{source.start}:{source.end}]")


def _print_stats(stats: Stats) -> None:
    print(f"knowledge base  {stats.path}")
    print(f"database        {stats.database} (schema {stats.schema_version})")
    print(f"sources         {', '.join(stats.sources) or '-'}")
    print(f"documents       {stats.documents} ingested, {stats.failed_documents} failed")
    print(f"file types      {', '.join(f'{k}: {v}' for k, v in sorted(stats.file_types.items())) or '-'}")
    print(f"chunks          {stats.chunks} ({stats.images} of them images)")
    for space in stats.spaces:
        print(f"space {space.name:<9} {space.model}, {space.dimension} dims, {space.vectors} vectors, "
              f"index {space.index_factory}, generation {space.generation}")
    print(f"last run        {stats.last_run or '-'}")


def _print_run_summaries(reports: list[IngestReport]) -> None:
    for report in reports:
        print(f"{report.source}: {report.summary()}")


def _print_sources(sources: list[SourceInfo]) -> None:
    if not sources:
        print("no sources")
    for info in sources:
        schedule = info.schedule or "manual"
        due = f", next {info.next_run_at:%Y-%m-%d %H:%M} UTC" if info.next_run_at else ""
        last = f", last run {info.last_status}" if info.last_status else ""
        print(f"{info.path}  [{schedule}{due}]  {info.documents} documents{last}")


def _print_jobs(jobs: list[Job]) -> None:
    if not jobs:
        print("no runs yet")
    for job in jobs:
        counts = ", ".join(f"{value} {name}" for name, value in job.counts.items() if value)
        finished = f"{job.finished_at:%H:%M:%S}" if job.finished_at else "-"
        print(f"#{job.id} {job.status:<11} {job.started_at:%Y-%m-%d %H:%M:%S} → {finished}  {job.source or '-'}")
        if counts:
            print(f"    {counts}")
        if job.error:
            print(f"    error: {job.error}")
        for failure in job.failures[:10]:
            print(f"    failed {failure.path}: {failure.reason}")


def _print_doctor(report: DoctorReport) -> None:
    if not report.problems:
        print("no problems found")
    for problem in report.problems:
        state = "repaired" if problem.repaired else "found"
        print(f"{state:<9} {problem.kind}: {problem.detail}")
    if not report.healthy:
        print("run `kb doctor --repair` to fix what can be fixed")


def _filters(args: argparse.Namespace) -> Filters | None:
    filters = Filters(path_glob=args.path, file_types=args.type, modified_after=args.modified_after,
                      modified_before=args.modified_before)
    return None if filters.is_empty() else filters


def quiet_libraries() -> None:
    """The command owns the terminal: no per-model progress bars, no pypdf chatter about malformed PDFs."""
    # pypdf logs every recoverable oddity of a malformed PDF; the ingest report already says what failed.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kb", description=__doc__)
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
    scheduler.add_argument("--poll", type=float, default=30.0, metavar="SECONDS", help="longest sleep (default 30)")
    reindex = commands.add_parser("reindex", help="reindex one source, or every source, now")
    reindex.add_argument("source", nargs="?")
    jobs = commands.add_parser("jobs", help="history of ingest and reindex runs")
    jobs.add_argument("--limit", type=int, default=20)
    doctor = commands.add_parser("doctor", help="check database, indexes and files agree")
    doctor.add_argument("--repair", action="store_true", help="fix what is found")

    json_commands = (ingest, search, commands.choices["ask"], commands.choices["stats"], add,
                     source_commands.choices["list"], reindex, jobs, doctor)
    for command in json_commands:
        command.add_argument("--json", action="store_true", help="print JSON for machines")
    return parser


def _emit(args: argparse.Namespace, value: BaseModel | list[BaseModel], show: Callable[[Any], None]) -> None:
    """JSON with --json, else the human-readable form."""
    if getattr(args, "json", False):
        data = [item.model_dump(mode="json") for item in value] if isinstance(value, list) \
            else value.model_dump(mode="json")
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        show(value)


def _ingest(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    with _progress_bar() as update:
        report = knowledge_base.ingest(args.folder, progress=update)
    _emit(args, report, _print_report)
    return 0


def _search(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    if (args.query is None) == (args.image is None):
        print("kb search: give a query or --image FILE", file=sys.stderr)
        return 2
    hits = knowledge_base.search(args.query, k=args.k, mode=args.mode, filters=_filters(args),
                                 modalities=args.modality, image=args.image)
    _emit(args, hits, _print_hits)
    return 0


def _preview(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    args.out.write_bytes(knowledge_base.image_preview(args.chunk))
    print(f"wrote {args.out}")
    return 0


def _stats(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    _emit(args, knowledge_base.stats(), _print_stats)
    return 0


def _reembed(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    print(f"re-embedded {knowledge_base.reembed()} chunks")
    return 0


def _source(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    if args.source_command == "add":
        schedule = args.schedule or (f"every {args.every}" if args.every else None)
        _emit(args, knowledge_base.add_source(args.folder, schedule), lambda info: _print_sources([info]))
    elif args.source_command == "list":
        _emit(args, knowledge_base.sources(), _print_sources)
    else:
        print(f"removed the source and its {knowledge_base.remove_source(args.folder)} documents")
    return 0


def _scheduler(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    scheduler = knowledge_base.scheduler(poll_seconds=args.poll,
                                         on_report=lambda report: print(f"{report.source}: {report.summary()}",
                                                                        flush=True))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: scheduler.stop())
    print(f"scheduler running for {knowledge_base.directory}; SIGTERM or Ctrl-C stops it", flush=True)
    scheduler.run()
    print("scheduler stopped", flush=True)
    return 0


def _reindex(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    with _progress_bar() as update:
        reports = knowledge_base.reindex(args.source, progress=update)
    _emit(args, reports, _print_run_summaries)
    return 0


def _jobs(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    _emit(args, knowledge_base.jobs(args.limit), _print_jobs)
    return 0


def _doctor(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    report = knowledge_base.doctor(repair=args.repair)
    _emit(args, report, _print_doctor)
    return 0 if report.healthy else 1


def _ask(knowledge_base: KnowledgeBase, args: argparse.Namespace) -> int:
    result = knowledge_base.ask(args.question, k=args.k, top_k=args.answers)
    _emit(args, result, lambda value: _print_answers(value, emphasis=sys.stdout.isatty()))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from answering.squad_eval import evaluate

    # Settings come from KB_* variables (a temporary knowledge base is built in open mode; --kb is not used).
    report = evaluate(args.file, args.mode, {}, k=args.k, distractors=args.distractors, limit=args.limit)
    print(report.table())
    args.out.write_text(report.model_dump_json(by_alias=True, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {args.out}")
    return 0


COMMANDS: dict[str, Callable[[KnowledgeBase, argparse.Namespace], int]] = {
    "ingest": _ingest, "search": _search, "ask": _ask, "stats": _stats, "reembed": _reembed, "preview": _preview,
    "source": _source,
    "scheduler": _scheduler, "reindex": _reindex, "jobs": _jobs, "doctor": _doctor,
}


def run(args: argparse.Namespace) -> int:
    if args.command == "eval":
        return _evaluate(args)
    if args.command not in ("ingest", "source") and not (knowledge_base_dir(args.kb) / CONFIG_FILE).exists():
        raise FileNotFoundError(f"no knowledge base at {knowledge_base_dir(args.kb)}; `kb ingest FOLDER` creates it")
    with KnowledgeBase.open(args.kb) as knowledge_base:
        return COMMANDS[args.command](knowledge_base, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return run(args)
    except EXPECTED_ERRORS as error:
        print(f"kb: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kb: interrupted; work committed so far is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
