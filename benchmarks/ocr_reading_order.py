"""OCR reading order on real scans: text set in columns read a column at a time, against reading every line across
the page (what ``reading_order`` did before it found columns, the peer here).

    python benchmarks/ocr_reading_order.py [--data ../shared/data]

Each scan of ``docs-corpus`` (image files and the scanned pages of its PDFs, as the PDF loader gives them) is read
once by rapidocr; its boxes are then put in order both ways. Where a transcription exists (``text/linn.txt``, for
the two-column brochure scanned as ``images/linn.png`` and in five PDFs: ``cardinal.pdf`` (its four turned pages),
``ccitt.pdf``, ``jbig2.pdf``, ``linn.pdf`` and, skewed, ``skew.pdf``; all but ccitt.pdf are JBIG2, drawn by
pdfium) it prints the word error rate (words lower-cased, punctuation dropped; an edit distance over the
reference's words, so text out of order costs as words deleted and inserted again) and difflib's similarity of the
letters alone. For every other scan it says
whether the two orders differ: a one-column page or a table must read as before.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

from ingestion import layout
from ingestion.layout import TextBox, page_orientation, reading_order
from ingestion.loaders.base import Limits
from ingestion.loaders.pdf import PdfLoader
from ingestion.ocr import RapidOcrEngine

TRANSCRIBED = {"images/linn.png", "pdf-scanned/cardinal.pdf", "pdf-scanned/ccitt.pdf", "pdf-scanned/jbig2.pdf",
               "pdf-scanned/linn.pdf", "pdf-scanned/skew.pdf"}  # the same brochure: text/linn.txt transcribes it
_WORD = re.compile(r"[^\W_]+")


def scans(corpus: Path) -> list[tuple[str, Image.Image]]:
    """(name, image) of every image file and scanned PDF page of the corpus."""
    found = [(str(path.relative_to(corpus)), Image.open(path)) for path in sorted((corpus / "images").iterdir())]
    for path in sorted((corpus / "pdf-scanned").glob("*.pdf")):
        document = PdfLoader().load(path, path.read_bytes(), Limits(), corpus)
        pages = [image for image in document.images if image.scanned_page]
        found.extend((f"{path.relative_to(corpus)}" + (f" {image.name}" if len(pages) > 1 else ""), image.image)
                     for image in pages)
    return found


def in_order(found: list[TextBox], columns: bool) -> str:
    """The boxes' text in reading order, with column runs found or (the peer) every line read across the page."""
    saved = layout.COLUMN_LINES
    layout.COLUMN_LINES = saved if columns else sys.maxsize
    try:
        return reading_order(found, page_orientation(found))
    finally:
        layout.COLUMN_LINES = saved


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edit distance over the reference's length (words lower-cased, punctuation dropped)."""
    ref, hyp = _WORD.findall(reference.lower()), _WORD.findall(hypothesis.lower())
    row = list(range(len(hyp) + 1))
    for index, word in enumerate(ref, 1):
        previous, row[0] = row[0], index
        for column, other in enumerate(hyp, 1):
            previous, row[column] = row[column], min(row[column] + 1, row[column - 1] + 1, previous + (word != other))
    return row[-1] / max(1, len(ref))


def letters_similarity(reference: str, hypothesis: str) -> float:
    """difflib's ratio of the two texts' letters and digits alone, in order."""
    def letters(text: str) -> str:
        return "".join(_WORD.findall(text.lower()))
    return difflib.SequenceMatcher(None, letters(reference), letters(hypothesis), autojunk=False).ratio()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    args = parser.parse_args()
    corpus = args.data / "docs-corpus"
    if not corpus.is_dir():
        sys.exit(f"no docs-corpus under {args.data}: pass --data")
    truth = (corpus / "text" / "linn.txt").read_text(encoding="utf-8")
    engine = RapidOcrEngine()
    print(f"{'scan':46} {'boxes':>5}  {'lines across':>22}  {'columns':>22}")
    for name, image in scans(corpus):
        found = engine.boxes(image)
        across, columns = in_order(found, False), in_order(found, True)
        if any(name.startswith(transcribed) for transcribed in TRANSCRIBED):
            scores = [f"WER {word_error_rate(truth, text):.3f} sim {letters_similarity(truth, text):.3f}"
                      for text in (across, columns)]
            print(f"{name:46} {len(found):5}  {scores[0]:>22}  {scores[1]:>22}")
        else:
            print(f"{name:46} {len(found):5}  {'':>22}  {'differs' if across != columns else 'same':>22}")


if __name__ == "__main__":
    main()
