"""Reader recipes side by side: a cloze stage, then fine-tuning runs on the SQuAD train parts from it or from the
base, each what ``kb train reader`` runs, scored on its validation split and on xquad-en without its held-out
titles; the reader kept is the one with the best validation F1, never chosen by the xquad figure. Sized for a GPU
(the five recipes take about 8 minutes on an H200; one recipe is about an hour on these 2 cores).

    python -m benchmarks.reader_training cloze --out /tmp/cloze3.json --per-passage 3
    python -m benchmarks.reader_recipes --cloze /tmp/cloze3.json --work /tmp/recipes [--seconds 540] [--json F]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import NamedTuple

from benchmarks.reader_training import xquad_without_held_out
from benchmarks.squad_corpus import DATASETS

CLOZE_STAGE = "cloze3-e2"
AFTER_TRAINING = 70  # seconds a run's evaluations take beside its training on a GPU: before, after, threshold, xquad


class Recipe(NamedTuple):
    name: str
    cloze: bool  # trained on the cloze file (else on the SQuAD train parts)
    start: str | None  # a recipe's name to start from; None: the base model
    epochs: float
    learning_rate: float
    cap_seconds: float  # the most training seconds it is given


RECIPES = [  # in order of need: what fits the time budget runs
    Recipe(CLOZE_STAGE, True, None, 2, 1e-4, 170),
    Recipe("ft-cloze3-e6", False, CLOZE_STAGE, 6, 1e-4, 120),
    Recipe("ft-cloze3-e10", False, CLOZE_STAGE, 10, 1e-4, 150),
    Recipe("ft-base-e6", False, None, 6, 1e-4, 120),
    Recipe("ft-cloze3-e6-lr5e-5", False, CLOZE_STAGE, 6, 5e-5, 120),
]


def run_recipes(args: argparse.Namespace) -> dict[str, dict]:
    """Every recipe that fits ``args.seconds``, in order; a failed run is recorded and the others go on."""
    import torch

    from answering.squad_eval import evaluate
    from training.options import TrainOptions
    from training.reader import train_reader

    started = time.monotonic()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    squad = [args.data / DATASETS["squad2-train-part"], args.data / DATASETS["squad1-train-part"]]
    args.work.mkdir(parents=True, exist_ok=True)
    xquad = xquad_without_held_out(args.data, args.work)
    results: dict[str, dict] = {}
    for recipe in RECIPES:
        left = args.seconds - AFTER_TRAINING - (time.monotonic() - started)
        start = str(args.work / recipe.start) if recipe.start else args.base_model
        if left < 40 or (recipe.start and recipe.start not in results):
            results[recipe.name] = {"skipped": f"{left:.0f} s left; {recipe.start or 'base'} trained: "
                                               f"{not recipe.start or recipe.start in results}"}
            continue
        files = [args.cloze] if recipe.cloze else squad
        options = TrainOptions(out=args.work / recipe.name, base_model=start, epochs=recipe.epochs, batch_size=16,
                               learning_rate=recipe.learning_rate, max_seconds=min(recipe.cap_seconds, left),
                               overwrite=True, checkpoint_minutes=60, validation_fraction=0.05 if recipe.cloze else 0.1)
        try:
            card = train_reader(files, options)
        except Exception as error:  # noqa: BLE001 - one failed recipe must not lose the others
            results[recipe.name] = {"failed": f"{type(error).__name__}: {error}"}
            continue
        entry = {"start": recipe.start or "base", "epochs": recipe.epochs, "learning_rate": recipe.learning_rate,
                 "steps": card.steps, "seconds": card.seconds, "stopped_early": card.stopped_early,
                 "device": card.device, "validation_before": card.validation_before,
                 "validation_after": card.validation_after, "no_answer_threshold": card.no_answer_threshold}
        if not recipe.cloze:
            report = evaluate(xquad, "reader", {"reader_model": str(options.out), "device": device,
                                                "reader_no_answer_threshold": 0.1})
            entry["xquad"] = {"exact": round(report.exact, 2), "f1": round(report.f1, 2)}
        results[recipe.name] = entry
        print(f"{recipe.name}: {json.dumps(entry)}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--cloze", type=Path, required=True, help="a cloze file from reader_training.py cloze")
    parser.add_argument("--work", type=Path, required=True, help="folder the readers are written to")
    parser.add_argument("--base-model", default=None, help="default: the packaged MiniLM")
    parser.add_argument("--seconds", type=float, default=540, help="every run and its evaluations end by then")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not (args.data / DATASETS["xquad-en"]).is_file():
        parser.error(f"no evaluation data in {args.data} (give --data: the shared data folder)")
    results = run_recipes(args)
    readers = {name: entry for name, entry in results.items() if "xquad" in entry}
    if readers:
        kept = max(readers, key=lambda name: readers[name]["validation_after"]["f1"])
        results["kept"] = {"recipe": kept, "chosen_by": "validation F1 (articles held out of the training data)"}
    print("recipe | validation F1 before / after | xquad-en EM / F1 | steps | seconds")
    for name, entry in readers.items():
        print(f"{name} | {entry['validation_before']['f1']:.1f} / {entry['validation_after']['f1']:.1f} | "
              f"{entry['xquad']['exact']:.1f} / {entry['xquad']['f1']:.1f} | {entry['steps']} | {entry['seconds']:.0f}")
    print(json.dumps(results.get("kept")))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
