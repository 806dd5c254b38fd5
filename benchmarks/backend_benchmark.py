"""Encoder backends side by side: ingest time, query latency and recall per backend, against torch and txtai.

    python benchmarks/backend_benchmark.py [--data ../shared/data] [--dataset xquad-en] [--distractors 2000]
        [--backends torch onnx onnx-int8 openvino openvino-int8] [--repeat 1] [--no-txtai] [--encode-rounds 3]

Builds the SQuAD corpus of the retrieval benchmark (one file per paragraph plus Wikipedia distractors), exports the
text model once per backend into a fresh model cache (timed apart: it is made once per model), times each backend's
encoder alone on the corpus's first ``--encode-texts`` paragraphs (the backends taking turns, ``--encode-rounds``
rounds, the median: steadier than an ingest on a shared machine, with the threads torch has), then for each
backend ingests the corpus into a fresh knowledge base (its full ingest: load, chunk, embed, store), and asks every
question in dense and default hybrid mode. txtai indexes the same chunks, already in memory, with the same model
folder (torch), and is asked every question in its hybrid mode. With --repeat N the ingests take turns N times
(torch, the backends, txtai, then again) and the median time counts, so a machine shared with other work affects
them alike; the searches take turns question by question for the same reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.retrieval_benchmark import default_model, evaluate_in_turn, txtai_index, txtai_search
from benchmarks.squad_corpus import DATASETS, HELD_OUT, squad_titles, write_distractors, write_squad_corpus
from kb import KnowledgeBase
from kb.config import EncoderBackend, Settings
from kb.encoders import text_encoder
from kb.encoders.base import TextEncoder
from kb.inference import BACKENDS

MODES = ("hybrid", "dense")


def open_kb(folder: Path, model: str, backend: EncoderBackend, cache: Path) -> KnowledgeBase:
    return KnowledgeBase.open(folder, text_model=model, device="cpu", encoder_backend=backend,
                              model_cache=str(cache), clip_model="none", ocr="off")


def encoding_rates(encoders: dict[str, TextEncoder], texts: list[str], rounds: int) -> dict[str, float]:
    """Texts per second of each encoder alone, the median of ``rounds`` rounds in which they take turns."""
    rates: dict[str, list[float]] = {backend: [] for backend in encoders}
    for _ in range(rounds):
        for backend, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode(texts)
            rates[backend].append(len(texts) / (time.perf_counter() - started))
    return {backend: statistics.median(values) for backend, values in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="xquad-en")
    parser.add_argument("--distractors", type=int, default=2000)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--model", default=None, help="sentence-transformers folder (default: packaged MiniLM)")
    parser.add_argument("--max-questions", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="ingests per backend, taking turns; median counts")
    parser.add_argument("--no-txtai", action="store_true")
    parser.add_argument("--encode-texts", type=int, default=640, help="paragraphs each encoder encodes alone")
    parser.add_argument("--encode-rounds", type=int, default=3, help="rounds of encoding alone; median counts")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's threads, which ONNX Runtime and OpenVINO follow (default: torch's own)")
    parser.add_argument("--out", type=Path, default=None, help="write all figures as JSON here")
    args = parser.parse_args()
    if not (args.data / DATASETS[args.dataset]).exists():
        print(f"data not found: {args.data / DATASETS[args.dataset]} (pass --data DIR)", file=sys.stderr)
        return 2
    if args.dataset in HELD_OUT:
        print(f"note: {args.dataset} is held out; report its figures, do not tune on them", file=sys.stderr)
    model = args.model or default_model()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_txtai and importlib.util.find_spec("txtai") is None:
        print("txtai is not installed; `pip install txtai` to compare side by side")
        args.no_txtai = True
    backends: list[EncoderBackend] = ["torch"] + [b for b in args.backends if b != "torch"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        exclude = squad_titles(args.data / DATASETS["squad2-dev-part"]) \
            if args.dataset == "xquad-en" and (args.data / DATASETS["squad2-dev-part"]).exists() else set()
        questions = write_squad_corpus(args.data, args.dataset, root / "corpus" / "squad", exclude)
        questions = questions[: args.max_questions]
        distractors = write_distractors(args.data, root / "corpus" / "distractors", args.distractors)
        print(f"corpus: {args.dataset} ({len(questions)} questions) + {distractors} distractor passages; "
              f"model {model}")
        cache = root / "model-cache"
        exports, encoders = {}, {}
        for backend in backends:  # made once per model and backend; not part of any ingest
            started = time.perf_counter()
            encoders[backend] = text_encoder(Settings(text_model=model, encoder_backend=backend,
                                                      model_cache=str(cache)))
            encoders[backend].encode(["x"])
            exports[backend] = time.perf_counter() - started
        paragraphs = [path.read_text(encoding="utf-8") for path in sorted((root / "corpus" / "squad").rglob("*.txt"))]
        rates = encoding_rates(encoders, paragraphs[: args.encode_texts], args.encode_rounds)
        seconds: dict[str, list[float]] = {backend: [] for backend in [*backends, "txtai"]}
        shares: dict[str, list[float]] = {backend: [] for backend in backends}
        kept: dict[str, KnowledgeBase] = {}  # the first round's knowledge bases, searched afterwards
        searches: dict[str, Callable[[str], list[str]]] = {}
        try:
            for round_number in range(args.repeat):
                for backend in backends:
                    kb = open_kb(root / f"kb-{backend}-{round_number}", model, backend, cache)
                    kb.encoder.encode(["warm up"])  # model load is not ingest
                    report = kb.ingest(root / "corpus")
                    seconds[backend].append(report.seconds)
                    shares[backend].append(report.encoder_seconds / report.seconds)
                    if backend == "torch" and not args.no_txtai:
                        embeddings, path_of, indexing = txtai_index(kb, model)
                        seconds["txtai"].append(indexing)
                        searches.setdefault("txtai hybrid", txtai_search(embeddings, path_of, 0.5))
                    if round_number == 0:
                        kept[backend] = kb
                    else:
                        kb.close()
                        shutil.rmtree(kb.directory, ignore_errors=True)
                print(f"round {round_number + 1}: " + ", ".join(
                    f"{name} {values[-1]:.1f}s" for name, values in seconds.items() if values), flush=True)
            for backend, kb in kept.items():  # hybrid first: dense then reuses the query vector it encoded
                for mode in MODES:
                    searches[f"{backend} {mode}"] = lambda q, kb=kb, m=mode: [h.path for h in kb.search(q, k=20,
                                                                                                        mode=m)]
            results = evaluate_in_turn(searches, questions)
        finally:
            for kb in kept.values():
                kb.close()
    ingest = {name: statistics.median(values) for name, values in seconds.items() if values}
    torch_r5 = results["torch hybrid"]["recall@5"]
    print(f"\nencoder alone, texts/s ({len(paragraphs[: args.encode_texts])} paragraphs, {torch.get_num_threads()} "
          f"threads, median of {args.encode_rounds} rounds): " + ", ".join(
              f"{name} {rate:.1f} ({rate / rates['torch']:.2f}x torch)" for name, rate in rates.items()))
    print(f"\n{'backend':<15}{'load s':>9}{'ingest s':>9}{'x torch':>8}{'x txtai':>8}{'encoder':>8}"
          f"{'dense R@1':>10}{'R@5':>7}{'hybrid R@1':>11}{'R@5':>7}{'dR@5':>7}{'p50 ms':>8}{'p95 ms':>8}")
    for name in [*backends, "txtai"]:
        if name not in ingest:
            continue
        hybrid = results[f"{name} hybrid"]
        versus_txtai = f"{ingest[name] / ingest['txtai']:>8.2f}" if "txtai" in ingest else f"{'-':>8}"
        encoder = f"{statistics.median(shares[name]):>8.0%}" if name in shares else f"{'-':>8}"
        dense = results.get(f"{name} dense")
        recall = f"{dense['recall@1']:>10.3f}{dense['recall@5']:>7.3f}" if dense else f"{'-':>10}{'-':>7}"
        print(f"{name:<15}{exports.get(name, 0.0):>9.1f}{ingest[name]:>9.1f}{ingest[name] / ingest['torch']:>8.2f}"
              f"{versus_txtai}{encoder}{recall}{hybrid['recall@1']:>11.3f}{hybrid['recall@5']:>7.3f}"
              f"{(hybrid['recall@5'] - torch_r5) * 100:>+7.1f}{hybrid['p50_ms']:>8.1f}{hybrid['p95_ms']:>8.1f}")
    print("(load: first model load, with its export and quantisation, made once per model; ingest: median of the\n"
          " rounds; encoder: its share of the ingest; dR@5: hybrid recall@5 minus torch's, in points; p50/p95: hybrid\n"
          " search latency, the systems taking turns question by question)")
    if args.out:
        args.out.write_text(json.dumps({"dataset": args.dataset, "questions": len(questions), "exports_s": exports,
                                        "encode_texts_per_s": rates, "ingest_s": seconds, "encoder_share": shares,
                                        "search": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
