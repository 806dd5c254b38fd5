"""``kb train reader --from-kb``: cloze questions made from a knowledge base's own passages, and a reader that learns
from them where nobody wrote a question."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from kb.cli import main
from kb.storage.store import StoredChunk, StoredDocument
from tests.conftest import minilm_path
from tests.qa_model import FILLER, NAMES, save_tiny_bert, write_squad
from training import TrainingDataError, TrainOptions, train_reader
from training.cloze import cloze_questions, kb_passages

CITIES = ["Rotterdam", "Lisbon", "Osaka", "Nairobi", "Quito", "Tallinn", "Perth", "Lyon"]
READER = {"epochs": 20, "learning_rate": 3e-3, "batch_size": 32, "max_seq_length": 64, "threads": 1, "device": "cpu"}


def profile(name: str, year: int, city: str) -> str:
    return f"{name.title()} joined the company in {year} and works in {city}."


def test_cloze_questions_blank_an_answer_that_the_passage_holds() -> None:
    english = "The warehouse opened in March 2015 in Rotterdam. It employs 340 people across three shifts."
    chinese = "公司成立于2008年5月，总部位于深圳。截至2023年底，公司共有员工3500名，主要产品包括《智能仓储手册》。"
    squad, skipped = cloze_questions([("a.md", english), ("b.md", chinese), ("c.md", "Nothing to ask here at all.")],
                                     per_passage=10)
    assert skipped == {"passage without a date, number, name or title to ask about": 1}
    assert [title for title, _ in squad.paragraphs] == ["a.md", "b.md"]
    asked = {(squad.paragraphs[q.paragraph][0], q.answers[0]) for q in squad.questions}
    assert {("a.md", "March 2015"), ("a.md", "Rotterdam"), ("a.md", "340 people"),
            ("b.md", "2008年5月"), ("b.md", "3500名"), ("b.md", "智能仓储手册")} <= asked
    assert ("a.md", "March") not in asked and ("b.md", "2023年") in asked  # a month is no name, a year no count
    for question in squad.questions:
        context = squad.paragraphs[question.paragraph][1]
        start = question.answer_starts[0]
        assert context[start : start + len(question.answers[0])] == question.answers[0]
        assert question.answers[0] not in question.question
        assert question.question.endswith(("?", "？"))
        assert any(word in question.question for word in ("when", "how many", "where", "what", "什么", "多少"))
    chinese_question = next(q.question for q in squad.questions if q.answers == ["3500名"])
    assert chinese_question == "截至2023年底，公司共有员工多少，主要产品包括《智能仓储手册》？"


def test_recurring_span_questions_ask_for_an_answer_found_again_outside_their_sentence_which_is_taken_out() -> None:
    passage = ("The warehouse opened in March 2015 in Rotterdam. It employs 340 people across three shifts. "
               "Its cranes were built in Rotterdam by a local firm.")
    squad, skipped = cloze_questions([("a.md", passage), ("b.md", "It opened in 2015 in Lyon and closed in 2019.")],
                                     per_passage=10, recurring=True)
    assert skipped == {"passage without an answer found outside its sentence": 1}
    assert {q.answers[0] for q in squad.questions} == {"Rotterdam"}  # nothing else is found again
    assert {"2015" in q.question for q in squad.questions} == {True, False}  # asked from either sentence
    for question in squad.questions:
        title, context = squad.paragraphs[question.paragraph]
        start = question.answer_starts[0]
        assert title == "a.md" and context[start : start + len(question.answers[0])] == "Rotterdam"
        asked = "2015" if "2015" in question.question else "cranes"  # the sentence asked about is not in its context
        assert asked not in context and context.count("Rotterdam") == 1


def test_cloze_questions_do_not_depend_on_the_order_documents_come_in_nor_on_where_the_folder_is() -> None:
    files = [f"{team}/{name}.md" for team, names in [("sales", NAMES[:3]), ("it", NAMES[3:6])] for name in names]

    def documents(folder: str) -> list[StoredDocument]:
        return [StoredDocument(f"{folder}/{file}", None, text, [StoredChunk(text, 0, len(text))])
                for file in files for text in [profile(Path(file).stem, 1990 + len(file), CITIES[len(file) % 8])]]

    forward = cloze_questions(kb_passages(documents("/srv/share")))[0]
    assert forward == cloze_questions(kb_passages(reversed(documents("/srv/share"))))[0]
    assert forward == cloze_questions(kb_passages(documents("/mnt/backup/share")))[0]  # same held-out documents too
    assert [title for title, _ in forward.paragraphs] == sorted(files)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_path())


def staff_kb(kb_factory, folder: Path) -> Path:
    """A knowledge base of 96 staff profiles (a year and a city each, among filler) and no question at all."""
    rng = random.Random(3)
    folder.mkdir()
    for number in range(96):
        name = f"{NAMES[number % len(NAMES)]}{number}"
        text = " ".join([rng.choice(FILLER), profile(name, rng.randint(1960, 2020), rng.choice(CITIES)),
                         rng.choice(FILLER)])
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    knowledge_base = kb_factory()
    knowledge_base.ingest(folder)
    knowledge_base.close()
    return knowledge_base.directory


def test_a_reader_learns_from_the_knowledge_base_alone(kb_factory, tiny_base: Path, tmp_path: Path,
                                                       untuned: None) -> None:
    """Enough held-out documents (24) and epochs that any split passes: six different splits gave validation F1
    6-15 before and 60-73 after."""
    kb_dir = staff_kb(kb_factory, tmp_path / "staff")
    options = TrainOptions(out=tmp_path / "reader", base_model=str(tiny_base), validation_fraction=0.25, **READER)
    with pytest.raises(TrainingDataError, match="no training data"):
        train_reader([], options)
    with pytest.raises(TrainingDataError, match="no knowledge base"):
        train_reader([], options, kb_dir=tmp_path / "nowhere", from_kb=True)
    card = train_reader([], options, kb_dir=kb_dir, from_kb=True)
    assert card.hyperparameters["from_kb"] is True and card.hyperparameters["cloze_questions"] == 96
    assert card.data == [] and "articles (titles) held out" in card.validation_split  # whole documents held out
    assert card.examples + int(card.validation_split.split(", ")[1].split()[0]) == 96
    assert card.validation_after["f1"] > card.validation_before["f1"] + 30


def test_with_real_questions_the_cloze_ones_only_train(kb_factory, tiny_base: Path, tmp_path: Path,
                                                       untuned: None) -> None:
    """Checkpoints are chosen on people's questions, not on the generated ones."""
    kb_dir = staff_kb(kb_factory, tmp_path / "staff")
    facts = write_squad(tmp_path / "facts.json", 80)
    out = tmp_path / "reader"
    assert main(["--kb", str(kb_dir), "train", "reader", str(facts), "--from-kb", "--out", str(out),
                 "--base-model", str(tiny_base), "--epochs", "1", "--max-seq-length", "64", "--threads", "1",
                 "--device", "cpu"]) == 0
    card = json.loads((out / "training.json").read_text(encoding="utf-8"))
    validation = int(card["validation_split"].split(", ")[1].split()[0])
    assert card["hyperparameters"]["cloze_questions"] == 96 and 0 < validation < 80
    assert card["examples"] == 96 + 80 - validation


