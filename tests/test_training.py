"""``kb train``: tiny models trained for seconds learn, save folders the knowledge base loads by its usual settings,
resume after a kill, and refuse what they cannot use."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from answering.threshold import ScoredAnswer, record_threshold, tune_threshold
from kb.cards import read_card
from kb.cli import main
from kb.cli.show import abstention
from kb.inference import Backend, ExportCache
from kb.inference.backends import float_backend
from kb.optional import installed
from retrieval.rerank import CrossEncoderReranker
from tests.conftest import minilm_path, needs_backend
from tests.qa_model import FILLER, NAMES, fact, question, save_tiny_bert, write_squad
from training import (
    OutputExistsError,
    TrainingDataError,
    TrainOptions,
    train_clip,
    train_reader,
    train_reranker,
    train_retriever,
)
from training.clip import _recall_at_1, jsonl_captions
from training.int8 import PACKAGES as INT8_PACKAGES
from training.int8 import quantize_reader

READER = {"epochs": 4, "learning_rate": 3e-3, "batch_size": 32, "max_seq_length": 64, "threads": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_path())


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_squad(tmp_path_factory.mktemp("facts") / "facts.json", 1600, seed=1)


@pytest.fixture(scope="module")
def trained_reader(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, facts: Path) -> Path:
    out = tmp_path_factory.mktemp("trained") / "reader"
    train_reader([facts], TrainOptions(out=out, base_model=str(tiny_base), **READER))
    return out


def test_reader_learns_and_writes_its_card(trained_reader: Path, facts: Path, tiny_base: Path) -> None:
    card = read_card(trained_reader)
    assert card is not None and card.kind == "reader" and card.base_model == str(tiny_base)
    assert card.data[0].path == str(facts.resolve()) and len(card.data[0].sha256) == 64
    assert card.data[0].examples == 1600 and 0 < card.examples < 1600  # the rest is the validation split
    assert "articles (titles) held out" in card.validation_split
    assert card.training_loss[-1][1] < card.training_loss[0][1] / 2
    assert card.validation_after["f1"] > card.validation_before["f1"] + 50
    assert card.validation_after["loss"] < card.validation_before["loss"]
    assert card.hyperparameters["max_seq_length"] == 64 and card.hyperparameters["stride"] == 21
    assert card.no_answer_threshold is not None and 0 <= card.no_answer_threshold <= 1
    assert {"model.safetensors", "tokenizer.json", "config.json", "training.json"} <= \
        {path.name for path in trained_reader.iterdir()}
    assert not (trained_reader / "checkpoints").exists()
    if all(installed(package) for package in INT8_PACKAGES):  # then an int8 graph is calibrated and scored too
        assert card.int8 is not None and (trained_reader / card.int8.graph).is_file()
        assert "training questions of" in card.int8.calibrated_on and card.int8.validation == card.validation_split
        assert card.int8.float32["f1"] > card.validation_before["f1"] + 50 and card.int8.int8["f1"] > 50
        assert card.int8_weights is not None and card.int8_weights.validation == card.validation_split
        assert card.int8_weights.int8["f1"] > 50


def test_trained_reader_answers_through_kb_ask_with_exact_citations(
        trained_reader: Path, tiny_text_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KB_TEXT_MODEL", str(tiny_text_model))
    monkeypatch.setenv("KB_READER_MODEL", str(trained_reader))
    monkeypatch.setenv("KB_DEVICE", "cpu")
    for name, code in (("alice", 4821), ("wen", 9042)):
        docs = tmp_path / name
        (docs / "notes").mkdir(parents=True)
        for number, filler in enumerate(FILLER[:4]):
            (docs / "notes" / f"{number}.txt").write_text(filler, encoding="utf-8")
        text = f"{FILLER[5]} {fact(name, code)} {FILLER[6]}"
        (docs / "codes.txt").write_text(text, encoding="utf-8")
        assert main(["--kb", str(tmp_path / f"kb-{name}"), "ingest", str(docs)]) == 0
        capsys.readouterr()
        assert main(["--kb", str(tmp_path / f"kb-{name}"), "ask", question(name), "--json"]) == 0
        best = json.loads(capsys.readouterr().out)["answers"][0]
        assert best["text"] == str(code)
        source = best["sources"][0]
        assert source["path"].endswith("codes.txt") and text[source["start"]:source["end"]] == str(code)


def test_tuned_threshold_is_used_by_ask_unless_set(trained_reader: Path, kb_factory, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(f"The garden has roses and tulips. {fact('greta', 5150)}", encoding="utf-8")
    strict = tmp_path / "strict-reader"
    shutil.copytree(trained_reader, strict)
    card = read_card(strict)
    card.no_answer_threshold = 1.0  # nothing reaches it
    (strict / "training.json").write_text(card.model_dump_json(), encoding="utf-8")
    knowledge_base = kb_factory(reader_model=str(strict))
    knowledge_base.ingest(docs)
    abstained = knowledge_base.ask(question("greta"))
    assert abstained.status == "no_answer" and abstained.threshold == 1.0 and 0.5 < abstained.best_score < 1.0
    assert abstention(abstained).startswith(f"the best answer scored {abstained.best_score:.2f}, under the reader's "
                                            "no-answer threshold 1.00")  # not "does not seem to hold one"
    assert knowledge_base.ask(question("greta"), threshold=0.0)[0].text == "5150"
    assert knowledge_base.readers.for_question("x").threshold == 1.0
    record_threshold(str(strict), 0.25, "a later tuning")  # kb eval squad --tune-threshold, while this process runs
    assert knowledge_base.ask(question("greta"))[0].text == "5150"
    record_threshold(str(strict), 1.0, "and back")
    assert knowledge_base.ask(question("greta")).status == "no_answer"
    knowledge_base.settings.reader.no_answer_threshold = 0.0  # a setting the user gives wins over the card
    assert knowledge_base.ask(question("greta"))[0].text == "5150"


def test_tune_threshold_maximises_f1_over_answerable_and_unanswerable() -> None:
    scored = [ScoredAnswer(text="paris", score=0.9), ScoredAnswer(text="1999", score=0.7),
              ScoredAnswer(text="rome", score=0.4), ScoredAnswer(text="oslo", score=0.3)]
    golds = [["Paris"], ["1999"], [], []]  # the last two are unanswerable: only abstaining scores
    threshold = tune_threshold(scored, golds, unanswerable_share=0.5)
    assert 0.4 < threshold < 0.7
    assert tune_threshold(scored[:2], golds[:2]) == 0.0  # all answerable: never abstain
    assert tune_threshold([ScoredAnswer(text="x", score=0.5)], [[]]) > 0.5


def test_tuned_threshold_follows_the_share_of_unanswerable_questions_not_their_count() -> None:
    """A wrong answer read with more confidence than a right one: dropping both pays only when unanswerable
    questions are common where the reader is asked, however many the tuning data holds."""
    scored = [ScoredAnswer(text="paris", score=0.9), ScoredAnswer(text="1999", score=0.6),
              ScoredAnswer(text="rome", score=0.7)]
    golds = [["Paris"], ["1999"], []]
    assert tune_threshold(scored, golds, unanswerable_share=0.2) == 0.0  # keep "1999": it is worth more
    assert 0.7 < tune_threshold(scored, golds, unanswerable_share=0.8) < 0.9  # abstain on both
    repeated = tune_threshold(scored + scored[2:] * 5, golds + golds[2:] * 5, unanswerable_share=0.2)
    assert repeated == 0.0  # six unanswerable copies weigh what one did


def test_eval_tune_threshold_trades_answers_for_abstentions_by_the_share_given(
        trained_reader: Path, tiny_text_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The threshold is tuned on questions read as ask reads them, and the share of questions without an answer
    decides between answering and abstaining when the reader cannot tell them apart: this small reader finds a
    code, but does not check whose it is."""
    reader = tmp_path / "reader"  # a reader trained elsewhere: no card, default threshold
    shutil.copytree(trained_reader, reader, ignore=shutil.ignore_patterns("training.json"))
    paragraphs = [{"context": f"{FILLER[0]} {fact('alice', 4821)}", "qas": [
        {"id": "a", "question": question("alice"), "is_impossible": False,
         "answers": [{"text": "4821", "answer_start": len(FILLER[0]) + 21}]}]}]
    for number, name in enumerate(["bruno", "chen", "elena", "hiro"], start=1):  # nobody else's code is stated
        paragraphs.append({"context": f"{FILLER[number]} {FILLER[number + 2]}", "qas": [
            {"id": name, "question": question(name), "is_impossible": True, "answers": []}]})
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}]}),
                   encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    for number, paragraph in enumerate(paragraphs):
        (docs / f"{number}.txt").write_text(paragraph["context"], encoding="utf-8")
    for name, value in (("KB_READER_MODEL", reader), ("KB_TEXT_MODEL", tiny_text_model), ("KB_DEVICE", "cpu")):
        monkeypatch.setenv(name, str(value))
    monkeypatch.chdir(tmp_path)
    assert main(["--kb", str(tmp_path / "kb"), "ingest", str(docs)]) == 0

    def tuned_then_asked(share: str, name: str) -> tuple[float, list[dict]]:
        assert main(["eval", "squad", str(dev), "--tune-threshold", "--unanswerable-share", share]) == 0
        threshold = json.loads((tmp_path / "squad-eval.json").read_text(encoding="utf-8"))["tuned"]["threshold"]
        capsys.readouterr()
        assert main(["--kb", str(tmp_path / "kb"), "ask", question(name), "--json"]) == 0
        return threshold, json.loads(capsys.readouterr().out)["answers"]

    lenient, answers = tuned_then_asked("0.2", "alice")  # mostly asked what it holds: answer
    assert answers and answers[0]["text"] == "4821"
    strict, answers = tuned_then_asked("0.8", "bruno")  # mostly asked what it lacks: abstain
    assert answers == [] and strict > lenient
    card = read_card(reader)
    assert card is not None and card.no_answer_threshold == strict
    assert card.threshold_tuned_on.startswith(f"{dev}, read as ask reads them")
    assert "weighing 80%" in card.threshold_tuned_on


