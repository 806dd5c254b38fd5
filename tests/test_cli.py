"""The ``kb`` command: ingest, search (text and JSON), stats, KB_HOME and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kb.cli import main
from tests.test_knowledge_base import write_docs


@pytest.fixture
def kb_env(tmp_path: Path, tiny_text_model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KB_TEXT_MODEL", str(tiny_text_model))
    monkeypatch.setenv("KB_DEVICE", "cpu")
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home-kb"))
    return write_docs(tmp_path / "docs")


def test_ingest_search_stats(kb_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (kb_env / "empty.txt").write_bytes(b"")
    assert main(["ingest", str(kb_env)]) == 0
    out = capsys.readouterr().out
    assert "4 added" in out and "1 failed" in out and "empty.txt" in out
    assert (tmp_path / "home-kb" / "kb.sqlite").exists()

    assert main(["search", "duchy margrave", "--mode", "keyword", "--json", "-k", "2"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"].endswith("history.txt") and {"page", "start", "end", "score"} <= set(hits[0])

    assert main(["search", "days", "--path", "handbook/*", "--type", "txt"]) == 0
    out = capsys.readouterr().out
    assert "leave.txt" in out and "returns.html" not in out

    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 4 and stats["failed_documents"] == 1

    assert main(["ingest", str(kb_env), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["unchanged"]) == 4 and report["chunks_added"] == 0


def test_kb_option_and_errors(kb_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--kb", str(tmp_path / "explicit"), "ingest", str(kb_env)]) == 0
    assert (tmp_path / "explicit" / "kb.json").exists()
    capsys.readouterr()
    assert main(["--kb", str(tmp_path / "explicit"), "ingest", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["--kb", str(tmp_path / "explicit"), "search", "zzzz", "--mode", "keyword",
                 "--modified-after", "2999-01-01"]) == 0
    assert "no results" in capsys.readouterr().out
    assert main(["--kb", str(tmp_path / "typo"), "search", "x"]) == 2
    assert "no knowledge base" in capsys.readouterr().err and not (tmp_path / "typo").exists()


def test_errors_are_one_line_and_nothing_is_created_for_a_missing_folder(
        kb_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--kb", str(tmp_path / "new"), "ingest", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert main(["ingest", str(kb_env)]) == 0
    capsys.readouterr()
    for argv, expected in ((["search", ""], "the query is empty"),
                           (["search", "   "], "the query is empty"),
                           (["search", "refund", "--type", "xyz"], "unknown file types ['xyz']"),
                           (["source", "add", str(kb_env), "--every", "15x"], "cannot read the interval"),
                           (["search", "refund", "-k", "0"], "k must be between 1 and 10,000"),
                           (["search", "refund", "-k", "10001"], "k must be between 1 and 10,000"),
                           (["ask", "refund?", "-k", "10001"], "k must be between 1 and 10,000"),
                           # a byte that is not UTF-8 on the command line ($'refund \xff policy'): a surrogate
                           (["search", "refund \udcff policy"], "the query holds a lone UTF-16 surrogate"),
                           (["ask", "refund \udcff?"], "the question holds a lone UTF-16 surrogate"),
                           (["search", "refund", "--path", "\udcff*"], "path_glob holds a lone UTF-16 surrogate"),
                           (["search", "refund", "--path", "*" * 60_000], "longer than any path"),
                           (["search", "refund", *["--path", "*.txt"] * 1001], "1,001 globs; at most 100"),
                           (["preview", "99999999999999999999", "out.jpg"], "is not an image of this knowledge"),
                           (["jobs", "--limit", "99999999999999999999"], "must be between 1 and 1,000,000")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("kb: error: ") and expected in err and err.count("\n") == 1 and "http" not in err
    # Dates whose UTC lies past what Python's datetime holds (an OverflowError once) bound nothing.
    assert main(["search", "refund", "--modified-after", "0001-01-01T00:00:00+14:00",
                 "--modified-before", "9999-12-31T23:00:00-05:00"]) == 0
    assert "returns.html" in capsys.readouterr().out
    # A filter that leaves nothing to match gives nothing, not a hit with no evidence.
    assert main(["search", "refund", "--type", "png"]) == 0
    assert capsys.readouterr().out.strip() == "no results"


def test_version_and_errors_importable_from_kb(capsys: pytest.CaptureFixture[str]) -> None:
    import kb

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("kb ")
    for name in ("KbError", "ModelNotFoundError", "EncoderMismatchError", "WriterBusyError", "SchemaError",
                 "ImageSearchUnavailable", "SourceNotFoundError", "NotAnImageError", "ScheduleError",
                 "InvalidRequestError", "ConfigurationError"):
        assert issubclass(getattr(kb, name), kb.KbError), name


def test_search_shows_the_part_of_a_hit_that_matches(kb_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    filler = " ".join(f"Paragraph {n} of the policy says nothing in particular about anything." for n in range(12))
    (kb_env / "long.txt").write_text(f"{filler} Staff may carry over eleven unused vacation days. {filler}",
                                     encoding="utf-8")
    assert main(["ingest", str(kb_env)]) == 0
    capsys.readouterr()
    assert main(["search", "carry over vacation days", "--mode", "keyword", "-k", "1"]) == 0
    snippet = capsys.readouterr().out.splitlines()[1]
    assert "carry over eleven unused vacation days" in snippet and len(snippet) < 340 and snippet.strip()[0] == "…"
    assert main(["search", "carry over vacation days", "--mode", "keyword", "-k", "1", "--full"]) == 0
    assert "Paragraph 0 of" in capsys.readouterr().out


def test_reports_failures_empty_files_and_strictness_alike(kb_env: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from tests.documents import pdf_bytes

    (kb_env / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog")
    (kb_env / "scan.pdf").write_bytes(pdf_bytes([[]]))  # one page without a text layer
    assert main(["ingest", str(kb_env)]) == 0
    out = capsys.readouterr().out
    assert "failed   " in out and "broken.pdf" in out and "1 empty" in out and "--verbose" in out
    assert "scan.pdf" not in out
    (kb_env / "scan.pdf").write_bytes(pdf_bytes([[], []]))
    assert main(["ingest", str(kb_env), "--verbose", "--strict"]) == 1
    out = capsys.readouterr().out
    assert "empty    " in out and "warning  " in out and "scan.pdf" in out and "no text layer" in out
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert "(1 empty, 1 with warnings)" in out and "broken.pdf: " in out  # failures with their reasons
    assert main(["reindex"]) == 0
    out = capsys.readouterr().out
    assert "failed   " in out and "broken.pdf" in out and "unchanged" in out  # reindex reports as ingest does
    assert main(["doctor"]) == 0
    assert "hold no text" in capsys.readouterr().out


def test_an_ingest_that_reads_no_file_exits_1_even_without_strict(tmp_path: Path, tiny_text_model: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KB_TEXT_MODEL", str(tiny_text_model))
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home-kb"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog")
    (broken / "b.docx").write_bytes(b"PK\x03\x04 not a zip")
    assert main(["ingest", str(broken)]) == 1
    assert "2 failed" in capsys.readouterr().out
    (broken / "c.txt").write_text("One readable file is a run that did its job.", encoding="utf-8")
    assert main(["ingest", str(broken)]) == 0
    assert main(["reindex"]) == 0  # c.txt unchanged: the run read what it could


def test_progress_goes_to_stderr_as_lines_without_a_terminal(kb_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(kb_env), "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout holds the report alone
    phases = [line for line in captured.err.splitlines() if line.startswith("kb: [")]
    assert any("scanning" in line for line in phases) and any("loading models" in line for line in phases)
    assert any("saving indexes" in line for line in phases)


def test_a_manual_reindex_counts_as_the_scheduled_run(kb_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kb import KnowledgeBase
    from kb.storage.models import utcnow

    assert main(["source", "add", str(kb_env), "--every", "2h"]) == 0
    with KnowledgeBase.open() as kb:
        assert kb.sources()[0].next_run_at <= utcnow()  # due at once
    assert main(["reindex"]) == 0
    with KnowledgeBase.open() as kb:
        due = kb.sources()[0].next_run_at
        assert due is not None and (due - utcnow()).total_seconds() > 7000
        assert kb.scheduler().run_pending() == []  # the scheduler does not run it again at once


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(kb_env: Path) -> None:
    """`kb search ... | head -1`: the reader closes the pipe; kb ends with 141 (128 + SIGPIPE), no traceback."""
    import os
    import subprocess
    import sys

    assert main(["ingest", str(kb_env)]) == 0
    search = subprocess.Popen([sys.executable, "-m", "kb.cli", "search", "days", "--json", "-k", "5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    assert search.stdout is not None and search.stderr is not None
    search.stdout.close()  # gone before kb writes a byte
    errors = search.stderr.read().decode()
    assert search.wait(timeout=120) == 141 and "Traceback" not in errors, errors


def test_a_terminal_without_unicode_gets_escapes_not_a_crash(kb_env: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """PYTHONIOENCODING=latin-1: a Chinese folder name and the job list's arrow are printed as escapes."""
    import io
    import sys

    folder = write_docs(tmp_path / "知识")
    assert main(["source", "add", str(folder)]) == 0 and main(["reindex"]) == 0
    latin1 = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    monkeypatch.setattr(sys, "stdout", latin1)
    assert main(["jobs"]) == 0 and main(["source", "list"]) == 0
    latin1.flush()
    printed = latin1.buffer.getvalue()  # type: ignore[attr-defined]
    assert b"\\u2192" in printed and b"\\u77e5\\u8bc6" in printed


