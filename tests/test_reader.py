"""The extractive reader: right answers with exact citations, merging, abstention, windows, and its failure path."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from answering.merging import merge_answers
from answering.spans import best_spans
from answering.windows import make_windows
from kb import KnowledgeBase
from kb.cli import main
from kb.config import Settings
from kb.errors import InvalidRequestError
from kb.types import Citation, Hit
from tests.documents import pdf_bytes
from tests.qa_model import FILLER, NAMES, fact, question, save_random_reader

OpenKB = Callable[..., KnowledgeBase]
FILLER_DOCS = {"weather.txt": " ".join(FILLER[:3]), "office.md": " ".join(FILLER[3:6]),
               "travel.txt": " ".join(FILLER[6:])}


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def document_text(knowledge_base: KnowledgeBase, document_id: int) -> str:
    from kb.storage.models import Document

    with knowledge_base.store.sessions() as session:
        return session.get(Document, document_id).text


def test_ask_answers_with_exact_citation(kb_factory: OpenKB, tiny_reader: Path, tmp_path: Path) -> None:
    pdf = pdf_bytes([[FILLER[0], FILLER[1]], [FILLER[2], fact("alice", 4821), FILLER[3]]])
    docs = write(tmp_path / "docs", {**FILLER_DOCS, "codes/alice.pdf": pdf})
    knowledge_base = kb_factory(reader_model=str(tiny_reader))
    knowledge_base.ingest(docs)

    answers = knowledge_base.ask(question("alice"), k=4)
    assert answers.status == "answered" and len(answers) >= 1 and answers.evidence
    best = answers[0]
    assert best.text == "4821" and 0.5 < best.score <= 1 and best.images == []
    source = best.sources[0]
    assert source.path.endswith("codes/alice.pdf") and source.page == 2
    assert document_text(knowledge_base, source.document_id)[source.start : source.end] == "4821"
    assert source.passage[source.start - source.passage_start : source.end - source.passage_start] == "4821"
    assert ">>>4821<<<" in source.highlighted()
    assert [a.text for a in answers] == [a.text for a in answers.answers]
    # Scores are normalised over every passage read: reading more passages without the answer barely moves them.
    assert knowledge_base.ask(question("alice"), k=1)[0].score == pytest.approx(best.score, abs=0.1)
    json.loads(answers.model_dump_json())


def test_same_answer_in_two_documents_is_merged(kb_factory: OpenKB, tiny_reader: Path, tmp_path: Path) -> None:
    sentence = f"{FILLER[0]} {fact('bruno', 7310)}"
    docs = write(tmp_path / "docs", {**FILLER_DOCS, "a.txt": sentence, "b/copy.txt": f"{FILLER[4]} {sentence}"})
    knowledge_base = kb_factory(reader_model=str(tiny_reader))
    knowledge_base.ingest(docs)
    answers = knowledge_base.ask(question("bruno"), k=5)
    assert answers[0].text == "7310"
    assert sorted(Path(s.path).name for s in answers[0].sources) == ["a.txt", "copy.txt"]
    assert answers[0].score >= sum(s.score for s in answers[0].sources) - 1e-9
    assert all(a.text != "7310" for a in answers.answers[1:])
    for source in answers[0].sources:
        assert document_text(knowledge_base, source.document_id)[source.start : source.end] == "7310"


def test_abstains_without_answer_and_below_threshold(kb_factory: OpenKB, tiny_reader: Path, tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", {**FILLER_DOCS, "codes.txt": fact("chen", 5150)})
    knowledge_base = kb_factory(reader_model=str(tiny_reader))
    knowledge_base.ingest(docs)
    # Only filler passages: the reader's no-answer output wins.
    none = knowledge_base.ask(question("zoe"), k=3, filters={"path_glob": ["weather.txt", "office.md", "travel.txt"]})
    assert none.status == "no_answer" and len(none) == 0 and not none and none.evidence
    assert none.no_answer_score is not None and none.no_answer_score > 0.5
    answered = knowledge_base.ask(question("chen"), k=4)
    score = answered[0].score
    assert answered[0].text == "5150" and score < 1.0
    # A threshold above the best score makes any reader abstain, even one that never predicts "no answer".
    above = knowledge_base.ask(question("chen"), k=4, threshold=(score + 1.0) / 2)
    assert above.status == "no_answer" and not above.answers and above.evidence
    for top_k in (0, -1):  # no answers asked for is a mistake, not "the knowledge base holds no answer"
        with pytest.raises(InvalidRequestError, match="must be between 1 and"):
            knowledge_base.ask(question("chen"), top_k=top_k)


def test_reader_unavailable_still_returns_ranked_evidence(kb_factory: OpenKB, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-reader"
    docs = write(tmp_path / "docs", {**FILLER_DOCS, "codes.txt": fact("chen", 5150)})
    knowledge_base = kb_factory(reader_model=str(missing))
    knowledge_base.ingest(docs)
    result = knowledge_base.ask(question("chen"), k=3)
    assert result.status == "reader_unavailable" and len(result) == 0
    assert str(missing) in result.message and "KB_READER_MODEL" in result.message and "\n" not in result.message
    scores = [hit.score for hit in result.evidence]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("card", ['{"kind": "reader",', "[1]",
                                  '{"kind": "reader", "base_model": "x", "no_answer_threshold": 7}',
                                  '{"kind": "reader", "base_model": "x", "no_answer_threshold": NaN}'])
def test_a_reader_whose_training_card_is_not_one_is_unavailable_saying_which_file(
        kb_factory: OpenKB, tiny_reader: Path, tmp_path: Path, card: str) -> None:
    """A card cut short was a JSONDecodeError from deep inside ask; a threshold of 7 or NaN (the setting refuses
    both) made the reader answer nothing, silently."""
    reader = shutil.copytree(tiny_reader, tmp_path / "reader")
    (reader / "training.json").write_text(card, encoding="utf-8")
    docs = write(tmp_path / "docs", {**FILLER_DOCS, "codes.txt": fact("chen", 5150)})
    knowledge_base = kb_factory(reader_model=str(reader))
    knowledge_base.ingest(docs)
    result = knowledge_base.ask(question("chen"), k=3)
    assert result.status == "reader_unavailable" and len(result.evidence) == 3
    assert f"{reader / 'training.json'} is not a training card" in result.message and "\n" not in result.message


def test_a_reader_whose_tokenizer_outgrew_its_model_is_unavailable(kb_factory: OpenKB, tiny_reader: Path,
                                                                   tmp_path: Path) -> None:
    """A token added to the tokenizer without resizing the model: any text holding it was an IndexError from torch
    (and garbage from OpenVINO)."""
    from transformers import AutoTokenizer

    reader = shutil.copytree(tiny_reader, tmp_path / "reader")
    tokenizer = AutoTokenizer.from_pretrained(str(reader), local_files_only=True)
    tokenizer.add_tokens(["zzqx"])
    tokenizer.save_pretrained(str(reader))
    knowledge_base = kb_factory(reader_model=str(reader))
    knowledge_base.ingest(write(tmp_path / "docs", {**FILLER_DOCS, "codes.txt": fact("chen", 5150)}))
    result = knowledge_base.ask("What is the code of zzqx?", k=3)
    assert result.status == "reader_unavailable" and "token ids reach" in result.message


def test_long_passage_is_read_in_overlapping_windows(tiny_reader: Path) -> None:
    from transformers import AutoTokenizer

    from answering.reader import ExtractiveReader
    from kb.types import Hit

    passage = " ".join(FILLER * 4) + " " + fact("dmitri", 2718) + " " + " ".join(FILLER)
    settings = Settings(reader_model=str(tiny_reader), device="cpu", reader_max_seq_length=64, reader_stride=16)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_reader), local_files_only=True)
    windows = make_windows(tokenizer, question("dmitri"), [passage, FILLER[0]], max_length=64, stride=16,
                           max_windows=100, input_names={"input_ids", "attention_mask"})
    assert len(windows) > 4 and set(windows.passage.tolist()) == {0, 1}
    owned = [windows.offsets[w][t] for w in np.flatnonzero(windows.passage == 0)
             for t in np.flatnonzero(windows.owned[w])]
    covered = {windows.offsets[w][t] for w in np.flatnonzero(windows.passage == 0)
               for t in np.flatnonzero(windows.context[w])}
    assert len(owned) == len(set(owned)) and set(owned) == covered  # every token owned by exactly one window
    hit = Hit(path="long.txt", page=None, start=100, end=100 + len(passage), text=passage, score=1.0, chunk_id=1,
              document_id=1)
    reading = ExtractiveReader(settings).run(question("dmitri"), [hit])
    assert reading.answers[0].text == "2718" and reading.answers[0].sources[0].start == 100 + passage.index("2718")
    # Bounded work: with one window only, the answer near the end is never read.
    bounded = ExtractiveReader(settings.model_copy(update={"reader_max_windows": 1}))
    assert all(a.text != "2718" for a in bounded.run(question("dmitri"), [hit]).answers)


def test_a_reader_of_fewer_positions_than_the_window_reads_within_them(tiny_reader: Path, tmp_path: Path) -> None:
    """A model of 128 positions under the default windows of 384 failed at the first long passage ("The size of
    tensor a (210) must match ... (128)"): the window is cut to the model's, sharing proportionally fewer tokens."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    from answering.reader import ExtractiveReader
    from kb.types import Hit

    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_reader), local_files_only=True)
    positions = model.bert.embeddings.position_embeddings
    short = torch.nn.Embedding(128, positions.embedding_dim)
    short.weight.data = positions.weight.data[:128].clone()
    model.bert.embeddings.position_embeddings, model.config.max_position_embeddings = short, 128
    folder = shutil.copytree(tiny_reader, tmp_path / "short")
    model.save_pretrained(str(folder))
    assert json.loads((folder / "config.json").read_text())["max_position_embeddings"] == 128
    passage = " ".join(FILLER * 4) + " " + fact("dmitri", 2718) + " " + " ".join(FILLER)
    hit = Hit(path="long.txt", page=None, start=0, end=len(passage), text=passage, score=1.0, chunk_id=1,
              document_id=1)
    reader = ExtractiveReader(Settings(reader_model=str(folder), device="cpu", reader_backend="torch"))
    assert reader.run(question("dmitri"), [hit]).answers[0].text == "2718"
    assert reader._window == (128, 128 * 128 // 384)


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_reduced_precision_gives_the_float32_answers(tiny_reader: Path, precision: str) -> None:
    from answering.reader import ExtractiveReader
    from kb.types import Hit

    settings = Settings(reader_model=str(tiny_reader), device="cpu")
    exact = ExtractiveReader(settings)
    reduced = ExtractiveReader(settings.model_copy(update={"reader_precision": precision}))
    for name, code in (("elena", 9012), ("greta", 3141)):
        texts = [FILLER[6], f"{FILLER[1]} {fact(name, code)} {FILLER[2]}", " ".join(FILLER[3:5])]
        hits = [Hit(path=f"{i}.txt", page=None, start=0, end=len(t), text=t, score=1.0, chunk_id=i, document_id=i)
                for i, t in enumerate(texts)]
        expected = exact.run(question(name), hits, threshold=0.0)
        reading = reduced.run(question(name), hits, threshold=0.0)
        assert reading.answers[0].text == expected.answers[0].text == str(code)
        assert reading.answers[0].score == pytest.approx(expected.answers[0].score, abs=0.05)
        assert reading.no_answer_score == pytest.approx(expected.no_answer_score, abs=0.05)


def test_an_answers_score_does_not_depend_on_how_many_answers_are_asked_for(tmp_path: Path) -> None:
    """Thresholds are tuned with one answer (``kb eval squad``) and used with ``ask``'s three: the best answer must
    score the same. A random reader with sharp logits spreads probability over many overlapping spans."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    from answering.reader import ExtractiveReader
    from kb.types import Hit
    from tests.conftest import minilm_path

    torch.manual_seed(1)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    model = BertForQuestionAnswering(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                                num_attention_heads=2, intermediate_size=64))
    with torch.no_grad():
        model.qa_outputs.weight.mul_(30)
    model.save_pretrained(tmp_path / "reader")
    tokenizer.save_pretrained(tmp_path / "reader")
    reader = ExtractiveReader(Settings(reader_model=str(tmp_path / "reader"), reader_backend="torch", device="cpu"))
    text = "Northwind Tools Returns Policy. Customers have 30 days from the date of delivery to return an item. " * 3
    hits = [Hit(path="a.txt", page=1, start=100, end=100 + len(text), text=text, score=1.0, chunk_id=1, document_id=1)]
    readings = [reader.run("How many days to return an item?", hits, top_k=top_k, threshold=0.0) for top_k in (1, 3, 5)]
    assert len({reading.answers[0].text for reading in readings}) == 1
    assert readings[0].answers[0].score == pytest.approx(readings[1].answers[0].score, abs=1e-6)
    assert readings[0].answers[0].score == pytest.approx(readings[2].answers[0].score, abs=1e-6)


def test_reader_precision_is_a_machine_setting(tmp_path: Path) -> None:
    from kb.config import load_settings, save_settings

    assert Settings(reader_quantize=True).reader.precision == "int8"  # the older spelling still works
    with pytest.raises(ValueError, match="reader_quantize"):
        Settings(reader_quantize=True, reader_precision="bfloat16")
    save_settings(tmp_path, Settings(reader_precision="bfloat16"))
    assert "reader_precision" not in json.loads((tmp_path / "kb.json").read_text())
    assert load_settings(tmp_path, {}).reader.precision == "float32"


def test_a_long_passage_or_question_is_cut_only_past_what_its_windows_read(tiny_reader: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Cutting a passage where no window reaches, and a question a little past its limit, leaves every window as
    it was; only the cut text is tokenised (a 20 MB paragraph was tokenised whole for each question)."""
    from transformers import AutoTokenizer

    import answering.windows

    class Counting:  # the tokenizer, counting the characters it is given
        def __init__(self, tokenizer: Any) -> None:
            self.tokenizer, self.characters = tokenizer, 0

        def __call__(self, *texts: Any, **options: Any) -> Any:
            self.characters += sum(len(text) if isinstance(text, str) else sum(map(len, text)) for text in texts)
            return self.tokenizer(*texts, **options)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.tokenizer, name)

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_reader), local_files_only=True)
    passage = " ".join(f"{fact(name, 1000 + n)} {FILLER[n % len(FILLER)]}" for n, name in enumerate(NAMES * 4))
    asked = " ".join(question(name) for name in NAMES)  # longer than a window's question part

    def windows(text: str, counting: Counting | None = None) -> Any:
        return make_windows(counting or tokenizer, asked, [text, FILLER[0]], max_length=64, stride=16, max_windows=3,
                            input_names={"input_ids", "attention_mask"})

    cut = windows(passage)
    assert len(answering.windows.token_prefix(tokenizer, passage, 3 * (64 - 16) + 16)) < len(passage) // 3
    monkeypatch.setattr(answering.windows, "token_prefix", lambda tokenizer, text, tokens: text)
    whole = windows(passage)
    assert len(cut) == 3 and cut.features == whole.features and cut.offsets == whole.offsets
    assert all((a == b).all() for a, b in zip(cut.owned, whole.owned))
    monkeypatch.undo()
    counting = Counting(tokenizer)
    huge = windows(passage * 20_000, counting)  # 5 MB
    assert huge.features == cut.features and counting.characters < 50_000
    for length, most in ((2_000_000, 100_000), (60_000, 60_000)):  # characters that make no token at all were
        invisible = Counting(tokenizer)  # tokenised to the end: 20 million took 4.3 GB
        windows("\u200b" * length + passage, invisible)
        assert invisible.characters < most, length


