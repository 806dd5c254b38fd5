"""``kb doctor``: find (and with ``repair``, fix) what makes the database, the indexes and the files disagree."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from typing import Literal

from ingestion.scan import hidden
from kb.containment import inside
from kb.errors import DatabaseUnreadableError, ModelNotFoundError, StorageError, WriterBusyError
from kb.keywords import ADDED_IN_VERSION, KeywordTokenizer, parse_scheme
from kb.mounts import recorded_mounts, root_unmounted, unmounted_below
from kb.postings import rebuild_postings
from kb.sources import too_many_missing
from kb.spaces import EmbeddingSpace
from kb.storage.database import WAY_BACK
from kb.storage.faiss_index import FaissIndex
from kb.storage.reading import MAX_DIMENSION, ORPHANS
from kb.storage.store import IMAGE_SPACE_OFF, Store
from kb.types import CLIP_SPACE, DoctorReport, Problem


def examine(store: Store, spaces: list[EmbeddingSpace], keywords: KeywordTokenizer, reembed: Callable[[], int],
            max_removed_share: float, repair: bool = False) -> DoctorReport:
    """Every check, in an order where each repair leaves the next check meaningful. ``spaces`` are those that can
    be built here and ``keywords`` the configured keyword tokenizer in its latest version; ``reembed`` rebuilds
    them all (the writer lock held), the repair of an encoder mismatch."""
    report = DoctorReport()
    with store.writer_lock if repair else nullcontext():
        pages = _damaged_pages(store, report, repair)
        if pages == "left" or _mistyped_values(store, report):
            return report
        repair = repair and pages != "rebuilt"  # the others are checked on the new file; their repairs, which delete
        # rows, wait for a run that can see what the rebuild did (the damaged file is kept to compare)
        _stuck_runs(store, report, repair)
        _orphans(store, report, repair)
        _keyword_tokenizer(store, keywords, report, repair)
        _keyword_figures(store, report, repair)
        _malformed_vectors(store, report, repair)
        if _encoder_matches(store, spaces, reembed, report, repair):
            _missing_vectors(store, spaces, report, repair)
        _files_gone(store, max_removed_share, report, repair)
        _index_caches(store, report, repair)
        _temporary_files(store, report, repair)
    _notes(store, report)
    return report


def _damaged_pages(store: Store, report: DoctorReport, repair: bool) -> Literal["none", "left", "rebuilt"]:
    """Damage no query has met yet (an index's page overwritten) passed every other check while searches failed:
    SQLite's own check finds it. Nothing is written into the damaged file (a repair there could spread the damage):
    the repair rebuilds the database in a new file from its tables' rows, which holds where only indexes are
    damaged, and keeps the damaged file. Where damage is left, nothing else is checked."""
    faults = store.integrity_faults()
    if not faults:
        return "none"
    found = f"SQLite's check of the file finds: {'; '.join(fault[:200] for fault in faults)}"
    if repair and store.rebuildable:
        try:
            kept = store.rebuild_from_tables()
        except (DatabaseUnreadableError, StorageError) as error:
            report.problems.append(Problem(kind="damaged database", repairable=isinstance(error, StorageError),
                                           detail=f"{found}; {error}; {WAY_BACK}"))
            return "left"
        report.problems.append(Problem(kind="damaged database", repaired=True, detail=(
            f"{found}; rebuilt from its tables' rows, with every row an index still readable records (the damaged "
            f"file is kept as {kept.name}); what follows was checked on the rebuilt file and not repaired: run "
            "`kb doctor --repair` again for it")))
        return "rebuilt"
    remedy = ("`--repair` rebuilds it from its tables' rows, which holds where only its indexes are damaged (the "
              "damaged file is kept); else " if store.rebuildable else "")
    report.problems.append(Problem(kind="damaged database", repairable=store.rebuildable,
                                   detail=f"{found}; {remedy}{WAY_BACK}"))
    return "left"


def _mistyped_values(store: Store, report: DoctorReport) -> bool:
    """Values written into the database from outside, of another type than their column's (text in a number,
    JSON that does not parse, a NUL inside a path), which the other checks would fail on. Nothing else is checked
    or repaired then: what the right values were is not known here."""
    found = store.mistyped_values()
    if found:
        report.problems.append(Problem(kind="damaged database", repairable=False, detail=(
            f"changed from outside this program: {'; '.join(found[:10])}"
            + (f" (and {len(found) - 10} more columns)" if len(found) > 10 else "") + f"; {WAY_BACK}")))
    return bool(found)


def _notes(store: Store, report: DoctorReport) -> None:
    """What needs no repair but a person should know: documents that hold no text, documents read only in part,
    and what the knowledge base cannot do for now."""
    with store.read() as snapshot:
        empty = snapshot.empty_documents()
        partial = len(snapshot.document_warnings())
    if empty:
        shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
        report.notes.append(f"{len(empty)} document(s) hold no text (scans without OCR, images with nothing "
                            f"written in them): {shown}")
    if partial:
        report.notes.append(f"{partial} document(s) were read only in part; `kb stats --json` lists them with why")
    report.notes += store.notices()


def _stuck_runs(store: Store, report: DoctorReport, repair: bool) -> None:
    """Runs still marked running while no process holds the writer lock were killed."""
    with store.read() as snapshot:
        stuck = snapshot.running_runs()
    if not stuck:
        return
    if not repair:
        try:
            with store.writer_lock:
                pass
        except WriterBusyError:
            return  # a writer is at work: its run really is running
    if repair:
        with store.write() as unit:
            unit.interrupt_running()
    report.problems.append(Problem(kind="stuck runs", detail=f"{stuck} run(s) marked running but no writer is active",
                                   repaired=repair))


def _orphans(store: Store, report: DoctorReport, repair: bool) -> None:
    """Rows whose parent is gone: postings and vectors without a chunk, chunks without a document."""
    for kind in ORPHANS:
        with store.read() as snapshot:
            count = snapshot.orphans(kind)
        if not count:
            continue
        if repair:
            with store.write() as unit:
                unit.delete_orphans(kind)
        report.problems.append(Problem(kind=kind, detail=f"{count} row(s)", repaired=repair))


def _keyword_tokenizer(store: Store, keywords: KeywordTokenizer, report: DoctorReport, repair: bool) -> None:
    """The keyword postings must have been made by the configured tokenizer (else every keyword and hybrid search
    fails), in its latest version (an older one is still read, but misses what the new one finds); repairing
    tokenises every chunk again with it, as ``kb reembed`` does, and leaves the vectors."""
    recorded = store.keyword_tokenizer()
    if recorded is None or recorded == keywords.scheme:
        return
    name, version = parse_scheme(recorded)
    if name == keywords.name and version > keywords.version:
        report.problems.append(Problem(kind="keyword tokenizer", repairable=False, detail=(
            f"the keyword index was built with version {version} of the {name!r} tokenizer, newer than this version "
            f"of the project knows ({keywords.version}): upgrade it; a repair would undo the newer index")))
        return
    if repair:
        with store.write() as unit:
            rebuild_postings(unit, keywords)
    added = ", and ".join(ADDED_IN_VERSION[newer] for newer in range(version + 1, keywords.version + 1))
    detail = (f"the keyword index was built with version {version} of the {name!r} tokenizer; version "
              f"{keywords.version} {added}" if name == keywords.name else
              f"the keyword index was built with the {name!r} tokenizer but {keywords.name!r} is configured")
    report.problems.append(Problem(kind="keyword tokenizer", detail=detail, repaired=repair))


def _keyword_figures(store: Store, report: DoctorReport, repair: bool) -> None:
    """The document frequencies and totals BM25 reads are kept by each write; they must agree with the postings
    (else keyword scores are off for every search). Repairing counts them afresh."""
    with store.read() as snapshot:
        count = snapshot.keyword_drift()
    if not count:
        return
    if repair:
        with store.write() as unit:
            unit.recount_keywords()
    report.problems.append(Problem(kind="keyword figures", detail=f"{count} BM25 figure(s) disagree with the "
                                   "postings (document frequencies, totals)", repaired=repair))


def _malformed_vectors(store: Store, report: DoctorReport, repair: bool) -> None:
    """Vectors no index can use (bytes of another length than the space's dimension, or NaN or infinite values; with
    pgvector no embedding or one of another dimension), damage from outside: repairing deletes them, and the
    missing-vectors step that follows embeds their chunks again."""
    for space in store.spaces():
        with store.read() as snapshot:
            ids = snapshot.malformed_vectors(space)
        if not ids:
            continue
        if repair:
            with store.write() as unit:
                unit.delete_vectors(space.id, ids)
        report.problems.append(Problem(kind="malformed vectors", detail=f"{len(ids)} vector(s) in space "
                                       f"{space.name!r} cannot be used (not its {space.dimension} dimensions, "
                                       "or values that are not finite)",
                                       repaired=repair))


def _encoder_matches(store: Store, spaces: list[EmbeddingSpace], reembed: Callable[[], int], report: DoctorReport,
                     repair: bool) -> bool:
    """Each space must have been built by its configured encoder; repairing re-embeds every chunk."""
    try:
        for space in spaces:
            space.encoder.identity()
    except ModelNotFoundError as error:
        report.problems.append(Problem(kind="encoder unavailable", repairable=False, detail=str(error)))
        return False
    built = {stored.name: stored for stored in store.spaces()}
    for space in spaces:
        stored = built.get(space.name)
        if stored is None or not space.built_by_another_model(stored):
            continue
        detail = (f"space {stored.name!r} was built with {stored.model!r}; the configured encoder is "
                  f"{space.encoder.identity().model!r} (`kb doctor --repair` or `kb reembed` re-embeds every chunk)")
        if repair:
            reembed()
        report.problems.append(Problem(kind="encoder mismatch", detail=detail, repaired=repair))
        return repair
    return True


def _missing_vectors(store: Store, spaces: list[EmbeddingSpace], report: DoctorReport, repair: bool) -> None:
    """Chunks without a vector in a space that should hold them get embedded: an image ingested while the CLIP
    model was unavailable, say, or a whole CLIP space that could not be built then."""
    built = {stored.name: stored for stored in store.spaces()}
    for space in spaces:
        stored = built.get(space.name)
        with store.read() as snapshot:
            ids = snapshot.member_ids(space.name, missing_in=stored)
        if not ids:
            continue
        if repair:
            stored = stored or store.space(space.name, space.encoder.identity())
            assert stored is not None
            with store.write() as unit:  # one transaction
                space.fill(unit, stored, ids)
            if space.name == CLIP_SPACE:
                store.record_notice(IMAGE_SPACE_OFF, None)
        report.problems.append(Problem(kind="missing vectors",
                                       detail=f"{len(ids)} chunk(s) have no vector in space {space.name!r}",
                                       repaired=repair))


# Files missing whose documents are kept: their state (``_file_state``), the problem's kind, where they lie.
KEPT_WHERE = (("in an unmounted share", "source share not mounted",
               "shares mounted there when they were last read, which are not mounted now"),
              ("in an empty folder", "source sub-folder empty", "folders that now hold nothing (unmounted shares?)"))


def _files_gone(store: Store, max_removed_share: float, report: DoctorReport, repair: bool) -> None:
    """Documents whose file no longer exists. Nothing is deleted for a source whose folder is missing, unreadable
    or empty, or whose recorded share is not mounted (an unmounted share), nor for a file in a recorded share
    below it that is not mounted now or in a folder that now holds nothing, nor when more than
    ``max_removed_share`` of a source's files are missing at once; a file that cannot be looked at (an unreadable
    folder on its way) is not taken as gone."""
    with store.read() as snapshot:
        rows = snapshot.document_files()
        recorded = {root: recorded_mounts(mounts) for root, mounts in snapshot.source_mounts().items()}
    by_source: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for document_id, path, root in rows:
        by_source[root].append((document_id, path))
    gone: list[tuple[int, str]] = []
    unknown = 0
    for root, documents in sorted(by_source.items()):
        state = _folder_state(root)
        if state is not None:
            report.problems.append(Problem(kind=f"source folder {state}", repairable=False, detail=(
                f"{root} (its documents are kept until the folder is back, or removed with `kb source remove`)")))
            continue
        share = root_unmounted(recorded.get(root))
        if share is not None:
            report.problems.append(Problem(kind="source share not mounted", repairable=False, detail=(
                f"{root} was on the share mounted at {share}, which is not mounted now (its documents are kept "
                "until the share is back, or removed with `kb reindex SOURCE --allow-removal`)")))
            continue
        unmounted = unmounted_below(recorded, root)
        states = [(document_id, path, _file_state(path, unmounted)) for document_id, path in documents]
        missing = [(document_id, path) for document_id, path, state in states if state == "gone"]
        unknown += sum(1 for _, _, state in states if state == "unknown")
        for kept, kind, where in KEPT_WHERE:
            count = sum(1 for _, _, state in states if state == kept)
            if count:
                report.problems.append(Problem(kind=kind, repairable=False, detail=(
                    f"{count} document file(s) of {root} lie in {where}; their documents are kept until the files "
                    "are back, or removed with `kb reindex SOURCE --allow-removal`")))
        if missing and len(missing) == len(documents):
            report.problems.append(Problem(kind="every file missing", repairable=False, detail=(
                f"none of the {len(documents)} files of {root} is there, yet the folder is not empty: --repair keeps "
                "their documents (if they really were deleted, `kb reindex SOURCE --allow-removal` removes them)")))
            continue
        if too_many_missing(len(missing), len(documents), max_removed_share):
            report.problems.append(Problem(kind="many files missing", repairable=False, detail=(
                f"{len(missing)} of the {len(documents)} files of {root} are missing: more than max_removed_share, "
                "so --repair keeps their documents (if they really were deleted, `kb reindex SOURCE "
                "--allow-removal` removes them)")))
            continue
        gone += missing
    if unknown:
        report.problems.append(Problem(kind="files unreadable", repairable=False, detail=(
            f"{unknown} document file(s) cannot be looked at (a folder on the way cannot be read); their documents "
            "are kept")))
    if not gone:
        return
    if repair:
        with store.write() as unit:
            unit.delete_documents([doc_id for doc_id, _ in gone])
    shown = ", ".join(path for _, path in gone[:5]) + (" ..." if len(gone) > 5 else "")
    report.problems.append(Problem(kind="files gone", detail=f"{len(gone)} file(s): {shown}", repaired=repair))


def _folder_state(root: str) -> str | None:
    """Why a source folder cannot vouch for its files ("missing", "unreadable", "empty"), or None when it can."""
    try:
        empty = _holds_nothing(root)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError:
        return "unreadable"
    return "empty" if empty else None


def _holds_nothing(folder: str) -> bool:
    """The folder holds nothing an ingest would look at (hidden entries aside, as the scan leaves them out)."""
    with os.scandir(folder) as entries:
        return all(hidden(entry.name) for entry in entries)


def _file_state(path: str, unmounted: list[str]) -> str:
    """"present", "gone" (the file, or a folder on its way, does not exist), "in an unmounted share" (it lies
    below one of ``unmounted``), "in an empty folder" (its folder is there and holds nothing: an unmounted share
    below the source, as the ingest reads it) or "unknown" (it cannot be looked at)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if any(inside(path, share) for share in unmounted):
            return "in an unmounted share"
        folder = os.path.dirname(path)
        while not os.path.isdir(folder) and os.path.dirname(folder) != folder:  # the nearest folder still there
            folder = os.path.dirname(folder)
        try:
            return "in an empty folder" if _holds_nothing(folder) else "gone"
        except OSError:
            return "gone"
    except OSError:
        return "unknown"
    return "present"


def _index_caches(store: Store, report: DoctorReport, repair: bool) -> None:
    """Each space's FAISS cache must exist, be intact, and match the database's generation and vector count."""
    for space in store.spaces():
        with store.read() as snapshot:
            count = snapshot.vector_count(space)
        if store.vector_index != "faiss":
            continue  # the index lives in the database: no cache to check
        if not 0 < space.dimension <= MAX_DIMENSION:
            continue  # written from outside: its vectors are reported malformed, and no index of it can be made
        cache = FaissIndex(store.directory / "indexes", space.name, space.dimension, store.settings.index)
        index, reason = cache.read_cache(space.generation, count)
        if index is not None:
            continue
        if repair:
            store.index(space).save()
        report.problems.append(Problem(kind="index cache", detail=f"space {space.name!r}: {reason}", repaired=repair))


def _temporary_files(store: Store, report: DoctorReport, repair: bool) -> None:
    """Temporary files that killed saves left behind (not those of a save running now)."""
    leftovers = store.abandoned_temporaries()
    if not leftovers:
        return
    if repair:
        for path in leftovers:
            path.unlink(missing_ok=True)
    report.problems.append(Problem(kind="temporary files", detail=", ".join(p.name for p in leftovers),
                                   repaired=repair))
