"""Reads and loads one file the way an ingest does, in a fresh process, and prints what it cost as JSON.

``python -m tests.load_probe FILE SOURCE_FOLDER`` prints {"reason", "text", "warnings", "images", "seconds",
"max_rss_mb"}: the process's own peak memory (see ``peak_memory_mb``), so a test can hold a loader to its memory
bound.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from ingestion.isolation import InProcessRunner
from ingestion.loaders import LoadError
from ingestion.loaders.base import Limits
from ingestion.reading import FileJob, ReadSettings


def main(path: Path, root: Path) -> None:
    started = time.perf_counter()
    runner = InProcessRunner(ReadSettings(limits=Limits(), max_bytes=100 * 2**20))
    info = os.stat(path)
    job = FileJob(root.resolve(), path, (info.st_dev, info.st_ino))
    result: dict[str, object] = {"reason": None, "text": "", "warnings": [], "images": []}
    try:
        runner.read(job)
        loaded = runner.load(job)
        result.update(text=loaded.document.text, warnings=loaded.document.warnings,
                      images=[picture.image.sha256 for picture in loaded.pictures])
    except LoadError as error:
        result["reason"] = str(error)
    result["seconds"] = time.perf_counter() - started
    result["max_rss_mb"] = peak_memory_mb()
    print(json.dumps(result))


def peak_memory_mb() -> float:
    """This process's own peak resident memory since it started this program: VmHWM of its address space.

    ``getrusage().ru_maxrss`` would not do: Linux carries the high-water mark of the address space a process had
    before ``exec`` into it, so a probe started by a large test process would report that process's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
