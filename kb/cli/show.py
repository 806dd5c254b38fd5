"""The human-readable form of each command's result (``--json`` prints the same objects exactly)."""

from __future__ import annotations

from pathlib import Path

from kb.cli.terminal import Emphasis, one_line, safe
from kb.keywords import KeywordTokenizer
from kb.types import AskResult, DoctorReport, Hit, IngestReport, Job, SourceInfo, Stats
from retrieval.query import cut_query
from retrieval.snippets import snippet

SNIPPET_WIDTH = 300
LISTED = 20  # failed documents listed by `kb stats` before "... and N more"


def report(result: IngestReport, verbose: bool = False) -> None:
    """Failures, skipped files and notices, with ``verbose`` the empty files and warnings too, then the summary."""
    for failure in result.failed:
        print(f"failed   {safe(failure.path)}: {one_line(failure.reason)}")
    for skipped in result.skipped:
        print(f"skipped  {safe(skipped.path)}: {one_line(skipped.reason)}")
    if verbose:
        for path in result.empty:
            print(f"empty    {safe(path)}: no text found")
        for path, warnings in result.warnings.items():
            for warning in warnings:
                print(f"warning  {safe(path)}: {one_line(warning)}")
    for notice in result.notices:
        print(f"notice   {one_line(notice)}")
    hint = " (--verbose lists them)" if not verbose and (result.empty or result.warnings) else ""
    print(f"{result.summary()}{hint}")


def hits(found: list[Hit], query: str | None, keywords: KeywordTokenizer, full: bool, terminal: bool) -> None:
    """Ranked hits with their place; the part of each text that best matches ``query``, or all of it if ``full``."""
    if not found:
        print("no results")
    mark = Emphasis(terminal)
    terms: dict[str, set[str]] = {}  # of the query, and of its English gloss: each made once
    for rank, hit in enumerate(found, start=1):
        page = f" p.{hit.page}" if hit.page is not None else ""
        if hit.image is not None:  # an image, or a passage carrying the image it is the text of
            where = "" if hit.image.name == Path(hit.path).name else f" {safe(hit.image.name)}"
            span = f" [{hit.start}:{hit.end}]" if hit.modality == "text" else ""
            print(f"{rank}. [image] {safe(hit.path)}{page}{where}{span} ({hit.image.width}x{hit.image.height}, "
                  f"chunk {hit.image.chunk_id}) score={hit.score:.4f}")
        else:
            via = f" (by the English gloss: {safe(hit.matched_query)})" if hit.matched_query else ""
            print(f"{rank}. {safe(hit.path)}{page} [{hit.start}:{hit.end}] score={hit.score:.4f}{via}")
        text = one_line(hit.text)
        if text:
            wanted = cut_query(hit.matched_query or query or "")  # what the search read of it
            if wanted not in terms:
                terms[wanted] = set(keywords.tokenize_query(wanted))
            shown = snippet(text, terms[wanted], keywords, width=len(text) if full else SNIPPET_WIDTH)
            print(f"   {shown.render(mark=mark if terminal else None)}")


def abstention(result: AskResult) -> str:
    """Why the reader gave no answer: "no answer" was more probable than its best one, or that one scored under
    the no-answer threshold (a tuned one can be high: then the user may lower it)."""
    if result.best_score is not None and result.threshold is not None and \
            result.best_score < result.threshold and result.best_score >= (result.no_answer_score or 0):
        return (f"the best answer scored {result.best_score:.2f}, under the reader's no-answer threshold "
                f"{result.threshold:.2f} (KB_READER_NO_ANSWER_THRESHOLD sets another)")
    why = f" (no-answer probability {result.no_answer_score:.2f})" if result.no_answer_score is not None else ""
    return f"the knowledge base does not seem to hold one{why}"


def answers(result: AskResult, keywords: KeywordTokenizer, terminal: bool) -> None:
    """The best answer with its highlighted passages and places, other answers, or why there is none."""
    if result.status == "reader_unavailable":
        print(f"no answer: {one_line(result.message or '')}. Retrieved evidence, best first:")
        hits(result.evidence, result.question, keywords, full=False, terminal=terminal)
        return
    if not result.answers:
        print(f"no answer: {abstention(result)}")
        if result.evidence:
            print("closest passages:")
            hits(result.evidence, result.question, keywords, full=False, terminal=terminal)
        return
    mark = Emphasis(terminal, ">>>", "<<<")
    best = result.answers[0]
    print(f"answer: {one_line(best.text)}  (score {best.score:.2f})")
    for citation in best.sources:
        page = f" p.{citation.page}" if citation.page is not None else ""
        print(f"  from {safe(citation.path)}{page} [{citation.start}:{citation.end}] score={citation.score:.2f}")
        left, right = citation.start - citation.passage_start, citation.end - citation.passage_start
        passage = citation.passage
        print(f"    {one_line(passage[:left])} {mark(one_line(passage[left:right]))} {one_line(passage[right:])}")
    for image in best.images:
        page = f" p.{image.page}" if image.page is not None else ""
        assert image.image is not None
        print(f"  image {safe(image.path)}{page} {safe(image.image.name)} (chunk {image.chunk_id})")
    for other in result.answers[1:]:
        source = other.sources[0]
        page = f" p.{source.page}" if source.page is not None else ""
        print(f"other answer: {one_line(other.text)}  (score {other.score:.2f}) from {safe(source.path)}{page} "
              f"[{source.start}:{source.end}]")


