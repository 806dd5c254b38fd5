"""A long scanned PDF read by OCR: each page read as the loader keeps it and then held at preview size, against the
peer, every page held at full size until the document is loaded and then read (what the ingest did before).

    python benchmarks/long_scan.py [--pages 40]

The scan is generated: ``--pages`` pages of 1,600 x 2,048 pixels (a letter page scanned at 200 dpi and kept at
2,048 px, 3.3 MP), each with six lines of text. Each way runs in a fresh process with the real OCR engine
(rapidocr, the ``ocr`` extra) and prints the pages OCR filled, the seconds and the process's peak memory (VmHWM).
The peer stops at the document's 100 MP of pictures held: 31 pages of this size. Past the document's 200 pictures,
the first way reads the pages for their text only (it stopped at page 200 before).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw, ImageFont

from ingestion.loaders.base import Limits
from ingestion.loaders.pdf import PdfLoader
from ingestion.ocr import RapidOcrEngine, apply_ocr
from ingestion.pictures import pictures_of
from ingestion.reading import FileJob, FileReader, ReadSettings
from tests.documents import pdf_bytes
from tests.peak_memory import peak_mb

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def scan_pdf(pages: int) -> bytes:
    """A scanned PDF of ``pages`` distinct pages of typed text, without a text layer."""
    font = ImageFont.truetype(str(FONT), 40) if FONT.is_file() else ImageFont.load_default()
    jpegs = []
    for number in range(1, pages + 1):
        picture = Image.new("RGB", (1600, 2048), "white")
        draw = ImageDraw.Draw(picture)
        for line in range(6):
            draw.text((150, 200 + 120 * line), f"Contract page {number} clause {line} payment terms", fill="black",
                      font=font)
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=70)
        jpegs.append(out.getvalue())
    return pdf_bytes([[] for _ in range(pages)], images=jpegs)


def read(path: Path, as_kept: bool) -> dict[str, object]:
    """Load the scan with OCR, either way; what it filled and what it cost."""
    started = time.perf_counter()
    if as_kept:
        reader = FileReader(ReadSettings(limits=Limits(), max_bytes=2**30, ocr=True))
        job = FileJob(path.parent, path, (path.stat().st_dev, path.stat().st_ino))
        reader.read(job)
        document = reader.load(job).document
    else:
        document = PdfLoader().load(path, path.read_bytes(), Limits(), path.parent)
        apply_ocr(document, RapidOcrEngine())
        pictures_of(document)
    return {"filled": sum(1 for page in document.pages if page.end > page.start), "pages": len(document.pages),
            "seconds": round(time.perf_counter() - started, 1), "peak_mb": round(peak_mb())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--way", choices=["as-kept", "after-loading"], help=argparse.SUPPRESS)  # one run, in a child
    parser.add_argument("--scan", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.way:
        print(json.dumps(read(arguments.scan, arguments.way == "as-kept")))
        return
    with tempfile.TemporaryDirectory() as folder:
        scan = Path(folder) / "scan.pdf"
        scan.write_bytes(scan_pdf(arguments.pages))
        print(f"{arguments.pages} scanned pages of 1600x2048, {scan.stat().st_size / 2**20:.1f} MB")
        for way in ("as-kept", "after-loading"):
            child = subprocess.run([sys.executable, __file__, "--way", way, "--scan", str(scan)], check=True,
                                   capture_output=True, text=True)
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"{way:>14}: {figures['filled']}/{figures['pages']} pages read by OCR in {figures['seconds']} s, "
                  f"peak memory {figures['peak_mb']} MB")


if __name__ == "__main__":
    main()