def test_refuses_unusable_data_and_an_occupied_output(tiny_base: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "Nothing here.", "qas": [
        {"id": "1", "question": "What?", "answers": [{"text": "elsewhere", "answer_start": 3}]}]}]}]}),
        encoding="utf-8")
    options = dict(base_model=str(tiny_base), **READER)
    with pytest.raises(TrainingDataError, match="1 answer not found in its context"):
        train_reader([bad], TrainOptions(out=tmp_path / "out", **options))
    with pytest.raises(TrainingDataError, match="not a readable SQuAD"):
        train_reader([tmp_path / "missing.json"], TrainOptions(out=tmp_path / "out", **options))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine", encoding="utf-8")
    facts = write_squad(tmp_path / "facts.json", 40)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        train_reader([facts], TrainOptions(out=occupied, **options))
    assert (occupied / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert main(["train", "reader", str(bad), "--out", str(tmp_path / "cli"), "--base-model", str(tiny_base)]) == 2


def test_refuses_infinite_or_nan_numbers_before_reading_anything(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for option in ("--epochs", "--learning-rate", "--max-seconds"):
        for value in ("inf", "nan"):
            out = tmp_path / "out"
            assert main(["train", "reader", str(tmp_path / "qa.json"), "--out", str(out), option, value]) == 2
            err = capsys.readouterr().err
            field = option.removeprefix("--").replace("-", "_")
            assert err.startswith(f"kb: error: {field}: Input should be a finite number") and not out.exists(), err
    for option, value in (("--seed", "-1"), ("--data-seed", str(2**32))):  # numpy and torch take 0 to 2**32 - 1
        assert main(["train", "reader", str(tmp_path / "qa.json"), "--out", str(tmp_path / "out"), option, value]) == 2
        assert capsys.readouterr().err.startswith(f"kb: error: {option[2:].replace('-', '_')}: Input should be")


def falls(curve: list[tuple[int, float]]) -> bool:
    """The median loss of the second half of the logged steps is below that of the first half (losses are noisy,
    alternate from batch to batch on tiny data, and spike now and then at the high learning rates these tests use)."""
    half = max(1, len(curve) // 2)
    return statistics.median(loss for _, loss in curve[-half:]) < statistics.median(loss for _, loss in curve[:half])


def pair_lines(names: list[str], seed: int) -> list[str]:
    """JSONL pairs: questions about a person's code and the passage stating it, grouped by person."""
    rng = random.Random(seed)
    lines = []
    for name in names:
        passage = f"{fact(name, rng.randint(100, 9999))} {rng.choice(FILLER)}"
        for wording in (question(name), f"code for {name}", f"{name} code number"):
            lines.append(json.dumps({"query": wording, "positive": passage, "group": name}))
    return lines


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("\n".join(pair_lines(NAMES, 0) + ["not json", json.dumps({"query": "no positive"})]) + "\n",
                    encoding="utf-8")
    return path


PAIRS = {"epochs": 4, "learning_rate": 5e-4, "batch_size": 16, "threads": 1, "device": "cpu",
         "validation_fraction": 0.2}


def test_retriever_learns_and_is_used_through_kb_text_model_and_reembed(
        pairs_file: Path, tiny_text_model: Path, kb_factory, tmp_path: Path) -> None:
    out = tmp_path / "retriever"
    card = train_retriever([pairs_file], TrainOptions(out=out, base_model=str(tiny_text_model), **PAIRS))
    assert card.kind == "retriever" and card.skipped == {"not JSON": 1, "no query or positive text": 1}
    assert falls(card.training_loss)
    assert sum(card.hyperparameters["negatives_mined"].values()) > 0
    assert "cosine_accuracy@1" in card.validation_after and (out / "modules.json").is_file()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "codes.txt").write_text(fact("alice", 4821), encoding="utf-8")
    kb_factory().ingest(docs)
    knowledge_base = kb_factory(text_model=str(out))  # the same knowledge base, opened with the trained model
    assert knowledge_base.reembed() == 1
    backend = knowledge_base.settings.text_encoder.backend  # a space names its backend when it changes the vectors
    assert knowledge_base.stats().spaces[0].model == (f"{out} ({backend})" if backend.endswith("-int8") else str(out))
    assert knowledge_base.search("code of alice", mode="dense")[0].text == fact("alice", 4821)


@pytest.fixture(scope="module")
def trained_reranker(tmp_path_factory: pytest.TempPathFactory, pairs_file: Path, tiny_base: Path,
                     tiny_text_model: Path) -> Path:
    out = tmp_path_factory.mktemp("trained") / "reranker"
    train_reranker([pairs_file], TrainOptions(out=out, base_model=str(tiny_base), **(PAIRS | {"learning_rate": 3e-3})),
                   mining_model=str(tiny_text_model))
    return out


def test_reranker_learns_and_reorders_search(trained_reranker: Path, tiny_text_model: Path, kb_factory,
                                             tmp_path: Path) -> None:
    out = trained_reranker
    card = read_card(out)
    assert card is not None and card.kind == "reranker" and falls(card.training_loss)
    assert card.hyperparameters["negatives_mined_with"] == str(tiny_text_model)  # a bi-encoder, not the base
    assert card.validation_after["ndcg@10"] > card.validation_before["ndcg@10"] + 0.2
    docs = tmp_path / "docs"
    docs.mkdir()
    for number, name in enumerate(NAMES[:6]):
        (docs / f"{name}.txt").write_text(f"{fact(name, 1000 + number)} {FILLER[number]}", encoding="utf-8")
    kb_factory().ingest(docs)
    fused = [hit.chunk_id for hit in kb_factory().search(question("chen"), k=6)]
    for weight in (0.0, 0.1, 1.0):
        hits = kb_factory(reranker_model=str(out), rerank_candidates=6, rerank_weight=weight).search(
            question("chen"), k=6)
        assert len(hits) == 6 and all(hit.rerank_score is not None and hit.fused_score is not None for hit in hits)
        for hit in hits:  # a hit's score is the blend of the cross-encoder's probability and the fused score
            assert hit.score == pytest.approx(weight * hit.rerank_score + (1 - weight) * hit.fused_score)
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True) and all(0 <= score <= 1 for score in scores)
        if weight == 0.0:
            assert [hit.chunk_id for hit in hits] == fused
    # Fewer candidates than hits: only the best fused ones are read; the rest keep fusion's order below them.
    hits = kb_factory(reranker_model=str(out), rerank_candidates=3, rerank_weight=0.5).search(question("chen"), k=6)
    assert [hit.rerank_score is None for hit in hits] == [False] * 3 + [True] * 3
    assert {hit.chunk_id for hit in hits[:3]} == set(fused[:3]) and [hit.chunk_id for hit in hits[3:]] == fused[3:]
    assert all(hit.score == pytest.approx(0.5 * hit.fused_score) for hit in hits[3:])
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_a_reranker_trained_further_mines_with_the_text_model(trained_reranker: Path, pairs_file: Path,
                                                              tmp_path: Path) -> None:
    """A cross-encoder base (a reranker trained again) embeds no passage on its own: negatives are mined with the
    packaged bi-encoder by default, and the card says so."""
    card = train_reranker([pairs_file], TrainOptions(out=tmp_path / "again", base_model=str(trained_reranker),
                                                     **(PAIRS | {"epochs": 1})))
    assert card.hyperparameters["negatives_mined_with"] == str(minilm_path())
    assert card.hyperparameters["negatives_mined"]["dense"] > 0 and read_card(tmp_path / "again") is not None


def test_reader_training_validates_once_at_each_epoch_end(tiny_base: Path, tmp_path: Path, untuned: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The Trainer evaluates at its last step itself; the epoch's end must not pay a second validation pass."""
    from training.qa_trainer import QuestionAnsweringTrainer

    steps: list[int] = []
    evaluate = QuestionAnsweringTrainer.evaluate

    def counted(trainer: QuestionAnsweringTrainer, *args: object, **kwargs: object) -> dict[str, float]:
        steps.append(trainer.state.global_step)
        return evaluate(trainer, *args, **kwargs)

    monkeypatch.setattr(QuestionAnsweringTrainer, "evaluate", counted)
    facts = write_squad(tmp_path / "facts.json", 240, seed=4, titles=12)
    card = train_reader([facts], TrainOptions(out=tmp_path / "reader", base_model=str(tiny_base),
                                              **(READER | {"epochs": 2})))
    per_epoch = card.steps // 2
    assert steps == [0, per_epoch, 2 * per_epoch]  # before training, then once at each epoch's end


def caption_file(tmp_path: Path) -> Path:
    """A JSONL caption file beside 48 shape pictures (12 classes, 4 each), plus a line naming a picture outside its
    folder and a line that is not JSON."""
    from tests.clip_model import shape_images

    folder = tmp_path / "captions"
    folder.mkdir()
    lines = []
    for number, (image, caption) in enumerate(shape_images(4, seed=3)):
        image.save(folder / f"{number}.png")
        lines.append(json.dumps({"image": f"{number}.png", "caption": caption}))
    lines += [json.dumps({"image": "../outside.png", "caption": "a red circle"}), "{broken"]
    (tmp_path / "outside.png").write_bytes((folder / "0.png").read_bytes())
    data = folder / "captions.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def test_clip_learns_from_jsonl_and_loads_through_the_clip_settings(tiny_clip: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    from kb.encoders.clip import ClipEncoder
    from tests.clip_model import shape_images

    config, checkpoint = tiny_clip
    data = caption_file(tmp_path)
    out = tmp_path / "clip"
    card = train_clip([data], TrainOptions(out=out, base_model=str(config), epochs=6, batch_size=12,
                                           learning_rate=1e-3, threads=1, device="cpu"),
                      clip_pretrained=str(checkpoint))
    assert card.skipped == {"image outside the data file's folder": 1, "not JSON": 1}
    assert falls(card.training_loss)
    assert (out / "model.pt").is_file() and (out / config.name).is_file()
    encoder = ClipEncoder(str(out / config.name), str(out / "model.pt"), device="cpu")
    assert encoder.identity().model.endswith("model.pt")
    assert encoder.encode_images([shape_images(1, seed=9)[0][0]]).shape == (1, 32)
    validation = data.parent / "validation.jsonl"  # a given validation file is used as it is, nothing held out
    validation.write_text("\n".join(data.read_text(encoding="utf-8").splitlines()[:2]) + "\n", encoding="utf-8")
    card = train_clip([data], TrainOptions(out=tmp_path / "given", base_model=str(config), epochs=1, batch_size=12,
                                           threads=1, device="cpu", validation=[validation]),
                      clip_pretrained=str(checkpoint))
    assert card.validation_split == f"given: {validation}" and card.examples == 48  # 12 classes, 4 images each
    assert [file.examples for file in card.validation_data] == [2]


def test_clip_keeps_its_images_as_small_jpegs_and_validates_them_in_batches(tiny_clip: tuple[Path, Path],
                                                                            tmp_path: Path) -> None:
    """Every image of a caption file was kept decoded for the whole run, 786 KB each at 512 pixels a side (10,000
    images: 7.9 GB), and validation encoded all of its images in one batch: both grew with the data set. A line may
    give an image several captions."""
    import numpy as np
    import open_clip
    from PIL import Image

    from tests.clip_model import _model

    folder = tmp_path / "photos"
    folder.mkdir()
    rows, columns = np.mgrid[0:1500, 0:2000]
    noise = np.random.default_rng(0).normal(0, 4, (1500, 2000, 1))
    pixels = np.stack([rows / 6, columns / 8, (rows + columns) / 14], axis=-1) + noise  # a smooth photo, with grain
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / "photo.png")
    captions = [f"a photo number {n}" for n in range(150)]  # on one line, as COCO gives five an image
    (folder / "captions.jsonl").write_text(json.dumps({"image": "photo.png", "captions": [*captions, " "]}) + "\n",
                                           encoding="utf-8")
    pairs = jsonl_captions(folder / "captions.jsonl", max_pixels=10**8, max_bytes=10**8).pairs
    assert [pair.caption for pair in pairs] == captions
    assert pairs[0].image.size == (512, 384) and pairs[0].image.mode == "RGB"
    assert len(pairs[0].picture) < 512 * 384 * 3 / 4
    config, _ = tiny_clip
    model, preprocess = _model(config)
    sizes = []
    encode_image = model.encode_image
    model.encode_image = lambda images, **kwargs: sizes.append(len(images)) or encode_image(images, **kwargs)
    scores = _recall_at_1(model, preprocess, open_clip.get_tokenizer(config.stem), pairs, "cpu")
    assert sizes == [64, 64, 22] and scores["text_to_image_r1"] == 1.0  # one image: every caption's own


def test_clip_saves_where_to_resume_at_each_epoch_end(tiny_clip: tuple[Path, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    config, checkpoint = tiny_clip
    data, out = caption_file(tmp_path), tmp_path / "clip"
    options = dict(out=out, base_model=str(config), epochs=2, batch_size=12, learning_rate=1e-3, threads=1,
                   device="cpu")  # checkpoint_minutes stays 10: only the epoch ends save
    monkeypatch.setattr("training.clip.finish_output", lambda out, card: None)  # killed just after its last epoch
    card = train_clip([data], TrainOptions(**options), clip_pretrained=str(checkpoint))
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert saved["step"] == card.steps and f"step {saved['best_step']}" == card.best_checkpoint
    resumed = train_clip([data], TrainOptions(**options, resume=True), clip_pretrained=str(checkpoint))
    assert resumed.resumed_from == f"step {card.steps}" and resumed.steps == card.steps
    # A damaged last.pt (cut short, another run's, a step past the run, a folder) is refused, not a traceback
    # (UnpicklingError, a size mismatch) nor, for a folder, a whole run from step 0 that failed as it saved.
    last = out / "checkpoints" / "last.pt"
    good = last.read_bytes()
    saved = torch.load(last, weights_only=True)
    saved["state"]["step"] = card.steps + 1
    for damaged in (good[: len(good) // 2], b"not a checkpoint", None):
        if damaged is None:
            torch.save(saved, last)
        else:
            last.write_bytes(damaged)
        with pytest.raises(OutputExistsError, match="last.pt cannot be read back .* pass --overwrite"):
            train_clip([data], TrainOptions(**options, resume=True), clip_pretrained=str(checkpoint))
    last.unlink()
    last.mkdir()
    with pytest.raises(OutputExistsError, match="last.pt cannot be read back"):
        train_clip([data], TrainOptions(**options, resume=True), clip_pretrained=str(checkpoint))


def test_clip_from_kb_uses_its_images_and_captions(image_kb, tiny_clip: tuple[Path, Path], tmp_path: Path) -> None:
    from tests.clip_model import shape_images

    config, checkpoint = tiny_clip
    docs = tmp_path / "docs"
    docs.mkdir()
    lines = []
    for number, (image, caption) in enumerate(shape_images(1, seed=4)):
        image.resize((64, 64)).save(docs / f"{number}.png")
        lines.append(f"![{caption}]({number}.png)")
    (docs / "shapes.md").write_text("# Shapes\n\n" + "\n\n".join(lines) + "\n", encoding="utf-8")
    knowledge_base = image_kb()
    knowledge_base.ingest(docs)
    knowledge_base.close()
    with closing(sqlite3.connect(knowledge_base.directory / "kb.sqlite")) as connection, connection:
        connection.execute("UPDATE images SET preview = x'ffd8ff00' WHERE chunk_id = (SELECT min(chunk_id) FROM images "
                           "JOIN chunks ON chunks.id = chunk_id WHERE trim(chunks.text) != '')")  # one with a caption
    card = train_clip([], TrainOptions(out=tmp_path / "clip", base_model=str(config), epochs=2, batch_size=8,
                                       learning_rate=1e-3, threads=1, device="cpu"),
                      clip_pretrained=str(checkpoint), kb_dir=knowledge_base.directory, from_kb=True)
    assert card.examples >= 9 and "images held out" in card.validation_split  # 11 pictures with their alt texts
    assert card.skipped["stored preview unreadable (UnidentifiedImageError)"] == 1  # a training step failed on it
    assert card.hyperparameters["from_kb"] is True


def test_a_reader_checkpoint_that_cannot_be_read_back_is_refused_on_resume(
        tiny_base: Path, facts: Path, tmp_path: Path, untuned: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Damaged weights in the checkpoint resumed from were a SafetensorError from inside transformers; a damaged
    before.json (the validation scores before training) a JSONDecodeError, or a card refused after the run."""
    out = tmp_path / "reader"
    options = dict(base_model=str(tiny_base), **(READER | {"epochs": 0.2}))
    monkeypatch.setattr("training.reader.finish_output", lambda out, card: None)  # killed just after saving
    train_reader([facts], TrainOptions(out=out, **options))
    monkeypatch.undo()
    monkeypatch.setattr("training.reader.tune_as_asked", lambda *args: 0.5)
    monkeypatch.setattr("training.reader.quantize_trained_reader", lambda *args: None)
    (out / "checkpoints" / "before.json").write_text("[1, 2", encoding="utf-8")
    card = train_reader([facts], TrainOptions(out=out, resume=True, **options))  # measured again
    assert card.resumed_from is not None and card.validation_before["f1"] >= 0
    monkeypatch.setattr("training.reader.finish_output", lambda out, card: None)
    for damaged in ("model.safetensors", "optimizer.pt"):  # read back before the first step, and after the state
        train_reader([facts], TrainOptions(out=out, overwrite=True, **options))
        [part] = (out / "checkpoints").glob(f"checkpoint-*/{damaged}")
        part.write_bytes(b"damaged")
        with pytest.raises(OutputExistsError, match="checkpoint .* cannot be read back .* pass --overwrite"):
            train_reader([facts], TrainOptions(out=out, resume=True, **options))


@pytest.mark.slow
def test_reader_training_resumes_after_a_kill(tiny_base: Path, facts: Path, tmp_path: Path,
                                               untuned: None) -> None:
    """SIGKILL mid-run, then --resume: training continues from the last checkpoint to the planned step count."""
    out = tmp_path / "reader"
    options = dict(base_model=str(tiny_base), **(READER | {"epochs": 3}), checkpoint_minutes=0.05)
    script = (f"from pathlib import Path\nfrom training import TrainOptions, train_reader\n"
              f"train_reader([Path({str(facts)!r})], TrainOptions(out=Path({str(out)!r}), **{options!r}))\n")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list((out / "checkpoints").glob("checkpoint-*/trainer_state.json")):
            assert process.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        process.kill()
        process.wait()
    assert not (out / "training.json").exists()
    with pytest.raises(OutputExistsError):
        train_reader([facts], TrainOptions(out=out, **options))
    with pytest.raises(OutputExistsError, match="learning_rate"):
        train_reader([facts], TrainOptions(out=out, resume=True, **(options | {"learning_rate": 1e-3})))
    card = train_reader([facts], TrainOptions(out=out, resume=True, **options))
    assert card.resumed_from is not None and int(card.resumed_from.split("-")[1]) > 0
    steps_per_epoch = card.steps / 3
    assert steps_per_epoch == int(steps_per_epoch) and card.epochs == pytest.approx(3)
    assert card.validation_after["f1"] > 80


def test_a_model_folder_of_an_unfinished_run_is_refused_by_every_loader(
        tiny_reader: Path, tiny_text_model: Path, tiny_clip: tuple[Path, Path], tmp_path: Path) -> None:
    """A run killed (or failed) after saving its weights and before its card: the folder looks like a model, but
    its weights may be a half-written file or an untuned step's. The reader, the text model, the reranker and CLIP
    refuse it, saying how to finish it; its card, written last, makes it a model."""
    from answering.loading import load_question_answering
    from kb.cards import CARD_FILE
    from kb.encoders.clip import resolve_checkpoint
    from kb.encoders.sentence_transformer import resolve_model_folder
    from kb.errors import ModelNotFoundError

    config, checkpoint = tiny_clip
    folders = {name: shutil.copytree(source, tmp_path / name) for name, source in
               (("reader", tiny_reader), ("text", tiny_text_model), ("clip", checkpoint.parent))}
    for folder in folders.values():
        (folder / "checkpoints").mkdir(exist_ok=True)
        (folder / "checkpoints" / "run.json").write_text("{}", encoding="utf-8")
    loaders = {"reader": lambda: load_question_answering(str(folders["reader"])),
               "text": lambda: resolve_model_folder(str(folders["text"]), "reranker model", "KB_RERANKER_MODEL"),
               "clip": lambda: resolve_checkpoint(config.stem, str(folders["clip"] / checkpoint.name))}
    for name, load in loaders.items():
        with pytest.raises(ModelNotFoundError, match=r"unfinished `kb train` run .* --resume"):
            load()
        (folders[name] / CARD_FILE).write_text("{}", encoding="utf-8")
        load()


def test_retriever_from_kb_learns_from_titles_and_headings(kb_factory, tiny_text_model: Path, tmp_path: Path) -> None:
    """Without any question: each Markdown heading is a query for the passage under it (weak supervision)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in NAMES[:12]:
        (docs / f"{name}.md").write_text(f"# Profile of {name}\n\n{fact(name, 1234)} {FILLER[0]}\n\n"
                                         f"## Parking for {name}\n\n{name} parks in the north lot.\n",
                                         encoding="utf-8")
    knowledge_base = kb_factory()
    knowledge_base.ingest(docs)
    knowledge_base.close()
    with pytest.raises(TrainingDataError, match="no knowledge base"):
        train_retriever([], TrainOptions(out=tmp_path / "none", **PAIRS), kb_dir=tmp_path / "nowhere", from_kb=True)
    card = train_retriever([], TrainOptions(out=tmp_path / "weak", base_model=str(tiny_text_model),
                                           **(PAIRS | {"epochs": 10, "learning_rate": 2e-3})),
                           kb_dir=knowledge_base.directory, from_kb=True)
    assert card.examples + int(card.validation_split.split()[0]) == 24  # a title and a heading per document
    assert card.skipped == {"heading too short or repeated": 12}  # the first heading is the title
    assert card.hyperparameters["from_kb"] is True
    # Trained long enough on these 19 pairs that the loss falls clearly: its steps alternate between a full batch
    # and a short one (fewer in-batch negatives, lower loss), which each half of the curve holds alike.
    assert falls(card.training_loss), card.training_loss


def test_weak_pairs_do_not_depend_on_the_order_documents_were_ingested_in_nor_on_the_mount() -> None:
    """Parallel ingestion stores documents in any order, and a share can be mounted elsewhere; the weak pairs (and so
    the training batches and the documents held out for validation) stay the same."""
    from kb.storage.store import StoredChunk, StoredDocument
    from training.pairs import weak_pairs

    def documents(folder: str) -> list[StoredDocument]:
        made = []
        for name in NAMES[:4]:
            text = f"Parking for {name}\n\n{name} parks in the north lot, next to the loading dock."
            made.append(StoredDocument(f"{folder}/{name}.md", f"Profile of {name}", text,
                                       [StoredChunk(text, 0, len(text))]))
        return made

    ingested = weak_pairs(documents("/srv/share")).pairs
    assert [(p.query, p.group) for p in ingested][:2] == [(f"Profile of {NAMES[0]}", f"{NAMES[0]}.md"),
                                                         (f"Parking for {NAMES[0]}", f"{NAMES[0]}.md")]
    assert weak_pairs(reversed(documents("/srv/share"))).pairs == ingested
    assert weak_pairs(documents("/mnt/share")).pairs == ingested


def test_runs_differing_in_data_seed_alone_start_alike_and_can_be_souped(tiny_base: Path, tmp_path: Path,
                                                                         untuned: None,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-seed changes the order the examples come in, not the new head's starting weights nor the validation
    split (a model soup averages runs from one start); with it equal to --seed, nothing changes at all."""
    import torch
    from safetensors.torch import load_file

    from training.qa_trainer import QuestionAnsweringTrainer

    facts = write_squad(tmp_path / "facts.json", 240, seed=4, titles=12)
    starts: list[torch.Tensor] = []
    train = QuestionAnsweringTrainer.train

    def recorded(trainer: QuestionAnsweringTrainer, *args: object, **kwargs: object) -> object:
        starts.append(trainer.model.qa_outputs.weight.detach().clone())
        return train(trainer, *args, **kwargs)

    monkeypatch.setattr(QuestionAnsweringTrainer, "train", recorded)
    cards, weights = [], []
    for name, seeds in (("plain", {}), ("same", {"data_seed": 0}), ("reordered", {"data_seed": 1})):
        out = tmp_path / name
        cards.append(train_reader([facts], TrainOptions(out=out, base_model=str(tiny_base),
                                                         **(READER | {"epochs": 1}), **seeds)))
        weights.append(load_file(str(out / "model.safetensors"))["qa_outputs.weight"])
    assert torch.equal(starts[0], starts[1]) and torch.equal(starts[0], starts[2])
    assert cards[0].validation_split == cards[1].validation_split == cards[2].validation_split
    assert torch.equal(weights[0], weights[1])
    assert not torch.allclose(weights[0], weights[2])
    assert cards[0].hyperparameters == cards[1].hyperparameters  # so either resumes the other
    assert "data_seed" not in cards[0].hyperparameters and cards[2].hyperparameters["data_seed"] == 1


def test_validation_split_keeps_articles_whole(tmp_path: Path) -> None:
    from training.squad_data import load_squad_files, split_by_title

    squad, files = load_squad_files([write_squad(tmp_path / "a.json", 200, seed=2, titles=5)])
    train, validation, description = split_by_title(squad, 0.2, seed=0)
    train_titles = {squad.paragraphs[q.paragraph][0] for q in train.questions}
    validation_titles = {squad.paragraphs[q.paragraph][0] for q in validation.questions}
    assert train_titles and validation_titles and not train_titles & validation_titles
    assert len(train.questions) + len(validation.questions) == files[0].examples == 200
    assert f"{len(validation.questions)} questions" in description


def test_threshold_is_tuned_on_questions_read_as_ask_reads_them(trained_reader: Path, tiny_text_model: Path,
                                                                 facts: Path, tmp_path: Path) -> None:
    """Each question is read from the passages retrieved for it, and each answerable one again from retrieved
    passages without its answer: there the reader cannot extract it, so the threshold learns what a wrong answer
    scores."""
    from answering.squad_eval import paragraphs_knowledge_base, read_as_asked
    from training.squad_data import load_squad_files

    squad, _ = load_squad_files([facts])
    squad = squad.model_copy(update={"questions": squad.questions[:40]})
    overrides = {"text_model": str(tiny_text_model), "reader_model": str(trained_reader), "device": "cpu"}
    with paragraphs_knowledge_base(squad, tmp_path, overrides) as (knowledge_base, files):
        assert len(files) == len(squad.paragraphs) and knowledge_base.settings.database_url is None
        reads = read_as_asked(squad, knowledge_base)
    asked = {question.id: question for question in squad.questions}
    assert all(reads[(qid, False)][1] == asked[qid].answers for qid in asked)
    elsewhere = {qid: read for (qid, again), (read, golds) in reads.items() if again and not golds}
    answerable = [qid for qid, question in asked.items() if question.answers]
    assert len(answerable) >= 20 and set(elsewhere) == set(answerable) and len(reads) == len(asked) + len(answerable)
    assert all(read.text not in asked[qid].answers for qid, read in elsewhere.items())


def test_headings_and_answer_location() -> None:
    from training.pairs import headings
    from training.reader_features import locate_answer

    text = "Returns policy\nCustomers have 30 days to return an item.\nShort.\nA longer closing sentence here."
    assert [line for line, _ in headings(text)] == ["Returns policy"]  # "Short." ends a sentence
    assert text[headings(text)[0][1]:].startswith("\nCustomers")
    context = "The code of alice is 4821. The code of bruno is 4821."
    assert locate_answer(context, "4821", 21) == (21, 25)
    assert locate_answer(context, "4821", 45) == (48, 52)  # off by a few characters: the nearest occurrence
    assert locate_answer(context, "9999", 0) is None and locate_answer(context, " ", 3) is None


def test_reranker_validation_leaves_out_questions_without_a_negative() -> None:
    from training.pairs import Pair
    from training.reranker import reranking_evaluator

    ranked = Pair("code of alice?", fact("alice", 4821), "a", negatives=[fact("bob", 1234)])
    alone = Pair("code of chen?", fact("chen", 5555), "c")  # mining found no passage but its own
    evaluator = reranking_evaluator([ranked, alone])
    assert [sample["query"] for sample in evaluator.samples] == [ranked.query]
    with pytest.raises(TrainingDataError, match="no validation question has a negative"):
        reranking_evaluator([alone])


@pytest.mark.parametrize("backend", ["onnx", "openvino", "openvino-bf16", "onnx-int8", "openvino-int8"])
def test_reranker_backends_give_torch_probabilities(trained_reranker: Path, backend: Backend, tmp_path: Path) -> None:
    """The cross-encoder exported once and run on ONNX Runtime or OpenVINO scores as torch does: the same
    probabilities in float32, within a few hundredths in bfloat16 and int8; ``auto`` runs one of them on a CPU."""
    needs_backend(backend)
    passages = [f"{fact(name, 1000 + number)} {FILLER[number]}" for number, name in enumerate(NAMES[:6])] + ["x " * 600]
    reference = CrossEncoderReranker(str(trained_reranker), "cpu", "torch").scores(question("chen"), passages)
    reranker = CrossEncoderReranker(str(trained_reranker), "cpu", backend, ExportCache(tmp_path), batch_size=3)
    scores = reranker.scores(question("chen"), passages)
    assert scores.shape == reference.shape
    assert np.abs(scores - reference).max() < (1e-4 if backend in ("onnx", "openvino") else 0.05)
    assert CrossEncoderReranker(str(trained_reranker), "cpu").backend == float_backend("cpu") != "torch"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU (these run on a machine with one)")
ON_THE_DEFAULT_DEVICE = {"device": None}  # no --device: the trainers take the GPU when there is one


@needs_cuda
def test_reader_trains_on_the_gpu_by_default_and_reads_on_a_cpu(tiny_base: Path, facts: Path, tmp_path: Path) -> None:
    from answering.squad_eval import evaluate

    out = tmp_path / "reader"
    card = train_reader([facts], TrainOptions(out=out, base_model=str(tiny_base), **(READER | ON_THE_DEFAULT_DEVICE)))
    assert card.device.startswith("cuda")
    assert card.validation_after["f1"] > card.validation_before["f1"] + 50 and card.no_answer_threshold is not None
    assert evaluate(facts, "reader", {"reader_model": str(out), "device": "cpu"}, limit=200).f1 > 50


@needs_cuda
def test_retriever_trains_on_the_gpu_by_default_and_encodes_on_a_cpu(pairs_file: Path, tiny_text_model: Path,
                                                                      tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "retriever"
    card = train_retriever([pairs_file], TrainOptions(out=out, base_model=str(tiny_text_model),
                                                      **(PAIRS | ON_THE_DEFAULT_DEVICE)))
    assert card.device.startswith("cuda") and falls(card.training_loss)
    assert SentenceTransformer(str(out), device="cpu").encode(["code of alice"]).shape == (1, 32)


@needs_cuda
def test_reranker_trains_on_the_gpu_by_default_and_scores_on_a_cpu(pairs_file: Path, tiny_base: Path,
                                                                    tiny_text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "reranker"
    card = train_reranker([pairs_file], TrainOptions(out=out, base_model=str(tiny_base),
                                                     **(PAIRS | {"learning_rate": 3e-3} | ON_THE_DEFAULT_DEVICE)),
                          mining_model=str(tiny_text_model))
    assert card.device.startswith("cuda") and falls(card.training_loss)
    assert card.validation_after["ndcg@10"] > card.validation_before["ndcg@10"] + 0.2
    scores = CrossEncoderReranker(str(out), device="cpu").scores(question("chen"), [fact("chen", 1234), FILLER[0]])
    assert len(scores) == 2 and all(0 <= score <= 1 for score in scores)


@needs_cuda
def test_clip_trains_on_the_gpu_by_default_and_encodes_on_a_cpu(tiny_clip: tuple[Path, Path], tmp_path: Path) -> None:
    from kb.encoders.clip import ClipEncoder
    from tests.clip_model import shape_images

    config, checkpoint = tiny_clip
    out = tmp_path / "clip"
    card = train_clip([caption_file(tmp_path)], TrainOptions(out=out, base_model=str(config), epochs=6, batch_size=12,
                                                             learning_rate=1e-3, **ON_THE_DEFAULT_DEVICE),
                      clip_pretrained=str(checkpoint))
    assert card.device.startswith("cuda") and falls(card.training_loss)
    encoder = ClipEncoder(str(out / config.name), str(out / "model.pt"), device="cpu")
    assert encoder.encode_images([shape_images(1, seed=9)[0][0]]).shape == (1, 32)


def test_reader_without_validation_trains_on_every_question_and_keeps_the_last_step(
        tiny_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--no-validation refits a chosen recipe on all the data: every question trains, nothing is scored or tuned on
    questions the reader saw, and a later int8 scoring needs files it never saw."""
    facts = write_squad(tmp_path / "facts.json", 240, seed=4, titles=12)
    out = tmp_path / "reader"
    assert main(["train", "reader", str(facts), "--out", str(out), "--base-model", str(tiny_base),
                 "--no-validation", "--epochs", "2", "--learning-rate", "3e-3", "--batch-size", "32",
                 "--max-seq-length", "64", "--threads", "1", "--device", "cpu"]) == 0
    assert "validation (none: every example trained on, the last step kept)\n" in capsys.readouterr().out
    card = read_card(out)
    assert card.examples == 240 and card.validation_split.startswith("none") and card.validation_data == []
    assert card.validation_before == card.validation_after == {} and card.best_checkpoint is None
    assert card.no_answer_threshold is None and card.int8 is None and card.hyperparameters["no_validation"] is True
    assert card.training_loss[-1][1] < card.training_loss[0][1] and card.steps == 16  # 2 epochs of 8 batches
    assert not (out / "checkpoints").exists()
    with pytest.raises(TrainingDataError, match="no validation"):
        quantize_reader(out)
    assert main(["train", "reader", str(facts), "--out", str(tmp_path / "other"), "--no-validation",
                 "--unanswerable-share", "0.5"]) == 2
    assert "with no validation nothing is tuned" in capsys.readouterr().err
    with pytest.raises(ValueError, match="validation files were given with no validation"):
        TrainOptions(out=tmp_path / "x", validation=[facts], use_validation=False)


def test_retriever_reranker_and_clip_without_validation_train_on_every_example(
        pairs_file: Path, tiny_text_model: Path, tiny_base: Path, tiny_clip: tuple[Path, Path],
        tmp_path: Path) -> None:
    """With no validation nothing is held out or scored, the last step is kept, and the folders load as usual."""
    from sentence_transformers import SentenceTransformer

    from kb.encoders.clip import ClipEncoder

    usable = len(pair_lines(NAMES, 0))
    options = PAIRS | {"epochs": 1, "use_validation": False}
    for function, base in ((train_retriever, tiny_text_model), (train_reranker, tiny_base)):
        card = function([pairs_file], TrainOptions(out=tmp_path / function.__name__, base_model=str(base), **options))
        assert card.examples == usable and card.validation_split.startswith("none")
        assert card.validation_before == card.validation_after == {} and card.hyperparameters["no_validation"]
        assert not (tmp_path / function.__name__ / "checkpoints").exists()
    assert SentenceTransformer(str(tmp_path / "train_retriever"), device="cpu").encode(["a"]).shape[0] == 1
    assert CrossEncoderReranker(str(tmp_path / "train_reranker"), device="cpu").scores("a", ["b", "c"]).shape == (2,)
    config, checkpoint = tiny_clip
    card = train_clip([caption_file(tmp_path)], TrainOptions(out=tmp_path / "clip", base_model=str(config), epochs=1,
                                                             batch_size=12, threads=1, device="cpu",
                                                             use_validation=False), clip_pretrained=str(checkpoint))
    assert card.examples == 48 and card.validation_after == {} and card.best_checkpoint is None
    from tests.clip_model import shape_images

    assert ClipEncoder(str(tmp_path / "clip" / config.name), str(tmp_path / "clip" / "model.pt"),
                       device="cpu").encode_images([shape_images(1, seed=9)[0][0]]).shape == (1, 32)


def test_clip_and_reranker_refuse_data_they_cannot_learn_from(tiny_clip: tuple[Path, Path], tiny_base: Path,
                                                              tmp_path: Path) -> None:
    """One image has nothing to be told apart from, and a cross-encoder shown no negative passage learns nothing:
    both are refused, with or without validation, rather than saved as if trained."""
    config, checkpoint = tiny_clip
    data = caption_file(tmp_path)
    one_image = data.parent / "one.jsonl"
    one_image.write_text("\n".join(json.dumps({"image": "0.png", "caption": f"picture {n}"}) for n in range(6)) + "\n",
                         encoding="utf-8")
    for use_validation in (False, True):
        with pytest.raises(TrainingDataError, match="training needs two images at least"):
            train_clip([one_image], TrainOptions(out=tmp_path / f"clip-{use_validation}", base_model=str(config),
                                                 epochs=1, threads=1, device="cpu", use_validation=use_validation),
                       clip_pretrained=str(checkpoint))
    same_passage = tmp_path / "same.jsonl"
    same_passage.write_text("\n".join(json.dumps({"query": f"question {n}", "positive": fact("alice", 4821)})
                                      for n in range(8)) + "\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match="no negative passage"):
        train_reranker([same_passage], TrainOptions(out=tmp_path / "reranker", base_model=str(tiny_base),
                                                    **(PAIRS | {"epochs": 1, "use_validation": False})))