def stats(value: Stats) -> None:
    print(f"knowledge base  {safe(value.path)}")
    print(f"database        {safe(value.database)} (schema {value.schema_version})")
    print(f"sources         {', '.join(safe(source) for source in value.sources) or '-'}")
    partial = [f"{count} {label}" for count, label in ((len(value.empty), "empty"),
                                                       (len(value.warnings), "with warnings")) if count]
    detail = f" ({', '.join(partial)})" if partial else ""
    unread = f"; {len(value.unread)} not read" if value.unread else ""
    print(f"documents       {value.documents} ingested{detail}, {value.failed_documents} failed{unread}")
    print(f"file types      {', '.join(f'{safe(k)}: {v}' for k, v in sorted(value.file_types.items())) or '-'}")
    print(f"chunks          {value.chunks} ({value.images} of them images)")
    for space in value.spaces:
        # the model and factory come from kb.json or KB_* variables, which anyone with write access may have set
        print(f"space {safe(space.name):<9} {safe(space.model)}, {space.dimension} dims, {space.vectors} vectors, "
              f"index {safe(space.index_factory)}, generation {space.generation}")
    for notice in value.notices:
        print(f"notice          {one_line(notice)}")
    print(f"last run        {f'{value.last_run:%Y-%m-%d %H:%M:%S} UTC' if value.last_run else '-'}")
    for failure in value.failed[:LISTED]:
        print(f"failed   {safe(failure.path)}: {one_line(failure.reason)}")
    if len(value.failed) > LISTED:
        print(f"... and {len(value.failed) - LISTED} more failed documents (`kb stats --json` lists them all)")
    for failure in value.unread[:LISTED]:
        print(f"not read {safe(failure.path)}: {one_line(failure.reason)}")
    if len(value.unread) > LISTED:
        print(f"... and {len(value.unread) - LISTED} more not read (`kb stats --json` lists them all)")


def run_reports(reports: list[IngestReport], verbose: bool = False) -> None:
    for result in reports:
        print(f"{safe(result.source)}:")
        report(result, verbose)


def sources(found: list[SourceInfo]) -> None:
    if not found:
        print("no sources")
    for info in found:
        schedule = info.schedule or "manual"
        due = f", next {info.next_run_at:%Y-%m-%d %H:%M} UTC" if info.next_run_at else ""
        last = f", last run {info.last_status}" if info.last_status else ""
        print(f"{safe(info.path)}  [{safe(schedule)}{due}]  {info.documents} documents{last}")


def jobs(found: list[Job]) -> None:
    if not found:
        print("no runs yet")
    for job in found:
        counts = ", ".join(f"{value} {name}" for name, value in job.counts.items() if value)
        finished = f"{job.finished_at:%H:%M:%S}" if job.finished_at else "-"
        print(f"#{job.id} {job.status:<11} {job.started_at:%Y-%m-%d %H:%M:%S} UTC → {finished}  "
              f"{safe(job.source or '-')}")
        if counts:
            print(f"    {counts}")
        if job.error:
            print(f"    error: {one_line(job.error)}")
        for failure in job.failures[:10]:
            print(f"    failed {safe(failure.path)}: {one_line(failure.reason)}")


def doctor(value: DoctorReport, repaired: bool) -> None:
    """The report; what is left after ``--repair`` is pointed at its own line, not at ``--repair`` again."""
    if not value.problems:
        print("no problems found")
    for problem in value.problems:
        state = "repaired" if problem.repaired else "found"
        print(f"{state:<9} {problem.kind}: {one_line(problem.detail)}")
    for note in value.notes:
        print(f"note      {one_line(note)}")
    if not value.healthy:
        repairable = not repaired and any(problem.repairable for problem in value.problems if not problem.repaired)
        print("run `kb doctor --repair` to fix what can be fixed" if repairable else
              "what is found and not repaired needs what its line says")

