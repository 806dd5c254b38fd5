"""What per-file isolation costs on an ordinary folder: full ingests with the file worker on and off, taking turns.

    python benchmarks/isolation_benchmark.py [--data ../shared/data] [--distractors 2000] [--repeat 3]

The folder is the xquad-en paragraphs (one file each) plus Wikipedia summaries as distractors, as in the retrieval
benchmark. Each ingest is a fresh ``kb ingest`` process into an empty knowledge base, as a user runs it (model
load, the worker's start and the index save included), with ``KB_FILE_ISOLATION`` on or off; the two take turns so
that load from other processes falls on both. Prints each run, the medians, the overhead of isolation on the whole
ingest, and the difference in the time outside the encoder (reading, loading, chunking, storing: all that
isolation changes) per file and as a share of the ingest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.squad_corpus import write_distractors, write_squad_corpus  # noqa: E402


def ingest(folder: Path, kb_dir: Path, isolation: bool, model: str | None) -> tuple[float, dict]:
    """One ``kb ingest --json`` in a fresh process: (wall seconds, report)."""
    env = {**os.environ, "KB_FILE_ISOLATION": "true" if isolation else "false", "KB_DEVICE": "cpu",
           "KB_CLIP_MODEL": "none", "KB_OCR": "off", "PYTHONPATH": str(ROOT)}
    if model:
        env["KB_TEXT_MODEL"] = model
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kb.cli", "--kb", str(kb_dir), "ingest", str(folder), "--json"],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ingest failed: {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--distractors", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default=None, help="sentence-transformers folder (default: packaged MiniLM)")
    args = parser.parse_args()
    if not (args.data / "xquad-en").exists():
        print(f"no xquad-en under {args.data}", file=sys.stderr)
        return 2
    runs: dict[bool, list[tuple[float, dict]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        write_squad_corpus(args.data, "xquad-en", folder / "xquad")
        write_distractors(args.data, folder / "distractors", args.distractors)
        files = sum(1 for path in folder.rglob("*") if path.is_file())
        print(f"{files} files: xquad-en paragraphs and {args.distractors} Wikipedia summaries")
        for turn in range(args.repeat):
            for isolation in ((True, False) if turn % 2 == 0 else (False, True)):
                kb_dir = Path(tmp) / f"kb-{turn}-{isolation}"
                wall, report = ingest(folder, kb_dir, isolation, args.model)
                runs[isolation].append((wall, report))
                print(f"run {turn + 1}, isolation {'on ' if isolation else 'off'}: {wall:6.1f} s wall, ingest "
                      f"{report['seconds']:6.1f} s, encoder {report['encoder_seconds']:6.1f} s, "
                      f"{len(report['added'])} added, {len(report['failed'])} failed", flush=True)
    summary = {}
    for isolation, found in runs.items():
        walls = [wall for wall, _ in found]
        ingests = [report["seconds"] for _, report in found]
        outside = [report["seconds"] - report["encoder_seconds"] for _, report in found]
        summary[isolation] = (statistics.median(walls), statistics.median(ingests), statistics.median(outside))
    (on_wall, on_ingest, on_outside), (off_wall, off_ingest, off_outside) = summary[True], summary[False]
    print(f"median wall (process start to exit): on {on_wall:.1f} s, off {off_wall:.1f} s: "
          f"overhead {on_wall / off_wall - 1:+.1%}")
    print(f"median ingest (the run itself): on {on_ingest:.1f} s, off {off_ingest:.1f} s: "
          f"overhead {on_ingest / off_ingest - 1:+.1%}")
    print(f"median outside the encoder: on {on_outside:.1f} s, off {off_outside:.1f} s: "
          f"{(on_outside - off_outside) / files * 1000:+.2f} ms per file, "
          f"{(on_outside - off_outside) / off_ingest:+.1%} of the ingest without isolation (the encoder's time, "
          "the same work either way, varies more from run to run than this)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