def test_span_probabilities_are_shared_across_windows() -> None:
    context = [np.array([False, True, True, True])] * 2
    starts = [np.array([0.0, 5.0, 0.0, 0.0]), np.array([0.0, 5.0, 0.0, 0.0])]
    ends = [np.array([0.0, 0.0, 5.0, 0.0]), np.array([0.0, 0.0, 5.0, 0.0])]
    spans, null = best_spans(starts, ends, context, context, max_answer_tokens=2, top=100)
    total = sum(span.probability for span in spans) + null
    assert total == pytest.approx(1.0)  # every valid span of both windows, plus no answer
    assert spans[0].probability == pytest.approx(spans[1].probability)  # equal logits, equal scores
    assert {(s.window, s.start, s.end) for s in spans[:2]} == {(0, 1, 2), (1, 1, 2)}
    assert all(s.end - s.start < 2 for s in spans)
    # A broken model's NaN logits: its spans scored NaN, which every comparison took as certain (probability 1.0).
    broken = [np.array([0.0, np.nan, 0.0, 0.0])] * 2
    spans, null = best_spans(broken, ends, context, context, max_answer_tokens=2, top=100)
    assert all(span.start != 1 and 0 <= span.probability < 1 for span in spans)
    assert best_spans([np.full(4, np.nan)] * 2, ends, context, context, max_answer_tokens=2, top=100) == ([], 1.0)


