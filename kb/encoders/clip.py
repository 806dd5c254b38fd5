"""The shared image-text space: an open_clip model embeds images and texts into one normalised vector space.

The model is an open_clip architecture name (``ViT-B-32``) or a model config ``.json`` file (its stem becomes the
architecture name). The weights are an open_clip pretrained tag, found in the local Hugging Face or open_clip cache
(downloaded only when the hub is reachable), or a checkpoint file. Texts longer than the model's context (77
tokens for the OpenAI-style models) are truncated by open_clip's tokenizer: CLIP reads a caption, not a passage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from kb.cards import refuse_unfinished
from kb.encoders.base import EncoderIdentity, LazyEncoder
from kb.encoders.fingerprint import VERSION, file_fingerprint
from kb.encoders.hub import hub_reachable
from kb.errors import ModelNotFoundError
from kb.inference import Backend, CompiledGraph, ExportCache, GraphSpec
from kb.inference.backends import torch_device

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)
OPEN_CLIP_URL_CACHE = Path("~/.cache/clip")  # where open_clip keeps weights it downloads from plain URLs
ADVICE = ("Set KB_CLIP_PRETRAINED to a checkpoint file, download the weights while online (the first use "
          "does), or set KB_CLIP_MODEL=none to turn the image space off.")


class _Loaded(NamedTuple):
    """What one load yields: the model, the functions that prepare its inputs, and for backends other than torch
    the exported towers that compute instead (``{"image": graph, "text": graph}``)."""

    model: Any
    preprocess: Callable[[Image], Any]
    tokenizer: Callable[[Sequence[str]], Any]
    device: str
    towers: dict[str, CompiledGraph]


def resolve_architecture(model: str) -> str:
    """The open_clip architecture ``model`` names; a config ``.json`` file is registered with open_clip first."""
    import open_clip

    if model.lower().endswith(".json"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"CLIP model config {path} does not exist. Give KB_CLIP_MODEL an open_clip "
                                     "architecture name (ViT-B-32) or a model config .json file.")
        open_clip.add_model_config(path.resolve())
        return path.stem
    if open_clip.get_model_config(model) is None:
        raise ModelNotFoundError(f"{model!r} is not an open_clip architecture (known: ViT-B-32, ViT-B-16, ViT-L-14, "
                                 "... see open_clip.list_models()); KB_CLIP_MODEL may also name a model config "
                                 ".json file.")
    return model


def resolve_checkpoint(architecture: str, pretrained: str) -> tuple[Path, dict[str, Any]]:
    """The checkpoint file for ``pretrained`` (a file, or a tag looked up in the local caches and, when the hub is
    reachable, downloaded), and the tag's open_clip settings (empty for a file)."""
    import open_clip

    path = Path(pretrained).expanduser()
    if path.is_file():
        refuse_unfinished(path.resolve().parent, "CLIP checkpoint", "KB_CLIP_PRETRAINED")
        return path, {}
    tag = open_clip.get_pretrained_cfg(architecture, pretrained)
    if not tag:
        if path.suffix or os.sep in pretrained:
            raise ModelNotFoundError(f"CLIP checkpoint file {path} does not exist. {ADVICE}")
        known = ", ".join(open_clip.list_pretrained_tags_by_model(architecture)) or "none"
        raise ModelNotFoundError(f"{pretrained!r} is neither a checkpoint file nor a pretrained tag of "
                                 f"{architecture} (its tags: {known}). {ADVICE}")
    online = hub_reachable()
    tried: list[str] = []
    if tag.get("hf_hub"):
        found = _from_hugging_face(tag["hf_hub"], online, tried)
        if found:
            return found, tag
    if tag.get("url"):
        cached = OPEN_CLIP_URL_CACHE.expanduser() / os.path.basename(tag["url"])
        if cached.is_file():
            return cached, tag
        tried.append(f"open_clip cache {cached}")
        if online:
            from open_clip.pretrained import download_pretrained_from_url

            return Path(download_pretrained_from_url(tag["url"])), tag
    where = "; ".join(tried) + ("" if online else " (offline: nothing downloaded)")
    raise ModelNotFoundError(f"CLIP weights {architecture}/{pretrained} are not available here; looked in: "
                             f"{where}. {ADVICE}")


def _from_hugging_face(hf_hub: str, online: bool, tried: list[str]) -> Path | None:
    """The cached (or, online, downloaded) file of an open_clip ``hf_hub`` entry, preferring safetensors."""
    from huggingface_hub import constants, hf_hub_download
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    repo_id, filename = os.path.split(hf_hub)  # open_clip's convention: "org/repo/" means the default file
    filename = filename or HF_WEIGHTS_NAME
    names = [filename]
    if filename == HF_WEIGHTS_NAME:
        names.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    for name in names:
        try:
            return Path(hf_hub_download(repo_id, name, local_files_only=not online))
        except Exception:  # not cached, not on the hub, or no network: try the next name
            continue
    source = f"Hugging Face {'hub and ' if online else ''}cache {constants.HF_HUB_CACHE}"
    tried.append(f"{source} ({repo_id}: {', '.join(names)})")
    return None


