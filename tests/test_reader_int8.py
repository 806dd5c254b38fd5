"""The reader's calibrated int8 graph: made from the reader's own windows and kept in its folder, chosen by
``reader_backend=auto`` only where its card shows validation F1 within tolerance of float32, read through the one
span and citation path, and never a crash when it is missing, damaged or made from other weights."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from answering.backends import INT8_F1_TOLERANCE, chosen_backend, model_fingerprint
from answering.reader import ExtractiveReader
from kb.cards import Int8Scores, TrainingCard, read_card, write_card
from kb.cli import main
from kb.config import Settings
from kb.inference.backends import bfloat16_native, int8_native
from tests.qa_model import FILLER, fact, question, write_squad
from tests.test_backends import available
from tests.test_reader_backends import CODES, passages

STATIC = "openvino-int8-static"
WEIGHTS = "openvino-int8"


@pytest.fixture(scope="module")
def calibrated_reader(tiny_reader: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny reader with its int8 graph calibrated by ``kb train quantize-reader`` on generated
    facts (articles held out for validation)."""
    available(STATIC)
    folder = tmp_path_factory.mktemp("calibrated") / "reader"
    shutil.copytree(tiny_reader, folder)
    facts = write_squad(folder.parent / "facts.json", 960, seed=3)
    assert main(["train", "quantize-reader", str(folder), str(facts), "--windows", "64"]) == 0
    return folder


def reader(model: Path, backend: str) -> ExtractiveReader:
    return ExtractiveReader(Settings(reader_model=str(model), device="cpu", reader_backend=backend,
                                     reader_max_seq_length=64, reader_stride=16, reader_batch_size=2))


def test_the_calibrated_graph_is_int8_kept_in_the_model_folder_and_scored(calibrated_reader: Path) -> None:
    graph = calibrated_reader / "int8" / "openvino_model.xml"
    assert graph.is_file() and graph.with_suffix(".bin").is_file()
    quantizers = graph.read_text(encoding="utf-8").count('type="FakeQuantize"')
    assert quantizers >= 8  # activations quantised too, not weights only
    record = json.loads((calibrated_reader / "int8" / "calibration.json").read_text(encoding="utf-8"))
    assert record["source_fingerprint"] == model_fingerprint(str(calibrated_reader))
    assert record["samples"] == 64 and "facts.json" in record["calibrated_on"]["questions"]
    card = read_card(calibrated_reader)
    assert card is not None and card.int8 is not None and card.int8.graph == "int8/openvino_model.xml"
    assert "held out" in card.int8.validation and card.int8.questions == 240  # one article of four
    assert card.int8.float32["f1"] > 80 and abs(card.int8.f1_loss) <= INT8_F1_TOLERANCE
    assert card.int8.changed is not None and 0 <= card.int8.changed < 240 // 10
    assert card.int8.f1_loss_se is not None and card.int8.f1_loss_bound <= INT8_F1_TOLERANCE


def test_the_data_free_int8_export_is_scored_beside_it(calibrated_reader: Path) -> None:
    available(WEIGHTS)
    card = read_card(calibrated_reader)
    assert card is not None and card.int8 is not None and card.int8_weights is not None
    weights = card.int8_weights
    assert weights.graph == WEIGHTS and weights.calibrated_on.startswith("none")
    assert weights.validation == card.int8.validation and weights.questions == 240
    assert weights.float32 == card.int8.float32  # the same float32 answers, read once
    assert abs(weights.f1_loss) <= INT8_F1_TOLERANCE and weights.changed is not None and weights.changed < 240 // 10
    assert weights.f1_loss_se is not None and weights.seconds > 0
    assert weights.int8_activations is int8_native() and card.int8.int8_activations  # what this CPU did
    from kb.encoders.factory import export_cache

    exported = export_cache(Settings()).root / f"{model_fingerprint(str(calibrated_reader))[:32]}-question-answering"
    assert (exported / "openvino-int8.xml").is_file()  # it read on the int8 export, made for it


