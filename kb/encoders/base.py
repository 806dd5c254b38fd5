"""The encoder contract: an embedding space is defined by its encoder's identity."""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel


class EncoderIdentity(BaseModel):
    """What must match between the vectors stored in a space and the encoder that queries it."""

    model: str
    fingerprint: str
    dimension: int
    normalized: bool = True
    previous_fingerprint: str | None = None
    """The same files' fingerprint under fingerprint version 1, which knowledge bases built before version 2
    recorded (see ``kb.encoders.fingerprint``): a space that recorded it was built by this encoder."""

    def built(self, fingerprint: str, dimension: int) -> bool:
        """Whether a space recorded with ``fingerprint`` and ``dimension`` holds this encoder's vectors."""
        return dimension == self.dimension and fingerprint in (self.fingerprint, self.previous_fingerprint)

    def on_backend(self, backend: str) -> EncoderIdentity:
        """The identity of the vectors ``backend`` computes with this model. float32 runtimes give torch's vectors
        (to about 1e-6 in cosine): same identity. An int8 backend gives other vectors: its own fingerprint, and its
        name in the model's, so a space built with one backend and queried with another is detected as a
        different model is."""
        if not backend.endswith("-int8"):
            return self
        def on(fingerprint: str) -> str:
            return hashlib.sha256(f"{fingerprint}:{backend}".encode()).hexdigest()

        previous = on(self.previous_fingerprint) if self.previous_fingerprint else None
        return self.model_copy(update={"model": f"{self.model} ({backend})", "fingerprint": on(self.fingerprint),
                                       "previous_fingerprint": previous})


class TextEncoder(Protocol):
    """Turns texts into normalised float32 vectors; loads its model lazily on first use."""

    def identity(self) -> EncoderIdentity: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    @property
    def tokenizer(self) -> Any | None:
        """The Hugging Face fast tokenizer the model reads with, for token-aware chunking (None if unknown)."""
        ...


class LazyEncoder(ABC):
    """Loads its model once, on first use and thread-safely, and keeps the identity that came with it."""

    def __init__(self) -> None:
        self._model: Any = None
        self._identity: EncoderIdentity | None = None
        self._lock = threading.Lock()

    @abstractmethod
    def _build(self) -> tuple[Any, EncoderIdentity]:
        """Load the model; raise ``ModelNotFoundError`` when it cannot be had."""

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model, self._identity = self._build()
        return self._model

    def identity(self) -> EncoderIdentity:
        self._load()
        assert self._identity is not None
        return self._identity
