"""What a training run reads and writes: its output folder, training files of odd shapes, and no passage on both
sides of the validation split (seconds: no model is trained here)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from answering.squad_eval import SquadQuestion, SquadSet, squad_scores
from kb.cards import TrainingCard, read_card
from tests.conftest import minilm_path
from tests.qa_model import FILLER, NAMES, fact, question, write_squad
from training import OutputExistsError, TrainOptions, train_reader, train_reranker, train_retriever
from training.clip import jsonl_captions, train_clip
from training.errors import TrainingDataError
from training.int8 import quantize_reader
from training.negatives import is_gold
from training.output import finish_output, prepare_output
from training.pair_data import prepare_pairs
from training.pairs import Pair, jsonl_pairs, squad_pairs
from training.reader_features import NO_TOKENS, ReaderFeatures, reader_features
from training.retriever import pair_columns
from training.squad_data import load_squad_files, split_by_title


def test_overwrite_replaces_only_a_training_output_and_out_is_checked_before_any_data_is_read(tmp_path: Path) -> None:
    qa = tmp_path / "qa"
    qa.mkdir()
    (qa / "train.json").write_text("{}", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="inside a data file"):  # --out qa --overwrite keeps the questions
        train_reader([qa / "train.json"], TrainOptions(out=qa, overwrite=True))
    with pytest.raises(OutputExistsError, match="no training run wrote"):
        train_reader([tmp_path / "other.json"], TrainOptions(out=qa, overwrite=True))
    assert (qa / "train.json").read_text(encoding="utf-8") == "{}"
    with pytest.raises(OutputExistsError, match="not empty"):  # refused before the (missing) data file is read
        train_reader([tmp_path / "missing.json"], TrainOptions(out=qa))


def test_what_a_run_cannot_do_is_refused_in_one_line_before_it_writes_anything(tmp_path: Path) -> None:
    """A device the machine lacks, absurd epochs, hard negatives or windows, a dangling symlink as --out: each used
    to fail hours in, with a traceback, or after leaving checkpoints (training hunt); now before --out is touched."""
    from pydantic import ValidationError

    from kb.errors import ConfigurationError, InvalidRequestError

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"query": "q", "positive": "p"}) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ConfigurationError, match=r"'cuda:7' \(--device\) is not on this machine"):
        train_retriever([pairs], TrainOptions(out=out, base_model=str(minilm_path()), device="cuda:7"))
    with pytest.raises(ValidationError, match="less than or equal to 10000"):
        TrainOptions(out=out, epochs=1e308)
    for kind, most in ((train_retriever, -1), (train_reranker, 0), (train_retriever, 21)):
        with pytest.raises(InvalidRequestError, match="hard negatives per question"):
            kind([pairs], TrainOptions(out=out, base_model=str(minilm_path())), hard_negatives=most)
    with pytest.raises(InvalidRequestError, match="longer than the base model .* reads \\(512 tokens\\)"):
        train_reranker([pairs], TrainOptions(out=out, base_model=str(minilm_path()), max_seq_length=100_000))
    with pytest.raises(ConfigurationError, match=r"'meta' is not a torch device \(--device: "):
        train_retriever([pairs], TrainOptions(out=out, base_model=str(minilm_path()), device="meta"))
    with pytest.raises(InvalidRequestError, match="--max-seq-length does not apply"):  # was: silently ignored
        train_clip([pairs], TrainOptions(out=out, max_seq_length=64))
    for folder, reason in ((tmp_path / "reader.json", "not a folder"), (out, "unfinished `kb train` run")):
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)  # a killed reader run: no card
        (out / "checkpoints" / "run.json").write_text("{}", encoding="utf-8")
        with pytest.raises(InvalidRequestError, match=reason):  # was: "set KB_READER_MODEL", which it never reads
            quantize_reader(folder, [pairs])
    shutil.rmtree(out)
    train = write_squad(tmp_path / "train.json", 40, seed=3)
    one = {"data": [{"title": "t", "paragraphs": [{"context": "The code of alice is 4821.", "qas": [
        {"id": "v", "question": "What is the code of alice?", "answers": [{"text": "4821", "answer_start": 21}]}]}]}]}
    (tmp_path / "one.json").write_text(json.dumps(one), encoding="utf-8")
    with pytest.raises(TrainingDataError, match="all answerable and on one paragraph"):  # was: after training
        train_reader([train], TrainOptions(out=out, validation=[tmp_path / "one.json"]))
    none = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": f"Paragraph {number}.", "qas": [
        {"id": f"n{number}", "question": "What is the code?", "answers": [], "is_impossible": True}]}
        for number in range(2)]}]}
    (tmp_path / "none.json").write_text(json.dumps(none), encoding="utf-8")
    with pytest.raises(TrainingDataError, match="all unanswerable"):  # the threshold would always abstain
        train_reader([train], TrainOptions(out=out, validation=[tmp_path / "none.json"]))
    assert not out.exists()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputExistsError, match="not a folder"):
        train_retriever([pairs], TrainOptions(out=tmp_path / "dangling", base_model=str(minilm_path())))
    with pytest.raises(OutputExistsError, match="on the way to .* is a symlink to nothing"):
        train_retriever([pairs], TrainOptions(out=tmp_path / "dangling" / "sub", base_model=str(minilm_path())))


def test_json_nested_just_within_the_recursion_limit_is_refused_in_one_line(tmp_path: Path) -> None:
    """json.loads parses it, and checking its strings for lone surrogates by encoding it went one level deeper."""
    from kb.text import is_text

    for depth in range(sys.getrecursionlimit() - 60, sys.getrecursionlimit()):
        try:
            value = json.loads("[" * depth + '"a"' + "]" * depth)
        except RecursionError:
            continue
        assert is_text(value) and not is_text(json.loads("[" * depth + '"\\ud800"' + "]" * depth))
        break
    else:
        pytest.skip("json.loads took no depth near the limit here")


def test_a_training_card_reached_through_a_link_is_read(tmp_path: Path) -> None:
    """Model folders are often links into a cache (Hugging Face snapshots, git-annex): their card is read."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "card.json").write_text('{"kind": "reader", "base_model": "x", "no_answer_threshold": 1}',
                                                   encoding="utf-8")
    (tmp_path / "reader").mkdir()
    (tmp_path / "reader" / "training.json").symlink_to(tmp_path / "store" / "card.json")
    assert read_card(tmp_path / "reader").no_answer_threshold == 1.0


