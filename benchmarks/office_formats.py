"""The RTF, Word 97-2003, OpenDocument and PowerPoint 97-2003 loaders against the DOCX and PPTX loaders on the same
documents: LibreOffice converts each DOCX to .rtf, .doc and .odt, and each deck to .ppt and .odp, and both sides are
read (visible words compared as multisets, pages compared whole, time per file).

    python benchmarks/office_formats.py [DOCX]...    (default: every .docx under ../shared/data/docs-corpus/docx)

The decks are the corpus's own .pptx files and one deck made from each DOCX with python-pptx (a slide for each
heading's section, at most 12 paragraphs a slide, its tables as tables, its pictures as pictures, its last
paragraph as the slide's notes). Needs ``soffice`` (Debian: libreoffice-writer-nogui and libreoffice-impress-nogui).
The DOCX and PPTX loaders are the peers: a word one finds that the other does not is a difference of a loader or of
LibreOffice's conversion.
"""

from __future__ import annotations

import collections
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingestion.loaders import LoadError, loader_for  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "docs-corpus"
_SLIDE_PARAGRAPHS = 12


class Reading(NamedTuple):
    """A file as its loader reads it: its visible words, its pages' text, its images, and the seconds it took."""

    words: collections.Counter[str]
    pages: list[str]
    images: int
    seconds: float


def read(path: Path) -> Reading:
    started = time.perf_counter()
    document = loader_for(path).load(path, path.read_bytes())  # type: ignore[union-attr]
    return Reading(collections.Counter(document.text.split()),
                   [document.text[page.start:page.end] for page in document.pages] or [document.text],
                   len(document.images), time.perf_counter() - started)


def jaccard(first: collections.Counter[str], second: collections.Counter[str]) -> float:
    union = sum((first | second).values())
    return sum((first & second).values()) / union if union else 1.0


def deck_from_docx(source: Path, folder: Path) -> Path:
    """A deck of the document's content: a slide per heading's section (split every 12 paragraphs), with its
    tables and pictures, and the section's last paragraph as the slide's notes."""
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph
    from pptx import Presentation
    from pptx.util import Emu, Inches

    document = docx.Document(str(source))
    deck = Presentation()
    sections: list[list[object]] = [[]]
    for block in document.iter_inner_content():
        heading = isinstance(block, Paragraph) and block.style is not None and block.style.name.startswith("Heading")
        if heading or len(sections[-1]) >= _SLIDE_PARAGRAPHS:
            sections.append([])
        sections[-1].append(block)
    for blocks in (section for section in sections if section):
        slide = deck.slides.add_slide(deck.slide_layouts[5])
        paragraphs = [block.text for block in blocks if isinstance(block, Paragraph) and block.text.strip()]
        slide.shapes.title.text = paragraphs.pop(0) if paragraphs else ""
        body = slide.shapes.add_textbox(Inches(0.5), Inches(1.5), Inches(9), Inches(5)).text_frame
        body.text = "\n".join(paragraphs[:-1])
        if paragraphs:
            slide.notes_slide.notes_text_frame.text = paragraphs[-1]
        for table in (block for block in blocks if isinstance(block, Table)):
            rows, columns = len(table.rows), max(len(row.cells) for row in table.rows)
            shape = slide.shapes.add_table(rows, columns, Inches(0.5), Inches(4), Inches(9), Inches(0.3) * rows)
            for row_number, row in enumerate(table.rows):
                for column, cell in enumerate(row.cells):
                    shape.table.cell(row_number, column).text = cell.text
        for blip in (element for block in blocks if isinstance(block, Paragraph)
                     for element in block._p.iter("{http://schemas.openxmlformats.org/drawingml/2006/main}blip")):
            part = document.part.related_parts.get(blip.get(
                "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}embed"))
            if part is not None and part.content_type in ("image/png", "image/jpeg"):
                slide.shapes.add_picture(io.BytesIO(part.blob), Inches(6), Inches(1), width=Emu(Inches(2)))
    path = folder / f"{source.stem}-deck.pptx"
    deck.save(str(path))
    return path


def convert(source: Path, kind: str, folder: Path) -> Path | None:
    """``source`` converted by LibreOffice to ``kind`` in ``folder``; None when it could not be."""
    subprocess.run(["soffice", "--headless", "--convert-to", kind, "--outdir", str(folder), str(source)],
                   capture_output=True, timeout=600, check=False)
    converted = folder / f"{source.stem}.{kind}"
    return converted if converted.exists() else None


def compare(sources: list[Path], kinds: list[str], folder: Path) -> dict[str, list[float]]:
    """Each source read by its loader and converted to each of ``kinds``; a row per source (the seconds, the word
    Jaccard, the pages read to the same text, the images kept against the peer's), scores by kind."""
    scores: dict[str, list[float]] = {kind: [] for kind in kinds}
    same: dict[str, list[int]] = {kind: [0, 0] for kind in kinds}
    print(f"{'file':42} {'peer s':>7} " + " ".join(f"{kind + ' s':>7} {kind + ' J':>6} {'same':>9} {'images':>6}"
                                                   for kind in kinds))
    for source in sources:
        try:
            reference = read(source)
        except LoadError as error:
            print(f"{source.name[:42]:42} not read: {error}")
            continue
        row = [f"{source.name[:42]:42} {reference.seconds:7.2f}"]
        for kind in kinds:
            converted = convert(source, kind, folder)
            if converted is None:
                row.append(f"{'-':>7} {'-':>6} {'-':>9} {'-':>6}")
                continue
            found = read(converted)
            scores[kind].append(jaccard(reference.words, found.words))
            identical = sum(mine == theirs for mine, theirs in zip(reference.pages, found.pages, strict=False))
            same[kind][0] += identical
            same[kind][1] += len(reference.pages)
            row.append(f"{found.seconds:7.2f} {scores[kind][-1]:6.3f} {f'{identical}/{len(reference.pages)}':>9} "
                       f"{f'{found.images}/{reference.images}':>6}")
        print(" ".join(row))
    for kind, (identical, pages) in same.items():
        print(f"{kind}: {identical} of {pages} pages read to the very text of the peer's")
    return scores


def main(files: list[Path]) -> None:
    if shutil.which("soffice") is None:
        sys.exit("soffice is not installed (apt-get install libreoffice-writer-nogui libreoffice-impress-nogui)")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        scores = compare(files, ["rtf", "doc", "odt"], folder)
        print()
        decks = sorted((CORPUS / "other-formats").glob("*.pptx")) + [deck_from_docx(source, folder)
                                                                     for source in files]
        scores.update(compare(decks, ["ppt", "odp"], folder))
    for kind, values in scores.items():
        if values:
            peer = "PPTX" if kind in ("ppt", "odp") else "DOCX"
            print(f"{kind}: median word Jaccard against the {peer} loader {statistics.median(values):.3f}, "
                  f"lowest {min(values):.3f}, {len(values)} files")


if __name__ == "__main__":
    main([Path(argument) for argument in sys.argv[1:]] or sorted((CORPUS / "docx").glob("*.docx")))
