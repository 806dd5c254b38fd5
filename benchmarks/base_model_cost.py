"""What a larger base model costs against the packaged MiniLM on this machine, the models taking turns so that a
machine busy with other work slows them alike: as the reader, seconds per training step and per question read;
with ``--encoder``, as the text encoder, per backend: passages and single questions encoded.

    python benchmarks/base_model_cost.py --model mpnet=/work/models/all-mpnet-base-v2 [--batch-size 16]
        [--micro-batch 4] [--windows 384] [--steps 2] [--reads 5] [--passages 5] [--threads 1]
    python benchmarks/base_model_cost.py --model mpnet=/work/models/all-mpnet-base-v2 --encoder
        [--backends torch openvino-int8] [--encode 200] [--questions 50] [--model-cache DIR] [--threads 1]

Each model is loaded as ``kb train reader`` loads it (``AutoModelForQuestionAnswering``, its head new) and fed real
windows: squad2-train-part questions with their paragraphs, tokenised by the model's own tokenizer and padded to
``--windows`` tokens (the reader's longest window, so the figures are the upper bound per window). A training step
is ``--batch-size`` windows (forward, backward, AdamW), accumulated over micro-batches of ``--micro-batch`` to
bound the memory (batch 16 at 384 tokens took 10.8 GB for all-mpnet-base-v2 and was killed on a shared 23 GB
machine); its compute is the full batch's. A read is one forward pass over ``--passages`` windows, what ``ask``
does for k = 5 passages. Wall and CPU seconds are both reported: on a loaded machine the CPU seconds (one thread)
are the steadier measure, the wall seconds what was waited. The encoder part goes through kb's own
``SentenceTransformerEncoder`` (batches of 32, as ingestion does; non-torch backends exported into
``--model-cache`` first, untimed): ``--encode`` xquad-en paragraphs in one call, then ``--questions`` of its
questions one at a time (a search's query encoding).
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.retrieval_benchmark import default_model
from benchmarks.squad_corpus import DATASETS


def windows(data: Path, tokenizer: Any, count: int, length: int) -> dict[str, Any]:
    """``count`` question-paragraph windows of squad2-train-part, padded (or cut) to ``length`` tokens."""
    articles = json.loads((data / DATASETS["squad2-train-part"]).read_text(encoding="utf-8"))["data"]
    pairs = [(qa["question"], paragraph["context"]) for article in articles for paragraph in article["paragraphs"]
             for qa in paragraph["qas"][:1]][:count]
    return tokenizer([q for q, _ in pairs], [c for _, c in pairs], truncation="only_second", max_length=length,
                     padding="max_length", return_tensors="pt")


def timed(work: Any) -> tuple[float, float]:
    """Wall and CPU seconds of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--windows", type=int, default=384)
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per model (after one untimed)")
    parser.add_argument("--reads", type=int, default=5, help="timed reads per model (after one untimed)")
    parser.add_argument("--passages", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--encoder", action="store_true", help="measure the text encoder instead of the reader")
    parser.add_argument("--backends", nargs="+", default=["torch", "openvino-int8"])
    parser.add_argument("--encode", type=int, default=200, help="paragraphs encoded per model and backend")
    parser.add_argument("--questions", type=int, default=50, help="single questions encoded per model and backend")
    parser.add_argument("--model-cache", type=Path, default=None, help="where exported graphs are kept")
    args = parser.parse_args()
    named = [("base MiniLM", default_model())] + [tuple(item.split("=", 1)) for item in args.model]
    if args.encoder:
        return encoder_cost(args, named)
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models: dict[str, dict[str, Any]] = {}
    for name, folder in named:
        tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
        model = AutoModelForQuestionAnswering.from_pretrained(folder)
        batch = windows(args.data, tokenizer, args.batch_size, args.windows)
        accepted = set(inspect.signature(model.forward).parameters)
        batch = {key: value for key, value in batch.items() if key in accepted}
        models[name] = {"model": model, "batch": batch, "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-5),
                        "parameters": sum(p.numel() for p in model.parameters()), "step": [], "read": []}

    def step(entry: dict[str, Any]) -> None:
        model, batch = entry["model"], entry["batch"]
        model.train()
        for first in range(0, args.batch_size, args.micro_batch):
            part = {key: value[first : first + args.micro_batch] for key, value in batch.items()}
            positions = torch.full((len(part["input_ids"]),), args.windows // 2)
            output = model(**part, start_positions=positions, end_positions=positions + 1)
            (output.loss * len(part["input_ids"]) / args.batch_size).backward()
        entry["optimizer"].step()
        entry["optimizer"].zero_grad()

    def read(entry: dict[str, Any]) -> None:
        model = entry["model"]
        model.eval()
        with torch.inference_mode():
            model(**{key: value[: args.passages] for key, value in entry["batch"].items()})

    for turn in range(args.steps + 1):
        for name, entry in models.items():
            figures = timed(lambda: step(entry))
            if turn:
                entry["step"].append(figures)
            print(name, "step", turn, [round(f, 2) for f in figures], flush=True)
    for turn in range(args.reads + 1):
        for name, entry in models.items():
            figures = timed(lambda: read(entry))
            if turn:
                entry["read"].append(figures)
    print(f"\n{'model':<24}{'parameters':>12}{'step wall s':>13}{'step CPU s':>12}{'read wall ms':>14}"
          f"{'read CPU ms':>13}")
    for name, entry in models.items():
        step_wall, step_cpu = (statistics.median(f[i] for f in entry["step"]) for i in (0, 1))
        read_wall, read_cpu = (1000 * statistics.median(f[i] for f in entry["read"]) for i in (0, 1))
        print(f"{name:<24}{entry['parameters'] / 1e6:>11.1f}M{step_wall:>13.1f}{step_cpu:>12.1f}{read_wall:>14.0f}"
              f"{read_cpu:>13.0f}")
    return 0


def encoder_cost(args: argparse.Namespace, named: list[tuple[str, str]]) -> int:
    """Paragraphs and single questions encoded by each model on each backend, taking turns."""
    import torch

    from kb.encoders.sentence_transformer import SentenceTransformerEncoder
    from kb.inference import ExportCache

    torch.set_num_threads(args.threads)
    articles = json.loads((args.data / DATASETS["xquad-en"]).read_text(encoding="utf-8"))["data"]
    paragraphs = [p["context"] for a in articles for p in a["paragraphs"]][: args.encode]
    questions = [qa["question"] for a in articles for p in a["paragraphs"] for qa in p["qas"]][: args.questions]
    encoders = {f"{name}, {backend}": SentenceTransformerEncoder(folder, device="cpu", batch_size=32, backend=backend,
                                                                 cache=ExportCache(args.model_cache))
                for name, folder in named for backend in args.backends}
    for encoder in encoders.values():
        encoder.encode(["warm up"])  # loads, and exports once per backend
    passages = {name: timed(lambda e=encoder: e.encode(paragraphs)) for name, encoder in encoders.items()}
    queries: dict[str, list[tuple[float, float]]] = {name: [] for name in encoders}
    for question in questions:
        for name, encoder in encoders.items():
            queries[name].append(timed(lambda e=encoder: e.encode([question])))
    print(f"\n{'model, backend':<28}{'passages wall s':>17}{'CPU s':>8}{'per passage ms':>16}"
          f"{'query p50 wall ms':>19}{'CPU ms':>8}")
    for name in encoders:
        wall, cpu = passages[name]
        print(f"{name:<28}{wall:>17.1f}{cpu:>8.1f}{1000 * wall / len(paragraphs):>16.1f}"
              f"{1000 * statistics.median(f[0] for f in queries[name]):>19.1f}"
              f"{1000 * statistics.median(f[1] for f in queries[name]):>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