def test_resume_passes_over_a_checkpoint_whose_trainer_state_was_cut_short(tmp_path: Path) -> None:
    """A kill or a full disk while the trainer wrote its state (it writes it last): the checkpoint before is used."""
    from training.output import last_checkpoint

    checkpoints = prepare_output(tmp_path / "reader", overwrite=False, resume=False, run={"kind": "reader"})
    for step, state in ((1, '{"global_step": 1}'), (2, '{"global_step": 2, "log_hi'), (3, None), (4, "{}"),
                        (5, '{"global_step": "5"}'), (6, "[6]")):
        (checkpoints / f"checkpoint-{step}").mkdir()
        if state is not None:
            (checkpoints / f"checkpoint-{step}" / "trainer_state.json").write_text(state, encoding="utf-8")
    assert last_checkpoint(checkpoints) == str(checkpoints / "checkpoint-1")  # a state with no step failed in torch


@pytest.mark.parametrize("record", [b"{garbage", b"\xff\xfe", b"null", b"[1]", b"[[1]]", b"[" * 100_000])
def test_resume_refuses_a_damaged_run_record_in_one_line(tmp_path: Path, record: bytes) -> None:
    """checkpoints/run.json not JSON, not UTF-8, not an object or nested too deep: a traceback (JSONDecodeError,
    AttributeError, RecursionError) after all the data was read; --overwrite still starts again."""
    out = tmp_path / "reader"
    (prepare_output(out, overwrite=False, resume=False, run={"kind": "reader"}) / "run.json").write_bytes(record)
    with pytest.raises(OutputExistsError, match="is not a run's record .* pass --overwrite"):
        prepare_output(out, overwrite=False, resume=True, run={"kind": "reader"})
    assert prepare_output(out, overwrite=True, resume=False, run={"kind": "reader"}).is_dir()


def test_a_data_file_given_twice_or_also_for_validation_is_refused(tiny_text_model: Path, tmp_path: Path) -> None:
    """The same file twice (or under two spellings) trained on every example twice; a training file given as
    --validation too scored the questions trained on."""
    (tmp_path / "qa").mkdir()
    data = write_squad(tmp_path / "qa" / "train.json", 8)
    for files, validation in (([data, data], []), ([data, tmp_path / "qa" / ".." / "qa" / "train.json"], []),
                              ([data], [data])):
        with pytest.raises(TrainingDataError, match="twice as training data|both as training data and as"):
            train_retriever(files, TrainOptions(out=tmp_path / "out", base_model=str(tiny_text_model),
                                                validation=validation))
    assert not (tmp_path / "out").exists()


def test_overwrite_needs_a_real_training_card_and_removes_only_the_files_its_run_wrote(tmp_path: Path) -> None:
    qa = tmp_path / "qa"
    qa.mkdir()
    (qa / "training.json").write_text(json.dumps({"data": []}), encoding="utf-8")  # the user's SQuAD file
    (qa / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="no training run wrote"):
        prepare_output(qa, overwrite=True, resume=False, run={"kind": "reader"})
    assert sorted(path.name for path in qa.iterdir()) == ["notes.txt", "training.json"]
    earlier = tmp_path / "reader"
    checkpoints = prepare_output(earlier, overwrite=False, resume=False, run={"kind": "reader"})
    (earlier / "model.safetensors").write_text("old", encoding="utf-8")
    finish_output(earlier, TrainingCard(kind="reader", base_model="base"))
    assert read_card(earlier).files == ["model.safetensors"] and not checkpoints.exists()
    (earlier / "notes.txt").write_text("mine", encoding="utf-8")  # the user's, put beside the model afterwards
    checkpoints = prepare_output(earlier, overwrite=True, resume=False, run={"kind": "reader"})
    assert sorted(path.name for path in earlier.iterdir()) == ["checkpoints", "notes.txt"] and checkpoints.is_dir()
    (earlier / "model.safetensors").write_text("new", encoding="utf-8")
    finish_output(earlier, TrainingCard(kind="reader", base_model="base"))
    assert read_card(earlier).files == ["model.safetensors"]  # notes.txt is not the run's: never removed


