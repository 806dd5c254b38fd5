"""Reads and loads one file the way an ingest does, in a fresh process, and prints what it cost as JSON.

``python -m tests.load_probe FILE SOURCE_FOLDER`` prints {"reason", "text", "warnings", "images", "seconds",
"max_rss_mb"}: the process's own peak memory (``VmHWM``), so a test can hold a loader to its memory bound.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ingestion.isolation import InProcessRunner
from ingestion.loaders import LoadError
from ingestion.loaders.base import Limits
from ingestion.reading import FileJob, ReadSettings
from tests.peak_memory import peak_mb


def main(path: Path, root: Path) -> None:
    started = time.perf_counter()
    runner = InProcessRunner(ReadSettings(limits=Limits(), max_bytes=100 * 2**20))
    info = os.stat(path)
    job = FileJob(root.resolve(), path, (info.st_dev, info.st_ino))
    result: dict[str, object] = {"reason": None, "text": "", "warnings": [], "images": []}
    try:
        loaded = runner.fetch(job, frozenset()).loaded
        assert loaded is not None
        result.update(text=loaded.document.text, warnings=loaded.document.warnings,
                      images=[picture.image.sha256 for picture in loaded.pictures])
    except LoadError as error:
        result["reason"] = str(error)
    result["seconds"] = time.perf_counter() - started
    result["max_rss_mb"] = peak_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
