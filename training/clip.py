"""``kb train clip``: contrastive fine-tuning of an open_clip model on image-caption pairs.

Pairs come from a JSONL file (``{"image": path relative to the file, "caption": ...}``, or ``"captions"``: a list)
or from the knowledge base's own images with their captions, alt texts and OCR text (``--from-kb``). Images are
decoded with the ingest's guards (pixel limit, formats); an image path leaving the JSONL file's folder is refused.
open_clip has no trainer class, so the loop is written here: open_clip's ``ClipLoss`` (symmetric InfoNCE over the
batch), AdamW, linear decay after a warm-up, the same time budget, checkpoints and resume as the other trainers, and
the weights with the best validation recall kept. Use the result with ``KB_CLIP_MODEL`` (architecture or config
file) and ``KB_CLIP_PRETRAINED=DIR/model.pt``, then ``kb reembed``."""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kb.cards import DataFile, TrainingCard
from kb.config import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, Settings
from kb.containment import FileTooLargeError, RefusedFileError, read_inside
from kb.encoders.clip import resolve_architecture, resolve_checkpoint
from kb.encoders.fingerprint import file_fingerprint
from kb.errors import InvalidRequestError
from kb.inference.backends import torch_device
from training.errors import TrainingDataError, unreadable_checkpoint
from training.files import data_file, in_validation, read_jsonl
from training.options import NO_VALIDATION, TrainOptions
from training.output import finish_output, prepare_output, publish_model
from training.runner import LOG_EVERY, library_versions, start_run, utc_now
from training.split import held_out_groups

DEFAULTS = {"epochs": 5.0, "batch_size": 32, "learning_rate": 1e-5}
KEEP_SIDE = 512  # decoded images are kept at most this large: enough for any CLIP input resolution up to 448
KEEP_QUALITY = 95  # and as JPEG: COCO's photos take 82 KB where their pixels took 560 KB (medians)
VALIDATION_BATCH = 64  # validation images encoded at a time: all at once, 5,000 took gigabytes of activations
STATE = "last.pt"


@dataclass
class Captioned:
    picture: bytes  # the image as JPEG (see KEEP_QUALITY), decoded at each use
    caption: str
    group: str  # the image's identity: an image and all its captions stay on one side of the split

    @property
    def image(self) -> Any:
        """The RGB PIL image."""
        from PIL import Image

        with Image.open(io.BytesIO(self.picture)) as image:
            return image.convert("RGB")


@dataclass
class CaptionFile:
    """The image-caption pairs of one JSONL file, the lines left out by reason, and the hash of the file's bytes."""

    pairs: list[Captioned]
    skipped: Counter[str]
    sha256: str


def jsonl_captions(path: Path, max_pixels: int, max_bytes: int) -> CaptionFile:
    """Pairs of a JSONL file; unusable lines are counted by reason. Images are read as a source folder's files
    are: regular files inside the data file's folder, at most ``max_bytes`` (a FIFO or a device cannot stall the
    run)."""
    from ingestion.loaders.images import decode_image, thumbnail_jpeg

    root = path.parent.resolve()
    pairs, decoded = [], dict[str, bytes | str]()  # an image, or why it was refused
    read = read_jsonl(path)
    skipped = read.skipped
    for row in read.rows:
        image, captions = row.get("image"), _captions_of(row)
        if not isinstance(image, str) or not captions:
            skipped["no image path or caption"] += 1
            continue
        file = _resolved(root / image)
        if file is None:
            skipped["image path that cannot be resolved (a NUL byte, a symlink loop)"] += 1
            continue
        if not file.is_relative_to(root):
            skipped["image outside the data file's folder"] += 1
            continue
        if str(file) not in decoded:  # each image read once, however many captions it has
            try:
                data = read_inside(root, root / image, max_bytes)
                decoded[str(file)] = thumbnail_jpeg(decode_image(data, file.name, max_pixels=max_pixels).image,
                                                    KEEP_SIDE, KEEP_QUALITY)
            except RefusedFileError:
                decoded[str(file)] = "image not a readable regular file in the data file's folder"
            except FileTooLargeError:
                decoded[str(file)] = "image file over the max_file_mb limit"
            except Exception as error:  # noqa: BLE001 - a bad image is a skipped example, whatever the decoder says
                decoded[str(file)] = f"image unreadable ({type(error).__name__})"
        found = decoded[str(file)]
        if isinstance(found, str):  # why the image was refused: each of its lines is a skipped example
            skipped[found] += 1
            continue
        pairs += [Captioned(found, caption, str(file)) for caption in captions]
    return CaptionFile(pairs, skipped, read.sha256)


