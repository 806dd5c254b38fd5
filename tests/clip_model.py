"""A tiny CLIP built from an open_clip model config, random or trained for seconds on generated shapes.

Images are coloured circles, squares and triangles of random size and place on a grey background; their captions
are "a red circle" and the like. Twelve (colour, shape) classes: a batch holds each class once, so the contrastive
loss has no false negatives. Nothing is downloaded: open_clip's default tokenizer ships its BPE vocabulary.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (40, 60, 220), "yellow": (235, 210, 30)}
SHAPES = ("circle", "square", "triangle")
CLASSES = [(colour, shape) for colour in COLOURS for shape in SHAPES]
IMAGE_SIZE = 32
CONFIG_FILE = "tiny-clip.json"  # open_clip names the model by the file's stem


def write_tiny_config(folder: Path) -> Path:
    """An open_clip config for a ~3.5M-parameter CLIP (mostly the 49408-token embedding table); 77-token context
    like real CLIP, so truncation behaves the same."""
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 2, "width": 64, "head_width": 32, "patch_size": 4},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    path = Path(folder) / CONFIG_FILE
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def _model(config_path: Path) -> tuple[Any, Any]:
    """A randomly initialised model of the config's architecture, with its inference preprocessing."""
    import open_clip

    open_clip.add_model_config(config_path)
    model, _, preprocess = open_clip.create_model_and_transforms(config_path.stem, device="cpu")
    return model, preprocess


def save_random_checkpoint(config_path: Path, out_path: Path, seed: int = 0) -> Path:
    """Save the state dict of a randomly initialised model, usable as ``pretrained=out_path``."""
    import torch

    torch.manual_seed(seed)
    model, _ = _model(config_path)
    torch.save(model.state_dict(), out_path)
    return out_path


def caption(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def draw(colour: str, shape: str, rng: random.Random) -> Any:
    """A grey image with one shape of random size (half the image or more) and position, wholly inside it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), tuple(rng.randint(90, 160) for _ in range(3)))
    size = rng.randint(IMAGE_SIZE // 2, IMAGE_SIZE - 2)
    left, top = rng.randint(0, IMAGE_SIZE - size), rng.randint(0, IMAGE_SIZE - size)
    box = (left, top, left + size - 1, top + size - 1)
    pen = ImageDraw.Draw(image)
    fill = COLOURS[colour]
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(left + size / 2, top), (left, top + size - 1), (left + size - 1, top + size - 1)], fill=fill)
    return image


def shape_images(per_class: int, seed: int) -> list[tuple[Any, str]]:
    """``per_class`` (image, caption) pairs for each of the twelve classes, in class order."""
    rng = random.Random(seed)
    return [(draw(colour, shape, rng), caption(colour, shape))
            for colour, shape in CLASSES for _ in range(per_class)]


def train_tiny_clip(config_path: Path, out_path: Path, seconds: float = 40.0, max_steps: int = 500,
                    seed: int = 0) -> Path:
    """Train the tiny CLIP with the symmetric contrastive loss, ``max_steps`` steps of one fresh image per class
    (about 30 s; colour is learnt in 50 steps, shape in a few hundred), stopping early after ``seconds``, and
    save its state dict. One thread: two threads on two busy cores ran 15 times slower."""
    import open_clip
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = random.Random(seed)
    model, preprocess = _model(config_path)
    tokenizer = open_clip.get_tokenizer(config_path.stem)
    tokens = tokenizer([caption(colour, shape) for colour, shape in CLASSES])
    targets = torch.arange(len(CLASSES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model.train()
    started = time.monotonic()
    for step in range(1, max_steps + 1):
        images = torch.stack([preprocess(draw(colour, shape, rng)) for colour, shape in CLASSES])
        image_features, text_features, logit_scale = model(images, tokens)[:3]
        logits = logit_scale * image_features @ text_features.T
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if time.monotonic() - started > seconds:
            break
    print(f"tiny CLIP: {step} steps in {time.monotonic() - started:.1f}s, loss {loss.item():.2f}", file=sys.stderr)
    model.eval()
    torch.save(model.state_dict(), out_path)
    return out_path


if __name__ == "__main__":  # python -m tests.clip_model CONFIG OUT [SECONDS]
    train_tiny_clip(Path(sys.argv[1]), Path(sys.argv[2]), *(float(arg) for arg in sys.argv[3:4]))