def test_cloze_questions_on_validation_paragraphs_do_not_train(kb_factory, tiny_base: Path, tmp_path: Path,
                                                               untuned: None) -> None:
    """A company's questions are often written on the very documents its knowledge base holds: a cloze question
    from a validation paragraph would put that paragraph on both sides."""
    kb_dir = staff_kb(kb_factory, tmp_path / "staff")
    paragraphs = []
    for number, document in enumerate(sorted((tmp_path / "staff").glob("*.txt"))[:5]):
        text = document.read_text(encoding="utf-8")
        city = next(city for city in CITIES if f"works in {city}" in text)
        paragraphs.append({"context": text, "qas": [{"id": str(number), "question": f"Where does {document.stem} "
                           "work?", "answers": [{"text": city, "answer_start": text.index(f"works in {city}") + 9}]}]})
    validation = tmp_path / "validation.json"
    validation.write_text(json.dumps({"data": [{"title": "staff", "paragraphs": paragraphs}]}), encoding="utf-8")
    options = TrainOptions(out=tmp_path / "reader", base_model=str(tiny_base), validation=[validation],
                           **(READER | {"epochs": 1}))
    card = train_reader([write_squad(tmp_path / "facts.json", 40)], options, kb_dir=kb_dir, from_kb=True)
    assert card.skipped["passage shares text with a validation paragraph"] == 5
    assert card.hyperparameters["cloze_questions"] == 91 and card.examples == 40 + 91