def test_control_token_text_is_read_as_words_and_a_long_question_is_cut(tiny_reader: Path) -> None:
    """"[CLS]" written in a document must not become the model's no-answer token (its score would be an answer);
    a question longer than a window leaves the passage more than the stride."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_reader), local_files_only=True)
    windows = make_windows(tokenizer, "what is [SEP] here? " * 200, ["the list starts with the [CLS] marker. " + " ".join(FILLER)],
                           max_length=64, stride=16, max_windows=10, input_names={"input_ids"})
    ids = windows.features[0]["input_ids"]
    assert ids.count(tokenizer.cls_token_id) == 1 and ids.count(tokenizer.sep_token_id) == 2 and len(ids) <= 64
    assert sum(windows.context[0]) > 16  # more than the stride of passage beside the cut question


def test_merge_answers_sums_same_and_overlapping_readings() -> None:
    documents = {1: "Founded in 1138 by the river Elbe.", 2: "Year: The 1138. Done"}

    def cite(document: int, start: int, end: int, score: float) -> tuple[str, Citation]:
        text = documents[document]
        return text[start:end], Citation(path=f"d{document}", page=None, start=start, end=end, passage=text,
                                         passage_start=0, passage_end=len(text), score=score, chunk_id=document,
                                         document_id=document)

    answers = merge_answers([cite(1, 11, 15, 0.4), cite(1, 8, 15, 0.1), cite(2, 6, 15, 0.2), cite(1, 11, 15, 0.05),
                             cite(1, 23, 33, 0.3)], top=5)
    assert [(a.text, round(a.score, 2)) for a in answers] == [("1138", 0.75), ("river Elbe", 0.3)]
    assert [(s.document_id, s.start) for s in answers[0].sources] == [(1, 11), (2, 6)]
    assert [s.text for s in answers[0].sources] == ["1138", "The 1138."]  # each source in its own wording
    assert answers[0].sources[1].model_dump()["text"] == "The 1138."
    documents.update({3: "校长是蔡元培。", 4: "蔡元培。"})  # full-width punctuation, as "The 1138." has ASCII
    answers = merge_answers([cite(3, 3, 6, 0.4), cite(4, 0, 4, 0.35)], top=5)
    assert [(a.text, round(a.score, 2)) for a in answers] == [("蔡元培", 0.75)]


def test_cli_ask(tiny_reader: Path, tiny_text_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KB_TEXT_MODEL", str(tiny_text_model))
    monkeypatch.setenv("KB_DEVICE", "cpu")
    monkeypatch.setenv("KB_READER_MODEL", str(tiny_reader))
    docs = write(tmp_path / "docs", {**FILLER_DOCS, "codes.txt": f"{FILLER[0]} {fact('farid', 6060)}"})
    home = str(tmp_path / "kb")
    assert main(["--kb", home, "ingest", str(docs)]) == 0
    capsys.readouterr()
    assert main(["--kb", home, "ask", question("farid"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "answered" and result["answers"][0]["text"] == "6060"
    assert result["answers"][0]["sources"][0]["path"].endswith("codes.txt") and result["evidence"]
    assert main(["--kb", home, "ask", question("farid"), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("answer: 6060") and ">>>6060<<<" in out and "codes.txt" in out

    monkeypatch.setenv("KB_READER_MODEL", str(tmp_path / "absent"))
    assert main(["--kb", home, "ask", question("farid"), "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("no answer:") and "KB_READER_MODEL" in lines[0] and lines[1].startswith("1. ")


def test_length_batches_avoid_padding() -> None:
    from answering.windows import length_batches

    batches = length_batches([300, 100, 102, 98, 305, 50], max_size=16)
    assert batches == [[5], [3, 1, 2], [0, 4]]
    assert length_batches([100] * 5, max_size=2) == [[0, 1], [2, 3], [4]]


def hits(*texts: str) -> list[Hit]:
    """``texts`` as retrieval hits of their own documents, each starting at character 10 of its document."""
    return [Hit(path=f"{i}.txt", page=None, start=10, end=10 + len(text), text=text, score=1.0, chunk_id=i,
                document_id=i) for i, text in enumerate(texts)]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_reader_is_fed_only_the_inputs_its_tokenizer_makes(tmp_path: Path, backend: str) -> None:
    """RoBERTa's and XLM-R's forward takes ``token_type_ids``, their tokenizers make none: asking for them failed
    every question with a KeyError."""
    from transformers import AutoTokenizer

    from answering.reader import ExtractiveReader
    from tests.conftest import minilm_path, needs_backend

    if backend != "torch":
        needs_backend(backend)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True,
                                              model_input_names=["input_ids", "attention_mask"])
    folder = save_random_reader(tmp_path / "reader", tokenizer, architecture="roberta")
    reader = ExtractiveReader(Settings(reader_model=str(folder), reader_backend=backend, device="cpu",
                                       model_cache=str(tmp_path / "cache")))
    passage = f"{FILLER[0]} {fact('ines', 8080)}"
    reading = reader.run(question("ines"), hits(passage), threshold=0.0)
    assert reading.answers and all(a.text == passage[a.sources[0].start - 10 : a.sources[0].end - 10]
                                   for a in reading.answers)
    windows = reader.spans(question("ines"), hits(passage), top=1)[2]
    assert set(windows.features[0]) == {"input_ids", "attention_mask"}


@pytest.mark.parametrize("broken", ["no tokenizer files", "no question-answering head", "truncated weights"])
def test_a_reader_that_cannot_read_is_refused_and_ask_still_returns_evidence(
        kb_factory: OpenKB, tiny_reader: Path, tmp_path: Path, broken: str) -> None:
    """Each of these loaded (and read nonsense: a five-token vocabulary, a random answer head) or made ``ask``
    raise the library's own error; now ``ask`` says why in its one-line message and returns its evidence."""
    from tests.conftest import minilm_path

    folder = tmp_path / "reader"
    if broken == "no question-answering head":  # a sentence-transformers model: BERT weights, no answer head
        folder, expected = minilm_path(), "not a question-answering model: its weights lack qa_outputs"
    else:
        folder.mkdir()
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            if broken == "truncated weights" or not name.startswith("tokenizer"):
                shutil.copy(tiny_reader / name, folder / name)
        if broken == "truncated weights":  # an interrupted copy
            weights = folder / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:1000])
        expected = "has no tokenizer files" if broken == "no tokenizer files" else "deserializing header"
    docs = write(tmp_path / "docs", {**FILLER_DOCS, "codes.txt": fact("chen", 5150)})
    knowledge_base = kb_factory(reader_model=str(folder))
    knowledge_base.ingest(docs)
    result = knowledge_base.ask(question("chen"), k=3)
    assert result.status == "reader_unavailable" and not result.answers and len(result.evidence) == 3
    assert expected in result.message and str(folder) in result.message and "\n" not in result.message
    if broken == "no question-answering head":
        assert "kb train reader" in result.message


