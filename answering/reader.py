"""The extractive reader: finds answer spans in retrieved passages and cites them to the character."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from answering.backends import Logits, chosen_backend, load_reader
from answering.loading import model_positions
from answering.merging import merge_answers
from answering.spans import Span, best_spans
from answering.threshold import card_stamp, model_threshold
from answering.windows import Windows, length_batches, make_windows, reader_window
from kb.config import Settings
from kb.encoders.factory import export_cache
from kb.language import question_language
from kb.types import Answer, Citation, Hit

# Spans read before merging, whatever the number of answers asked for (more only past five answers): an answer's
# score sums its readings among them, so a threshold tuned with one answer holds for ask's three.
CANDIDATE_SPANS = 50


class Readers:
    """One reader per model, chosen by the question's language (``reader_models_by_language``, else
    ``reader_model``); each loads its model on its first question."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._by_model: dict[str, ExtractiveReader] = {}

    def for_question(self, question: str) -> ExtractiveReader:
        language = question_language(question)
        name = self.settings.reader.models_by_language.get(language or "", self.settings.reader.model)
        if name not in self._by_model:
            self._by_model[name] = ExtractiveReader(self.settings, name)
        return self._by_model[name]


class Reading(BaseModel):
    """The reader's verdict on one question: answers above the threshold, best first, P(no answer), and the best
    answer's score and the threshold it was held to (so that an abstention can say which of the two won)."""

    answers: list[Answer]
    no_answer_score: float
    best_score: float | None = None
    threshold: float | None = None