def test_overwrite_after_a_killed_run_removes_exactly_what_that_run_placed_in_out(tmp_path: Path) -> None:
    """A run killed after saving its model, before its card: --overwrite removes the model it placed there and
    keeps a file the user added after the kill; the next card lists the model files as its run's, so a later
    --overwrite removes them too."""
    from training.output import publish_model

    out = tmp_path / "reader"
    prepare_output(out, overwrite=False, resume=False, run={"kind": "reader"})
    outside = tmp_path / "outside.json"
    outside.write_text("not the run's", encoding="utf-8")
    (out / "config.json").symlink_to(outside)  # replaced by the run, never written through

    def save(folder: Path) -> None:
        (folder / "model.safetensors").write_text("weights", encoding="utf-8")
        (folder / "config.json").write_text("{}", encoding="utf-8")
        (folder / "tokenizer").mkdir()

    publish_model(out, save)  # then killed: no card
    assert outside.read_text(encoding="utf-8") == "not the run's" and not (out / "config.json").is_symlink()
    (out / "added.txt").write_text("mine after the kill", encoding="utf-8")
    checkpoints = prepare_output(out, overwrite=True, resume=False, run={"kind": "reader"})
    assert sorted(path.name for path in out.iterdir()) == ["added.txt", "checkpoints"]
    publish_model(out, save)
    publish_model(out, save)  # saved twice (a folder of the same name is replaced whole)
    finish_output(out, TrainingCard(kind="reader", base_model="base"))
    assert read_card(out).files == ["config.json", "model.safetensors", "tokenizer"] and not checkpoints.exists()


def test_a_run_never_replaces_lists_or_removes_a_file_of_the_users(tmp_path: Path) -> None:
    """Files of the user's in --out: one added after a kill is not put on the card by --resume; one there before
    the run that the model would replace (sentence-transformers writes README.md) stops the run before anything is
    moved, the model kept for --resume; a hostile written.json or a leftover staging symlink changes nothing; an
    --overwrite killed midway leaves what it did not remove still recorded as the run's."""
    from training import output
    from training.output import publish_model, run_entries

    def save(folder: Path) -> None:
        (folder / "model.safetensors").write_text("weights", encoding="utf-8")
        (folder / "README.md").write_text("model card", encoding="utf-8")

    out = tmp_path / "retriever"
    prepare_output(out, overwrite=False, resume=False, run={"kind": "retriever"})
    publish_model(out, save)  # then killed
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    prepare_output(out, overwrite=False, resume=True, run={"kind": "retriever"})
    publish_model(out, save)
    finish_output(out, TrainingCard(kind="retriever", base_model="base"))
    assert read_card(out).files == ["README.md", "model.safetensors"]  # was: notes.txt too, removed by --overwrite

    out = tmp_path / "reader"  # an earlier run's model, the user's README.md beside it
    prepare_output(out, overwrite=False, resume=False, run={"kind": "reader"})
    publish_model(out, lambda folder: (folder / "model.safetensors").write_text("reader", encoding="utf-8"))
    finish_output(out, TrainingCard(kind="reader", base_model="base"))
    (out / "README.md").write_text("my notes", encoding="utf-8")
    checkpoints = prepare_output(out, overwrite=True, resume=False, run={"kind": "retriever"})
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "checkpoints"]
    (checkpoints / "staged").symlink_to(tmp_path / "elsewhere")  # left over: replaced, never followed
    with pytest.raises(OutputExistsError, match="holds README.md of yours, .* --resume"):
        publish_model(out, save)
    assert (out / "README.md").read_text(encoding="utf-8") == "my notes" and not (out / "model.safetensors").exists()
    assert run_entries(out) == ["checkpoints"] and (checkpoints / "staged" / "model.safetensors").is_file()

    (out / "README.md").rename(tmp_path / "moved.md")
    prepare_output(out, overwrite=False, resume=True, run={"kind": "retriever"})
    publish_model(out, save)
    written = (checkpoints / "written.json").read_text(encoding="utf-8")
    for hostile in ("[" * 100_000, None):  # nested past the recursion limit; a FIFO, which would block a reader
        (checkpoints / "written.json").unlink()
        if hostile is None:
            os.mkfifo(checkpoints / "written.json")
        else:
            (checkpoints / "written.json").write_text(hostile, encoding="utf-8")
        assert run_entries(out) == ["checkpoints"]
    (checkpoints / "written.json").unlink()
    (checkpoints / "written.json").write_text(written, encoding="utf-8")
    publish_model(out, save)  # killed after publishing, resumed: the README.md there is the run's now
    real_remove = output._remove
    with pytest.MonkeyPatch.context() as patch:
        def killed_at_checkpoints(path: Path) -> None:
            if path.name == "checkpoints" or path.parent.name == "checkpoints":
                raise KeyboardInterrupt  # killed once the model's files are gone, before the records
            real_remove(path)

        patch.setattr(output, "_remove", killed_at_checkpoints)
        with pytest.raises(KeyboardInterrupt):
            prepare_output(out, overwrite=True, resume=False, run={"kind": "retriever"})
    assert sorted(path.name for path in out.iterdir()) == ["checkpoints"]
    assert run_entries(out) == ["checkpoints", "README.md", "model.safetensors"]  # still the run's to remove


