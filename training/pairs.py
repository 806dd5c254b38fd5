"""(query, positive passage) pairs for the retriever and the reranker: from SQuAD files, from JSONL, or weak pairs
built from a knowledge base's own documents (``--from-kb``)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from answering.squad_metrics import normalize_answer
from kb.cards import DataFile
from kb.storage.store import StoredDocument
from training.files import data_file, read_jsonl
from training.kb_documents import named_documents
from training.split import held_out_groups
from training.squad_data import load_squad_files, paragraph_groups

LINE = re.compile(r"[^\n]+")
MIN_QUERY_CHARS = 3
MAX_HEADING_CHARS = 80
MAX_HEADING_WORDS = 12


@dataclass
class Pair:
    """A query and the passage that answers it; ``group`` keeps related pairs on one side of the validation split
    (an article, a document); ``answer`` (when known) marks passages that also answer it, so they are never used
    as negatives."""

    query: str
    positive: str
    group: str
    answer: str | None = None
    negatives: list[str] = field(default_factory=list)


@dataclass
class PairSet:
    pairs: list[Pair]
    files: list[DataFile]
    skipped: Counter[str] = field(default_factory=Counter)


def squad_pairs(paths: Sequence[Path]) -> PairSet:
    """Answerable SQuAD questions with their paragraph, grouped as the reader's split groups them (by article, or
    by paragraph in a single article); unanswerable ones are counted and left out."""
    squad, files = load_squad_files(paths)
    groups, _ = paragraph_groups(squad)
    pairs, skipped = [], Counter[str]()
    for question in squad.questions:
        context = squad.paragraphs[question.paragraph][1]
        if not question.answers:
            skipped["unanswerable question"] += 1
            continue
        if not question.question.strip() or not context.strip():  # no query to mine with, or a passage in all
            skipped["no question or context text"] += 1
            continue
        if not normalize_answer(question.answers[0]):  # "the", "...": found in every passage, no negative left
            skipped["answer empty once normalised (articles or punctuation only)"] += 1
            continue
        pairs.append(Pair(question.question, context, groups[question.paragraph], question.answers[0]))
    return PairSet(pairs, files, skipped)


def jsonl_pairs(path: Path) -> PairSet:
    """Lines ``{"query": ..., "positive": ..., "negatives": [...] (optional), "group": ... (optional)}``; lines that
    are not such objects are counted and left out."""
    pairs, passages = [], dict[str, str]()  # each distinct passage held once, however many lines repeat it
    read = read_jsonl(path)
    skipped = read.skipped
    for row in read.rows:
        query, positive = row.get("query"), row.get("positive")
        if not isinstance(query, str) or not isinstance(positive, str) or not query.strip() or not positive.strip():
            skipped["no query or positive text"] += 1
            continue
        negatives = row.get("negatives") if row.get("negatives") is not None else row.get("negative")
        negatives = [negatives] if isinstance(negatives, str) else negatives if negatives is not None else []
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            skipped["negatives not a text or a list of texts"] += 1
            continue
        positive = passages.setdefault(positive, positive)
        group = row.get("group")  # 0 is a group like any other
        pairs.append(Pair(query, positive, positive if group is None or group == "" else str(group),
                          negatives=[passages.setdefault(n, n) for n in negatives if n.strip()]))
    return PairSet(pairs, [data_file(path, read.sha256, len(pairs))], skipped)


def file_pairs(paths: Sequence[Path]) -> PairSet:
    """Pairs from every file: ``.jsonl`` files as JSONL, anything else as SQuAD."""
    sets = [jsonl_pairs(path) for path in paths if path.suffix.lower() == ".jsonl"]
    squad = [path for path in paths if path.suffix.lower() != ".jsonl"]
    if squad:
        sets.append(squad_pairs(squad))
    return PairSet([p for s in sets for p in s.pairs], [f for s in sets for f in s.files],
                   sum((s.skipped for s in sets), Counter()))


def headings(text: str) -> list[tuple[str, int]]:
    """Heading-like lines of an extracted text (loaders keep headings as lines of their own): short, no sentence
    punctuation at the end, followed by a longer line. Each with the offset where the text under it starts."""
    lines = [(match.group().strip(), match.end()) for match in LINE.finditer(text) if match.group().strip()]
    found = []
    for (line, end), (following, _) in pairwise(lines):
        if len(line) <= MAX_HEADING_CHARS and len(line.split()) <= MAX_HEADING_WORDS and \
                not line.endswith((".", "!", "?", ":", ";", ",", "。", "！", "？")) and len(following) > len(line):
            found.append((line, end))
    return found


def weak_pairs(documents: Iterable[StoredDocument]) -> PairSet:
    """Weak supervision from a knowledge base's own documents: a document's title as the query for its first
    passage, and each heading as the query for the passage that holds the text under it."""
    pairs, skipped = [], Counter[str]()
    for name, document in named_documents(documents):
        chunks = [chunk for chunk in document.chunks if chunk.text.strip()]
        if not chunks:
            continue
        queries: list[tuple[str, int]] = []
        if document.title:
            queries.append((document.title, chunks[0].start))
        queries += headings(document.text)
        seen = set()
        for query, position in queries:
            query = " ".join(query.split())
            if len(query) < MIN_QUERY_CHARS or query in seen:
                skipped["heading too short or repeated"] += 1
                continue
            seen.add(query)
            chunk = next((c for c in chunks if c.end > position), None)
            if chunk is None or chunk.text.strip() == query:
                skipped["heading without text under it"] += 1
                continue
            pairs.append(Pair(query, chunk.text, name))
    return PairSet(pairs, [], skipped)


def split_pairs(pairs: list[Pair], fraction: float, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """(train, validation): whole groups go to validation, in a seeded order, until it holds ``fraction`` of the
    pairs; at least one group stays for training."""
    held = held_out_groups((pair.group for pair in pairs), fraction, seed)
    return [p for p in pairs if p.group not in held], [p for p in pairs if p.group in held]
