"""Reader backends: the question-answering model exported once to ONNX and run on ONNX Runtime or OpenVINO gives
torch float32's answers (float32) or the same answer text on clear cases (int8), through the reader's one span
search."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from answering.backends import chosen_backend
from answering.reader import ExtractiveReader
from kb.config import Settings, load_settings, save_settings
from kb.errors import BackendUnavailableError
from kb.inference import backends
from kb.inference.backends import bfloat16_native
from kb.types import Hit
from tests.qa_model import FILLER, fact, question
from tests.test_backends import FLOAT32, INT8, available  # skips this module too without the onnx extra

CODES = [("elena", 9012), ("greta", 3141), ("kofi", 577)]


def passages(name: str, code: int) -> list[Hit]:
    """Three passages, the fact in the second one; the first is long enough for two windows at 64 tokens."""
    texts = [" ".join(FILLER * 2), f"{FILLER[1]} {fact(name, code)} {FILLER[2]}", " ".join(FILLER[3:5])]
    return [Hit(path=f"{i}.txt", page=None, start=10 * i, end=10 * i + len(t), text=t, score=1.0, chunk_id=i,
                document_id=i) for i, t in enumerate(texts)]


def reader(tiny_reader: Path, cache: Path, backend: str) -> ExtractiveReader:
    return ExtractiveReader(Settings(reader_model=str(tiny_reader), device="cpu", reader_backend=backend,
                                     model_cache=str(cache), reader_max_seq_length=64, reader_stride=16,
                                     reader_batch_size=2))


@pytest.mark.parametrize("backend", FLOAT32 + ["openvino-bf16"] + INT8)
def test_reader_backends_give_torch_float32_answers(tiny_reader: Path, tmp_path_factory: pytest.TempPathFactory,
                                                    backend: str) -> None:
    available(backend)
    cache = tmp_path_factory.getbasetemp() / "reader-model-cache"  # one export for all backends, as in real use
    exact, other = reader(tiny_reader, cache, "torch"), reader(tiny_reader, cache, backend)
    for name, code in CODES:
        expected = exact.run(question(name), passages(name, code), top_k=3, threshold=0.0)
        reading = other.run(question(name), passages(name, code), top_k=3, threshold=0.0)
        assert reading.answers[0].text == expected.answers[0].text == str(code)
        assert reading.answers[0].sources[0].start == expected.answers[0].sources[0].start  # the same citation
        if backend in FLOAT32:  # the same logits: every answer, its score and the no-answer score agree
            assert [a.text for a in reading.answers] == [a.text for a in expected.answers]
            assert [a.score for a in reading.answers] == pytest.approx([a.score for a in expected.answers],
                                                                       abs=1e-4)
            assert reading.no_answer_score == pytest.approx(expected.no_answer_score, abs=1e-4)
        else:
            assert reading.answers[0].score == pytest.approx(expected.answers[0].score, abs=0.1)


def test_the_reader_is_exported_once(tiny_reader: Path, tmp_path: Path, monkeypatch) -> None:
    from kb.inference import export

    exports: list[str] = []
    original = export._export
    monkeypatch.setattr(export, "_export", lambda *args: (exports.append(args[2].name), original(*args))[1])
    for backend in ("onnx-int8", "onnx-int8", "onnx"):
        name, code = CODES[0]
        answers = reader(tiny_reader, tmp_path, backend).run(question(name), passages(name, code)).answers
        assert answers[0].text == str(code)
    assert exports == ["question-answering"]  # a second reader, and the float32 graph, reuse the export
    assert len(list((tmp_path / "exports").iterdir())) == 1


@pytest.mark.parametrize("backend", ["onnx", "auto"])
def test_asking_a_knowledge_base_on_a_reader_backend(kb_factory, tiny_reader: Path, tmp_path: Path,
                                                     backend: str) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "codes.txt").write_text(f"{FILLER[0]} {fact('hiro', 2468)} {FILLER[1]}", encoding="utf-8")
    (docs / "weather.txt").write_text(" ".join(FILLER[2:5]), encoding="utf-8")
    cache = tmp_path / "model-cache"
    knowledge_base = kb_factory(reader_model=str(tiny_reader), reader_backend=backend, model_cache=str(cache))
    knowledge_base.ingest(docs)
    best = knowledge_base.ask(question("hiro"), k=2)[0]
    assert best.text == "2468" and best.sources[0].path.endswith("codes.txt")
    readers = list((cache / "exports").glob("*-question-answering"))
    assert len(readers) == 1  # read from the exported graph (auto: on this CPU)


def test_auto_reads_on_a_float32_export_where_a_runtime_is_installed(monkeypatch) -> None:
    """The default reads faster on a CPU: the export on OpenVINO in bfloat16 where the CPU computes that natively,
    else torch's answers in float32 on ONNX Runtime (or OpenVINO where ONNX Runtime is missing); torch where it
    must (a GPU, a torch precision, no runtime installed); a backend named is kept as it is."""
    available("openvino")
    assert chosen_backend("auto", "cpu", "float32") == ("openvino-bf16" if bfloat16_native() else "onnx")
    monkeypatch.setattr(backends, "bfloat16_native", lambda: True)
    assert chosen_backend("auto", "cpu", "float32") == "openvino-bf16"
    monkeypatch.setattr(backends, "bfloat16_native", lambda: False)
    assert chosen_backend("auto", "cpu", "float32") == "onnx"
    assert chosen_backend("auto", "cpu", "int8") == "torch"
    assert chosen_backend("auto", "cuda", "float32") == "torch"
    assert chosen_backend("onnx-int8", "cpu", "float32") == "onnx-int8"
    with monkeypatch.context() as without_onnxruntime:
        without_onnxruntime.setitem(sys.modules, "onnxruntime", None)  # as an import finds a package not installed
        assert chosen_backend("auto", "cpu", "float32") == "openvino"
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert chosen_backend("auto", "cpu", "float32") == "onnx"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert chosen_backend("auto", "cpu", "float32") == "torch"


def test_a_missing_runtime_names_the_package_to_install(tiny_reader: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an import finds when the package is not installed
    with pytest.raises(BackendUnavailableError, match=r"multimodal-kb\[openvino\].*reader_backend"):
        reader(tiny_reader, tmp_path, "openvino").warm_up()


def test_reader_backend_is_a_machine_setting(tmp_path: Path) -> None:
    save_settings(tmp_path, Settings(reader_backend="onnx-int8"))
    assert "reader_backend" not in json.loads((tmp_path / "kb.json").read_text())
    assert load_settings(tmp_path, {}).reader.backend == "auto"
    with pytest.raises(ValueError, match="reader_backend=torch only"):
        Settings(reader_backend="onnx", reader_precision="int8")