def test_a_run_file_that_cannot_be_written_whole_is_not_left_half_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = ("import resource, sys; from pathlib import Path; from training.output import prepare_output\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))  # a disk that fills up after 64 bytes\n"
              f"prepare_output(Path({str(out)!r}), overwrite=False, resume=False, run={{'kind': 'reader', "
              "'data': ['x' * 200]})")
    failed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parent.parent)
    assert failed.returncode != 0 and "StorageError: cannot write" in failed.stderr, failed.stderr
    assert not (out / "checkpoints" / "run.json").exists()  # a truncated one would make --resume fail to read it
    assert json.loads((out / "checkpoints" / "kept.json").read_text(encoding="utf-8")) == []


def test_out_may_not_be_or_hold_or_lie_inside_the_base_model_a_data_file_or_the_knowledge_base(tmp_path: Path) -> None:
    base = tmp_path / "base"  # an earlier training output, used as the base of the next run
    prepare_output(base, overwrite=False, resume=False, run={"kind": "reader"})
    (base / "model.safetensors").write_text("weights", encoding="utf-8")
    finish_output(base, TrainingCard(kind="reader", base_model="b"))
    data = tmp_path / "facts.json"
    data.write_text("{}", encoding="utf-8")
    runs = [(train_reader, dict(out=base, base_model=str(base)), "the model"),
            (train_retriever, dict(out=base, base_model=str(base)), "the model"),
            (train_reranker, dict(out=base / "next", base_model=str(base)), "the model"),
            (train_reader, dict(out=tmp_path, base_model=str(base)), "the model"),
            (train_reader, dict(out=tmp_path / "v", base_model=str(base), validation=[tmp_path / "v" / "x.json"]),
             "a validation file")]
    for train, options, what in runs:
        with pytest.raises(OutputExistsError, match=f"inside {what}"):
            train([data], TrainOptions(overwrite=True, **options))
    with pytest.raises(OutputExistsError, match="inside the knowledge base"):
        train_reader([data], TrainOptions(out=tmp_path / "kb" / "reader"), kb_dir=tmp_path / "kb")
    assert (base / "model.safetensors").read_text(encoding="utf-8") == "weights" and data.is_file()


def test_a_single_article_keeps_each_paragraph_on_one_side_even_when_repeated_per_question(tmp_path: Path) -> None:
    contexts = [fact(name, 1000 + number) + " " + FILLER[number % len(FILLER)] for number, name in enumerate(NAMES[:6])]
    paragraphs = [{"context": contexts[number % 6], "qas": [{
        "id": str(number), "question": question(NAMES[number % 6]),
        "answers": [{"text": str(1000 + number % 6), "answer_start": contexts[number % 6].index(" is ") + 4}]}]}
        for number in range(30)]  # a flat export: each question with its own copy of the paragraph
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"data": [{"title": "handbook", "paragraphs": paragraphs}]}), encoding="utf-8")
    squad, _ = load_squad_files([path])
    train, validation, _ = split_by_title(squad, 0.3)
    sides = [{squad.paragraphs[q.paragraph][1] for q in part.questions} for part in (train, validation)]
    assert sides[0] and sides[1] and not sides[0] & sides[1]


def test_files_sharing_question_ids_are_scored_apart(tmp_path: Path) -> None:
    paths = []
    for name, code in (("a.json", "1234"), ("b.json", "9876")):
        context = f"The code is {code}."
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps({"data": [{"title": name, "paragraphs": [{"context": context, "qas": [
            {"id": "q1", "question": "What is the code?", "answers": [{"text": code, "answer_start": 12}]}]}]}]}),
            encoding="utf-8")
    squad, _ = load_squad_files(paths)
    assert [q.id for q in squad.questions] == ["q1", f"{paths[1]}:q1"]
    assert squad_scores(squad, {q.id: q.answers[0] for q in squad.questions})["exact"] == 100.0
    with pytest.raises(TrainingDataError, match="given twice"):
        load_squad_files([paths[0], paths[1], paths[1]])
    third = tmp_path / "c.json"  # its own ids "q1" and "<its path>:q1" would become one once "q1" is prefixed
    third.write_text(json.dumps({"data": [{"title": "c", "paragraphs": [{"context": "The code is 5555.", "qas": [
        {"id": identifier, "question": "What is the code?", "answers": [{"text": "5555", "answer_start": 12}]}
        for identifier in ("q1", f"{third}:q1")]}]}]}), encoding="utf-8")
    with pytest.raises(TrainingDataError, match="is used twice once the ids an earlier file used are prefixed"):
        load_squad_files([paths[0], third])


