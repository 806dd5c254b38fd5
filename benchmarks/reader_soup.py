"""A uniform "model soup" of trained readers: their weights averaged into one reader, scored on the validation split.

Readers fine-tuned from the same base (here the packaged MiniLM, through a cloze stage, on the same SQuAD parts)
often lie in one basin of the loss, where the average of their weights reads better than either (Wortsman et al.,
2022, "Model soups"). This writes the soup as a reader folder (the first reader's config, tokenizer and card, the
card's base model naming the ingredients and its scores cleared) and prints validation EM/F1 of each ingredient
and of the soup at threshold 0.1, on the first reader's validation split (every ingredient must share it, or the
comparison is refused). ``--greedy`` makes a greedy soup instead (the paper's recipe): ingredients taken best
first by validation F1, each kept only if the soup with it scores higher, so a weak ingredient cannot pull the
average down. Score the soup on xquad-en with ``reader_training.py evaluate`` and tune its threshold with
``reader_training.py tune``. A reader refit on every question (``--no-validation``) has no validation split left:
a soup with it is written uniform and unscored (greedy is refused), so decide such a soup before measuring it.

    python -m benchmarks.reader_soup --out /work/models/soup /work/models/reader-cloze-e3 /work/models/reader-gpu-cloze3-e6
    python -m benchmarks.reader_soup --greedy --out /work/models/soup3 A B C
    python -m benchmarks.reader_soup --out /work/models/soup-all /work/models/reader-cloze-all A B   # unscored
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

THRESHOLD = 0.1  # as the xquad-en figures in docs/training.md


def average_weights(readers: list[Path], out: Path) -> None:
    """The mean of the readers' safetensors weights (in float32) into ``out/model.safetensors``."""
    from safetensors.torch import load_file, save_file

    states = [load_file(str(reader / "model.safetensors")) for reader in readers]
    if any(state.keys() != states[0].keys() for state in states):
        raise SystemExit("the readers do not share one architecture: their weights have different names")
    mean = {name: sum(state[name].float() for state in states) / len(states) for name in states[0]}
    save_file(mean, str(out / "model.safetensors"), metadata={"format": "pt"})


def refit(readers: list[Path]) -> list[Path]:
    """The readers trained on every question (``--no-validation``): no split is held out from them."""
    from kb.cards import read_card

    return [reader for reader in readers if (card := read_card(reader)) and card.hyperparameters.get("no_validation")]


def validation_set(readers: list[Path]) -> Any:
    """The first reader's validation split, which every reader must share (their scores compare only on one)."""
    from kb.cards import read_card
    from training.squad_data import load_squad_files, split_by_title

    cards = [read_card(reader) for reader in readers[1:]]
    first = read_card(readers[0])
    assert first is not None
    if any(card is None or card.validation_split != first.validation_split for card in cards):
        raise SystemExit("the readers were not validated on one split: their validation scores do not compare")
    squad, _ = load_squad_files([Path(file.path) for file in first.data])
    _, validation, split = split_by_title(squad, 0.1, first.hyperparameters.get("seed", 0))
    print(f"validation: {split}")
    return validation


def validation_f1(reader: Path, validation: Any, label: str = "") -> float:
    """EM/F1 of the reader folder on ``validation``, read as ``kb eval squad`` reads; printed, F1 returned."""
    from answering.reader import Readers
    from answering.squad_eval import at_threshold, read_scored, squad_scores
    from kb.config import Settings

    scored = read_scored(validation, Readers(Settings(reader_model=str(reader), device="cpu")))
    scores = squad_scores(validation, at_threshold(scored, THRESHOLD))
    print(f"  {label or reader}: EM {scores['exact']:.2f}  F1 {scores['f1']:.2f}", flush=True)
    return float(scores["f1"])


def write_soup(readers: list[Path], out: Path, how: str = "uniform") -> None:
    """``out`` made a reader folder holding the average of ``readers`` (the first one's config, tokenizer and card,
    the card naming the ingredients, its scores and threshold cleared: they were the first reader's)."""
    from kb.cards import read_card, write_card
    from training.options import NO_VALIDATION

    out.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(readers[0] / name, out / name)
    average_weights(readers, out)
    card = read_card(readers[0])
    if card is not None:
        unvalidated = {"hyperparameters": card.hyperparameters | {"no_validation": True},
                       "validation_split": NO_VALIDATION, "validation_data": []} if refit(readers) else {}
        write_card(out, card.model_copy(update={
            "base_model": f"{how} soup of " + ", ".join(map(str, readers)), "validation_before": {},
            "validation_after": {}, "no_answer_threshold": None, "threshold_tuned_on": None, "int8": None,
            **unvalidated}))


def greedy_soup(readers: list[Path], out: Path, validation: Any) -> list[Path]:
    """The ingredients of a greedy soup, written to ``out``: best first by validation F1, each kept only where the
    soup with it scores higher than without."""
    scores = {reader: validation_f1(reader, validation) for reader in readers}
    ranked = sorted(readers, key=lambda reader: -scores[reader])
    chosen, best = ranked[:1], scores[ranked[0]]
    with tempfile.TemporaryDirectory() as scratch:
        for index, reader in enumerate(ranked[1:]):
            trial = Path(scratch) / f"trial-{index}"
            write_soup([*chosen, reader], trial)
            f1 = validation_f1(trial, validation, f"soup with {reader}")
            if f1 > best:
                chosen, best = [*chosen, reader], f1
    write_soup(chosen, out, "greedy")
    print(f"greedy soup of {len(chosen)}: {', '.join(map(str, chosen))}; validation F1 {best:.2f}")
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("readers", nargs="+", type=Path, help="reader folders trained from one base")
    parser.add_argument("--out", type=Path, required=True, help="folder for the soup (must not exist)")
    parser.add_argument("--greedy", action="store_true", help="keep an ingredient only if it lifts validation F1")
    args = parser.parse_args()
    if len(args.readers) < 2 or args.out.exists():
        print("give two readers or more, and an --out that does not exist", file=sys.stderr)
        return 2
    if trained_on_everything := refit(args.readers):
        if args.greedy:
            print("a greedy soup is chosen on validation, and these readers have none: "
                  + ", ".join(map(str, trained_on_everything)), file=sys.stderr)
            return 2
        write_soup(args.readers, args.out)
        print(f"uniform soup written to {args.out}, not scored: "
              f"{', '.join(map(str, trained_on_everything))} trained on every validation question")
        return 0
    validation = validation_set(args.readers)
    if args.greedy:
        greedy_soup(args.readers, args.out, validation)
        return 0
    write_soup(args.readers, args.out)
    for reader in [*args.readers, args.out]:
        validation_f1(reader, validation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
