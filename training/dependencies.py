"""The ``train`` extra: checked once before training starts, with the command that installs it."""

from __future__ import annotations

from importlib.util import find_spec

from kb.errors import KbError

TRAIN_PACKAGES = ("accelerate", "datasets")


class TrainingExtraMissing(KbError, ImportError):
    """A package ``kb train`` needs is not installed."""


def require_train_extra() -> None:
    missing = [name for name in TRAIN_PACKAGES if find_spec(name) is None]
    if missing:
        raise TrainingExtraMissing(f"kb train needs {' and '.join(missing)}: pip install 'multimodal-kb[train]' (or "
                                   f"pip install {' '.join(missing)})")
