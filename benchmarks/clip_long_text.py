"""How a text chunk longer than CLIP's 77-token context should be embedded: truncate, or average/max over windows.

    python benchmarks/clip_long_text.py [--checkpoint FILE] [--length 180] [--positions 0,40,70,74,100,140,177]

CLIP's text tower reads 77 tokens (start and end tokens included); open_clip's tokenizer cuts the rest, so a chunk
embedded by ``ClipEncoder.encode`` only says what its first 75 content tokens say. This measures, on a controlled
synthetic corpus, how much of a chunk each strategy lets an image query find:

(a) ``truncate``: ``ClipEncoder.encode`` as it is (the first 75 content tokens);
(b) ``mean``: the chunk's CLIP tokens split into consecutive windows of at most 75, each embedded (token ids fed
    directly, start/end tokens added, no decode round trip), the normalised window vectors averaged and
    re-normalised: still one vector per chunk;
(c) ``max``: the same window vectors kept apart (multi-vector), a chunk scoring its best window at query time.

The model is the tiny CLIP of ``tests/clip_model.py`` (trained here for ~35 s unless ``--checkpoint`` is given),
which knows twelve captions ("a red circle", ...). For each class and each ``--fillers`` draw, a chunk of exactly
``--length`` CLIP tokens holds the class caption starting at a controlled token position inside filler words. Two
fillers: ``neutral`` (words naming no colour or shape: "the image shows a picture with ...") and ``distractor`` (the
same, with a share ``--distractor-rate`` of words, 3% or about five a chunk, naming a colour or shape that is NOT
the chunk's: the realistic case of a passage mentioning other things). Held-out generated images of each class
query the chunks of one (filler, position) cell; R@1 is the share of images whose best chunk has their class
(chance 1/12), averaged over ``--repeats`` filler draws: with the caption out of sight all chunks are noise, and
one draw's R@1 still swings 0 to 0.15. It prints R@1 per position for each strategy, the caption
alone as the ceiling, and the encode cost of (b)/(c) against (a): forward passes (what counts for a real CLIP,
every window being padded to 77 tokens like a truncated text) and measured wall time.

A toy model trained only on three-word captions has never seen filler, so what it does with a long text is not what
a real CLIP does: the figures show the mechanics (what truncation hides, what averaging dilutes, where window edges
fall), not real-CLIP recall.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from kb.encoders.clip import ClipEncoder
from tests.clip_model import (
    CLASSES,
    COLOURS,
    SHAPES,
    caption,
    draw,
    train_tiny_clip,
    write_tiny_config,
)

NEUTRAL = ("the", "image", "shows", "picture", "with", "on", "background", "a", "an", "of", "in", "and", "small",
           "large", "shape", "object", "left", "right", "top", "bottom", "corner", "middle", "near", "this", "photo",
           "drawn", "simple", "plain", "is", "there", ",", ".")
WINDOW = 75  # content tokens per window: 77 less the start and end tokens


def filler_words(count: int, rng: random.Random, avoid: tuple[str, str] | None, rate: float) -> list[str]:
    """``count`` one-token filler words; with ``avoid`` (the chunk's colour and shape), a share ``rate`` of them
    name another colour or shape."""
    others = [word for word in (*COLOURS, *SHAPES) if avoid is not None and word not in avoid]
    return [rng.choice(others) if others and rng.random() < rate else rng.choice(NEUTRAL)
            for _ in range(count)]


def make_chunk(colour: str, shape: str, position: int, length: int, rng: random.Random, distractors: bool,
               tokenizer, rate: float) -> str:
    """A text of exactly ``length`` CLIP tokens whose caption starts at token ``position``."""
    words = caption(colour, shape).split()
    avoid = (colour, shape) if distractors else None
    text = " ".join(filler_words(position, rng, avoid, rate) + words
                    + filler_words(length - position - len(words), rng, avoid, rate))
    ids = tokenizer.encode(text)
    assert len(ids) == length and ids[position:position + len(words)] == tokenizer.encode(" ".join(words)), text
    return text


def window_vectors(encoder: ClipEncoder, texts: list[str], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised embeddings of every ``window``-token window of every text, and each window's text index."""
    import torch

    loaded = encoder._load()
    tokenizer, context = loaded.tokenizer, loaded.tokenizer.context_length
    rows, owner = [], []
    for index, text in enumerate(texts):
        ids = tokenizer.encode(text)
        for first in range(0, max(len(ids), 1), window):
            row = [tokenizer.sot_token_id, *ids[first:first + window], tokenizer.eot_token_id]
            rows.append(row + [0] * (context - len(row)))
            owner.append(index)
    tokens = torch.tensor(rows, dtype=torch.long)
    parts = []
    with torch.inference_mode():
        for first in range(0, len(rows), encoder.batch_size):
            batch = tokens[first:first + encoder.batch_size].to(loaded.device)
            parts.append(loaded.model.encode_text(batch, normalize=True).float().cpu().numpy())
    vectors = np.concatenate(parts)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors, np.asarray(owner)


def mean_pool(vectors: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    pooled = np.zeros((count, vectors.shape[1]), dtype=np.float32)
    np.add.at(pooled, owner, vectors)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def max_scores(queries: np.ndarray, vectors: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    scores = np.full((len(queries), count), -np.inf, dtype=np.float32)
    np.maximum.at(scores.T, owner, (queries @ vectors.T).T)
    return scores


def recall_at_1(scores: np.ndarray, query_class: np.ndarray, chunk_class: np.ndarray) -> float:
    return float(np.mean(chunk_class[scores.argmax(axis=1)] == query_class))


def timed(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a tiny-CLIP state dict (default: train one, ~35 s)")
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--length", type=int, default=180, help="CLIP tokens per chunk (corpus median: 157)")
    parser.add_argument("--positions", default="0,40,70,74,100,140,177",
                        help="caption start tokens; 74 straddles the first window edge")
    parser.add_argument("--distractor-rate", type=float, default=0.03,
                        help="share of distractor filler words naming another colour or shape (0.03: ~5 a chunk)")
    parser.add_argument("--fillers", type=int, default=5, help="filler draws (chunks) per class and position")
    parser.add_argument("--repeats", type=int, default=3, help="independent filler draws of every cell")
    parser.add_argument("--images", type=int, default=20, help="held-out query images per class")
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--runs", type=int, default=3, help="timing runs (median)")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    positions = [int(value) for value in args.positions.split(",")]
    if any(not 0 <= position <= args.length - 3 for position in positions):
        parser.error("every position must leave room for the 3-token caption inside --length")

    import torch

    torch.set_num_threads(1)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        config = write_tiny_config(Path(folder))
        checkpoint = args.checkpoint or train_tiny_clip(config, Path(folder) / "tiny-clip.pt",
                                                        seconds=args.train_seconds)
        encoder = ClipEncoder(str(config), str(checkpoint), device="cpu")
        tokenizer = encoder._load().tokenizer
        rng = random.Random(args.seed)
        images, image_class = [], []
        for label, (colour, shape) in enumerate(CLASSES):
            for _ in range(args.images):
                images.append(draw(colour, shape, rng))
                image_class.append(label)
        queries, image_class = encoder.encode_images(images), np.asarray(image_class)

        captions = encoder.encode([caption(colour, shape) for colour, shape in CLASSES])
        ceiling = recall_at_1(queries @ captions.T, image_class, np.arange(len(CLASSES)))
        print(f"tiny CLIP, {len(images)} held-out images ({args.images}/class), {len(CLASSES)} classes x "
              f"{args.fillers} fillers = {len(CLASSES) * args.fillers} chunks of {args.length} CLIP tokens per cell; "
              f"window {args.window} tokens; chance R@1 {1 / len(CLASSES):.3f}")
        print(f"caption alone (no filler), R@1: {ceiling:.3f}\n")

        all_texts = []
        results: dict[tuple[str, int, str], list[float]] = {}
        for _ in range(args.repeats):
            for filler in ("neutral", "distractor"):
                for position in positions:
                    texts, chunk_class = [], []
                    for label, (colour, shape) in enumerate(CLASSES):
                        for _ in range(args.fillers):
                            texts.append(make_chunk(colour, shape, position, args.length, rng,
                                                    filler == "distractor", tokenizer, args.distractor_rate))
                            chunk_class.append(label)
                    chunk_class = np.asarray(chunk_class)
                    all_texts += texts
                    truncated = encoder.encode(texts)
                    vectors, owner = window_vectors(encoder, texts, args.window)
                    for strategy, scores in (
                            ("truncate", queries @ truncated.T),
                            ("mean", queries @ mean_pool(vectors, owner, len(texts)).T),
                            ("max", max_scores(queries, vectors, owner, len(texts)))):
                        results.setdefault((filler, position, strategy), []).append(
                            recall_at_1(scores, image_class, chunk_class))

        print(f"image->chunk R@1, mean (sd) over {args.repeats} filler draws; 'window' = which {args.window}-token "
              "window(s) the caption falls in")
        for filler in ("neutral", "distractor"):
            rate = f" (distractor rate {args.distractor_rate})" if filler == "distractor" else ""
            print(f"filler: {filler}{rate}")
            print(f"{'position':>9} {'window':>7} {'(a) truncate':>14} {'(b) mean':>14} {'(c) max':>14}")
            for position in positions:
                edge = position // args.window
                where = f"{edge}" if (position + 2) // args.window == edge else f"{edge}|{edge + 1}"
                cells = [results[filler, position, strategy] for strategy in ("truncate", "mean", "max")]
                print(f"{position:>9} {where:>7} " + " ".join(
                    f"{np.mean(cell):>7.3f} ({np.std(cell):.3f})" for cell in cells))
            print()

        windows = sum(-(-len(tokenizer.encode(text)) // args.window) for text in all_texts)
        seconds_a = timed(lambda: encoder.encode(all_texts), args.runs)
        seconds_b = timed(lambda: window_vectors(encoder, all_texts, args.window), args.runs)
        print(f"encode cost over {len(all_texts)} chunks: forward passes (b)/(a) = {windows}/{len(all_texts)} = "
              f"{windows / len(all_texts):.2f}; wall {seconds_b * 1000:.0f} ms / {seconds_a * 1000:.0f} ms = "
              f"{seconds_b / seconds_a:.2f} (tokenising included; (c) costs the same to encode and stores "
              f"{windows / len(all_texts):.2f} vectors per chunk)")
    print(f"total {time.monotonic() - started:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
