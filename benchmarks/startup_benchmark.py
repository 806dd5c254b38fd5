"""Cold-start wall time of `kb` commands, beside the imports they would pay for, and optionally another checkout.

    python benchmarks/startup_benchmark.py [--repeat 5] [--compare /path/to/older/checkout]

Each command runs in a fresh process (nothing cached in memory but the operating system's file cache), on a
knowledge base built from the bundled examples. Peers in the same run: a bare interpreter, and the imports of
torch and sentence-transformers, which a command that needs no model should never pay. With --compare, the same
commands run from another checkout of the project (e.g. `git worktree add /tmp/before <commit>`) on its own
knowledge base, and the ratios are printed. Medians, because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "docs"
COMMANDS = {
    "kb --version": ["--version"],
    "kb stats": ["stats"],
    "kb jobs": ["jobs"],
    "kb source list": ["source", "list"],
    "kb ingest (unchanged)": ["ingest", str(EXAMPLES)],
    "kb search": ["search", "How many days do customers have to return an item?"],
}
PEERS = {
    "python -c pass": "pass",
    "import torch": "import torch",
    "import sentence_transformers": "import sentence_transformers",
}


def timed(argv: list[str], env: dict[str, str], repeat: int, cwd: Path = ROOT) -> float:
    """Median wall seconds of ``argv`` over ``repeat`` runs (after one unmeasured run that warms the file cache).

    ``cwd`` is the checkout whose code runs: ``python -m`` puts the working folder first on the import path."""
    times = []
    for attempt in range(repeat + 1):
        started = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if attempt:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(checkout: Path, kb_dir: Path, repeat: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "KB_HOME": str(kb_dir), "HF_HUB_OFFLINE": "1"}
    kb = [sys.executable, "-m", "kb.cli"]
    subprocess.run(kb + ["ingest", str(EXAMPLES)], env=env, cwd=checkout, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return {name: timed(kb + argv, env, repeat, checkout) for name, argv in COMMANDS.items()
            if name != "kb --version" or checkout == ROOT}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another checkout of the project, measured the same way")
    args = parser.parse_args()
    peers = {name: timed([sys.executable, "-c", code], dict(os.environ), args.repeat) for name, code in PEERS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure(ROOT, Path(tmp) / "kb", args.repeat)
        other = measure(args.compare.resolve(), Path(tmp) / "other-kb", args.repeat) if args.compare else {}
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'peer':<32}{'median s':>10}")
    for name, seconds in peers.items():
        print(f"{name:<32}{seconds:>10.2f}")
    header = f"\n{'command':<32}{'this':>10}" + (f"{'compared':>10}{'ratio':>8}" if other else "")
    print(header)
    for name, seconds in ours.items():
        line = f"{name:<32}{seconds:>10.2f}"
        if name in other:
            line += f"{other[name]:>10.2f}{seconds / other[name]:>8.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
