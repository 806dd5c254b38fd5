"""``kb train reader --teacher``: a student learns what trained readers answer from their distributions over every
window, and a teacher that cannot read the student's windows is refused before anything is written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from answering.squad_eval import evaluate
from kb.cli import main
from kb.encoders.fingerprint import folder_fingerprint
from kb.errors import KbError
from tests.conftest import minilm_path
from tests.qa_model import save_tiny_bert, write_squad
from training import Distillation, TrainOptions, train_reader
from training import distillation as distillation_module
from training.distillation import PADDING, TEACHERS_FILE, DistillationCollator, soft_target_loss

READER = {"epochs": 4, "learning_rate": 3e-3, "batch_size": 32, "max_seq_length": 64, "threads": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_path())


def _tiny_distilbert(folder: Path) -> Path:
    """A random 2-layer DistilBERT with the MiniLM tokenizer: it reads no token types, which a BERT teacher does."""
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    DistilBertModel(DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=64, n_layers=2, n_heads=2,
                                     hidden_dim=128)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_squad(tmp_path_factory.mktemp("facts") / "facts.json", 1600, seed=1)


def _mislabelled(facts: Path, out: Path) -> Path:
    """``facts`` with every answer moved to the word "code" of its fact sentence: labels no teacher agrees with."""
    squad = json.loads(facts.read_text(encoding="utf-8"))
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if qa["answers"]:
                    qa["answers"] = [{"text": "code", "answer_start": paragraph["context"].index("The code of ") + 4}]
    out.write_text(json.dumps(squad), encoding="utf-8")
    return out


@pytest.mark.parametrize("student", ["bert", "distilbert"])
def test_a_student_learns_its_teachers_answers_over_its_files_labels(student: str, tiny_reader: Path, tiny_base: Path,
                                                                     facts: Path, tmp_path: Path) -> None:
    """With all of the loss on the teacher (a BERT reader), a student trained on wrong labels answers as the teacher
    does; a DistilBERT student too, whose windows hold the token types only its teacher reads."""
    wrong = _mislabelled(facts, tmp_path / "wrong.json")
    base = tiny_base if student == "bert" else _tiny_distilbert(tmp_path / "distilbert")
    out = tmp_path / "student"
    card = train_reader([wrong], TrainOptions(out=out, base_model=str(base), use_validation=False, **READER),
                        distillation=Distillation(teachers=[tiny_reader], weight=1.0))
    assert card.hyperparameters["teachers"] == [{"model": str(tiny_reader),
                                                 "fingerprint": folder_fingerprint(tiny_reader)}]
    assert card.hyperparameters["distillation_weight"] == 1.0 and card.hyperparameters["distillation_temperature"] == 2
    assert card.training_loss[-1][1] < card.training_loss[0][1] / 2
    report = evaluate(facts, "reader", {"reader_model": str(out), "device": "cpu"}, limit=200)
    assert report.has_ans_f1 > 50  # the codes the teacher reads, not the word "code" the file labels


def _swap_two_tokens(folder: Path) -> None:
    path = folder / "tokenizer.json"
    tokenizer = json.loads(path.read_text(encoding="utf-8"))
    vocabulary = tokenizer["model"]["vocab"]
    vocabulary["the"], vocabulary["of"] = vocabulary["of"], vocabulary["the"]
    path.write_text(json.dumps(tokenizer), encoding="utf-8")


def _fewer_positions(folder: Path) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(config | {"max_position_embeddings": 32}), encoding="utf-8")


@pytest.mark.parametrize(("damage", "message"), [
    (_swap_two_tokens, "does not share the student's vocabulary"),
    (_fewer_positions, "reads at most 32 tokens, fewer than a window's 64"),
    (lambda folder: shutil.rmtree(folder), "no such folder"),
    (lambda folder: (folder / "model.safetensors").unlink(), "could not be loaded"),
    (lambda folder: (folder / "checkpoints").mkdir() or (folder / "checkpoints" / "run.json").write_text("{}"),
     "is an unfinished `kb train` run"),
])
def test_a_teacher_that_cannot_read_the_students_windows_is_refused_before_training(
        damage, message: str, tiny_reader: Path, tiny_base: Path, facts: Path, tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_reader, teacher)
    damage(teacher)
    out = tmp_path / "student"
    with pytest.raises(KbError, match=re.escape(message)):
        train_reader([facts], TrainOptions(out=out, base_model=str(tiny_base), **READER),
                     distillation=Distillation(teachers=[tiny_reader, teacher]))
    assert not out.exists()


def test_kb_train_reader_takes_teachers_and_says_why_it_refuses_one(tiny_base: Path, facts: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-reader"
    assert main(["train", "reader", str(facts), "--out", str(tmp_path / "student"), "--base-model", str(tiny_base),
                 "--teacher", str(missing), "--distillation-weight", "0.7", "--max-seq-length", "64"]) != 0
    assert f"--teacher {missing}: no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "reader", str(facts), "--out", str(tmp_path / "student"), "--teacher", str(missing),
              "--distillation-weight", "1.5"])
    assert "'1.5' is not a share from 0 to 1" in capsys.readouterr().err
    assert main(["train", "reader", str(facts), "--out", str(tmp_path / "student"), "--temperature", "3"]) != 0
    assert "say how a --teacher teaches; give one" in capsys.readouterr().err
    assert main(["train", "reader", str(facts), "--out", str(tmp_path / "student"), "--teacher", str(missing),
                 "--teacher", str(tmp_path / ".." / tmp_path.name / "no-reader")]) != 0
    assert "a teacher is given twice" in capsys.readouterr().err
    assert not (tmp_path / "student").exists()


def test_a_resumed_run_reads_its_teachers_logits_back_instead_of_asking_the_teachers_again(
        tiny_reader: Path, tiny_base: Path, facts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The teachers' pass over every window takes minutes on a real run; a run killed after it resumes with the
    logits it kept, and a kept file that was damaged is read again from the teachers."""
    out = tmp_path / "student"
    options = dict(out=out, base_model=str(tiny_base), use_validation=False, **(READER | {"epochs": 0.2}))
    distillation = Distillation(teachers=[tiny_reader])
    read = {"count": 0}
    teachers_read = distillation_module._teachers_read

    def counted(*args: object, **kwargs: object) -> object:
        read["count"] += 1
        return teachers_read(*args, **kwargs)

    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(distillation_module, "_teachers_read", counted)
    monkeypatch.setattr("training.reader.run_trainer", killed)
    with pytest.raises(KeyboardInterrupt):
        train_reader([facts], TrainOptions(**options), distillation=distillation)
    kept = out / "checkpoints" / TEACHERS_FILE
    assert read["count"] == 1 and kept.is_file()
    monkeypatch.undo()
    monkeypatch.setattr(distillation_module, "_teachers_read", counted)
    first = train_reader([facts], TrainOptions(**options, resume=True), distillation=distillation)
    assert read["count"] == 1 and first.training_loss and not kept.exists()  # read back, and gone once done
    monkeypatch.setattr("training.reader.run_trainer", killed)
    with pytest.raises(KeyboardInterrupt):
        train_reader([facts], TrainOptions(**options, overwrite=True), distillation=distillation)
    assert read["count"] == 2
    kept.write_bytes(kept.read_bytes()[:100])
    with pytest.raises(KeyboardInterrupt):
        train_reader([facts], TrainOptions(**options, resume=True), distillation=distillation)
    assert read["count"] == 3