def test_a_failure_scoring_the_data_free_export_keeps_the_calibrated_graph_recorded(
        calibrated_reader: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from answering import int8
    from training.int8 import quantize_reader

    folder = tmp_path / "reader"
    shutil.copytree(calibrated_reader, folder)
    card = read_card(folder)
    assert card is not None
    card.int8 = card.int8_weights = None
    write_card(folder, card)

    def failing(*_: object) -> None:
        raise RuntimeError("compression failed")

    monkeypatch.setattr(int8, "_weights_scored", failing)
    with caplog.at_level(logging.WARNING, logger="answering.int8"):
        quantize_reader(folder, [calibrated_reader.parent / "facts.json"], windows=16)
    card = read_card(folder)
    assert card is not None and card.int8 is not None and card.int8.questions == 240 and card.int8_weights is None
    assert "could not be scored (RuntimeError: compression failed)" in caplog.text


def test_operations_named_stay_in_float(calibrated_reader: Path, tmp_path: Path) -> None:
    from training.int8 import quantize_reader

    folder = tmp_path / "reader"
    shutil.copytree(calibrated_reader, folder)
    quantize_reader(folder, [calibrated_reader.parent / "facts.json"], windows=16,
                    float_operations=["output/dense/MatMul", "qa_outputs"])
    graph = (folder / "int8" / "openvino_model.xml").read_text(encoding="utf-8")
    every = (calibrated_reader / "int8" / "openvino_model.xml").read_text(encoding="utf-8")
    assert 0 < graph.count('type="FakeQuantize"') < every.count('type="FakeQuantize"')
    assert json.loads((folder / "int8" / "calibration.json").read_text())["ignored"] == ["output/dense/MatMul",
                                                                                        "qa_outputs"]


def test_accuracy_control_puts_operations_back_in_float_until_the_metric_holds(calibrated_reader: Path,
                                                                              tmp_path: Path) -> None:
    """With a metric no int8 operation can satisfy (the logits exactly as float32's), accuracy control puts
    operations back in float until it holds, and records what it reached."""
    import numpy as np
    import openvino

    from answering.backends import exported_graph
    from answering.int8 import calibration_windows
    from answering.loading import load_question_answering, model_inputs
    from kb.encoders.factory import export_cache
    from kb.inference import AccuracyControl, CompiledGraph, quantize_static
    from kb.inference.calibrated import quantizers
    from training.squad_data import load_squad_files

    settings = reader(calibrated_reader, "openvino").settings
    model, tokenizer = load_question_answering(str(calibrated_reader), device="cpu")
    squad, _ = load_squad_files([calibrated_reader.parent / "facts.json"])
    samples = calibration_windows(tokenizer, squad, settings, model_inputs(model, tokenizer), 8)
    source = exported_graph(str(calibrated_reader), model, tokenizer, "onnx", export_cache(settings))
    float_logits = [CompiledGraph(source, "openvino").run(sample)[0] for sample in samples]

    def closeness(compiled: object, items: object) -> tuple[float, list[float]]:
        graph = CompiledGraph(Path(), STATIC, compiled=compiled)
        values = [1.0 - float(np.abs(graph.run(samples[i])[0][:, :float_logits[i].shape[1]] - float_logits[i]).max())
                  for i in items]
        return sum(values) / len(values), values

    control = AccuracyControl(items=list(range(len(samples))), metric=closeness, max_drop=0.0,
                              described="the logits' distance from float32's")
    quantize_static(source, tmp_path, samples, fingerprint="test", calibrated_on={}, control=control)
    graph = tmp_path / "int8" / "openvino_model.xml"
    every = calibrated_reader / "int8" / "openvino_model.xml"
    kept, all_of_them = (quantizers(openvino.Core().read_model(path)) for path in (graph, every))
    assert kept < all_of_them
    record = json.loads((tmp_path / "int8" / "calibration.json").read_text(encoding="utf-8"))
    assert "accuracy control: the logits' distance from float32's" in record["method"] and record["quantizers"] == kept
    assert record["accuracy_control"] == {"measures": "the logits' distance from float32's", "max_drop": 0.0,
                                          "float": 1.0, "int8": pytest.approx(1.0, abs=1e-3)}
    assert closeness(openvino.Core().compile_model(str(graph), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}),
                     range(len(samples)))[0] >= 1.0 - 1e-4