def _captions_of(row: dict[str, Any]) -> list[str]:
    """A line's captions: its ``caption``, or each of its ``captions`` (COCO's five an image, on one line), blank
    ones left out; none where neither is text (or a list of it)."""
    given = [row["caption"]] if isinstance(row.get("caption"), str) else row.get("captions")
    if not isinstance(given, list) or not all(isinstance(caption, str) for caption in given):
        return []
    return [caption.strip() for caption in given if caption.strip()]


def _resolved(path: Path) -> Path | None:
    """``path`` made absolute with its symlinks followed, or None when it cannot be: a data file's line naming an
    image with a NUL byte or through a symlink loop is a skipped example, not a crash."""
    try:
        return path.resolve()
    except (ValueError, OSError, RuntimeError):  # NUL: ValueError; a loop: RuntimeError (OSError from Python 3.13)
        return None


def _file_captions(paths: Sequence[Path], max_pixels: int,
                   max_bytes: int) -> tuple[list[Captioned], Counter[str], list[DataFile]]:
    """The pairs of JSONL files, what was skipped, and each file's record for the card."""
    pairs, skipped, files = [], Counter[str](), []
    for path in paths:
        found = jsonl_captions(Path(path), max_pixels, max_bytes)
        pairs += found.pairs
        skipped += found.skipped
        files.append(data_file(Path(path), found.sha256, len(found.pairs)))
    return pairs, skipped, files


def _captions_sha256(pairs: Sequence[Captioned]) -> str:
    """A hash of the captions and their images' names, so a resumed run checks it trains on the same pairs (those
    of ``--from-kb`` come from a knowledge base, which no file hash covers)."""
    return hashlib.sha256(json.dumps([[p.group, p.caption] for p in pairs]).encode()).hexdigest()


def kb_captions(store: Any) -> tuple[list[Captioned], Counter[str]]:
    """The knowledge base's images with their descriptions, from the stored previews (JPEG, as they are kept)."""
    pairs, skipped = [], Counter[str]()
    for picture in store.pictures():
        if not picture.description.strip():
            skipped["image without caption, alt text or OCR text"] += 1
            continue
        pair = Captioned(picture.preview, " ".join(picture.description.split()), f"{picture.path}#{len(pairs)}")
        try:
            pair.image  # noqa: B018 - decoded once here, so that a damaged preview is skipped, not a failed step
        except Exception as error:  # noqa: BLE001 - a bad preview is a skipped example, whatever the decoder says
            skipped[f"stored preview unreadable ({type(error).__name__})"] += 1
            continue
        pairs.append(pair)
    return pairs, skipped


def split_captioned(pairs: list[Captioned], fraction: float, seed: int) -> tuple[list[Captioned], list[Captioned]]:
    """(train, validation): an image and all its captions on one side."""
    held = held_out_groups((pair.group for pair in pairs), fraction, seed)
    return [p for p in pairs if p.group not in held], [p for p in pairs if p.group in held]


def _recall_at_1(model: Any, preprocess: Any, tokenizer: Any, pairs: Sequence[Captioned], device: str) -> dict:
    """Text-to-image and image-to-text recall@1 over the validation pairs (a caption's own image counts)."""
    import torch

    model.eval()
    images, texts = [], []
    with torch.inference_mode():
        for first in range(0, len(pairs), VALIDATION_BATCH):
            batch = pairs[first : first + VALIDATION_BATCH]
            images.append(model.encode_image(torch.stack([preprocess(p.image) for p in batch]).to(device),
                                             normalize=True).cpu())
            texts.append(model.encode_text(tokenizer([p.caption for p in batch]).to(device), normalize=True).cpu())
    similarity = torch.cat(texts) @ torch.cat(images).T
    groups = [p.group for p in pairs]
    text_to_image = sum(groups[int(similarity[i].argmax())] == groups[i] for i in range(len(pairs))) / len(pairs)
    image_to_text = sum(groups[int(similarity[:, j].argmax())] == groups[j] for j in range(len(pairs))) / len(pairs)
    return {"text_to_image_r1": round(text_to_image, 4), "image_to_text_r1": round(image_to_text, 4),
            "mean_r1": round((text_to_image + image_to_text) / 2, 4)}


def _resumed(resume_file: Path, model: Any, optimizer: Any, scheduler: Any, device: str, total: int) -> dict[str, Any]:
    """Load the interrupted run's weights, optimiser and schedule from ``resume_file``; its run state, noting where
    it resumed. A file that is not one the run saved (cut short, replaced, a step outside the run) is refused."""
    import pickle

    import torch

    try:
        saved = torch.load(resume_file, map_location=device, weights_only=True)  # a planted file runs no code
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = dict(saved["state"])
        step = state.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= total:
            raise ValueError(f"its step {step!r} is not one of the run's {total}")
        if missing := {"best", "best_step", "before", "losses"} - set(state):
            raise KeyError(f"its state lacks {', '.join(sorted(missing))}")
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, AttributeError, pickle.UnpicklingError) as error:
        raise unreadable_checkpoint(str(resume_file), error) from error
    return state | {"resumed_from": f"step {state['step']}"}