class ExtractiveReader:
    """A transformers question-answering model reading passages in batched windows, its logits computed on
    ``reader_backend`` (torch, or the exported graph on ONNX Runtime or OpenVINO: see ``answering.backends``).

    The model loads on first use (:meth:`warm_up`); a model that cannot be had raises
    :class:`kb.encoders.ModelNotFoundError`. Work per question is bounded by ``reader_max_passages`` and
    ``reader_max_windows``.
    """

    def __init__(self, settings: Settings, model_name: str | None = None) -> None:
        self.settings = settings
        self.model_name = model_name or settings.reader.model
        self._logits_of: Logits | None = None
        self._tokenizer: Any = None
        self._threshold: tuple[tuple[int, int, int] | None, float] | None = None  # (card read, its threshold)
        self._window = (settings.reader.max_seq_length, settings.reader.stride)  # within the model's, once loaded
        self._lock = threading.Lock()

    @classmethod
    def on_logits(cls, settings: Settings, logits: Logits, tokenizer: Any) -> ExtractiveReader:
        """A reader of ``settings.reader.model`` whose logits ``logits`` computes (a graph being tried, say) instead
        of the model it would load."""
        reader = cls(settings)
        reader._logits_of, reader._tokenizer = logits, tokenizer
        return reader

    def warm_up(self) -> None:
        with self._lock:
            if self._logits_of is None:
                settings = self.settings
                self._logits_of, self._tokenizer = load_reader(
                    self.model_name, device=settings.device,
                    backend=chosen_backend(settings.reader.backend, settings.device, settings.reader.precision,
                                           self.model_name),
                    precision=settings.reader.precision, int8_float_layers=settings.reader.int8_float_layers,
                    cache=export_cache(settings))
                self._window = reader_window(settings, model_positions(self.model_name))

    @property
    def backend(self) -> str:
        """What computes the logits (``reader_backend`` made definite, after any fallback), once loaded."""
        self.warm_up()
        assert self._logits_of is not None
        return self._logits_of.backend

    @property
    def threshold(self) -> float:
        """The no-answer threshold: the ``reader_no_answer_threshold`` setting when given, else the one tuned for
        this model (its training card), else the default."""
        if self.settings.reader.no_answer_threshold is not None:
            return self.settings.reader.no_answer_threshold
        stamp = card_stamp(self.model_name)  # one stat: a long-running process sees a threshold tuned since
        if self._threshold is None or self._threshold[0] != stamp:
            self._threshold = (stamp, model_threshold(self.model_name))
        return self._threshold[1]

    def run(self, question: str, passages: Sequence[Hit], top_k: int = 3,
            threshold: float | None = None) -> Reading:
        """The ``top_k`` best answers to ``question`` in ``passages`` (ranked retrieval hits).

        Answers scoring below ``threshold`` (default: :attr:`threshold`) are dropped, and all are when "no answer"
        is more probable than the best answer.
        """
        threshold = self.threshold if threshold is None else threshold
        if not passages:
            return Reading(answers=[], no_answer_score=1.0)
        spans, null, windows = self.spans(question, passages, top=max(CANDIDATE_SPANS, 10 * top_k))
        candidates = [self._cite(span, windows, passages) for span in spans]
        answers = merge_answers([c for c in candidates if c[0]], top=top_k)
        best = answers[0].score if answers else None
        if answers and null > answers[0].score:
            answers = []
        return Reading(answers=[a for a in answers if a.score >= threshold], no_answer_score=null, best_score=best,
                       threshold=threshold)

    def spans(self, question: str, passages: Sequence[Hit], top: int) -> tuple[list[Span], float, Windows]:
        """The ``top`` most probable spans over the first ``reader_max_passages`` of (non-empty) ``passages``,
        P(no answer), and the windows the spans' token positions refer to."""
        self.warm_up()
        settings = self.settings
        texts = [hit.text for hit in passages[: settings.reader.max_passages]]
        max_length, stride = self._window
        windows = make_windows(self._tokenizer, question, texts, max_length=max_length, stride=stride,
                               max_windows=settings.reader.max_windows, input_names=set(self._logits_of.input_names))
        starts, ends = self._logits(windows)
        spans, null = best_spans(starts, ends, windows.context, windows.owned,
                                 max_answer_tokens=settings.reader.max_answer_tokens, top=top)
        return spans, null, windows

    def _logits(self, windows: Windows) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Start and end logits of every window, in batches of similar lengths (little padding)."""
        assert self._logits_of is not None
        starts: list[np.ndarray] = [np.empty(0)] * len(windows)
        ends: list[np.ndarray] = [np.empty(0)] * len(windows)
        lengths = [len(feature["input_ids"]) for feature in windows.features]
        for batch in length_batches(lengths, self.settings.reader.batch_size):
            inputs = self._tokenizer.pad([windows.features[w] for w in batch], return_tensors="np")
            start_logits, end_logits = self._logits_of({name: np.asarray(array, dtype=np.int64)
                                                        for name, array in inputs.items()})
            for row, window in enumerate(batch):
                length = len(windows.features[window]["input_ids"])
                starts[window] = start_logits[row, :length].astype(np.float64)
                ends[window] = end_logits[row, :length].astype(np.float64)
        return starts, ends

    @staticmethod
    def _cite(span: Span, windows: Windows, passages: Sequence[Hit]) -> tuple[str, Citation]:
        """The span's text and its citation, with offsets mapped from the passage into the document text.

        Whitespace at either end is left out: sentencepiece (Metaspace) tokenizers count the space before a word
        as part of its token."""
        hit = passages[int(windows.passage[span.window])]
        offsets = windows.offsets[span.window]
        first, last = offsets[span.start][0], offsets[span.end][1]
        text = hit.text[first:last]
        first += len(text) - len(text.lstrip())
        last = max(first, last - (len(text) - len(text.rstrip())))  # a span of whitespace only becomes empty
        text = hit.text[first:last]
        return text, Citation(path=hit.path, page=hit.page, start=hit.start + first, end=hit.start + last,
                              passage=hit.text, passage_start=hit.start, passage_end=hit.end, score=span.probability,
                              chunk_id=hit.chunk_id, document_id=hit.document_id, title=hit.title)
