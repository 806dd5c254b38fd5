"""Hostile conditions around the files: an unmounted or unreadable share deletes nothing, secrets are never shown
or recorded, a bad lock file, schedule, checkpoint, read-only database or full disk ends in one clear line, and a
whole hostile folder goes through the `kb` command with its names escaped and nothing from outside."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event

from ingestion.scan import IN_SOURCE, LINKED_TWICE, ScanResult
from kb import KnowledgeBase
from kb.cli import main
from kb.containment import REFUSED
from kb.encoders.clip import ClipEncoder
from kb.errors import (
    LockFileError,
    ModelNotFoundError,
    ScheduleError,
    SourceUnavailableError,
    StorageError,
    WriterBusyError,
)
from kb.mounts import SourceMounts, holding_mount, recorded_mounts
from kb.storage.faiss_index import FaissIndex
from kb.storage.lock import WriterLock
from kb.storage.urls import holds_secret, redact
from retrieval import retriever
from retrieval.query import MAX_QUERY_CHARS
from tests.databases import Database, execute_sql
from tests.hostile import SECRET, big_html, docx_xml_bomb, front_matter_markdown, nested_html, outside
from tests.test_hostile_files import _assert_nothing_outside
from tests.test_knowledge_base import DOCS, write_docs

REPO = Path(__file__).resolve().parent.parent


def errors(stderr: str) -> list[str]:
    """The lines of ``stderr`` other than progress lines (``kb: [  3 s] ...``)."""
    return [line for line in stderr.splitlines() if not line.startswith("kb: [")]


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@contextmanager
def share_at(folder: Path) -> Iterator[bool]:
    """A tmpfs mounted at ``folder`` while the test can mount (root); yields whether it is a real mount."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = shutil.which("mount") is not None and _run("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs",
                                                         str(folder))
    try:
        yield mounted
    finally:
        if mounted and os.path.ismount(folder):
            _run("umount", str(folder))


@contextmanager
def real_share(folder: Path) -> Iterator[None]:
    """A tmpfs mounted at ``folder``, for a test about mounts themselves: skipped where it cannot mount."""
    with share_at(folder) as mounted:
        if not mounted:
            pytest.skip("a share needs a mount, which needs root")
        yield


def unmount(folder: Path, mounted: bool, away: Path) -> None:
    """Take the share away, as an unmount does: the mount point stays, empty (without a mount: moved away)."""
    if mounted:
        assert _run("umount", str(folder))
    else:
        away.mkdir()
        for entry in folder.iterdir():
            entry.rename(away / entry.name)
    assert folder.is_dir() and not any(folder.iterdir())


