"""``kb eval squad``: the reader on SQuAD v1.1/v2.0 files, on gold contexts or end to end over a corpus."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from answering.reader import ExtractiveReader, Readers
from answering.squad_metrics import best_scores
from answering.threshold import DEFAULT_UNANSWERABLE_SHARE, ScoredAnswer, record_threshold, tune_threshold
from kb.config import Settings
from kb.containment import read_named_file
from kb.errors import InvalidRequestError
from kb.text import NOT_TEXT, is_text
from kb.types import Hit

if TYPE_CHECKING:
    from kb.knowledge_base import KnowledgeBase

EvalMode = Literal["reader", "open"]
ASKED_PASSAGES = 5  # the passages ask reads by default (its k)


class SquadQuestion(BaseModel):
    """A question, its gold answers (empty: unanswerable) with their character offsets in the paragraph."""

    id: str
    question: str
    answers: list[str]
    answer_starts: list[int] = Field(default_factory=list)
    paragraph: int


class SquadSet(BaseModel):
    """A SQuAD file's paragraphs (title, context) and questions; ``version`` 2.0 when it has impossible ones;
    ``sha256`` the hash of the very bytes read (empty for a set made in memory), so a card names what was trained on
    even if the file changes after."""

    version: str
    paragraphs: list[tuple[str, str]]
    questions: list[SquadQuestion]
    sha256: str = ""


class SquadScores(BaseModel):
    """Exact match and F1 in percent, as the official script prints them; HasAns/NoAns only for SQuAD 2.0 files."""

    exact: float | None = None
    f1: float | None = None
    has_ans_exact: float | None = Field(default=None, serialization_alias="HasAns_exact")
    has_ans_f1: float | None = Field(default=None, serialization_alias="HasAns_f1")
    has_ans_total: int | None = Field(default=None, serialization_alias="HasAns_total")
    no_ans_exact: float | None = Field(default=None, serialization_alias="NoAns_exact")
    no_ans_f1: float | None = Field(default=None, serialization_alias="NoAns_f1")
    no_ans_total: int | None = Field(default=None, serialization_alias="NoAns_total")


class TunedThreshold(SquadScores):
    """The no-answer threshold that maximises F1 on the evaluated file, and the scores it gives."""

    threshold: float
    recorded_in: str | None = Field(default=None, description="the training card it was written to")


class SquadReport(SquadScores):
    """A ``kb eval squad`` run: what was evaluated, its scores, and every prediction."""

    file: str
    mode: EvalMode
    version: str
    reader_model: str
    questions: int
    k: int | None = None
    recall_at_k: float | None = Field(default=None, description="gold passage among the k retrieved (answerable)")
    seconds: float
    no_answer_threshold: float | None = None
    tuned: TunedThreshold | None = Field(default=None, description="scores at the threshold tuned on this file")
    message: str | None = None
    predictions: dict[str, str] = Field(default_factory=dict)

    def table(self) -> str:
        """The report as aligned ``name  value`` lines."""
        dumped = self.model_dump(by_alias=True, exclude={"predictions", "tuned"}, exclude_none=True)
        first = [name for name in ("file", "mode", "version", "reader_model", "questions", "k") if name in dumped]
        rows = {name: dumped[name] for name in first} | {k: v for k, v in dumped.items() if k not in first}
        if self.tuned is not None:
            tuned = self.tuned.model_dump(by_alias=True, exclude={"recorded_in"}, exclude_none=True)
            rows |= {f"tuned {name}": value for name, value in tuned.items()}
            rows["tuned threshold recorded in"] = self.tuned.recorded_in or "- (the reader is not a local folder)"
        rows = {("recall@k" if name == "recall_at_k" else name): value for name, value in rows.items()}
        width = max(len(name) for name in rows)
        return "\n".join(f"{name:<{width}}  {value:.2f}" if isinstance(value, float) else f"{name:<{width}}  {value}"
                         for name, value in rows.items())


def load_squad(path: Path, limit: int | None = None) -> SquadSet:
    """Every paragraph of a SQuAD-format JSON file and its questions (the first ``limit`` if given): in open mode
    the whole file is the corpus, however few questions are asked."""
    if limit is not None and limit < 1:
        raise InvalidRequestError("the number of questions (--limit) must be positive")
    try:  # a byte-order mark (Windows editors) is not JSON
        raw = read_named_file(path)
        data = json.loads(raw.decode("utf-8-sig"))
    except (OSError, ValueError, RecursionError) as error:  # not a regular file, too large, not UTF-8 or not JSON
        raise InvalidRequestError(f"{path}: not a readable SQuAD v1.1/v2.0 file ({type(error).__name__}: "
                                  f"{error})") from error
    if not is_text(data):
        raise InvalidRequestError(f"{path}: holds {NOT_TEXT}")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InvalidRequestError(f"{path} is not a SQuAD file: no top-level 'data' list of articles")
    paragraphs: list[tuple[str, str]] = []
    questions: list[SquadQuestion] = []
    impossible = False
    try:
        for article_number, article in enumerate(data["data"], 1):
            for paragraph_number, paragraph in enumerate(article["paragraphs"], 1):
                for qa in paragraph["qas"]:
                    impossible |= "is_impossible" in qa
                    gold = [] if _is_impossible(qa) else qa["answers"]
                    questions.append(SquadQuestion(id=str(qa["id"]), question=qa["question"],
                                                   answers=[a["text"] for a in gold],
                                                   answer_starts=[_answer_start(a) for a in gold],
                                                   paragraph=len(paragraphs)))
                where = f"article {article_number}"
                paragraphs.append((_text(article, "title", where, default=""),
                                   _text(paragraph, "context", f"{where} paragraph {paragraph_number}")))
    except (KeyError, TypeError, AttributeError, ValueError) as error:  # a field missing or of the wrong type
        raise InvalidRequestError(f"{path}: not a readable SQuAD v1.1/v2.0 file ({type(error).__name__}: "
                                  f"{error})") from error
    _refuse_repeated_ids(path, questions)
    return SquadSet(version="2.0" if impossible else "1.1", paragraphs=paragraphs,
                    questions=questions[:limit] if limit is not None else questions,
                    sha256=hashlib.sha256(raw).hexdigest())


def _answer_start(answer: dict[str, Any]) -> int:
    """An answer's character offset: a whole number (``true`` or ``2.7`` or infinity is refused, not rounded)."""
    value = answer.get("answer_start", -1)
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise TypeError(f"answer_start {value!r} is not a whole number")
    return int(value)


