"""Runs a module as ``python -m`` would and, at exit, writes the process's peak memory (MB) to a file.

``python -m tests.peak_memory OUT MODULE ARGS...``. The peak is the kernel's high-water mark of this process's own
memory (``VmHWM``): ``getrusage`` would also count the memory of the process that forked it, before the exec.
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path


def peak_mb() -> float:
    """This process's peak resident memory in MB, from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    out, module, *arguments = sys.argv[1:]
    atexit.register(lambda: Path(out).write_text(f"{peak_mb():.1f}\n", encoding="utf-8"))
    sys.argv = [module, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
