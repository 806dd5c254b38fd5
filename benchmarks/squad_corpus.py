"""Turning SQuAD-format data into a folder of paragraph files plus questions with their gold file."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

# Data sets under ../shared/data (see its README): which are fair for development and which are held out.
DATASETS = {
    "xquad-en": "xquad-en/xquad.en.json",
    "squad2-train-part": "squad2-train-part/train-v2.0-part.json",
    "squad1-train-part": "squad1-train-part/train-v1.1-part.json",
    "squad2-dev-part": "squad2-dev-part/dev-v2.0-part.json",  # held out: report, never tune on it
    "cmrc2018-trial": "cmrc2018-dev/cmrc2018_trial.json",
    "drcd-dev": "drcd-dev/DRCD_dev.json",
    "cmrc2018-dev": "cmrc2018-dev/cmrc2018_dev.json",  # held out
}
HELD_OUT = {"squad2-dev-part", "cmrc2018-dev"}
DISTRACTORS = "wiki-distractors/summaries_en-us.json"


@dataclass(frozen=True)
class Question:
    text: str
    gold: Path
    id: str = ""


def _slug(text: str) -> str:
    return re.sub(r"[^\w]+", "_", text).strip("_")[:40] or "untitled"


def squad_titles(path: Path) -> set[str]:
    return {article["title"] for article in json.loads(path.read_text(encoding="utf-8"))["data"]}


def _answerable(qa: dict) -> bool:
    return not qa.get("is_impossible") and bool(qa.get("answers")) and bool(qa["question"].strip())


def squad_questions(path: Path, exclude_titles: set[str] = frozenset()) -> list[str]:
    """The answerable questions of a SQuAD-format file, articles titled in ``exclude_titles`` left out."""
    return [qa["question"] for article in json.loads(path.read_text(encoding="utf-8"))["data"]
            if article.get("title") not in exclude_titles for paragraph in article["paragraphs"]
            for qa in paragraph["qas"] if _answerable(qa)]


def write_squad_corpus(data_dir: Path, dataset: str, folder: Path, exclude_titles: set[str] = frozenset(),
                       question_titles: set[str] | None = None) -> list[Question]:
    """One ``.txt`` file per paragraph under ``folder``; answerable questions (of the articles titled in
    ``question_titles`` only, when given) point at their paragraph's file."""
    articles = json.loads((data_dir / DATASETS[dataset]).read_text(encoding="utf-8"))["data"]
    questions: list[Question] = []
    for article_number, article in enumerate(articles):
        if article.get("title") in exclude_titles:
            continue
        article_dir = folder / f"{article_number:04d}-{_slug(article.get('title', ''))}"
        article_dir.mkdir(parents=True, exist_ok=True)
        for number, paragraph in enumerate(article["paragraphs"]):
            path = article_dir / f"{number:03d}.txt"
            path.write_text(paragraph["context"], encoding="utf-8")
            if question_titles is None or article.get("title") in question_titles:
                questions += [Question(qa["question"], path.resolve(), str(qa.get("id", "")))
                              for qa in paragraph["qas"] if _answerable(qa)]
    blank = sum(1 for article in articles for paragraph in article["paragraphs"] for qa in paragraph["qas"]
                if not qa["question"].strip())
    if blank:  # CMRC 2018 trial has two questions with empty text; a search refuses an empty query
        print(f"{dataset}: {blank} questions with empty text left out", file=sys.stderr)
    return questions


def with_parallel_questions(questions: list[Question], path: Path) -> list[Question]:
    """The questions as worded in a parallel SQuAD-format file, matched by id, gold kept: e.g. Chinese over English."""
    articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    texts = {str(qa["id"]): qa["question"] for article in articles for paragraph in article["paragraphs"]
             for qa in paragraph["qas"]}
    kept = [replace(question, text=texts[question.id]) for question in questions if question.id in texts]
    print(f"{path.name}: {len(kept)} of {len(questions)} questions matched by id; "
          f"{len(questions) - len(kept)} without a match dropped", file=sys.stderr)
    return kept


def write_distractors(data_dir: Path, folder: Path, count: int) -> int:
    """Up to ``count`` Wikipedia summaries as extra files, so retrieval has to work among unrelated text."""
    if count <= 0:
        return 0
    summaries = json.loads((data_dir / DISTRACTORS).read_text(encoding="utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for number, entry in enumerate(summaries.values()):
        if written >= count:
            break
        text = (entry.get("extract") or "").strip()
        if text:
            (folder / f"{number:05d}.txt").write_text(text, encoding="utf-8")
            written += 1
    return written