def test_quantize_reader_with_a_maximum_f1_drop_records_how_it_was_made(calibrated_reader: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "reader"
    shutil.copytree(calibrated_reader, folder)
    facts = str(calibrated_reader.parent / "facts.json")
    assert main(["train", "quantize-reader", str(folder), facts, "--windows", "16", "--max-f1-drop", "0.5"]) == 0
    card = read_card(folder)
    assert card is not None and card.int8 is not None
    control = json.loads((folder / "int8" / "calibration.json").read_text(encoding="utf-8"))["accuracy_control"]
    assert card.int8.accuracy_control == (f"F1 over 500 of the calibration questions: float32 {control['float']:.2f}, "
                                          f"int8 {control['int8']:.2f} (asked for at most 0.5 below)")
    assert control["float"] > 80 and control["float"] - control["int8"] <= 0.5
    assert card.int8.questions == 240 and card.int8.float32["f1"] > 80 and abs(card.int8.f1_loss) <= INT8_F1_TOLERANCE
    out = capsys.readouterr().out
    assert f"accuracy control: {card.int8.accuracy_control}\n" in out
    assert card.int8_weights is not None and card.int8_weights.validation == card.int8.validation
    assert f"  data-free int8 (openvino-int8): {card.int8_weights.against_float32()}\n" in out
    assert f"of {card.int8.questions} answers changed)" in out
    assert f"reader_backend=auto reads on a CPU here with {chosen_backend('auto', 'cpu', 'float32', str(folder))} " \
        in out
    record = json.loads((folder / "int8" / "calibration.json").read_text(encoding="utf-8"))
    assert "with accuracy control: F1 over 500 of the calibration questions, asked for at most 0.5 below" in \
        record["method"]
    name, code = CODES[0]
    assert reader(folder, STATIC).run(question(name), passages(name, code)).answers[0].text == str(code)


def test_accuracy_control_reads_as_the_reader_reads(calibrated_reader: Path) -> None:
    """The metric NNCF is given is the reader's own F1 on the control questions: on the float32 graph, what
    ``kb eval squad`` would score for them."""
    import openvino

    from answering.backends import exported_graph
    from answering.int8 import _answers, accuracy_control, question_f1
    from answering.loading import load_question_answering
    from kb.encoders.factory import export_cache
    from training.squad_data import load_squad_files

    settings = reader(calibrated_reader, "openvino").settings
    model, tokenizer = load_question_answering(str(calibrated_reader), device="cpu")
    squad, _ = load_squad_files([calibrated_reader.parent / "facts.json"])
    control = accuracy_control(settings, tokenizer, squad, 0.5)
    source = exported_graph(str(calibrated_reader), model, tokenizer, "onnx", export_cache(settings))
    compiled = openvino.Core().compile_model(str(source), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    mean, values = control.metric(compiled, control.items)
    expected = question_f1(control.items, _answers(settings, squad))
    assert values == pytest.approx(expected) and mean == pytest.approx(sum(expected) / len(expected))
    assert 0 < mean <= 100


def test_control_questions_come_from_every_article() -> None:
    from answering.int8 import control_questions
    from answering.squad_eval import SquadQuestion, SquadSet

    squad = SquadSet(version="1.1", paragraphs=[(f"article {n}", "text") for n in range(3)], questions=[
        SquadQuestion(id=str(n), question="?", paragraph=n * 3 // 720, answers=["text"]) for n in range(720)])
    chosen = control_questions(squad, 500)
    assert len(chosen) == len({question.id for question in chosen}) == 500
    assert {question.paragraph for question in chosen} == {0, 1, 2}
    assert [question.paragraph for question in chosen].count(2) > 150  # spread evenly, the last article included
    assert len(control_questions(squad, 1000)) == 720


def test_calibration_windows_come_from_every_article_when_paragraphs_have_several_windows() -> None:
    """Each question of a long paragraph gives several windows; the windows still spread over the whole set (taking
    every window of evenly spaced questions until enough stopped near the middle of the set)."""
    from transformers import AutoTokenizer

    from answering.int8 import calibration_windows
    from answering.squad_eval import SquadQuestion, SquadSet
    from kb.config import Settings
    from tests.conftest import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    words = ["alpha", "beta", "gamma"]
    squad = SquadSet(version="1.1", paragraphs=[(word, f"{word} " * 200) for word in words], questions=[
        SquadQuestion(id=str(n), question="which?", paragraph=n * 3 // 300, answers=[words[n * 3 // 300]])
        for n in range(300)])
    settings = Settings(reader_max_seq_length=64, reader_stride=16)
    samples = calibration_windows(tokenizer, squad, settings, ["input_ids"], 30)
    seen = [next(word for word in words if word in tokenizer.decode(sample["input_ids"][0])) for sample in samples]
    assert len(samples) == 30 and all(8 <= seen.count(word) <= 12 for word in words)


@pytest.mark.parametrize("drop", ["-1", "101", "nan", "half"])
def test_quantize_reader_refuses_a_drop_that_is_not_points(drop: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "quantize-reader", "reader", "--max-f1-drop", drop])
    assert "is not a number of F1 points from 0 to 100" in capsys.readouterr().err


def test_kb_ask_reads_with_the_calibrated_graph_and_cites_exactly(kb_factory, calibrated_reader: Path,
                                                                 tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    text = f"{FILLER[0]} {fact('hiro', 2468)} {FILLER[1]}"
    (docs / "codes.txt").write_text(text, encoding="utf-8")
    (docs / "weather.txt").write_text(" ".join(FILLER[2:5]), encoding="utf-8")
    knowledge_base = kb_factory(reader_model=str(calibrated_reader), reader_backend="auto")
    knowledge_base.ingest(docs)
    best = knowledge_base.ask(question("hiro"), k=2)[0]
    source = best.sources[0]
    assert best.text == "2468" and source.path.endswith("codes.txt") and text[source.start:source.end] == "2468"
    assert knowledge_base.readers.for_question(question("hiro")).backend == STATIC


def test_the_calibrated_graph_answers_as_float32_does(calibrated_reader: Path) -> None:
    exact, int8 = reader(calibrated_reader, "openvino"), reader(calibrated_reader, STATIC)
    for name, code in CODES:
        expected = exact.run(question(name), passages(name, code), top_k=1, threshold=0.0).answers[0]
        answer = int8.run(question(name), passages(name, code), top_k=1, threshold=0.0).answers[0]
        assert answer.text == expected.text == str(code)
        assert answer.sources[0].start == expected.sources[0].start
        assert answer.score == pytest.approx(expected.score, abs=0.1)
    assert int8.backend == STATIC


@pytest.mark.parametrize(("loss", "error", "chosen"), [
    (None, None, "export"), (0.0, None, STATIC), (-1.0, None, STATIC), (INT8_F1_TOLERANCE, None, STATIC),
    (0.6, None, "export"), (5.0, None, "export"),
    (0.2, 0.25, STATIC), (0.2, 0.4, "export"), (-0.3, 0.6, STATIC), (0.0, 0.6, "export")])  # loss + error counts
def test_auto_chooses_the_calibrated_graph_only_within_tolerance(tmp_path: Path, loss: float | None,
                                                                 error: float | None, chosen: str) -> None:
    available(STATIC)
    card = TrainingCard(kind="reader", base_model="elsewhere")
    if loss is not None:
        card.int8 = Int8Scores(graph="int8/openvino_model.xml", calibrated_on="-", validation="-",
                               float32={"exact": 40.0, "f1": 50.0}, int8={"exact": 40.0, "f1": 50.0 - loss},
                               f1_loss_se=error)
    write_card(tmp_path, card)
    if chosen == "export":  # what auto reads on without the graph: the export, in bfloat16 where that is native
        chosen = "openvino-bf16" if bfloat16_native() else "onnx"
    assert chosen_backend("auto", "cpu", "float32", str(tmp_path)) == chosen
    assert chosen_backend("auto", "cuda", "float32", str(tmp_path)) == "torch"  # int8 graphs are for CPUs
    assert chosen_backend("openvino", "cpu", "float32", str(tmp_path)) == "openvino"  # a backend named is kept


def _scores(graph: str, loss: float, error: float = 0.1) -> Int8Scores:
    return Int8Scores(graph=graph, calibrated_on="-", validation="-", float32={"exact": 40.0, "f1": 50.0},
                      int8={"exact": 40.0, "f1": 50.0 - loss}, f1_loss_se=error)


@pytest.mark.parametrize(("calibrated", "weights", "native", "chosen"), [
    (None, 0.2, True, WEIGHTS), (None, 0.2, False, "export"), (None, 0.6, True, "export"),
    (0.6, 0.2, True, WEIGHTS), (0.2, 0.2, True, STATIC), (0.2, 0.6, True, STATIC), (0.2, 0.2, False, STATIC),
    (None, 0.2, "scored without", "export")])  # scored where the activations stayed float: it says nothing here
def test_auto_reads_the_data_free_int8_export_within_tolerance_where_the_cpu_multiplies_int8(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calibrated: float | None, weights: float,
        native: bool | str, chosen: str) -> None:
    """The data-free int8 export is read where its card shows it within tolerance and the CPU has VNNI or AMX
    (elsewhere its weights are only turned back into float: no faster); a calibrated graph within tolerance
    first."""
    available(STATIC)
    available(WEIGHTS)
    from answering import backends

    monkeypatch.setattr(backends, "int8_native", lambda: bool(native))
    card = TrainingCard(kind="reader", base_model="elsewhere", int8_weights=_scores(WEIGHTS, weights))
    card.int8_weights.int8_activations = native is True
    card.int8 = None if calibrated is None else _scores("int8/openvino_model.xml", calibrated)
    write_card(tmp_path, card)
    if chosen == "export":
        chosen = "openvino-bf16" if bfloat16_native() else "onnx"
    assert chosen_backend("auto", "cpu", "float32", str(tmp_path)) == chosen
    assert chosen_backend("auto", "cuda", "float32", str(tmp_path)) == "torch"


@pytest.fixture
def uncached_cpu_flags() -> Iterator[None]:
    """The CPU's flags read afresh in the test, and again after it (what it planted is never kept)."""
    from kb.inference import backends

    backends.cpu_flags.cache_clear()
    yield
    backends.cpu_flags.cache_clear()


def test_int8_is_native_only_where_the_cpu_lists_vnni_or_amx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             uncached_cpu_flags: None) -> None:
    from kb.inference import backends

    for flags, native in (("fpu sse2 avx2", False), ("fpu avx2 avx512f avx512_vnni", True), ("fpu avx_vnni", True),
                          ("fpu amx_tile amx_int8", True)):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n", encoding="utf-8")
        monkeypatch.setattr(backends, "CPU_INFO", tmp_path / "cpuinfo")
        backends.cpu_flags.cache_clear()
        assert backends.int8_native() is native
    monkeypatch.setattr(backends, "CPU_INFO", tmp_path / "absent")  # a system that lists no flags: not taken as int8
    backends.cpu_flags.cache_clear()
    assert backends.int8_native() is False


def test_the_standard_error_of_a_paired_f1_difference() -> None:
    from answering.int8 import paired_standard_error
    from answering.squad_eval import SquadQuestion, SquadSet

    squad = SquadSet(version="1.1", paragraphs=[("t", "Paris is in France.")], questions=[
        SquadQuestion(id=str(n), question="Where?", paragraph=0, answers=["Paris"], answer_starts=[0])
        for n in range(4)])
    right = {str(n): "Paris" for n in range(4)}
    assert paired_standard_error(squad, right, right) == 0.0  # the same answers: no uncertainty
    one_wrong = right | {"0": "France"}
    # differences 100, 0, 0, 0: mean 25, sample standard deviation 50, over the square root of 4
    assert paired_standard_error(squad, right, one_wrong) == pytest.approx(25.0)
    assert paired_standard_error(squad, one_wrong, right) == pytest.approx(25.0)


def _damage(folder: Path, how: str) -> str:
    """Spoil the calibrated graph in ``folder``; returns what the warning must say."""
    if how == "missing":
        (folder / "int8" / "openvino_model.bin").unlink()
        return "no complete calibrated int8 graph"
    if how == "corrupt":
        (folder / "int8" / "openvino_model.xml").write_text("<net><layers>half a graph", encoding="utf-8")
        return "does not load"
    record = json.loads((folder / "int8" / "calibration.json").read_text(encoding="utf-8"))
    record["source_fingerprint"] = "0" * 64  # as when the model is retrained into the folder
    (folder / "int8" / "calibration.json").write_text(json.dumps(record), encoding="utf-8")
    return "made from other weights"


@pytest.mark.parametrize("backend", ["auto", STATIC])
@pytest.mark.parametrize("how", ["missing", "corrupt", "stale"])
def test_an_unusable_calibrated_graph_falls_back_to_float32_saying_why(
        calibrated_reader: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str, backend: str) -> None:
    folder = tmp_path / "reader"
    shutil.copytree(calibrated_reader, folder)
    reason = _damage(folder, how)
    name, code = CODES[0]
    with caplog.at_level(logging.WARNING, logger="answering.backends"):
        damaged = reader(folder, backend)
        assert damaged.run(question(name), passages(name, code)).answers[0].text == str(code)
    assert damaged.backend == "openvino"
    assert reason in caplog.text and "float32 export" in caplog.text


def test_a_reader_never_calibrated_reads_the_export_on_auto_and_says_so_when_asked_for_int8(
        tiny_reader: Path, caplog: pytest.LogCaptureFixture) -> None:
    available(STATIC)
    assert reader(tiny_reader, "auto").backend == ("openvino-bf16" if bfloat16_native() else "onnx")
    with caplog.at_level(logging.WARNING, logger="answering.backends"):
        assert reader(tiny_reader, STATIC).backend == "openvino"
    assert "no complete calibrated int8 graph" in caplog.text