def _text(record: dict[str, Any], field: str, where: str, default: str | None = None) -> str:
    """``record[field]`` (``default`` when absent and one is given), refused unless a JSON string: a null or a
    number there would otherwise fail later with a validation error naming no file."""
    value = record[field] if default is None else record.get(field, default)
    if not isinstance(value, str):
        raise TypeError(f"{where} has a {field!r} that is {_json_kind(value)}, not a string")
    return value


def _is_impossible(qa: dict[str, Any]) -> bool:
    """Whether a question is unanswerable: ``is_impossible`` must be a JSON boolean (or absent), as a string
    such as "false" would be truthy and silently make an answerable question unanswerable."""
    value = qa.get("is_impossible", False)
    if not isinstance(value, bool):
        raise TypeError(f"question {qa.get('id')!r} has an 'is_impossible' that is {_json_kind(value)}, "
                        "not true or false")
    return value


def _json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's words (``null``, ``a number``), for messages."""
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return f"{kinds.get(type(value), type(value).__name__)} ({json.dumps(value)[:40]})"


def _refuse_repeated_ids(path: Path, questions: list[SquadQuestion]) -> None:
    """A file whose question ids repeat is refused: predictions and scores are keyed by id, so two questions
    sharing one would be scored against one prediction."""
    repeated = sorted(id_ for id_, count in Counter(q.id for q in questions).items() if count > 1)
    if repeated:
        shown = ", ".join(map(repr, repeated[:5])) + (", ..." if len(repeated) > 5 else "")
        raise InvalidRequestError(f"{path}: {len(repeated)} question ids used by more than one question ({shown}); "
                                  "give each question its own id")