def test_soft_targets_count_only_real_tokens_and_vanish_when_the_student_agrees() -> None:
    collate = DistillationCollator(lambda rows: {"input_ids": torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(row["input_ids"]) for row in rows], batch_first=True)}, {"input_ids"})
    rows = [{"input_ids": [1, 2, 3], "teacher_start": [0.0, 2.0, 1.0], "teacher_end": [1.0, 0.0, 3.0]},
            {"input_ids": [1, 2], "teacher_start": [1.0, 0.0], "teacher_end": [0.0, 1.0]}]
    batch = collate([row | {"token_type_ids": [0] * len(row["input_ids"])} for row in rows])  # a teacher's input
    assert set(batch) == {"input_ids", "teacher_start", "teacher_end"}
    assert batch["teacher_start"].tolist() == [[0.0, 2.0, 1.0], [1.0, 0.0, PADDING]]
    teacher_start, teacher_end = batch["teacher_start"], batch["teacher_end"]
    agreeing = soft_target_loss(teacher_start.clone(), teacher_end.clone(), teacher_start, teacher_end, 2.0)
    assert abs(float(agreeing)) < 1e-6
    student_start = teacher_start.clone()
    student_start[1, 2] = 50.0  # a padding position, which the student's logits do not mask themselves
    assert abs(float(soft_target_loss(student_start, teacher_end.clone(), teacher_start, teacher_end, 2.0))) < 1e-6
    student_start[0, 0] = 5.0  # a real token the teacher finds unlikely
    assert float(soft_target_loss(student_start, teacher_end.clone(), teacher_start, teacher_end, 2.0)) > 0.1
