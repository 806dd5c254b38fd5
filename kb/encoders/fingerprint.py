"""Fingerprints of model folders, so a space can tell whether it is queried with the encoder that built it.

Version 2 (``VERSION``) hashes every byte of the files a model loads: its weights, its configuration, and its
tokenizer files (``max_seq_length`` lives in ``tokenizer_config.json`` with sentence-transformers 6, default prompts
in ``config_sentence_transformers.json``), and leaves out the ONNX and OpenVINO variants a hub snapshot may gain.
Version 1, which knowledge bases built before it recorded, hashed fewer files, every ``.onnx``/``.bin`` file in any
subfolder, and only the first and last 4 MiB of weight files over 8 MiB (so retraining middle layers in place kept
the fingerprint). ``version=1`` still computes it, so a space that recorded it for the files there now is
recognised and its record upgraded (see ``EncoderIdentity.previous_fingerprint``), never refused.

Whole-file hashes are kept in process, keyed by path, size, modification time and inode: a long-running process
(server, scheduler) that reopens a model reads it once. A new process hashes it again; loading the model reads
every byte anyway, and SHA-256 runs at about 1 GB/s, so that costs less than the load and needs no cache on disk
that could go stale.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

VERSION = 2
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".npz", ".model")  # .model: SentencePiece
CONFIG_NAMES = ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json", "vocab.txt",
                "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                "config_sentence_transformers.json")
CONFIG_NAMES_V1 = CONFIG_NAMES[:5]
EXPORT_FOLDERS = ("onnx", "openvino")  # variants a hub snapshot may hold beside the weights; never loaded by torch

SAMPLE_BYTES = 4 << 20  # version 1: the head and tail hashed of a weight file over twice this size
READ_BYTES = 1 << 20

_hashes: dict[tuple[str, int, int, int], bytes] = {}
_hashes_lock = threading.Lock()


def folder_fingerprint(folder: Path, skip: Sequence[str] = (), version: int = VERSION) -> str:
    """SHA-256 over the names, sizes and contents of the folder's configuration, tokenizer and weight files,
    leaving out its subfolders named in ``skip`` (what was derived from the model, such as a reader's calibrated
    int8 graph), export folders (``onnx/``, ``openvino/``) and hidden ones. ``version=1``: the algorithm knowledge
    bases recorded before version 2 (see the module's docstring)."""
    names, content = (CONFIG_NAMES, _whole) if version == VERSION else (CONFIG_NAMES_V1, _sampled)
    left_out = set(skip) if version != VERSION else {*skip, *EXPORT_FOLDERS}
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in names)
        and not _left_out(p.relative_to(folder).parts[:-1], left_out, version)
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}".encode())
        content(digest, path)
    return digest.hexdigest()


def file_fingerprint(path: Path, version: int = VERSION) -> str:
    """SHA-256 over one weight file's size and contents, so a checkpoint keeps its fingerprint when it is moved or
    renamed (``version=1``: sampled as version 1 did)."""
    digest = hashlib.sha256(f"{path.stat().st_size}".encode())
    (_whole if version == VERSION else _sampled)(digest, path)
    return digest.hexdigest()


def _left_out(folders: tuple[str, ...], left_out: set[str], version: int) -> bool:
    """Whether a file in ``folders`` (its path's folders, outermost first) is left out of the fingerprint."""
    if version != VERSION:
        return bool(folders) and folders[0] in left_out
    return any(part in left_out or part.startswith(".") for part in folders)


def _whole(digest: hashlib._Hash, path: Path) -> None:
    """Feed the SHA-256 of every byte of the file to ``digest``, computed once per version of the file."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _hashes_lock:
        known = _hashes.get(key)
    if known is None:
        whole = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(READ_BYTES), b""):
                whole.update(block)
        known = whole.digest()
        with _hashes_lock:
            _hashes[key] = known
    digest.update(known)


def _sampled(digest: hashlib._Hash, path: Path) -> None:
    """Version 1: feed the file's contents to ``digest``, all of it up to 8 MiB, else its first and last 4 MiB."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= 2 * SAMPLE_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(SAMPLE_BYTES))
            handle.seek(-SAMPLE_BYTES, 2)
            digest.update(handle.read(SAMPLE_BYTES))