def _within_seconds(seconds: float, call: object) -> BaseException | None:
    """What ``call()`` raised, failing the test if it has not returned within ``seconds`` (a FIFO blocks)."""
    import threading

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()  # type: ignore[operator]
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still reading after {seconds} s"
    return outcome[0]


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_data_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    paths = {"json": tmp_path / "data.json", "jsonl": tmp_path / "data.jsonl"}
    for path in paths.values():
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "device":
            path.symlink_to("/dev/zero")  # endless: read whole, it would take every byte of memory
        else:
            path.mkdir()
    for call in (lambda: load_squad_files([paths["json"]]), lambda: jsonl_pairs(paths["jsonl"])):
        error = _within_seconds(10, call)
        assert isinstance(error, TrainingDataError) and "not a readable regular file" in str(error)


def test_a_data_file_over_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kb.containment

    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "q", "positive": "p" * 2000}) + "\n", encoding="utf-8")
    monkeypatch.setattr(kb.containment, "DATA_FILE_LIMIT", 1000)
    with pytest.raises(TrainingDataError, match="over the .* MB limit"):
        jsonl_pairs(path)
    with pytest.raises(TrainingDataError, match="over the .* MB limit"):
        load_squad_files([tmp_path / "pairs.jsonl"])


def test_the_card_hashes_the_bytes_trained_on_even_if_the_file_is_swapped_after_being_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data file replaced between the read that trains and a second read that hashes would be recorded as what it
    became: each file is read once, and its hash is of those bytes."""
    import hashlib

    import training.pairs
    import training.squad_data

    squad, pairs = tmp_path / "train.json", tmp_path / "pairs.jsonl"
    write_squad(squad, 4)
    pairs.write_text(json.dumps({"query": "q", "positive": "p"}) + "\n", encoding="utf-8")
    read = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in (squad, pairs)}

    def swapped_after(reader, path_of):  # the real reader, then the file replaced at once
        def call(*args, **kwargs):
            result = reader(*args, **kwargs)
            path_of(args).write_text("swapped", encoding="utf-8")
            return result
        return call

    monkeypatch.setattr(training.squad_data, "load_squad", swapped_after(training.squad_data.load_squad,
                                                                         lambda args: Path(args[0])))
    monkeypatch.setattr(training.pairs, "read_jsonl", swapped_after(training.pairs.read_jsonl,
                                                                    lambda args: Path(args[0])))
    assert [file.sha256 for file in load_squad_files([squad])[1]] == [read[squad]]
    assert [file.sha256 for file in jsonl_pairs(pairs).files] == [read[pairs]]


def test_jsonl_lines_nested_too_deep_with_huge_numbers_or_lone_surrogates_are_counted_as_skipped(
        tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    lines = ["[" * 100_000 + "]" * 100_000, '{"query": "q", "positive": "p", "n": ' + "9" * 5000 + "}",
             '{"query": "q\\ud800", "positive": "p"}', json.dumps({"query": "kept", "positive": "p"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    found = jsonl_pairs(path)
    assert [pair.query for pair in found.pairs] == ["kept"]
    assert found.skipped == {"not JSON": 2, "a lone UTF-16 surrogate (not text)": 1}


def _windows(contexts_and_answers: list[tuple[str, str, int]], for_training: bool = True) -> ReaderFeatures:
    """Training (or evaluation) windows (64 tokens) of one question per (context, answer, answer_start)."""
    from transformers import AutoTokenizer

    squad = SquadSet(version="1.1", paragraphs=[("t", context) for context, _, _ in contexts_and_answers],
                     questions=[SquadQuestion(id=str(n), question="What is it?", answers=[answer],
                                              answer_starts=[start], paragraph=n)
                                for n, (_, answer, start) in enumerate(contexts_and_answers)])
    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    return reader_features(squad, tokenizer, max_length=64, stride=21,
                           input_names={"input_ids", "attention_mask", "token_type_ids"}, for_training=for_training)


def test_an_answer_past_the_last_window_a_question_may_read_is_skipped_as_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    import training.reader_features as features_module

    monkeypatch.setattr(features_module, "MAX_WINDOWS_PER_QUESTION", 3)  # windows of 64 tokens: about 170 reach
    context = " ".join(f"{fact(name, 1000 + n)} {FILLER[n % len(FILLER)]}" for n, name in enumerate(NAMES * 4))
    near, far = fact(NAMES[0], 1000), fact(NAMES[-1], 1000 + len(NAMES) * 4 - 1)
    found = _windows([(context, "1000", context.index(near) + len(near) - 4),
                      (context, str(1000 + len(NAMES) * 4 - 1), context.rindex(far) + len(far) - 4)])
    assert len(found.questions) == 1 and found.skipped == {features_module.CUT: 1}
    assert len(found.features) == 3 and len(_windows([(context, "1000", 0)], for_training=False).features) == 3


def test_answers_with_spaces_around_them_label_their_words() -> None:
    context = "Paris is the capital of France. Berlin is the capital of Germany."
    found = _windows([(context, " Paris", 0), (context, "Germany. ", context.index("Germany")),
                      (context, " Berlin ", context.index("Berlin") - 1)], for_training=False)
    assert not found.skipped
    labelled = [found.contexts[n][found.windows[n].offsets[0][feature["start_positions"]][0]:
                                  found.windows[n].offsets[0][feature["end_positions"]][1]]
                for n, feature in enumerate(found.features)]
    assert labelled == ["Paris", "Germany.", "Berlin"]


def test_a_training_question_on_a_long_paragraph_keeps_its_answer_s_windows_and_two_without_it() -> None:
    """Sixty windows without the answer teach "not here" no better than the two nearest it, and a long paragraph
    asked many questions held 64 windows for each (2 GB for 300 questions: training hunt)."""
    context = " ".join(f"{fact(name, 1000 + n)} {FILLER[n % len(FILLER)]}" for n, name in enumerate(NAMES * 4))
    middle = fact(NAMES[len(NAMES) // 2], 1000 + len(NAMES) // 2)
    answer_start = context.index(middle) + len(middle) - 4
    evaluated = _windows([(context, str(1000 + len(NAMES) // 2), answer_start)], for_training=False)
    trained = _windows([(context, str(1000 + len(NAMES) // 2), answer_start)])
    answered = [w for w, feature in enumerate(evaluated.features) if feature["start_positions"]]
    assert len(evaluated.features) > 10 and answered and not trained.windows
    assert len(trained.features) == len(answered) + 2
    assert [feature for feature in trained.features if feature["start_positions"]] == \
        [evaluated.features[w] for w in answered]


def test_a_paragraph_of_invisible_characters_is_skipped_and_counted() -> None:
    found = _windows([("\u200b\u200b\u200b", "\u200b", 0), ("\u00ad\u00ad", "\u00ad", 0),
                      ("The code is 42.", "42", 12)])
    assert len(found.questions) == 1 and found.skipped == {NO_TOKENS: 2}


def test_validation_passages_are_never_training_negatives(tiny_text_model: Path, tmp_path: Path) -> None:
    lines = [json.dumps({"query": question(name), "positive": f"{fact(name, 1000 + number)} {FILLER[number % 8]}",
                         "group": name}) for number, name in enumerate(NAMES[:12])]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepared = prepare_pairs([data], TrainOptions(out=tmp_path / "out", validation_fraction=0.4),
                             text_model=str(tiny_text_model), kb_dir=None, from_kb=False, negatives=5)
    held = {pair.positive for pair in prepared.validation}
    assert held and all(pair.negatives for pair in prepared.train)
    assert not any(negative in held for pair in prepared.train for negative in pair.negatives)
    assert any(negative in {p.positive for p in prepared.train} for pair in prepared.validation
               for negative in pair.negatives)  # the validation side may still rank training passages


def test_borrowed_negatives_are_never_the_pairs_own_passage(tiny_text_model: Path, tmp_path: Path) -> None:
    shared, other = fact("alice", 4821), fact("bruno", 1234)
    pairs = [Pair(question("alice"), shared, "a", "4821"), Pair("code for alice", shared, "a", "4821"),
             Pair(question("bruno"), other, "b", "1234")]  # SQuAD: neighbouring questions share their paragraph
    columns = pair_columns(pairs, 1)
    assert columns["negative_1"] == [other, other, shared]
    with pytest.raises(TrainingDataError, match="no passage to use as a negative"):
        pair_columns(pairs[:2], 1)
    data = tmp_path / "pairs.jsonl"  # refused before --out is written: it was left holding checkpoints
    data.write_text("".join(json.dumps({"query": pair.query, "positive": pair.positive}) + "\n" for pair in pairs[:2]),
                    encoding="utf-8")
    with pytest.raises(TrainingDataError, match="no passage to use as a negative"):
        train_retriever([data], TrainOptions(out=tmp_path / "out", base_model=str(tiny_text_model),
                                             use_validation=False))
    assert not (tmp_path / "out").exists()


def test_a_passage_holds_an_answer_only_as_whole_words_and_an_empty_answer_is_counted(tmp_path: Path) -> None:
    pair = Pair("Which chapter?", "Chapter 1 opens the book.", "a", "1")
    assert not is_gold("It was published in 2019.", pair) and is_gold("See chapter 1, page 3.", pair)
    assert is_gold("首都是北京。", Pair("首都是哪里？", "北京是首都。", "b", "北京"))  # Chinese: character by character
    path = tmp_path / "qa.json"
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "The code is 42.", "qas": [
        {"id": "1", "question": "Which word?", "answers": [{"text": "The", "answer_start": 0}]},
        {"id": "2", "question": "Which code?", "answers": [{"text": "42", "answer_start": 12}]}]}]}]}),
        encoding="utf-8")
    found = squad_pairs([path])
    assert [p.answer for p in found.pairs] == ["42"]
    assert found.skipped == {"answer empty once normalised (articles or punctuation only)": 1}
    # A blank question stopped mining halfway ("the query is empty"); a blank context is in every passage.
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": "The code is 42.", "qas": [{"id": "1", "question": "  ", "answers": [{"text": "42",
                                                                                        "answer_start": 12}]}]},
        {"context": "  ", "qas": [{"id": "2", "question": "Which code?", "answers": [{"text": " ",
                                                                                    "answer_start": 0}]}]}]}]}),
        encoding="utf-8")
    assert squad_pairs([path]).skipped == {"no question or context text": 2}


def test_jsonl_negatives_may_be_one_text_a_bom_is_not_part_of_line_one_and_lines_end_at_newlines(
        tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [{"query": "q1", "positive": "p1", "negatives": "a wrong passage"},
            {"query": "q2", "positive": "p2", "negatives": 3},
            {"query": "q3", "positive": "p3", "negative": "n3", "negatives": None}]
    rows.append({"query": "q4", "positive": "line\u2028and paragraph\u2029separators, next line\x85"})
    path.write_text("\ufeff" + "\r\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n",
                    encoding="utf-8")
    found = jsonl_pairs(path)
    assert [(p.query, p.negatives) for p in found.pairs] == [("q1", ["a wrong passage"]), ("q3", ["n3"]), ("q4", [])]
    assert found.skipped == {"negatives not a text or a list of texts": 1}
    squad = tmp_path / "bom.json"
    squad.write_text("\ufeff" + json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "It is 42.", "qas": [
        {"id": "1", "question": "What is it?", "answers": [{"text": "42", "answer_start": 6}]}]}]}]}),
        encoding="utf-8")
    assert len(load_squad_files([squad])[0].questions) == 1


def test_caption_images_that_are_not_regular_files_or_too_large_are_skipped_without_blocking(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(tmp_path / "red.png")
    os.mkfifo(tmp_path / "pipe.png")  # reading a FIFO with no writer would wait forever
    (tmp_path / "large.png").write_bytes(b"\x89PNG" + bytes(4096))
    data = tmp_path / "captions.jsonl"
    data.write_text("\n".join(json.dumps({"image": name, "caption": "a red square"})
                              for name in ("red.png", "pipe.png", "large.png", "large.png", "red.png"))
                    + "\n", encoding="utf-8")
    signal.alarm(20)
    try:
        found = jsonl_captions(data, max_pixels=10**6, max_bytes=1024)
    finally:
        signal.alarm(0)
    assert len(found.pairs) == 2
    assert found.skipped == {"image not a readable regular file in the data file's folder": 1,
                             "image file over the max_file_mb limit": 2}  # each line counts (was: each image)


def test_caption_image_paths_with_a_nul_byte_or_a_symlink_loop_are_skipped_and_counted(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(tmp_path / "red.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "back.png")
    (tmp_path / "back.png").symlink_to(tmp_path / "loop.png")
    data = tmp_path / "captions.jsonl"
    data.write_text("\n".join(json.dumps({"image": name, "caption": "a red square"})
                              for name in ("red.png", "bad\u0000.png", "loop.png")) + "\n", encoding="utf-8")
    found = jsonl_captions(data, max_pixels=10**6, max_bytes=10**6)
    assert len(found.pairs) == 1
    assert found.skipped == {"image path that cannot be resolved (a NUL byte, a symlink loop)": 2}


def test_a_resume_with_other_mined_negatives_is_a_different_run() -> None:
    """The pairs' hash in run.json covers the negatives: mined from a knowledge base with a mining model that no
    file hash covers, other negatives (another --mining-model, a changed --kb) make --resume refuse the run."""
    from training.pair_data import PreparedPairs

    def prepared(negatives: list[str]) -> PreparedPairs:
        pair = Pair(query="Who founded it?", positive="Ada founded it.", group="a", negatives=negatives)
        return PreparedPairs(train=[pair], validation=[], files=[], validation_files=[], split="given")

    assert prepared(["Bo ran it."]).sha256() == prepared(["Bo ran it."]).sha256()
    assert prepared(["Bo ran it."]).sha256() != prepared(["Cy sold it."]).sha256()


def test_quantize_reader_refuses_training_files_changed_since_the_reader_trained(tmp_path: Path) -> None:
    """Its validation split is taken from the card's training files again: changed, the "held out" questions
    could be ones the reader trained on, and the int8 scores recorded on the card would flatter it."""
    from kb.cards import write_card
    from training.int8 import quantize_reader
    from training.squad_data import load_squad_files

    data = write_squad(tmp_path / "train.json", 40, seed=1)
    _, files = load_squad_files([data])
    reader = tmp_path / "reader"
    reader.mkdir()
    write_card(reader, TrainingCard(kind="reader", base_model="tiny", data=files))
    write_squad(data, 40, seed=2)  # edited since
    with pytest.raises(TrainingDataError, match="changed since the reader was trained"):
        quantize_reader(reader, [])
    assert read_card(reader).int8 is None  # nothing recorded


def test_pairs_from_a_single_article_are_split_by_paragraph_as_the_reader_splits_them(tmp_path: Path) -> None:
    """A company's one-document SQuAD file has one title: its pairs are grouped by paragraph (a paragraph asked
    several questions stays on one side), so the retriever and reranker can hold out a validation split."""
    from training.pairs import split_pairs

    data = write_squad(tmp_path / "one.json", 60, seed=4, titles=1)
    pairs = squad_pairs([data]).pairs
    assert len({pair.group for pair in pairs}) == len({pair.positive for pair in pairs}) > 1
    train, validation = split_pairs(pairs, 0.2)
    assert train and validation and not {p.positive for p in train} & {p.positive for p in validation}


def test_unusable_validation_lines_are_counted_on_the_card_apart_from_training_ones(tiny_text_model: Path,
                                                                                    tmp_path: Path) -> None:
    lines = [json.dumps({"query": question(name), "positive": fact(name, 1000 + number), "group": name})
             for number, name in enumerate(NAMES[:8])]
    data, validation = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
    data.write_text("\n".join(lines[:6] + ["not json"]) + "\n", encoding="utf-8")
    validation.write_text("\n".join(lines[6:] + ["not json", '{"query": "no positive"}']) + "\n", encoding="utf-8")
    prepared = prepare_pairs([data], TrainOptions(out=tmp_path / "out", validation=[validation]),
                             text_model=str(tiny_text_model), kb_dir=None, from_kb=False, negatives=1)
    assert len(prepared.validation) == 2 and sum(prepared.skipped.values()) == 3
    assert sum(count for reason, count in prepared.skipped.items() if reason.startswith("validation: ")) == 2


def test_texts_sharing_a_stretch_with_a_validation_passage_are_found_whatever_their_spacing() -> None:
    """What keeps validation text out of training: a passage, a piece of one, or a chunk running across one, with
    other spacing; short texts compared whole; and nothing else."""
    from training.overlap import RUN, STEP, PassageOverlap

    rng = random.Random(5)
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 9))) for _ in range(300)]
    passage, other = (" ".join(rng.choice(words) for _ in range(400)) for _ in range(2))
    overlap = PassageOverlap([passage, "A short one.", ""])
    piece = passage[1000 : 1000 + RUN + STEP]
    assert overlap(passage) and overlap(piece) and overlap(piece.replace(" ", "\n  \t"))
    assert overlap(other[:500] + " " + piece + " " + other[500:1000])  # a chunk running across the passage
    assert overlap("A  short\none.") and not overlap("A short one, longer.") and not overlap("")
    assert not overlap(other) and not overlap(passage[1000 : 1000 + RUN - 1])
    assert not PassageOverlap([])(passage)


def test_passages_are_cut_to_what_the_model_reads_and_held_once(tmp_path: Path) -> None:
    """A 1 MB paragraph asked 50 questions was tokenised whole in every batch (4.5 GB, minutes a step) to read its
    first tokens; now each distinct passage is cut once to the tokens the model reads, however its text is spaced,
    and a JSONL file's repeated passage is one string."""
    from transformers import AutoTokenizer

    from training.pair_data import cut_to_model, readable_part

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)  # the packaged MiniLM
    rng = random.Random(2)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 9))) for _ in range(500)]
    long = " ".join(rng.choice(words) for _ in range(100_000))
    spaced = (" " * 5000).join(words[:300])  # far more characters a token than the first guess
    for text in (long, spaced, "x" * 300 + " tail " * 200):  # a 300-letter word is one [UNK] token
        part = readable_part(text, tokenizer, 64)
        whole = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer(part, add_special_tokens=False)["input_ids"][:64] == whole[:64] and len(part) < len(text)
    assert readable_part("A short passage.", tokenizer, 64) == "A short passage."
    pairs = [Pair(f"question {n}", long, "g", negatives=[spaced]) for n in range(3)]
    cut_to_model(pairs, tokenizer, 64)
    assert all(p.positive is pairs[0].positive and p.negatives[0] is pairs[0].negatives[0] for p in pairs)
    assert len(pairs[0].positive) < 1000

    rows = [{"query": f"question {n}", "positive": long[:10_000], "negatives": long[:5000]} for n in range(3)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(map(json.dumps, rows)), encoding="utf-8")
    read = jsonl_pairs(path).pairs
    assert len(read) == 3 and all(p.positive is read[0].positive and p.negatives[0] is read[0].negatives[0]
                                  for p in read)