def test_an_unmounted_share_fails_its_run_and_keeps_every_document(
        kb_factory, tmp_path: Path, tiny_text_model: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    share = tmp_path / "share"
    with share_at(share) as mounted:
        write_docs(share)
        kb = kb_factory()
        kb.add_source(share, "every 1h")
        [report] = kb.reindex()
        assert len(report.added) == 4
        unmount(share, mounted, tmp_path / "away")
        with pytest.raises(SourceUnavailableError, match="not mounted now" if mounted else "empty"):
            kb.reindex(share)
        assert kb.jobs()[0].status == "failed" and kb.stats().documents == 4
        assert kb.search("margrave", k=1, mode="keyword")
        doctor = kb.doctor(repair=True)
        assert [(problem.kind, problem.repaired) for problem in doctor.problems] == [("source folder empty", False)]
        assert kb.stats().documents == 4
        monkeypatch.setenv("KB_TEXT_MODEL", str(tiny_text_model))
        capsys.readouterr()
        assert main(["--kb", str(tmp_path / "kb"), "reindex", str(share)]) == 2
        [error] = errors(capsys.readouterr().err)
        assert error.startswith("kb: error: the ") and "nothing was removed" in error
        assert main(["--kb", str(tmp_path / "kb"), "reindex"]) == 1  # every source: this one failed, said why
        assert "nothing was removed" in capsys.readouterr().out
        assert kb.stats().documents == 4
        if mounted:  # mounted again, with its files: nothing to redo
            assert _run("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(share))
            write_docs(share)
        else:
            for entry in (tmp_path / "away").iterdir():
                entry.rename(share / entry.name)
        [report] = kb.reindex(share)
        assert not report.removed and len(report.updated) + len(report.unchanged) == 4
        # Emptied on purpose: told so, the run removes them.
        for entry in share.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        [report] = kb.reindex(share, allow_removal=True)
        assert len(report.removed) == 4 and kb.stats().documents == 0


def test_a_mostly_missing_source_keeps_its_documents_unless_removal_is_allowed(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs", {f"part/note{n:02d}.txt": f"Note {n} about harbour {n}." for n in range(20)})
    kb = kb_factory()
    kb.ingest(folder)
    for n in range(3):  # a few files deleted by hand: removed as always
        (folder / "part" / f"note{n:02d}.txt").unlink()
    assert len(kb.ingest(folder).removed) == 3
    for n in range(3, 18):  # most of what is left gone at once: a subfolder share unmounted, say
        (folder / "part" / f"note{n:02d}.txt").unlink()
    report = kb.ingest(folder)
    assert not report.removed and len(report.removal_withheld) == 15
    assert any("max_removed_share" in notice for notice in report.notices)
    assert kb.stats().documents == 17
    doctor = kb.doctor(repair=True)
    assert [(problem.kind, problem.repaired) for problem in doctor.problems] == [("many files missing", False)]
    assert kb.stats().documents == 17
    report = kb.ingest(folder, allow_removal=True)
    assert len(report.removed) == 15 and kb.stats().documents == 2


def test_a_sub_folder_left_empty_keeps_its_documents_in_ingest_and_doctor(kb_factory, tmp_path: Path) -> None:
    """A share mounted below the source (finance/ here) and unmounted leaves an empty folder: fewer documents than
    max_removed_share would let go, yet not proof that they were deleted."""
    docs = {f"note{n:02d}.txt": f"Note {n} about harbour {n}." for n in range(30)}
    folder = write_docs(tmp_path / "docs", docs | {f"finance/q{n}/report.txt": f"Quarter {n} revenue grew {n} percent."
                                                   for n in range(12)})
    kb = kb_factory()
    kb.ingest(folder)
    shutil.move(folder / "finance", tmp_path / "away")
    (folder / "finance").mkdir()
    (folder / "finance" / ".mounted-here").write_text("", encoding="utf-8")  # hidden: as good as empty
    report = kb.ingest(folder)
    assert not report.removed and len(report.removal_withheld) == 12 and kb.stats().documents == 42
    assert any("now empty" in notice for notice in report.notices)
    doctor = kb.doctor(repair=True)
    assert [(problem.kind, problem.repaired) for problem in doctor.problems] == [("source sub-folder empty", False)]
    assert kb.stats().documents == 42
    assert len(kb.ingest(folder, allow_removal=True).removed) == 12 and kb.stats().documents == 30


@pytest.mark.databases("sqlite", "postgresql")
def test_a_share_unmounted_below_the_source_keeps_its_documents_despite_a_stray_file(
        kb_factory, tmp_path: Path) -> None:
    """A few documents from a share mounted below the source, whose bare mount point holds a file (a note left for
    whoever finds it unmounted): too few to be withheld as a share, and their folder is not empty, yet the
    share's absence is no proof of their deletion. The mount recorded at the last run says so."""
    folder = write_docs(tmp_path / "docs", {f"note{n:02d}.txt": f"Note {n} about harbour {n}." for n in range(30)})
    finance = folder / "finance"
    with real_share(finance):
        write_docs(finance, {f"q{n}.txt": f"Quarter {n} revenue grew {n} percent." for n in range(3)})
        kb = kb_factory()
        assert len(kb.ingest(folder).added) == 33
        assert _run("umount", str(finance))
        (finance / "NOT-MOUNTED.txt").write_text("The finance share is not mounted.", encoding="utf-8")
        report = kb.ingest(folder)
        assert not report.removed and sorted(report.removal_withheld) == [str(finance / f"q{n}.txt")
                                                                          for n in range(3)]
        assert any("(finance), which are not mounted now" in notice for notice in report.notices)
        assert kb.search("Quarter 2 revenue", k=1, mode="keyword")[0].path == str(finance / "q2.txt")
        doctor = kb.doctor(repair=True)
        assert [(problem.kind, problem.repaired) for problem in doctor.problems] == [("source share not mounted",
                                                                                      False)]
        assert kb.stats().documents == 34 and len(kb.ingest(folder).removal_withheld) == 3  # still recorded
        assert _run("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(finance))
        write_docs(finance, {f"q{n}.txt": f"Quarter {n} revenue grew {n} percent." for n in (0, 1)})
        report = kb.ingest(folder)  # back, less one file deleted meanwhile, and the stray file hidden again
        assert sorted(report.removed) == [str(finance / "NOT-MOUNTED.txt"), str(finance / "q2.txt")]
        assert len(report.updated) + len(report.unchanged) == 32 and not report.removal_withheld
        assert _run("umount", str(finance))
        report = kb.ingest(folder)
        assert len(report.removal_withheld) == 2 and report.added == [str(finance / "NOT-MOUNTED.txt")]
        assert len(kb.ingest(folder, allow_removal=True).removed) == 2  # told so: gone, and no longer recorded
        assert not kb.ingest(folder).removal_withheld and kb.stats().documents == 31


def test_a_source_whose_share_is_unmounted_fails_its_run_despite_a_stray_file(
        kb_factory, tmp_path: Path) -> None:
    """The source folder is itself the mount point: unmounted, it holds a stray file, so it is not empty, and its
    four documents are fewer than any share of missing files would withhold."""
    share = tmp_path / "share"
    with real_share(share):
        write_docs(share)
        kb = kb_factory()
        assert len(kb.ingest(share).added) == len(DOCS)
        assert _run("umount", str(share))
        (share / "NOT-MOUNTED.txt").write_text("The share is not mounted.", encoding="utf-8")
        with pytest.raises(SourceUnavailableError, match=f"the share mounted at {share} when {share} was last read "
                           "is not mounted now"):
            kb.ingest(share)
        assert kb.jobs()[0].status == "failed" and kb.stats().documents == len(DOCS)
        doctor = kb.doctor(repair=True)
        assert [(problem.kind, problem.repaired) for problem in doctor.problems] == [("source share not mounted",
                                                                                      False)]
        assert kb.stats().documents == len(DOCS)
        report = kb.ingest(share, allow_removal=True)  # the folder lives there now: told so, the run goes on
        assert len(report.removed) == len(DOCS) and report.added == [str(share / "NOT-MOUNTED.txt")]
        assert kb.ingest(share).unchanged == [str(share / "NOT-MOUNTED.txt")]


def test_a_share_that_goes_away_during_a_run_is_still_recorded_as_the_source_s(kb_factory, tmp_path: Path) -> None:
    """The source's own share drops while its files are read: the run removes nothing, and the next one, finding
    the bare mount point with a stray file, knows the share from the run before."""
    share = tmp_path / "share"
    with real_share(share):
        write_docs(share)
        kb = kb_factory()
        assert len(kb.ingest(share).added) == len(DOCS)
        (share / "new.txt").write_text("A new file, for the second run to read.", encoding="utf-8")

        def unmount_now(done: int, total: int, relpath: str) -> None:
            if os.path.ismount(share):
                assert _run("umount", "-l", str(share))
        with pytest.raises(SourceUnavailableError, match="went away during the run"):
            kb.ingest(share, progress=unmount_now)
        (share / "NOT-MOUNTED.txt").write_text("The share is not mounted.", encoding="utf-8")
        with pytest.raises(SourceUnavailableError, match="is not mounted now"):
            kb.ingest(share)
        assert kb.stats().documents == len(DOCS)


def test_an_outer_source_keeps_what_a_nested_source_s_unmounted_share_held(kb_factory, tmp_path: Path) -> None:
    """``docs`` last ran before a share was mounted at ``docs/finance`` and registered as a source of its own: the
    outer run reads the inner source's record too."""
    outer = write_docs(tmp_path / "docs", {f"note{n:02d}.txt": f"Note {n} about harbour {n}." for n in range(30)})
    finance = outer / "finance"
    kb = kb_factory()
    kb.ingest(outer)
    with real_share(finance):
        write_docs(finance, {f"q{n}.txt": f"Quarter {n} revenue grew {n} percent." for n in range(3)})
        assert len(kb.ingest(finance).added) == 3
        assert _run("umount", str(finance))
        (finance / "NOT-MOUNTED.txt").write_text("The finance share is not mounted.", encoding="utf-8")
        with pytest.raises(SourceUnavailableError, match="is not mounted now"):
            kb.ingest(finance)
        report = kb.ingest(outer)
        assert not report.removed and len(report.removal_withheld) == 3 and kb.stats().documents == 34
        assert [problem.kind for problem in kb.doctor(repair=True).problems] == ["source share not mounted"]
        assert kb.stats().documents == 34


def test_a_symlink_to_another_filesystem_is_not_a_share(kb_factory, tmp_path: Path) -> None:
    """Followed outside the source, a link to a folder on another filesystem is not a mount point: a file deleted
    behind it is removed, as any deleted file, by ingest and doctor alike."""
    elsewhere = tmp_path / "elsewhere"
    with real_share(elsewhere):
        target = write_docs(elsewhere / "sub", {"a.txt": "Alpha apples.", "b.txt": "Beta bananas."})
        folder = write_docs(tmp_path / "docs", {f"note{n:02d}.txt": f"Note {n} about harbour {n}." for n in range(30)})
        (folder / "link").symlink_to(target)
        kb = kb_factory(follow_symlinks_outside=True)
        assert len(kb.ingest(folder).added) == 32
        (target / "a.txt").unlink()
        assert [problem.kind for problem in kb.doctor().problems] == ["files gone"]
        assert kb.ingest(folder).removed == [str(folder / "link" / "a.txt")]


def test_a_file_or_folder_under_several_names_is_read_once_under_its_own(kb_factory, tmp_path: Path) -> None:
    """A link to a folder of the source took its documents to the link's name (and a share mounted there lost its
    record, so its documents were removed once it was unmounted); 100 names of one file were 100 documents, each
    loaded and embedded; a link into the knowledge base's own folder read its settings."""
    folder = write_docs(tmp_path / "docs", {"zreal/z0.txt": "Zebra notes.", "zreal/z1.txt": "Zinc notes.",
                                            "big.txt": "One file of many names, about the harbour."})
    (folder / "alink").symlink_to(folder / "zreal", target_is_directory=True)
    for n in range(3):
        os.link(folder / "big.txt", folder / f"hard{n}.txt")
        (folder / f"soft{n}.txt").symlink_to(folder / "big.txt")
    shared = write_docs(tmp_path / "outside", {"shared.txt": "Shared from outside."}) / "shared.txt"
    (folder / "out1.txt").symlink_to(shared)
    (folder / "out2.txt").symlink_to(shared)
    kb = kb_factory(follow_symlinks_outside=True)
    assert (kb.store.directory / "kb.json").is_file()
    (folder / "settings.txt").symlink_to(kb.store.directory / "kb.json")
    report = kb.ingest(folder)
    assert sorted(os.path.relpath(path, folder) for path in report.added) == [
        "big.txt", "out1.txt", "zreal/z0.txt", "zreal/z1.txt"]
    skipped = {os.path.relpath(f.path, folder): f.reason for f in report.skipped}
    assert skipped == {"alink": IN_SOURCE, "settings.txt": f"symlink: {REFUSED}",
                       **{f"soft{n}.txt": IN_SOURCE for n in range(3)},
                       **{f"hard{n}.txt": "the same file as big.txt: read once, under that name" for n in range(3)},
                       "out2.txt": "the same file as out1.txt: read once, under that name"}
    assert not report.failed


def test_names_read_under_another_are_removed_as_such_and_a_nested_source_keeps_its_own(kb_factory,
                                                                                          tmp_path: Path) -> None:
    """Documents stored under names now skipped (their file read under another) are removed, not counted as missing
    (24 of 37 were withheld as "a share partly unmounted" at every run); a nested source's name for a file the outer
    source reads under another stays (each run removed what the other added); a link to a hidden folder is followed
    (its target is read under no other name)."""
    folder = write_docs(tmp_path / "docs", {f"{snapshot}/note{n:02d}.txt": f"Note {n} about the harbour."
                                            for snapshot in ("a", "b", "c") for n in range(12)} | {
        "other.txt": "Another note.", "sub/b.txt": "The nested source's note.", ".releases/v3/manual.txt": "Manual.",
        ".old/guide.txt": "Old guide."})
    os.link(folder / "sub" / "b.txt", folder / "a_copy.txt")
    (folder / "current").symlink_to(folder / ".releases" / "v3", target_is_directory=True)
    (folder / "latest").symlink_to(folder / ".releases" / "v3", target_is_directory=True)
    (folder / "sub" / "old").symlink_to(folder / ".old", target_is_directory=True)  # outside the nested source
    kb = kb_factory()
    first = kb.ingest(folder)
    assert len(first.added) == 40  # 36 notes, other, a_copy (sub/b is its other name), manual, guide
    assert {Path(f.path).name: f.reason for f in first.skipped}["latest"] == LINKED_TWICE
    for snapshot in ("b", "c"):  # now hard links of a's, as backups made with hard links are
        for n in range(12):
            (folder / snapshot / f"note{n:02d}.txt").unlink()
            os.link(folder / "a" / f"note{n:02d}.txt", folder / snapshot / f"note{n:02d}.txt")
    report = kb.ingest(folder)
    assert len(report.removed) == 24 and not report.removal_withheld and report.notices == [
        "24 document(s) stored under another name of a file now read under its own (a symlink inside the folder, a "
        "hard link) were removed"]
    assert kb.search("Manual", k=1, mode="keyword")[0].path == str(folder / "current" / "manual.txt")
    kb.add_source(folder / "sub", "every 1h")
    assert kb.reindex(str(folder / "sub"))[0].added == [str(folder / "sub" / "b.txt")]
    for _ in range(2):
        outer, nested = kb.ingest(folder), kb.reindex(str(folder / "sub"))[0]
        assert not outer.removed and not outer.added and not nested.added and not nested.removed


@pytest.mark.databases("sqlite", "postgresql")
def test_a_mount_record_written_by_hand_is_recorded_afresh(kb_factory, tmp_path: Path, database: Database) -> None:
    """A record that is not one, or not JSON at all (SQLite takes any text), is a warning: not a traceback at every
    run of every source, nor in kb doctor."""
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)
    damaged = ["""'{"inside": 5}'"""] + (["'not json'"] if database.kind == "sqlite" else [])
    for value in damaged:
        execute_sql(kb.store.url, f"UPDATE sources SET mounts = {value}")
        assert len(kb.ingest(folder).unchanged) == len(DOCS) and not kb.doctor().problems
        with kb.store.read() as snapshot:
            assert recorded_mounts(snapshot.source_mounts()[str(folder)]) == SourceMounts(
                root=holding_mount(str(folder)))


def test_what_a_scan_could_not_look_at_is_told_by_each_path_s_parents() -> None:
    """Which missing documents prove nothing: those below a folder that could not be listed, at or below an entry
    that could not be stat'ed; and which lie in an emptied folder. Asked once per missing document, each answer
    costs the path's depth, not the number of such folders (10,000 of each took a minute before)."""
    scanned = ScanResult(unreadable_dirs=[Path("/s/locked")], unchecked=[Path("/s/dead")],
                         empty_dirs=[Path("/s/bare"), *(Path(f"/s/e{n}") for n in range(10_000))])
    assert [scanned.covers(path) for path in ("/s/locked", "/s/locked/a.txt", "/s/locked/x/b.txt", "/s/dead",
                                              "/s/dead/c.txt", "/s/deadline.txt", "/s/ok/d.txt")] == [
        True, False, False, False, False, True, True]
    assert [scanned.in_empty_folder(path) for path in ("/s/bare/a.txt", "/s/bare/x/b.txt", "/s/bare",
                                                       "/s/barely.txt", "/s/e9999/f.txt")] == [
        True, True, False, False, True]


def test_doctor_keeps_a_source_whose_every_file_is_gone(kb_factory, tmp_path: Path) -> None:
    """What ingest refuses to remove, doctor --repair must not remove either: a folder holding only a hidden
    file, or other files, while none of the documents' files is there."""
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)
    shutil.move(folder, tmp_path / "away")
    folder.mkdir()
    (folder / ".share-not-mounted").write_text("", encoding="utf-8")
    with pytest.raises(SourceUnavailableError, match="empty"):
        kb.ingest(folder)
    kinds = [(problem.kind, problem.repaired) for problem in kb.doctor(repair=True).problems]
    assert kinds == [("source folder empty", False)] and kb.stats().documents == len(DOCS)
    (folder / "unrelated.txt").write_text("Something else entirely.", encoding="utf-8")
    kinds = [(problem.kind, problem.repaired) for problem in kb.doctor(repair=True).problems]
    assert ("every file missing", False) in kinds and kb.stats().documents == len(DOCS)


def test_reindex_goes_on_past_a_source_that_cannot_be_read(kb_factory, tmp_path: Path) -> None:
    first, second = write_docs(tmp_path / "a"), write_docs(tmp_path / "b", {"one.txt": "A note on the harbour."})
    kb = kb_factory()
    kb.add_source(first, None)
    kb.add_source(second, None)
    kb.reindex()
    shutil.move(first, tmp_path / "away")
    first.mkdir()  # the bare mount point
    (second / "two.txt").write_text("A second note, about the lighthouse keeper.", encoding="utf-8")
    reports = {report.source: report for report in kb.reindex()}
    assert reports[str(first)].read_nothing() and "empty" in reports[str(first)].failed[0].reason
    assert reports[str(second)].added == [str(second / "two.txt")]
    assert kb.search("lighthouse keeper", k=1, mode="keyword") and kb.stats().documents == len(DOCS) + 2


def test_a_source_path_that_is_not_utf8_is_refused_in_one_line(kb_factory, tmp_path: Path) -> None:
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/f\xff5"))
    folder.mkdir()
    (folder / "a.txt").write_text("Some text.", encoding="utf-8")
    kb = kb_factory()
    for action in (lambda: kb.ingest(folder), lambda: kb.add_source(folder, None)):
        with pytest.raises(SourceUnavailableError, match="not valid UTF-8"):
            action()


def _without_root_override() -> list[str] | None:
    """A command prefix under which file permissions apply even to root (None: root, and no tool to drop them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv"):
        return ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                "--inh-caps=-dac_override,-dac_read_search", "--"]
    return None


def test_a_source_below_a_folder_that_can_be_passed_but_not_listed_is_scanned(tmp_path: Path) -> None:
    """A 0711 home folder above a share: the descriptor walk opened every folder on the way for reading, and the
    whole source was refused as unreadable."""
    prefix = _without_root_override()
    if prefix is None or os.geteuid() != 0:
        pytest.skip("needs root, to give the folder to another user, and setpriv, to make permissions apply")
    home = tmp_path / "home"
    write_docs(home / "share", {"a.txt": "Readable below a folder that cannot be listed."})
    os.chown(home, 65534, 65534)  # another user's: its 0711 lets this process pass, not list
    home.chmod(0o711)
    try:
        scanned = subprocess.run([*prefix, sys.executable, "-c", "import sys; from pathlib import Path; "
                                  "from ingestion.scan import scan; found = scan(Path(sys.argv[1])); "
                                  "print([f.relpath for f in found.files], len(found.failed))", str(home / "share")],
                                 capture_output=True, text=True, cwd=REPO, timeout=60)
    finally:
        home.chmod(0o755)
    assert scanned.stdout.strip() == "['a.txt'] 0", scanned.stderr


@pytest.mark.slow
def test_unreadable_folders_remove_nothing_and_doctor_survives(kb_factory, tmp_path: Path,
                                                               tiny_text_model: Path) -> None:
    prefix = _without_root_override()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be made to apply")
    folder = write_docs(tmp_path / "docs")
    kb_factory(clip_model="none").ingest(folder)
    env = {**os.environ, "KB_TEXT_MODEL": str(tiny_text_model), "KB_DEVICE": "cpu"}
    kb = [*prefix, sys.executable, "-m", "kb.cli", "--kb", str(tmp_path / "kb")]
    locked = folder / "handbook"
    locked.chmod(0o444)  # listed, but nothing in it can be stat'ed: as a dead mount or an I/O error answers
    try:
        ingest = subprocess.run([*kb, "ingest", str(folder), "--json"], env=env, capture_output=True, text=True,
                                cwd=REPO)
        report = json.loads(ingest.stdout)
        assert not report["removed"] and len(report["failed"]) == 2 and "cannot stat" in report["failed"][0]["reason"]
        locked.chmod(0)
        doctor = subprocess.run([*kb, "doctor", "--repair", "--json"], env=env, capture_output=True, text=True,
                                cwd=REPO)
        problems = {problem["kind"]: problem for problem in json.loads(doctor.stdout)["problems"]}
        assert doctor.returncode == 1 and "files unreadable" in problems and not problems["files unreadable"]["repaired"]
        folder.chmod(0)
        reindex = subprocess.run([*kb, "ingest", str(folder)], env=env, capture_output=True, text=True, cwd=REPO)
        [error] = errors(reindex.stderr)
        assert reindex.returncode == 2 and error.startswith("kb: error: ") and "cannot be read" in error
        doctor = subprocess.run([*kb, "doctor", "--repair", "--json"], env=env, capture_output=True, text=True,
                                cwd=REPO)
        kinds = [problem["kind"] for problem in json.loads(doctor.stdout)["problems"]]
        assert "source folder unreadable" in kinds and "files gone" not in kinds
    finally:
        folder.chmod(0o755)
        locked.chmod(0o755)
    with KnowledgeBase.open(tmp_path / "kb", text_model=str(tiny_text_model), device="cpu") as reopened:
        assert reopened.stats().documents == len(DOCS)


def test_database_url_secrets_are_never_shown_or_recorded(kb_factory, tmp_path: Path, tiny_text_model: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    forms = ["postgresql://bob:s3cret@db/kb", "postgresql://bob@db/kb?password=s3cret",
             "mysql://bob@db/kb?passwd=s3cret&charset=utf8", "mssql+pyodbc://bob@dsn?pwd=s3cret",
             "postgresql://db/kb?sslpassword=s3cret", "postgresql://bob:s%33cret@db/kb",
             "mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC%7D%3BSERVER%3Ddb%3BUID%3Dbob%3BPWD%3Ds3cret",
             "postgresql://db/kb?password=s3cret&password=s3cret", "not a url, password=s3cret"]
    for url in forms:
        assert holds_secret(url) and "s3cret" not in redact(url) and "***" in redact(url), url
    assert not holds_secret("postgresql://bob@db/kb?sslmode=require") and not holds_secret("sqlite:////srv/kb.sqlite")
    url = f"sqlite:///file:{tmp_path / 'own.sqlite'}?mode=rwc&uri=true&password=s3cret"
    kb = kb_factory(database_url=url)
    recorded = (tmp_path / "kb" / "kb.json").read_text(encoding="utf-8")
    assert "s3cret" not in recorded and "database_url" not in json.loads(recorded)
    assert stat.S_IMODE((tmp_path / "kb" / "kb.json").stat().st_mode) == 0o600
    assert "s3cret" not in kb.stats().database and "***" in kb.stats().database
    monkeypatch.setenv("KB_TEXT_MODEL", str(tiny_text_model))
    monkeypatch.setenv("KB_DATABASE_URL", url)
    assert main(["--kb", str(tmp_path / "kb"), "stats"]) == 0
    monkeypatch.setenv("KB_DATABASE_URL", "sqlite+nosuchdriver://bob:s3cret@db/kb?password=s3cret")
    assert main(["--kb", str(tmp_path / "kb"), "stats"]) == 2
    shown = capsys.readouterr()
    assert "s3cret" not in shown.out + shown.err and "kb: error: cannot use the database URL" in shown.err


def test_the_writer_lock_never_follows_a_symlink(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    precious = tmp_path / "precious.txt"
    precious.write_text("must stay as it is", encoding="utf-8")
    (tmp_path / "kb" / "write.lock").unlink(missing_ok=True)
    (tmp_path / "kb" / "write.lock").symlink_to(precious)
    with pytest.raises(LockFileError, match="symlink"):
        kb.ingest(folder)
    assert precious.read_text(encoding="utf-8") == "must stay as it is"
    (tmp_path / "kb" / "write.lock").unlink()
    os.mkfifo(tmp_path / "kb" / "write.lock")
    with pytest.raises(LockFileError, match="not a regular file"):
        kb.ingest(folder)


def test_the_database_writer_lock_lets_go_quietly_of_a_connection_the_server_dropped() -> None:
    """A PostgreSQL server stopping mid-ingest: releasing the advisory lock on the dead connection raised over the
    run's own one-line error (the server let go of the lock with the session)."""
    from sqlalchemy.exc import OperationalError

    from kb.storage.lock import DatabaseWriterLock

    class Dropped:  # a connection whose server went away
        closed = False

        def execute(self, *_: object) -> None:
            raise OperationalError("SELECT pg_advisory_unlock(1)", {}, Exception("terminating connection"),
                                   connection_invalidated=True)

        def close(self) -> None:
            self.closed = True

    lock, connection = DatabaseWriterLock(engine=None), Dropped()  # type: ignore[arg-type]
    lock._connection = connection  # type: ignore[assignment]
    lock.release()
    assert connection.closed and lock._connection is None


def test_the_writer_lock_refuses_a_symlink_swapped_in_after_its_check(tmp_path: Path, monkeypatch) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("must stay as it is", encoding="utf-8")
    (tmp_path / "write.lock").symlink_to(precious)
    check = WriterLock._refuse_unusual_file
    calls: list[int] = []

    def late_check(lock: WriterLock) -> None:  # the first check passes, as if the link appeared just after it
        calls.append(1)
        if len(calls) > 1:
            check(lock)

    monkeypatch.setattr(WriterLock, "_refuse_unusual_file", late_check)
    with pytest.raises(LockFileError, match="symlink"):
        WriterLock(tmp_path / "write.lock").acquire()
    assert precious.read_text(encoding="utf-8") == "must stay as it is"


NO_FLOCK = ("import errno, fcntl\n"
            "def no_flock(fd, operation):\n"
            "    raise OSError(errno.ENOSYS, 'Function not implemented')\n"
            "fcntl.flock = no_flock\n")


def test_a_killed_writer_does_not_block_the_next_where_the_filesystem_has_no_flock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without flock (Lustre -o noflock, some FUSE mounts) filelock falls back to a marker naming the holder, which
    the next writer checks; the writer lock must not overwrite it, or a killed holder blocks every writer for good."""
    hold = (NO_FLOCK + "import sys, time\nfrom pathlib import Path\nfrom kb.storage.lock import WriterLock\n"
            "lock = WriterLock(Path(sys.argv[1]))\nlock.acquire()\nprint('held', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "write.lock")], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        import fcntl

        def no_flock(fd: int, operation: int) -> None:  # this process has no flock either
            raise OSError(errno.ENOSYS, "Function not implemented")

        monkeypatch.setattr(fcntl, "flock", no_flock)
        with pytest.raises(WriterBusyError, match=f"pid {holder.pid}"):
            WriterLock(tmp_path / "write.lock").acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = WriterLock(tmp_path / "write.lock")
    lock.acquire()  # the holder is dead: its marker no longer holds the lock
    lock.release()


def test_absurd_schedules_are_refused_and_a_stored_one_does_not_stop_the_scheduler(kb_factory,
                                                                                    tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    for schedule in ("every 99999999999d", "every 400d", "every " + "9" * 5000 + "s", "0s"):
        with pytest.raises(ScheduleError):
            kb.add_source(folder, schedule)
    kb.add_source(folder, "every 1h")
    kb.close()
    with sqlite3.connect(tmp_path / "kb" / "kb.sqlite") as connection:  # as an older version let it through
        connection.execute("UPDATE sources SET schedule = 'every 99999999999d', next_run_at = '2000-01-01 00:00:00'")
    kb = kb_factory()
    reports = kb.scheduler().run_pending()
    assert len(reports) == 1 and len(reports[0].added) == 4
    assert kb.sources()[0].next_run_at is None  # no longer due: no failure on every poll
    assert kb.scheduler().run_pending() == []


def test_a_read_only_database_ends_in_one_line(kb_factory, tmp_path: Path, tiny_text_model: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb_factory().ingest(folder)
    (folder / "new.txt").write_text("A new note about lanterns.", encoding="utf-8")
    env = {**os.environ, "KB_TEXT_MODEL": str(tiny_text_model), "KB_DEVICE": "cpu",
           "KB_DATABASE_URL": f"sqlite:///file:{tmp_path / 'kb' / 'kb.sqlite'}?mode=ro&uri=true"}
    done = subprocess.run([sys.executable, "-m", "kb.cli", "--kb", str(tmp_path / "kb"), "ingest", str(folder)],
                          env=env, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert errors(done.stderr) == ["kb: error: the database cannot be written: attempt to write a readonly database"]


def test_a_full_database_is_the_error_reported_not_the_index_save_after_it(
        kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_docs(tmp_path / "docs", {f"n{n:02d}.txt": f"Note {n}: " + "lantern harbour " * 300
                                             for n in range(40)})
    kb = kb_factory()
    kb.ingest(write_docs(tmp_path / "first", {"a.txt": "A first note."}))
    engine = kb.store.sessions.kw["bind"]
    engine.dispose()

    @event.listens_for(engine, "connect")
    def _full(connection, _record) -> None:  # type: ignore[no-untyped-def]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from here on

    def no_space(self: FaissIndex) -> None:
        raise StorageError(f"cannot write {self.path}: No space left on device")

    monkeypatch.setattr(FaissIndex, "save", no_space)
    with pytest.raises(StorageError) as raised:
        kb.ingest(folder)
    assert str(raised.value) == "the database cannot be written: database or disk is full"
    assert isinstance(raised.value.__cause__, Exception)  # the original error, kept


@pytest.mark.slow
def test_a_real_full_disk_ends_in_one_line(tmp_path: Path, tiny_text_model: Path) -> None:
    home = tmp_path / "kb"
    with share_at(home) as mounted:
        if not mounted:
            pytest.skip("a small filesystem needs a mount, which needs root")
        assert _run("mount", "-o", "remount,size=600k", str(home))
        folder = write_docs(tmp_path / "docs", {f"n{n:03d}.txt": f"Note {n}: " + "lantern harbour " * 400
                                                for n in range(60)})
        env = {**os.environ, "KB_TEXT_MODEL": str(tiny_text_model), "KB_DEVICE": "cpu"}
        done = subprocess.run([sys.executable, "-m", "kb.cli", "--kb", str(home), "ingest", str(folder)], env=env,
                              capture_output=True, text=True, cwd=REPO)
        [error] = errors(done.stderr)
        assert done.returncode == 2 and error.startswith("kb: error: ") and ("full" in error or "No space" in error)


def test_a_checkpoint_that_would_run_code_is_refused(tiny_clip: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    config, checkpoint = tiny_clip
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return os.system, (f"touch {marker}",)

    hostile = tmp_path / "hostile.pt"
    torch.save({"state_dict": torch.load(checkpoint, weights_only=True), "extra": Payload()}, hostile)
    with pytest.raises(ModelNotFoundError, match="refused"):
        ClipEncoder(str(config), str(hostile), device="cpu").identity()
    assert not marker.exists()


def test_a_hostile_folder_through_the_command(tmp_path: Path, tiny_text_model: Path) -> None:
    folder = tmp_path / "share"
    write_docs(folder, {"good.txt": "An ordinary note about the lighthouse keeper.",
                        "notes.md": "# Notes\n\n![inside](pics/ok.png)\n\nThe harbour map.\n"})
    (folder / "pics").mkdir()
    (folder / "pics" / "ok.png").write_bytes(_picture((40, 40, 200)))
    secret, _ = outside(tmp_path / "outside")
    (folder / "page.html").write_text("<p>Links outside.</p><img src='../outside/secret.png'>"
                                      "<img src='../outside/absent.png'>", encoding="utf-8")
    (folder / "link.txt").symlink_to(secret)
    os.mkfifo(folder / "pipe.txt")
    (folder / "front.md").write_bytes(front_matter_markdown())
    (folder / "deep.html").write_bytes(nested_html(2000))
    (folder / "bomb.docx").write_bytes(docx_xml_bomb(15))
    (folder / "big.html").write_bytes(big_html(6))
    names = ["evil\x1b[2J\x1b[31mred.txt", "forged\nfailed   payroll.txt: fake.txt", "bidi\u202etxt.exe.txt"]
    for name in names:
        (folder / name).write_bytes(b"")  # empty: failed, so the report prints its name
    env = {**os.environ, "KB_TEXT_MODEL": str(tiny_text_model), "KB_DEVICE": "cpu", "KB_CLIP_MODEL": "none"}
    kb = [sys.executable, "-m", "kb.cli", "--kb", str(tmp_path / "kb")]
    peak = tmp_path / "peak"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tests.peak_memory", str(peak), *kb[2:], "ingest", str(folder),
                           "--verbose"], env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
    seconds = time.monotonic() - started
    peak_mb = float(peak.read_text())
    shown = done.stdout + done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
    assert seconds < 300 and peak_mb < 1500, (seconds, peak_mb)  # the ingesting process; its worker is capped
    assert SECRET not in shown and "\x1b" not in shown and "\u202e" not in shown
    assert not any(line.startswith("failed   payroll.txt") for line in shown.splitlines())
    assert "evil\\x1b[2J\\x1b[31mred.txt" in shown and "forged\\x0afailed   payroll.txt: fake.txt" in shown
    assert "6 added" in done.stdout and "5 failed" in done.stdout and "2 skipped" in done.stdout
    report = json.loads(subprocess.run([*kb, "ingest", str(folder), "--json"], env=env, capture_output=True,
                                       text=True, cwd=REPO, timeout=600).stdout)
    failed = {Path(f["path"]).name: f["reason"] for f in report["failed"]}
    assert set(failed) >= set(names)  # --json: the names exactly as they are
    assert "XML bomb" in failed["bomb.docx"] and "max_html_mb" in failed["big.html"]
    with KnowledgeBase.open(tmp_path / "kb", text_model=str(tiny_text_model), device="cpu") as opened:
        _assert_nothing_outside(opened)
        assert opened.stats().images == 2  # pics/ok.png, as a file and as shown in notes.md
        for query in (SECRET, "payroll password hunter2"):
            assert all(SECRET not in hit.text for hit in opened.search(query, k=10))


def _picture(colour: tuple[int, int, int]) -> bytes:
    from tests.documents import image_bytes

    return image_bytes("PNG", size=(64, 64), color=colour)


@pytest.mark.databases("sqlite", "postgresql")
def test_a_path_longer_than_the_database_indexes_fails_that_file_alone(kb_factory, tmp_path: Path) -> None:
    """PostgreSQL's unique index on paths holds at most 2,704 bytes a row; a deeper file (Linux allows 4,096) is
    one failed file, on SQLite too (the same limit on both), not a failed run that stores nothing."""
    import random
    import string

    from tests.test_knowledge_base import write_docs

    folder = write_docs(tmp_path / "docs")
    deep = folder
    letters = random.Random(0)
    for _ in range(12):  # 12 folders of 240 random characters: about 2,950 bytes, past what a btree row holds
        deep = deep / "".join(letters.choice(string.ascii_letters) for _ in range(240))
    deep.mkdir(parents=True)
    (deep / "note.txt").write_text("a lantern in the harbour", encoding="utf-8")
    report = kb_factory().ingest(folder)
    assert len(report.added) == 4 and [Path(failed.path).name for failed in report.failed] == ["note.txt"]
    assert report.failed[0].reason == "path longer than 2,600 bytes (UTF-8), more than is stored"


def _warranty_kb(kb_factory, tmp_path: Path) -> KnowledgeBase:
    """A knowledge base of two short documents, one about a compressor's warranty."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "warranty.txt").write_text("The warranty covers the compressor for ten years.", encoding="utf-8")
    (docs / "other.txt").write_text("Vacation days carry over to the next year.", encoding="utf-8")
    knowledge_base = kb_factory()
    knowledge_base.ingest(docs)
    return knowledge_base


@pytest.mark.databases("sqlite", "postgresql")
def test_a_query_as_long_as_a_document_is_searched_by_its_first_terms(kb_factory, tmp_path: Path) -> None:
    """A pasted document as the query: each keyword term is a parameter of a statement (three once found in the
    index), and PostgreSQL takes 65,535 at most, so keyword search reads the first 1,024 distinct terms (the text
    encoder reads only its start too)."""
    knowledge_base = _warranty_kb(kb_factory, tmp_path)
    query = "compressor warranty " + " ".join(f"term{number}" for number in range(70_000))
    assert Path(knowledge_base.search(query, k=2, mode="keyword")[0].path).name == "warranty.txt"
    hybrid = knowledge_base.search(query, k=2)  # the tiny test encoder's half of the ranking means nothing
    assert [hit.keyword_score > 0 for hit in hybrid if Path(hit.path).name == "warranty.txt"] == [True]
    late = " ".join(f"term{number}" for number in range(70_000)) + " compressor"
    assert knowledge_base.search(late, k=2, mode="keyword") == []  # past the first 1,024 terms


def test_a_question_longer_than_any_stage_reads_is_cut_once_where_search_and_ask_start(
        kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 10 MB question took 14 s and 1.4 GB to search and 34 s to ask (1.5 MB of Chinese 42 s): the encoder's
    tokenizer, keyword tokenisation (twice) and the query-vector cache each had all of it, though each reads only
    its start. Now no stage is handed more than ``MAX_QUERY_CHARS``, and the answer is the same."""
    knowledge_base = _warranty_kb(kb_factory, tmp_path)
    handed: list[int] = []
    encoder = knowledge_base.retriever.encoder
    encode, terms = encoder.encode, retriever.query_terms
    monkeypatch.setattr(encoder, "encode", lambda texts, *a, **kw: handed.extend(map(len, texts)) or
                        encode(texts, *a, **kw))
    monkeypatch.setattr(retriever, "query_terms", lambda tokenizer, query: handed.append(len(query)) or
                        terms(tokenizer, query))
    question = "  compressor warranty" + " compressor" * 1_000_000  # 11 MB, leading blanks left out
    assert Path(knowledge_base.search(question, k=1, mode="keyword")[0].path).name == "warranty.txt"
    assert knowledge_base.ask(question, k=1).question == question.lstrip()[:MAX_QUERY_CHARS]
    assert handed and max(handed) == MAX_QUERY_CHARS
