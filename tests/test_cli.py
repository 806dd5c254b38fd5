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
