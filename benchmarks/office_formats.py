"""The RTF and Word 97-2003 loaders against the DOCX loader on the same documents: LibreOffice converts each DOCX
to .rtf and .doc, and all three are read (visible words compared as multisets, time per file).

    python benchmarks/office_formats.py [DOCX]...    (default: every .docx under ../shared/data/docs-corpus/docx)

Needs ``soffice`` (Debian: libreoffice-writer-nogui). The DOCX loader is the peer: a word it finds that a
converted file's loader does not, or the reverse, is a difference of the loader or of LibreOffice's conversion.
"""

from __future__ import annotations

import collections
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingestion.loaders import LoadError, loader_for  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "docs-corpus" / "docx"


def words(path: Path) -> tuple[collections.Counter[str], float]:
    """The visible words of the file as its loader reads them, and the seconds it took."""
    started = time.perf_counter()
    document = loader_for(path).load(path, path.read_bytes())  # type: ignore[union-attr]
    return collections.Counter(document.text.split()), time.perf_counter() - started


def jaccard(first: collections.Counter[str], second: collections.Counter[str]) -> float:
    union = sum((first | second).values())
    return sum((first & second).values()) / union if union else 1.0


def main(files: list[Path]) -> None:
    if shutil.which("soffice") is None:
        sys.exit("soffice is not installed (apt-get install libreoffice-writer-nogui)")
    scores: dict[str, list[float]] = {"rtf": [], "doc": []}
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'file':42} {'docx s':>7} {'rtf s':>7} {'rtf J':>6} {'doc s':>7} {'doc J':>6}")
        for source in files:
            for kind in scores:
                subprocess.run(["soffice", "--headless", "--convert-to", kind, "--outdir", folder, str(source)],
                               capture_output=True, timeout=300, check=False)
            try:
                reference, docx_seconds = words(source)
            except LoadError as error:
                print(f"{source.name[:42]:42} DOCX not read: {error}")
                continue
            row = [f"{source.name[:42]:42} {docx_seconds:7.2f}"]
            for kind in scores:
                converted = Path(folder) / f"{source.stem}.{kind}"
                if not converted.exists():
                    row.append(f"{'-':>7} {'-':>6}")
                    continue
                found, seconds = words(converted)
                scores[kind].append(jaccard(reference, found))
                row.append(f"{seconds:7.2f} {scores[kind][-1]:6.3f}")
            print(" ".join(row))
    for kind, values in scores.items():
        if values:
            print(f"{kind}: median word Jaccard against the DOCX loader {statistics.median(values):.3f}, "
                  f"lowest {min(values):.3f}, {len(values)} files")


if __name__ == "__main__":
    main([Path(argument) for argument in sys.argv[1:]] or sorted(CORPUS.glob("*.docx")))
