"""Hard negatives mined from a knowledge base: passages that BM25 or the dense space rank high for a question but
that are not its gold passage (nor a piece of it, nor a passage holding its answer)."""

from __future__ import annotations

import functools
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from answering.squad_metrics import normalize_answer
from kb.arguments import whole_number
from kb.language import HAN
from training.pairs import Pair

MINING_DEPTH = 10  # hits of each kind looked at per question
MAX_HARD_NEGATIVES = 2 * MINING_DEPTH  # per question: no more can be mined from its two searches


def checked_negatives(count: int, least: int) -> int:
    """``count`` hard negatives per question when it is a whole number from ``least`` to ``MAX_HARD_NEGATIVES``."""
    return whole_number(count, "hard negatives per question (--hard-negatives)", MAX_HARD_NEGATIVES, least=least)


@functools.lru_cache(maxsize=64)
def _squash(text: str) -> str:
    """``text`` with its runs of white space as one space; remembered, as a positive is compared with every hit of
    every question on its paragraph (a 20 MB one took 0.3 s a comparison)."""
    return " ".join(text.split())


def is_gold(passage: str, pair: Pair) -> bool:
    """The passage is the pair's positive, a piece of it or holds it, or contains the pair's answer: not a negative."""
    passage, positive = _squash(passage), _squash(pair.positive)
    if passage in positive or positive in passage:
        return True
    return bool(pair.answer) and holds_answer(passage, pair.answer)


def holds_answer(passage: str, answer: str) -> bool:
    """``passage`` contains ``answer`` (both normalised as SQuAD scores them) as whole words, so "1" is not found in
    "2019"; in Chinese, which has no spaces, character by character. An answer empty once normalised is in none."""
    wanted, text = normalize_answer(answer), normalize_answer(passage)
    if not wanted:
        return False
    return wanted in text if HAN.search(wanted) else f" {wanted} " in f" {text} "


def mine_negatives(pairs: Sequence[Pair], knowledge_base: Any, per_query: int,
                   excluded: Callable[[str], bool] | None = None) -> Counter[str]:
    """Give each pair up to ``per_query`` hard negatives, alternating BM25 and dense neighbours from
    ``knowledge_base`` (a :class:`kb.KnowledgeBase`), none of them ``excluded``; returns how many came from each
    kind."""
    found: Counter[str] = Counter()
    if per_query <= 0:
        return found
    # Two searches per question: minutes for thousands of questions, so a bar like the training's.
    for pair in tqdm(pairs, desc="mining negatives", unit="question", file=sys.stderr,
                     mininterval=1.0 if sys.stderr.isatty() else 30.0):
        ranked = {mode: knowledge_base.search(pair.query, k=MINING_DEPTH, mode=mode, modalities={"text"})
                  for mode in ("keyword", "dense")}
        chosen: list[str] = list(pair.negatives)
        for rank in range(MINING_DEPTH):
            for mode, hits in ranked.items():
                if len(chosen) >= per_query + len(pair.negatives) or rank >= len(hits):
                    continue
                text = hits[rank].text
                if text.strip() and text not in chosen and not is_gold(text, pair) and \
                        not (excluded and excluded(text)):
                    chosen.append(text)
                    found[mode] += 1
        pair.negatives = chosen
    return found


@contextmanager
def passages_knowledge_base(passages: Sequence[str], text_model: str) -> Iterator[Any]:
    """A temporary knowledge base of ``passages`` (one file each) embedded with ``text_model``: where negatives are
    mined when training data comes without a knowledge base of its own."""
    from kb.knowledge_base import KnowledgeBase

    with tempfile.TemporaryDirectory(prefix="kb-train-") as tmp:
        corpus = Path(tmp) / "passages"
        corpus.mkdir()
        for number, text in enumerate(dict.fromkeys(passages)):
            (corpus / f"{number:06d}.txt").write_text(text, encoding="utf-8")
        with KnowledgeBase.open(Path(tmp) / "kb", text_model=text_model, clip_model="none", ocr="off") as knowledge_base:
            knowledge_base.ingest(corpus)
            yield knowledge_base
