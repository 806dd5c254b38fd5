"""Start-up and noise: commands that need no model import none, and libraries keep off a user's terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.documents import pdf_bytes
from tests.qa_model import FILLER, fact, question
from tests.test_knowledge_base import write_docs

ROOT = Path(__file__).resolve().parent.parent
MODEL_LIBRARIES = ("torch", "transformers", "sentence_transformers", "open_clip", "rapidocr_onnxruntime")


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_commands_that_need_no_model_import_none(tmp_path: Path, tiny_text_model: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    env = {"KB_HOME": str(tmp_path / "kb"), "KB_TEXT_MODEL": str(tiny_text_model), "KB_DEVICE": "cpu"}
    assert run_python(f"from kb.cli import main; main(['ingest', {str(folder)!r}])", env).returncode == 0
    code = f"""
import sys
from kb.cli import main
for argv in (['stats'], ['jobs'], ['source', 'list'], ['ingest', {str(folder)!r}]):
    assert main(argv) == 0, argv
print(sorted(name for name in {MODEL_LIBRARIES!r} if name in sys.modules))
"""
    done = run_python(code, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"  # the unchanged folder's re-ingest loaded no model either


def test_the_python_api_leaves_stderr_to_the_application(tmp_path: Path, tiny_text_model: Path,
                                                          tiny_reader: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "codes.txt").write_text(f"{FILLER[0]} {fact('alice', 4821)}", encoding="utf-8")
    # Cut short, as examples/docs/quarterly-report-truncated.pdf: pypdf warns "EOF marker not found", then fails.
    (folder / "report.pdf").write_bytes(pdf_bytes([["Quarterly report"]]).rsplit(b"%%EOF", 1)[0])
    code = f"""
import json
from kb import KnowledgeBase
with KnowledgeBase.open({str(tmp_path / 'kb')!r}, text_model={str(tiny_text_model)!r},
                        reader_model={str(tiny_reader)!r}, device="cpu") as kb:
    report = kb.ingest({str(folder)!r})
    answers = kb.ask({question('alice')!r}, k=2)
    print(json.dumps([len(report.added), len(report.failed), answers[0].text]))
"""
    done = run_python(code, {})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1, 1, "4821"]
    assert "Loading weights" not in done.stderr and "EOF marker" not in done.stderr
    assert done.stderr == "", done.stderr