def squad_scores(squad: SquadSet, predictions: dict[str, str]) -> dict[str, Any]:
    """Exact match and F1 in percent, overall and (SQuAD 2.0) for answerable and unanswerable questions."""
    def mean(values: list[float]) -> float | None:
        return 100.0 * sum(values) / len(values) if values else None

    scored = [(q, *best_scores(predictions[q.id], q.answers)) for q in squad.questions]
    result: dict[str, Any] = {"exact": mean([em for _, em, _ in scored]), "f1": mean([f1 for _, _, f1 in scored])}
    if squad.version == "2.0":
        has = [(em, f1) for q, em, f1 in scored if q.answers]
        no = [(em, f1) for q, em, f1 in scored if not q.answers]
        result |= {"has_ans_exact": mean([em for em, _ in has]), "has_ans_f1": mean([f1 for _, f1 in has]),
                   "has_ans_total": len(has), "no_ans_exact": mean([em for em, _ in no]),
                   "no_ans_f1": mean([f1 for _, f1 in no]), "no_ans_total": len(no)}
    return result


@contextmanager
def paragraphs_knowledge_base(squad: SquadSet, folder: Path,
                              overrides: dict[str, Any]) -> Iterator[tuple[KnowledgeBase, list[str]]]:
    """A knowledge base in ``folder`` holding each paragraph of ``squad`` as a file of its own, and each paragraph's
    file. It is always SQLite in ``folder``: a ``database_url`` the environment sets is never written to."""
    from kb.knowledge_base import KnowledgeBase  # the harness drives a whole knowledge base

    corpus = folder / "corpus"
    files = []
    for number, (title, context) in enumerate(squad.paragraphs):
        file = corpus / _slug(title) / f"{number:05d}.txt"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(context, encoding="utf-8")
        files.append(str(file.resolve()))
    with KnowledgeBase.open(folder / "kb", **{**overrides, "database_url": None}) as knowledge_base:
        knowledge_base.ingest(corpus)
        yield knowledge_base, files


def read_as_asked(squad: SquadSet, knowledge_base: KnowledgeBase,
                  k: int = ASKED_PASSAGES) -> dict[tuple[str, bool], tuple[ScoredAnswer, list[str]]]:
    """Each question read as ``ask`` reads it (the ``k`` passages the knowledge base retrieves, in one softmax),
    and each answerable one read again from the first ``k`` retrieved passages that hold none of its answers (as
    when the knowledge base does not hold it): the best answer at threshold 0 and the gold answers, by question id
    and whether read elsewhere (an id was once suffixed, and a question whose own id was "X-elsewhere" replaced X's
    read)."""
    reads: dict[tuple[str, bool], tuple[ScoredAnswer, list[str]]] = {}
    for question in squad.questions:
        reader = knowledge_base.readers.for_question(question.question)
        asked = {(question.id, False): (knowledge_base.search(question.question, k=k, modalities={"text"}),
                                        question.answers)}
        if question.answers:
            hits = knowledge_base.search(question.question, k=2 * k, modalities={"text"})
            lacking = [hit for hit in hits if not any(answer in hit.text for answer in question.answers)]
            if lacking:
                asked[(question.id, True)] = (lacking[:k], [])
        for read_id, (passages, golds) in asked.items():
            reading = reader.run(question.question, passages, top_k=1, threshold=0.0)
            best = reading.answers[0] if reading.answers else None
            reads[read_id] = (ScoredAnswer(text=best.text if best else "", score=best.score if best else 0.0), golds)
    return reads