def train_clip(data: Sequence[Path], options: TrainOptions, *, clip_pretrained: str | None = None,
               kb_dir: Path | None = None, from_kb: bool = False) -> TrainingCard:
    """Fine-tune the open_clip model ``options.base_model`` (architecture or config ``.json``; default the
    ``clip_model`` setting) from ``clip_pretrained`` (tag or checkpoint file) on the JSONL files ``data`` and, with
    ``from_kb``, the images of the knowledge base at ``kb_dir``; write ``model.pt`` and ``training.json``."""
    import open_clip
    import torch
    from transformers import get_linear_schedule_with_warmup

    if options.max_seq_length is not None:  # open_clip adds every position's embedding: captions have one length
        raise InvalidRequestError("kb train clip reads captions at the model's own context length (77 tokens for "
                                  "OpenAI's architectures); --max-seq-length does not apply to it")
    started, started_at = time.monotonic(), utc_now()
    settings = Settings()
    model_name = options.base_model or DEFAULT_CLIP_MODEL
    pretrained = clip_pretrained or DEFAULT_CLIP_PRETRAINED
    architecture = resolve_architecture(model_name)
    checkpoint, tag = resolve_checkpoint(architecture, pretrained)
    config = Path(model_name)
    configs = [config] if config.suffix == ".json" and config.is_file() else []
    start_run(options, data=data, models=[checkpoint, *configs], kb_dir=kb_dir)
    base_fingerprint = file_fingerprint(checkpoint)
    limits = (settings.ingestion.max_image_pixels, round(settings.ingestion.max_file_mb * 2**20))
    pairs, skipped, files = _file_captions(data, *limits)
    if from_kb:
        from kb.knowledge_base import KnowledgeBase

        if kb_dir is None or not (kb_dir / "kb.json").is_file():
            raise TrainingDataError(f"--from-kb: no knowledge base at {kb_dir}; give its folder with --kb")
        with KnowledgeBase.open(kb_dir) as knowledge_base:
            found, dropped = kb_captions(knowledge_base.store)
        pairs += found
        skipped += dropped
    validation_files: list[DataFile] = []
    if options.validation:
        validation, unusable, validation_files = _file_captions(options.validation, *limits)
        if not validation:
            reasons = ", ".join(f"{count} {reason}" for reason, count in unusable.items()) or "none given"
            raise TrainingDataError(f"no usable image with a caption in the --validation files (skipped: {reasons})")
        skipped += in_validation(unusable)
        train, split = pairs, "given: " + ", ".join(map(str, options.validation))
    elif not options.use_validation:
        train, validation, split = pairs, [], NO_VALIDATION
    elif len({p.group for p in pairs}) >= 2:
        train, validation = split_captioned(pairs, options.validation_fraction, options.seed)
        split = f"{len({p.group for p in validation})} images held out ({len(validation)} captions)"
    else:
        train = []
    if len({pair.group for pair in train}) < 2:  # one image against itself: a contrastive loss has nothing to learn
        reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.items()) or "none"
        held_out = "" if options.validation or not options.use_validation else ", and one more held out for validation"
        raise TrainingDataError(f"too few usable images with captions ({len({pair.group for pair in pairs})} "
                                f"images, {len(pairs)} captions; skipped: {reasons}); training needs two images "
                                f"at least{held_out}")
    epochs = options.epochs or DEFAULTS["epochs"]
    batch_size = min(options.batch_size or DEFAULTS["batch_size"], len(train))
    learning_rate = options.learning_rate or DEFAULTS["learning_rate"]
    hyperparameters = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                       "warmup_ratio": options.warmup_ratio, "weight_decay": options.weight_decay,
                       **options.seeds(), **options.validation_recorded(), "loss": "open_clip.ClipLoss",
                       "pretrained": pretrained, "from_kb": from_kb}
    checkpoints = prepare_output(options.out, overwrite=options.overwrite, resume=options.resume,
                                 run={"kind": "clip", "base": model_name, "data": [f.sha256 for f in files],
                                      "validation_data": [f.sha256 for f in validation_files],
                                      "pairs": _captions_sha256(train + validation), **hyperparameters})
    device = torch_device(options.device)
    model, preprocess_train, preprocess = open_clip.create_model_and_transforms(
        architecture, pretrained=str(checkpoint), device=device, force_quick_gelu=bool(tag.get("quick_gelu")))
    tokenizer = open_clip.get_tokenizer(architecture)
    loss_fn = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total = max(1, round(epochs * steps_per_epoch))
    scheduler = get_linear_schedule_with_warmup(optimizer, round(options.warmup_ratio * total), total)
    state: dict[str, Any] = {"step": 0, "best": -1.0, "best_step": 0, "before": None, "losses": [],
                             "resumed_from": None}
    log_every, running = max(1, round(LOG_EVERY * total)), []
    resume_file = checkpoints / STATE
    if options.resume and (resume_file.exists() or resume_file.is_symlink()):
        state = _resumed(resume_file, model, optimizer, scheduler, device, total)
    if state["before"] is None:
        state["before"] = _recall_at_1(model, preprocess, tokenizer, validation, device) if validation else {}
    out = options.out.expanduser()
    best_file = checkpoints / "best.pt"

    def save(path: Path, payload: dict[str, Any]) -> None:
        torch.save(payload, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    def save_state() -> None:
        nonlocal last_save
        last_save = time.monotonic()
        save(resume_file, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "state": state})

    def evaluate_and_keep() -> dict:
        """Score, keep the weights when they are the best so far, and save where a resumed run starts: after a
        kill it continues from here, knowing the best score best.pt holds. With no validation it only saves."""
        if not validation:
            save_state()
            return {}
        scores = _recall_at_1(model, preprocess, tokenizer, validation, device)
        if scores["mean_r1"] > state["best"]:
            state["best"], state["best_step"] = scores["mean_r1"], state["step"]
            save(best_file, model.state_dict())
        save_state()
        model.train()
        return scores

    run_started, last_save = time.monotonic(), time.monotonic()
    stopped_early = False
    bar = tqdm(total=total, initial=state["step"], unit="step", file=sys.stderr, desc="training",
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    model.train()
    order_rng = random.Random(options.order_seed)
    order_epoch, order = -1, list[int]()  # one epoch's order at a time, drawn in turn (resumed: up to its epoch)
    while state["step"] < total:
        epoch, position = divmod(state["step"], steps_per_epoch)
        while order_epoch < epoch:
            order, order_epoch = order_rng.sample(range(len(train)), len(train)), order_epoch + 1
        batch = [train[i] for i in order[position * batch_size : (position + 1) * batch_size]]
        images = torch.stack([preprocess_train(p.image) for p in batch]).to(device)
        texts = tokenizer([p.caption for p in batch]).to(device)
        image_features, text_features, logit_scale = model(images, texts)[:3]
        loss = loss_fn(image_features, text_features, logit_scale)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        with torch.no_grad():  # as CLIP does: the temperature stays within 100
            model.logit_scale.clamp_(0, math.log(100))
        state["step"] += 1
        running.append(loss.item())
        if state["step"] % log_every == 0 or state["step"] == total:
            state["losses"].append((state["step"], round(sum(running) / len(running), 4)))
            running = []
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        out_of_time = options.max_seconds is not None and time.monotonic() - run_started >= options.max_seconds
        if state["step"] % steps_per_epoch == 0 or state["step"] == total:
            if scores := evaluate_and_keep():
                bar.write(f"step {state['step']}: validation {scores}", file=sys.stderr)
        elif out_of_time:
            evaluate_and_keep()
        elif time.monotonic() - last_save >= options.checkpoint_minutes * 60:
            save_state()
        if out_of_time:
            stopped_early = state["step"] < total
            break
    bar.close()
    after = {}
    if validation:  # else the last step's weights are the ones kept
        model.load_state_dict(torch.load(best_file, map_location=device, weights_only=True))
        after = _recall_at_1(model, preprocess, tokenizer, validation, device)

    def save_model(folder: Path) -> None:
        torch.save(model.state_dict(), folder / "model.pt")
        for config in configs:  # a custom architecture travels with its weights
            shutil.copy(config, folder / config.name)

    publish_model(out, save_model)
    card = TrainingCard(kind="clip", base_model=f"{architecture}/{pretrained}",
                        base_fingerprint=base_fingerprint, data=files, validation_data=validation_files,
                        validation_split=split, examples=len(train), skipped=dict(skipped),
                        hyperparameters=hyperparameters, started_at=started_at, finished_at=utc_now(),
                        seconds=round(time.monotonic() - started, 1), steps=state["step"],
                        epochs=round(state["step"] / steps_per_epoch, 3), stopped_early=stopped_early,
                        device=device, validation_before=state["before"], validation_after=after,
                        best_checkpoint=f"step {state['best_step']}" if validation else None,
                        resumed_from=state["resumed_from"],
                        training_loss=state["losses"],
                        libraries=library_versions("open_clip_torch"))
    finish_output(out, card)
    return card