class ClipEncoder(LazyEncoder):
    """An open_clip model producing L2-normalised float32 vectors for images and texts, in batches.

    It satisfies ``TextEncoder``, so the CLIP space's text side (queries, chunk texts) goes through ``encode``.
    """

    def __init__(self, model: str, pretrained: str, *, device: str | None = None, batch_size: int = 32,
                 backend: Backend = "torch", cache: ExportCache | None = None) -> None:
        super().__init__()
        self.model = model
        self.pretrained = pretrained
        self.device = device
        self.batch_size = batch_size
        self.backend = backend
        self.cache = cache or ExportCache()

    def _build(self) -> tuple[_Loaded, EncoderIdentity]:
        log.info("loading CLIP model %s (%s)", self.model, self.pretrained)
        import open_clip

        architecture = resolve_architecture(self.model)
        checkpoint, tag = resolve_checkpoint(architecture, self.pretrained)
        device = "cpu" if self.backend != "torch" else torch_device(self.device)
        quick_gelu = bool(tag.get("quick_gelu", False))
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                architecture, pretrained=str(checkpoint), device=device, force_quick_gelu=quick_gelu,
                image_mean=tag.get("mean"), image_std=tag.get("std"), image_interpolation=tag.get("interpolation"),
                image_resize_mode=tag.get("resize_mode"))
            tokenizer = open_clip.get_tokenizer(architecture)
        except pickle.UnpicklingError:  # open_clip loads with weights_only: a pickle with code is refused
            raise ModelNotFoundError(f"CLIP checkpoint {checkpoint} is refused: it holds more than tensors (pickled "
                                     f"objects that could run code). {ADVICE}") from None
        except (OSError, RuntimeError) as error:  # a corrupt or mismatched checkpoint, an uncached HF tokenizer
            raise ModelNotFoundError(f"CLIP model {architecture} could not be loaded from {checkpoint}: {error}. "
                                     f"{ADVICE}") from error
        model.eval()
        config = {"model": open_clip.get_model_config(architecture), "quick_gelu": quick_gelu}
        def fingerprint(version: int) -> str:
            digest = hashlib.sha256(file_fingerprint(checkpoint, version).encode())
            digest.update(json.dumps(config, sort_keys=True).encode())
            return digest.hexdigest()

        name = self.pretrained if tag else checkpoint.name
        identity = EncoderIdentity(model=f"{architecture}/{name}", fingerprint=fingerprint(VERSION),
                                   previous_fingerprint=fingerprint(1), dimension=int(config["model"]["embed_dim"]),
                                   normalized=True)
        towers = self._export_towers(model, tokenizer, identity) if self.backend != "torch" else {}
        return _Loaded(model, preprocess, tokenizer, device, towers), identity.on_backend(self.backend)

    def _export_towers(self, model: Any, tokenizer: Callable[[Sequence[str]], Any],
                       identity: EncoderIdentity) -> dict[str, CompiledGraph]:
        """Both towers as graphs for the configured backend, exported once per checkpoint (see ``kb.inference``)."""
        import torch

        from kb.encoders.exportable import ClipTower

        side = model.visual.image_size
        height, width = (side, side) if isinstance(side, int) else side
        examples = {"image": lambda: [torch.zeros(2, 3, height, width)],
                    "text": lambda: [tokenizer(["a photo of a loading dock", "a sign"])]}
        towers = {}
        for tower, example in examples.items():
            spec = GraphSpec(name=f"clip-{tower}", inputs=["inputs"], outputs=["embedding"],
                             dynamic={"inputs": {0: "batch"}, "embedding": {0: "batch"}})
            path = self.cache.graph(identity.fingerprint, spec, self.backend,
                                    lambda tower=tower: ClipTower(model, tower), example)
            towers[tower] = CompiledGraph(path, self.backend)
        return towers

    @property
    def tokenizer(self) -> Any | None:
        return None  # open_clip's BPE tokenizer has no character offsets: chunks count approximate tokens

    @property
    def context_length(self) -> int:
        """Tokens the text tower reads, start and end tokens included; the rest of a text is cut off."""
        return int(self._load().tokenizer.context_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """CLIP text embeddings of ``texts``, each truncated to the model's context."""
        loaded = self._load()
        return self._batches(texts, "text", lambda batch: loaded.tokenizer(list(batch)))

    def encode_images(self, images: Sequence[Image]) -> np.ndarray:
        """CLIP image embeddings of RGB PIL images, through the model's own resize, crop and normalisation."""
        import torch

        loaded = self._load()
        return self._batches(images, "image", lambda batch: torch.stack([loaded.preprocess(image) for image in batch]))

    def _batches(self, items: Sequence[Any], tower: str, prepare: Callable[[Sequence[Any]], Any]) -> np.ndarray:
        """``items`` through one tower in batches: prepared as torch tensors, computed by torch or the tower's graph."""
        import torch

        loaded = self._load()
        graph = loaded.towers.get(tower)
        encode = loaded.model.encode_image if tower == "image" else loaded.model.encode_text
        dimension = self.identity().dimension
        parts = []
        with torch.inference_mode():
            for first in range(0, len(items), self.batch_size):
                inputs = prepare(items[first : first + self.batch_size])
                if graph is not None:
                    parts.append(graph.run({"inputs": inputs.numpy()})[0])
                else:
                    parts.append(encode(inputs.to(loaded.device), normalize=True).float().cpu().numpy())
        if not parts:
            return np.zeros((0, dimension), dtype=np.float32)
        vectors = np.concatenate(parts).astype(np.float32, copy=False)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors)