def tune_as_asked(squad: SquadSet, settings: Settings,
                  unanswerable_share: float = DEFAULT_UNANSWERABLE_SHARE) -> float:
    """The no-answer threshold that maximises F1 over ``squad``'s questions read as ``ask`` reads them from a
    knowledge base of its paragraphs (see :func:`read_as_asked`), unanswerable ones weighing ``unanswerable_share``.
    Raises InvalidRequestError when there is no question, or no read is unanswerable: the threshold would never
    abstain."""
    if not squad.questions or not squad.paragraphs:
        raise InvalidRequestError("no question to tune the no-answer threshold on")
    with tempfile.TemporaryDirectory(prefix="kb-tune-") as tmp, \
            paragraphs_knowledge_base(squad, Path(tmp), settings.flat_dump()) as (knowledge_base, _):
        reads = list(read_as_asked(squad, knowledge_base).values())
    if all(golds for _, golds in reads):
        raise InvalidRequestError("no unanswerable question, nor a paragraph without a question's answer to ask it "
                                  "of: a threshold tuned on these would never abstain")
    if not any(golds for _, golds in reads):
        raise InvalidRequestError("no answerable question: a threshold tuned on these would always abstain")
    return tune_threshold([scored for scored, _ in reads], [golds for _, golds in reads], unanswerable_share)


def tuning_description(unanswerable_share: float) -> str:
    """How :func:`tune_as_asked` read the questions, for the training card."""
    return f"read as ask reads them ({ASKED_PASSAGES} retrieved passages; each answerable question also from " \
        f"{ASKED_PASSAGES} without its answer), unanswerable questions weighing {unanswerable_share:.0%}"


def read_scored(squad: SquadSet, readers: Readers) -> dict[str, ScoredAnswer]:
    """Each question read from its own gold paragraph at threshold 0: the best answer and its score (``""`` when
    the reader finds "no answer" more probable), so any threshold can be applied afterwards."""
    return {question.id: read_from_paragraph(readers.for_question(question.question), squad, question)
            for question in squad.questions}


def read_from_paragraph(reader: ExtractiveReader, squad: SquadSet, question: SquadQuestion) -> ScoredAnswer:
    """``question`` read from its own gold paragraph at threshold 0: the best answer and its score (``""`` when the
    reader finds "no answer" more probable)."""
    title, context = squad.paragraphs[question.paragraph]
    hit = Hit(path=f"{title}#{question.paragraph}", page=None, start=0, end=len(context), text=context,
              score=1.0, chunk_id=question.paragraph, document_id=question.paragraph, title=title)
    reading = reader.run(question.question, [hit], top_k=1, threshold=0.0)
    best = reading.answers[0] if reading.answers else None
    return ScoredAnswer(text=best.text if best else "", score=best.score if best else 0.0)


def at_threshold(scored: dict[str, ScoredAnswer], threshold: float) -> dict[str, str]:
    """The predictions when answers scoring below ``threshold`` are dropped."""
    return {qid: answer.text if answer.score >= threshold else "" for qid, answer in scored.items()}