def test_left_padding_tokenizer_reads_as_right_padding(tiny_reader: Path, tmp_path: Path) -> None:
    """Windows of different lengths are padded into one batch and each window's logits are its first tokens: a
    tokenizer saved with ``padding_side="left"`` shifted the shorter window's logits onto its padding."""
    from answering.reader import ExtractiveReader

    left = shutil.copytree(tiny_reader, tmp_path / "left")
    config = json.loads((left / "tokenizer_config.json").read_text())
    (left / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
    passage = f"{FILLER[0]} {fact('jonas', 4242)}"
    passages = hits(passage, f"Yes. {passage}")  # two tokens longer: one batch (length_batches), one padded
    readings = [ExtractiveReader(Settings(reader_model=str(folder), reader_backend="torch", device="cpu"))
                .run(question("jonas"), passages, threshold=0.0) for folder in (tiny_reader, left)]
    assert [a.text for a in readings[1].answers] == [a.text for a in readings[0].answers]
    assert [a.score for a in readings[1].answers] == pytest.approx([a.score for a in readings[0].answers], abs=1e-6)
    assert [len(a.sources) for a in readings[1].answers] == [len(a.sources) for a in readings[0].answers]


def test_answers_and_citations_leave_out_the_space_a_sentencepiece_token_holds(tmp_path: Path) -> None:
    """Metaspace tokenizers (ALBERT, XLM-R, DeBERTa-v3) give a word's token the space before it: answers and their
    cited characters began with that space."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from answering.reader import ExtractiveReader

    corpus = [fact(name, 1000 + number) for number, name in enumerate(NAMES)] + FILLER + [question("kofi")]
    model = Tokenizer(models.BPE(unk_token="<unk>"))
    model.pre_tokenizer, model.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    model.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "[CLS]", "[SEP]",
                                                                                          "<pad>"]))
    model.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, unk_token="<unk>", cls_token="[CLS]",
                                        sep_token="[SEP]", pad_token="<pad>",
                                        model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    folder = save_random_reader(tmp_path / "reader", tokenizer)
    passage = f"{FILLER[2]} {fact('kofi', 1234)} {FILLER[4]}"
    reading = ExtractiveReader(Settings(reader_model=str(folder), reader_backend="torch", device="cpu")).run(
        question("kofi"), hits(passage), top_k=10, threshold=0.0)
    assert any(answer.sources[0].start > 10 for answer in reading.answers)  # one after a space, not at the start
    for answer in reading.answers:
        source = answer.sources[0]
        assert answer.text == answer.text.strip() == source.text
        assert passage[source.start - 10 : source.end - 10] == source.text


def readings(*texts_and_scores: tuple[str, float]) -> list[tuple[str, Citation]]:
    """Candidate answers, each read alone in a document of its own."""
    return [(text, Citation(path=f"d{number}", page=None, start=0, end=len(text), passage=text, passage_start=0,
                            passage_end=len(text), score=score, chunk_id=number, document_id=number))
            for number, (text, score) in enumerate(texts_and_scores)]


def test_answers_differing_in_a_sign_or_inner_punctuation_are_not_merged() -> None:
    """SQuAD's normalisation drops every punctuation mark: "-5" and "5", "3.5" and "35", "C++" and "C" became one
    answer with both scores and sources that disagree with its text."""
    for first, second in [("-5 degrees", "5 degrees"), ("3.5 million", "35 million"), ("C++", "C"), ("50%", "50")]:
        answers = merge_answers(readings((first, 0.4), (second, 0.3)), top=5)
        assert [(a.text, a.score) for a in answers] == [(first, 0.4), (second, 0.3)]
    # "5 degrees" read inside "-5 degrees" is that answer with other bounds, not a source of the other "5 degrees".
    minus, plus = readings(("-5 degrees", 0.3), ("5 degrees", 0.5))
    inside = ("5 degrees", minus[1].model_copy(update={"start": 1, "score": 0.1}))
    answers = merge_answers([minus, plus, inside], top=5)
    assert [(a.text, round(a.score, 2), [s.document_id for s in a.sources]) for a in answers] == [
        ("5 degrees", 0.5, [1]), ("-5 degrees", 0.4, [0])]
    # Case, punctuation and quotes at the ends, a leading article and runs of spaces still do not matter.
    answers = merge_answers(readings(("Marxville", 0.4), ("marxville.", 0.2), ("“The  Marxville”", 0.1)), top=5)
    assert [(a.text, round(a.score, 2), len(a.sources)) for a in answers] == [("Marxville", 0.7, 3)]


def test_a_reader_in_a_local_folder_loads_without_probing_the_network(tiny_reader: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline without ``HF_HUB_OFFLINE``, a probe of the hub can wait seconds for a firewall: a reader named by its
    folder must never make one."""
    from answering import loading

    def probe() -> bool:
        raise AssertionError("the hub was probed for a local folder")

    monkeypatch.setattr(loading, "hub_reachable", probe)
    model, tokenizer = loading.load_question_answering(str(tiny_reader), device="cpu")
    assert tokenizer.is_fast and model.training is False