def test_stats_escapes_what_kb_json_or_a_variable_says(kb_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The index factory and models shown come from kb.json and KB_* variables: an escape sequence there (one that
    retitles the terminal) is shown, never sent."""
    assert main(["ingest", str(kb_env)]) == 0
    monkeypatch.setenv("KB_INDEX_FACTORY", "Flat\x1b]0;pwned\x07")
    capsys.readouterr()
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "index Flat\\x1b]0;pwned\\x07," in out


def test_eval_refuses_an_out_folder_and_kb_before_evaluating(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "dev.json"
    data.write_text("{}", encoding="utf-8")  # never read: each is refused first
    for argv, said in ((["eval", "squad", str(data), "--out", str(tmp_path)], "is a folder"),
                       (["--kb", str(tmp_path / "kb"), "eval", "squad", str(data)], "--kb would be ignored")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("kb: error: ") and said in err, err


def test_what_the_system_refuses_is_a_one_line_error(kb_env: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a knowledge base", encoding="utf-8")
    assert main(["ingest", str(kb_env)]) == 0
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "kb.json").write_text("{half written", encoding="utf-8")
    capsys.readouterr()
    for argv, said in ((["--kb", str(a_file), "ingest", str(kb_env)], "File exists"),
                       (["search", "--image", str(kb_env)], "searching by image needs the CLIP model"),  # asked first
                       (["--kb", str(corrupt), "stats"], "kb.json is not readable JSON"),
                       (["scheduler", "--poll", "inf"], "from 0.05 to 86,400")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("kb: error: ") and said in err and err.count("\n") == 1, (argv, err)


def test_only_ingest_and_source_add_create_a_knowledge_base(kb_env: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "typo"  # a mistyped --kb
    for argv, said in ((["--kb", str(typo), "source", "list"], "no knowledge base"),
                       (["--kb", str(typo), "source", "remove", str(kb_env)], "no knowledge base"),
                       (["--kb", str(typo), "source", "add", str(tmp_path / "missing"), "--every", "15m"],
                        "is not a folder")):
        assert main(argv) == 2, argv
        assert said in capsys.readouterr().err and not typo.exists(), argv


def test_an_empty_schedule_is_refused_not_taken_for_none(kb_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["source", "add", str(kb_env), "--every", "1h"]) == 0
    for option in ("--schedule", "--every"):
        assert main(["source", "add", str(kb_env), option, ""]) == 2, option
    capsys.readouterr()
    assert main(["source", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["schedule"] is not None  # still scheduled


def test_json_times_say_they_are_utc(kb_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A script reading --json must not take the recorded (UTC) times for local ones."""
    from datetime import datetime, timedelta, timezone

    assert main(["source", "add", str(kb_env), "--every", "1h"]) == 0
    assert main(["reindex"]) == 0
    capsys.readouterr()
    assert main(["jobs", "--json"]) == 0
    (job,) = json.loads(capsys.readouterr().out)
    assert main(["source", "list", "--json"]) == 0
    (source,) = json.loads(capsys.readouterr().out)
    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    now = datetime.now(timezone.utc)
    for text in (job["started_at"], job["finished_at"], source["last_finished_at"], stats["last_run"]):
        assert abs(datetime.fromisoformat(text) - now) < timedelta(minutes=10), text  # aware: comparable to now
    assert datetime.fromisoformat(source["next_run_at"]) - now > timedelta(minutes=50)
    for command in (["jobs"], ["stats"], ["source", "list"]):  # the terminal's times say so too
        assert main(command) == 0
        assert " UTC" in capsys.readouterr().out, command


def test_jobs_limit_must_be_positive(kb_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["source", "add", str(kb_env)]) == 0
    for limit in ("0", "-1"):
        assert main(["jobs", "--limit", limit]) == 2
        assert "--limit" in capsys.readouterr().err


def test_log_lines_go_above_a_progress_bar_not_into_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging
    import sys

    from kb.cli.logs import configure_logging
    from kb.cli.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    with monkeypatch.context() as patched:
        patched.setattr(sys, "stderr", terminal)
        configure_logging(None)
        with Progress() as progress:
            progress.file(1, 10, "a.txt")
            logging.getLogger("kb.test").warning("a warning")
    configure_logging(None)  # back on the real stderr
    shown = terminal.getvalue()
    assert "10" in shown and shown[:shown.index("kb: a warning")].endswith(("\r", "\n")), repr(shown)
