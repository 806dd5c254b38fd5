"""SQuAD-format training data: several files read as one set, and a validation split by article title."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from answering.squad_eval import SquadQuestion, SquadSet, load_squad
from kb.cards import DataFile
from kb.errors import InvalidRequestError
from training.errors import TrainingDataError
from training.files import data_file
from training.split import held_out_groups


def load_squad_files(paths: Sequence[Path]) -> tuple[SquadSet, list[DataFile]]:
    """All paragraphs and questions of ``paths`` (SQuAD v1.1 or v2.0), as one set ("2.0" if any has impossible
    questions), and each file's record for the card. A file that is not SQuAD is a :class:`TrainingDataError`
    naming it."""
    if not paths:
        raise TrainingDataError("no training files given")
    sets, files, seen = [], [], set[str]()
    for path in paths:
        try:
            squad = load_squad(Path(path))
        except InvalidRequestError as error:  # not JSON, not SQuAD's shape, or ids repeated within the file
            raise TrainingDataError(str(error)) from error
        squad = _own_ids(squad, Path(path), seen)
        seen |= {question.id for question in squad.questions}
        sets.append(squad)
        files.append(data_file(Path(path), squad.sha256, len(squad.questions)))
    return joined(sets), files


def _own_ids(squad: SquadSet, path: Path, seen: set[str]) -> SquadSet:
    """``squad`` with each question id an earlier file already used prefixed with ``path``: predictions are keyed
    by id, so two files both asking "q1" would be scored against one prediction."""
    questions = [q.model_copy(update={"id": f"{path}:{q.id}"}) if q.id in seen else q for q in squad.questions]
    clashing = [q.id for q in questions if q.id in seen]
    if clashing:
        raise TrainingDataError(f"{path}: question id {clashing[0]!r} is used by an earlier file even with the "
                                "file's path before it; is the file given twice?")
    repeated = next((key for key, count in Counter(q.id for q in questions).items() if count > 1), None)
    if repeated is not None:
        raise TrainingDataError(f"{path}: question id {repeated!r} is used twice once the ids an earlier file used "
                                "are prefixed with the file's path; rename it")
    return squad.model_copy(update={"questions": questions})


def joined(sets: Sequence[SquadSet]) -> SquadSet:
    """The paragraphs and questions of ``sets`` as one set ("2.0" if any has impossible questions)."""
    paragraphs: list[tuple[str, str]] = []
    questions: list[SquadQuestion] = []
    for squad in sets:
        offset = len(paragraphs)
        paragraphs += squad.paragraphs
        questions += [q.model_copy(update={"paragraph": q.paragraph + offset}) for q in squad.questions]
    version = "2.0" if any(squad.version == "2.0" for squad in sets) else "1.1"
    return SquadSet(version=version, paragraphs=paragraphs, questions=questions)


def squad_sha256(squad: SquadSet) -> str:
    """A hash of the questions and paragraphs of ``squad``, made here rather than read from a file (cloze
    questions): a resumed run checks it trains on the same ones."""
    return hashlib.sha256(squad.model_dump_json(exclude={"sha256"}).encode()).hexdigest()  # the content alone


def paragraph_groups(squad: SquadSet) -> tuple[list[str], bool]:
    """Each paragraph's group, kept whole on one side of a validation split: its article's title, or with a single
    title its own text (spaces normalised: a flat export that repeats a paragraph per question keeps it in one
    group); and whether the groups are titles."""
    by_title = len({title for title, _ in squad.paragraphs}) > 1
    return [title if by_title else " ".join(text.split()) for title, text in squad.paragraphs], by_title


def split_by_title(squad: SquadSet, fraction: float, seed: int = 0) -> tuple[SquadSet, SquadSet, str]:
    """(train, validation, description): whole articles (by title) go to validation, in a seeded order, until it
    holds ``fraction`` of the questions, so no paragraph is in both. With a single title, whole paragraphs are
    split instead, by their text: a flat export that repeats a paragraph for each of its questions keeps it on one
    side."""
    group, by_title = paragraph_groups(squad)
    held = held_out_groups((group[question.paragraph] for question in squad.questions), fraction, seed)
    train = [q for q in squad.questions if group[q.paragraph] not in held]
    validation = [q for q in squad.questions if group[q.paragraph] in held]
    unit = "articles (titles)" if by_title else "paragraphs"
    names = f": {', '.join(sorted(held))}" if by_title else ""
    description = f"{len(held)} {unit} held out from the training data, {len(validation)} questions{names}"
    return (squad.model_copy(update={"questions": train}), squad.model_copy(update={"questions": validation}),
            description)


