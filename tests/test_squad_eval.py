"""``kb eval squad``: reader-only and open mode on a tiny generated SQuAD 2.0 file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from answering.squad_eval import load_squad
from kb.cli import main
from kb.errors import InvalidRequestError
from tests.qa_model import examples
from training.errors import TrainingDataError
from training.squad_data import load_squad_files


def squad_file(path: Path) -> Path:
    """A SQuAD 2.0 file: 8 answerable and 4 unanswerable generated questions, one article per context."""
    pool = examples(100, seed=7)
    chosen = [e for e in pool if e[2] is not None][:8] + [e for e in pool if e[2] is None][:4]
    data = []
    for number, (question, context, answer) in enumerate(chosen):
        qa = {"id": f"q{number}", "question": question, "is_impossible": answer is None,
              "answers": [] if answer is None else [{"text": answer, "answer_start": context.index(answer)}]}
        data.append({"title": f"Article {number}", "paragraphs": [{"context": context, "qas": [qa]}]})
    path.write_text(json.dumps({"version": "v2.0", "data": data}), encoding="utf-8")
    return path


def test_eval_squad_reader_and_open(tiny_reader: Path, tiny_text_model: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KB_READER_MODEL", str(tiny_reader))
    monkeypatch.setenv("KB_TEXT_MODEL", str(tiny_text_model))
    monkeypatch.setenv("KB_DEVICE", "cpu")
    data = squad_file(tmp_path / "tiny-v2.json")
    out = tmp_path / "reader.json"
    assert main(["eval", "squad", str(data), "--out", str(out)]) == 0
    screen = capsys.readouterr().out
    assert "HasAns_exact" in screen and "NoAns_f1" in screen and str(out) in screen
    report = json.loads(out.read_text())
    assert report["version"] == "2.0" and report["questions"] == 12
    assert (report["HasAns_total"], report["NoAns_total"]) == (8, 4)
    assert report["exact"] >= 75 and report["NoAns_exact"] == 100.0 and len(report["predictions"]) == 12

    distractors = tmp_path / "distractors"
    distractors.mkdir()
    (distractors / "other.txt").write_text("Bicycles are parked behind the station.", encoding="utf-8")
    out = tmp_path / "open.json"
    assert main(["eval", "squad", str(data), "--mode", "open", "-k", "3", "--distractors", str(distractors),
                 "--limit", "6", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "open" and report["questions"] == 6 and report["k"] == 3
    assert 0 <= report["recall_at_k"] <= 100 and report["f1"] is not None

    monkeypatch.setenv("KB_READER_MODEL", str(tmp_path / "absent"))
    assert main(["eval", "squad", str(data), "--mode", "open", "--limit", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["exact"] is None and report["recall_at_k"] is not None and "KB_READER_MODEL" in report["message"]
    assert main(["eval", "squad", str(data), "--out", str(out)]) == 2
    assert "KB_READER_MODEL" in capsys.readouterr().err
    assert main(["eval", "squad", str(data), "--limit", "0"]) == 2  # no question, rather than every question
    assert "--limit" in capsys.readouterr().err


def test_eval_squad_says_in_one_line_what_it_cannot_use(tiny_reader: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KB_READER_MODEL", str(tiny_reader))
    monkeypatch.setenv("KB_DEVICE", "cpu")
    data = squad_file(tmp_path / "dev.json")
    broken, shapeless = tmp_path / "broken.json", tmp_path / "shapeless.json"
    broken.write_text("{not json", encoding="utf-8")
    shapeless.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "c"}]}]}), encoding="utf-8")
    repeated = tmp_path / "repeated.json"  # two questions scored against one prediction would read as a wrong answer
    repeated.write_text(data.read_text(encoding="utf-8").replace('"id": "q1"', '"id": "q0"'), encoding="utf-8")
    for arguments, said in ((["eval", "squad", str(broken)], "not a readable SQuAD"),
                            (["eval", "squad", str(shapeless)], "KeyError"),
                            (["eval", "squad", str(repeated)], "1 question ids used by more than one question ('q0')"),
                            (["eval", "squad", str(tmp_path)], "not a readable SQuAD"),
                            (["eval", "squad", str(data), "--mode", "open", "--tune-threshold"], "--mode reader"),
                            (["eval", "squad", str(data), "--out", str(tmp_path / "absent" / "o.json")], "absent")):
        assert main(arguments) == 2, arguments
        err = capsys.readouterr().err
        assert err.startswith("kb: error:") and said in err and "Traceback" not in err, (arguments, err)


def test_a_wrongly_typed_title_context_or_is_impossible_is_refused_naming_the_file_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qa = {"id": "q1", "question": "What is the code?", "answers": [{"text": "1234", "answer_start": 12}]}
    context = "The code is 1234."
    for name, article, said in (
            ("title.json", {"title": None, "paragraphs": [{"context": context, "qas": [qa]}]},
             "article 1 has a 'title' that is null, not a string"),
            ("context.json", {"title": "t", "paragraphs": [{"context": 5, "qas": [qa]}]},
             "article 1 paragraph 1 has a 'context' that is a number (5), not a string"),
            ("impossible.json",  # "false" is truthy: read as is, an answerable question would become unanswerable
             {"title": "t", "paragraphs": [{"context": context, "qas": [{**qa, "is_impossible": "false"}]}]},
             "question 'q1' has an 'is_impossible' that is a string (\"false\"), not true or false")):
        path = tmp_path / name
        path.write_text(json.dumps({"data": [article]}), encoding="utf-8")
        assert main(["eval", "squad", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"kb: error: {path}: not a readable SQuAD") and said in err, err
        assert "Traceback" not in err and "validation error" not in err, err
        with pytest.raises(TrainingDataError, match=str(path)):
            load_squad_files([path])


@pytest.mark.parametrize(("body", "reason"), [
    ("[" * 100_000 + "]" * 100_000, "RecursionError"),
    ('{"data": [], "n": ' + "9" * 5000 + "}", "ValueError"),
    ('{"data": [{"title": "t\\ud800", "paragraphs": []}]}', "lone UTF-16 surrogate"),
    *[('{"data": [{"title": "t", "paragraphs": [{"context": "It is 42.", "qas": [{"id": "1", "question": "What?", '
       f'"answers": [{{"text": "42", "answer_start": {start}}}]}}]}}]}}]}}', f"answer_start {shown} is not a whole")
      for start, shown in (("Infinity", "inf"), ("1e400", "inf"), ("true", "True"), ("2.7", "2.7"))]])
def test_a_hostile_squad_file_is_refused_in_one_line(tmp_path: Path, body: str, reason: str) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(InvalidRequestError, match=re.escape(reason)):
        load_squad(path)


def test_a_chinese_file_tunes_the_chinese_readers_threshold(tiny_reader: Path, tmp_path: Path) -> None:
    """With a reader per language, the questions' own reader sets the threshold and gets the tuned one."""
    import shutil

    from answering.squad_eval import evaluate_reader
    from kb.cards import read_card
    from kb.config import Settings
    from kb.errors import InvalidRequestError

    english, chinese = tmp_path / "en", tmp_path / "zh"
    shutil.copytree(tiny_reader, english)
    shutil.copytree(tiny_reader, chinese)
    context = "客户在收货后三十天内可以退货。"
    qas = [{"id": "z1", "question": "客户有多少天可以退货？", "answers": [{"text": "三十天", "answer_start": 6}]}]
    data = tmp_path / "zh.json"
    data.write_text(json.dumps({"data": [{"title": "退货", "paragraphs": [{"context": context, "qas": qas}]}]},
                               ensure_ascii=False), encoding="utf-8")
    settings = Settings(reader_model=str(english), reader_models_by_language={"zh": str(chinese)}, device="cpu")
    # One answerable question and no other paragraph to ask it of: a threshold tuned there would never abstain.
    with pytest.raises(InvalidRequestError, match="no unanswerable question"):
        evaluate_reader(data, settings, tune=True)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": []}]}]}),
                     encoding="utf-8")
    with pytest.raises(InvalidRequestError, match="no question to tune"):  # was: a temporary corpus "missing"
        evaluate_reader(empty, settings, tune=True)
    impossible = tmp_path / "impossible.json"  # only unanswerable questions: the "best" threshold abstained on all
    unanswerable = [{"id": "n1", "question": "客户可以换货吗？", "answers": [], "is_impossible": True}]
    impossible.write_text(json.dumps({"version": "v2.0", "data": [{"title": "退货", "paragraphs": [
        {"context": context, "qas": unanswerable}]}]}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(InvalidRequestError, match="no answerable question"):
        evaluate_reader(impossible, settings, tune=True)
    assert read_card(chinese) is None or read_card(chinese).no_answer_threshold is None  # nothing recorded
    qas.append({"id": "z2", "question": "客户可以换货吗？", "answers": [], "is_impossible": True})
    data.write_text(json.dumps({"data": [{"title": "退货", "paragraphs": [{"context": context, "qas": qas}]}]},
                               ensure_ascii=False), encoding="utf-8")
    report = evaluate_reader(data, settings, tune=True)
    assert report.reader_model == str(chinese) and report.tuned is not None
    assert report.tuned.recorded_in is not None and Path(report.tuned.recorded_in).parent == chinese
    assert read_card(english) is None or read_card(english).no_answer_threshold is None
    mixed = squad_file(tmp_path / "en.json")
    both = json.loads(mixed.read_text(encoding="utf-8"))
    both["data"] += json.loads(data.read_text(encoding="utf-8"))["data"]
    mixed.write_text(json.dumps(both), encoding="utf-8")
    with pytest.raises(InvalidRequestError, match="read by 2 models"):
        evaluate_reader(mixed, settings, tune=True)