def evaluate_reader(path: Path, settings: Settings, limit: int | None = None, tune: bool = False,
                    unanswerable_share: float = DEFAULT_UNANSWERABLE_SHARE) -> SquadReport:
    """Each question read from its own gold paragraph; the reader may abstain (empty prediction). Answers are
    dropped below the reader's threshold (the setting, else its model's training card, else the default); with
    ``tune`` a threshold is chosen too (:func:`tune_as_asked`), scored here, and recorded in the model's training
    card when the model is a local folder."""
    squad = load_squad(path, limit)
    started = time.perf_counter()
    readers = Readers(settings)
    # The reader of each question (reader_models_by_language may give Chinese questions another model), and so
    # its threshold and the card a tuned one belongs in.
    reader_of = {question.id: readers.for_question(question.question) for question in squad.questions}
    models = sorted({reader.model_name for reader in reader_of.values()}) or [settings.reader.model]
    if tune and len(models) > 1:
        raise InvalidRequestError(f"--tune-threshold: this file's questions are read by {len(models)} models "
                                  f"({', '.join(models)}); tune each on a file of its own language")
    scored = read_scored(squad, readers)
    thresholds = {reader.threshold for reader in reader_of.values()} or {readers.for_question("").threshold}
    predictions = {qid: answer.text if answer.score >= reader_of[qid].threshold else ""
                   for qid, answer in scored.items()}
    report = SquadReport(file=str(path), mode="reader", version=squad.version, reader_model=", ".join(models),
                         questions=len(squad.questions), seconds=time.perf_counter() - started,
                         no_answer_threshold=thresholds.pop() if len(thresholds) == 1 else None,
                         predictions=predictions, **squad_scores(squad, predictions))
    if tune:  # as kb train reader tunes: read as ask reads, from a knowledge base of the file's paragraphs
        try:
            tuned = tune_as_asked(squad, settings, unanswerable_share)
        except InvalidRequestError as error:
            raise InvalidRequestError(f"--tune-threshold: {path} has {error}") from None
        tuned_predictions = at_threshold(scored, tuned)
        report.tuned = TunedThreshold(threshold=tuned, recorded_in=record_threshold(
            models[0], tuned, f"{path}, {tuning_description(unanswerable_share)}"),
            **squad_scores(squad, tuned_predictions))
        report.predictions = tuned_predictions
    return report


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "untitled"


def evaluate_open(path: Path, overrides: dict[str, Any], k: int = 5, distractors: Path | None = None,
                  limit: int | None = None) -> SquadReport:
    """Every paragraph becomes a file of a temporary knowledge base (with ``distractors`` ingested too); each
    question is asked of it. Recall@k counts the answerable questions whose paragraph's file is retrieved;
    EM/F1 score the best answer (empty when the reader abstains). Without reader weights only recall is given.
    """
    squad = load_squad(path, limit)
    with tempfile.TemporaryDirectory(prefix="kb-eval-") as tmp, \
            paragraphs_knowledge_base(squad, Path(tmp), overrides) as (knowledge_base, files):
        if distractors is not None:
            knowledge_base.ingest(distractors)
        started = time.perf_counter()
        predictions: dict[str, str] = {}
        found: list[bool] = []
        message = None
        for question in squad.questions:
            result = knowledge_base.ask(question.question, k=k, top_k=1)
            if result.status == "reader_unavailable":
                message = result.message
            predictions[question.id] = result.answers[0].text if result.answers else ""
            if question.answers:
                found.append(any(hit.path == files[question.paragraph] for hit in result.evidence))
        seconds = time.perf_counter() - started
        model = knowledge_base.settings.reader.model
    scores = {} if message else squad_scores(squad, predictions)
    return SquadReport(file=str(path), mode="open", version=squad.version, reader_model=model,
                       questions=len(squad.questions), k=k, seconds=seconds, message=message,
                       recall_at_k=100.0 * sum(found) / len(found) if found else None,
                       predictions={} if message else predictions, **scores)


def evaluate(path: Path, mode: EvalMode, settings_overrides: dict[str, Any], k: int = 5,
             distractors: Path | None = None, limit: int | None = None, tune_threshold: bool = False,
             unanswerable_share: float = DEFAULT_UNANSWERABLE_SHARE) -> SquadReport:
    """Run ``mode`` on the SQuAD file at ``path``; in reader mode a missing reader raises ModelNotFoundError.
    ``tune_threshold`` (reader mode) also chooses the no-answer threshold on this file."""
    if mode == "reader":
        return evaluate_reader(path, Settings(**settings_overrides), limit, tune_threshold, unanswerable_share)
    if tune_threshold:
        raise InvalidRequestError("--tune-threshold needs --mode reader (each question on its own paragraph)")
    return evaluate_open(path, settings_overrides, k, distractors, limit)

