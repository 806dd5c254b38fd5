"""One hit per piece of evidence: an image folded into the passage that is its own text, repeats folded into one.

A photographed sign is stored twice, as the text chunks OCR read in it and as an image chunk described by that
same text; a scanned page likewise, and a figure's description is its caption's paragraph. Found together, they
are one piece of evidence, so they become one hit, and ``k`` counts distinct pieces of evidence. The rule:

- **The passage carries the image.** An image and a text chunk of the same document whose spans overlap (or an
  image with an empty span that sits inside the chunk, as ``Retriever.images_near`` links them) become the text
  hit, with the image in ``hit.image``: the passage is what is cited to the character and what the reader reads;
  the image comes with it. The merged hit takes the better rank and score of the two. A passage carries one
  image; a second picture belonging with it stays a hit of its own.
- **Repeats fold into their first occurrence.** The same passage text, or the same picture (by its hash), found
  more than once in one document is one hit; the other places are listed in ``hit.repeats``. Identical text in
  two different files stays two hits: they are two sources. A repeat that comes carrying its picture (another
  search folded it, see ``best_of_both``) hands the picture to its first occurrence if that has none.

Each hit is folded into the first earlier hit it repeats or belongs with. Searches read thousands of candidates
when repeats fill their lists (retriever.py), so that earlier hit is looked up, not searched for: by passage text
and by picture hash per document, and by where spans start, per document, for the hits whose spans may overlap.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Collection
from dataclasses import dataclass, field

from kb.types import Hit, Place


def interleaved(passages: list[Hit], pictures: list[Hit]) -> list[Hit]:
    """``passages`` and ``pictures`` (each best first) in one ranking: the places are taken by the fused score, the
    scale both share (a reranker rescales passages only), and the passages keep their own order in theirs, as the
    slots of a reranked search do."""
    places = sorted(passages + pictures, key=lambda hit: -(hit.score if hit.fused_score is None else hit.fused_score))
    in_order, passage = iter(passages), {id(hit) for hit in passages}
    return [next(in_order) if id(hit) in passage else hit for hit in places]


def one_hit_per_evidence(hits: list[Hit]) -> list[Hit]:
    """``hits`` (best first) with images folded into their passages and repeats into their first occurrence."""
    folding = _Folding()
    for hit in hits:
        folding.add(hit)
    return folding.hits()


@dataclass
class _Spans:
    """Kept hits of one document and kind (passages without an image, or images), by where their spans start."""

    starts: list[tuple[int, int]] = field(default_factory=list)  # (start, position among the kept hits), sorted
    longest: int = 0

    def add(self, hit: Hit, position: int) -> None:
        insort(self.starts, (hit.start, position))
        self.longest = max(self.longest, hit.end - hit.start)

    def near(self, hit: Hit) -> list[int]:
        """Positions of the hits whose spans may overlap ``hit``'s or hold its empty span: those starting from
        ``hit.start`` less the longest span here up to ``hit.end``."""
        low = bisect_left(self.starts, (hit.start - self.longest, -1))
        high = bisect_right(self.starts, (hit.end, float("inf")))
        return [position for _, position in self.starts[low:high]]


@dataclass
class _Folding:
    """The hits kept so far, with what finds the earlier hit a new one folds into; places of repeats are gathered
    per kept hit and attached once, at the end."""

    kept: list[Hit] = field(default_factory=list)
    places: list[list[Place]] = field(default_factory=list)  # repeats folded into each kept hit, in order
    by_text: dict[tuple[int, str], int] = field(default_factory=dict)  # first text hit of a document and text
    by_picture: dict[tuple[int, str], int] = field(default_factory=dict)  # first hit carrying a document's picture
    passages: dict[int, _Spans] = field(default_factory=dict)  # per document
    images: dict[int, _Spans] = field(default_factory=dict)

    def add(self, hit: Hit) -> None:
        position = self._earlier(hit)
        if position is None:
            self.kept.append(hit)
            self.places.append([])
            self._index(hit, len(self.kept) - 1)
        elif _repeats(self.kept[position], hit):
            self.places[position] += _places(hit)
            if self.kept[position].image is None and hit.image is not None:  # found with its picture (best_of_both)
                self.kept[position] = _carrying(self.kept[position], hit.model_copy(update={"repeats": []}))
                self._index(self.kept[position], position)
        else:
            earlier = self.kept[position]
            gathered = earlier.model_copy(update={"repeats": [*earlier.repeats, *self.places[position]]})
            self.kept[position], self.places[position] = _passage_with_image(gathered, hit), []
            self._index(self.kept[position], position)

    def hits(self) -> list[Hit]:
        """The kept hits, each with the places of the repeats folded into it. A passage without a picture whose text
        an earlier kept passage of its document holds too is one of its repeats: the earlier one met a picture
        beside it first, and took it there (the same slide text twice came back as two hits)."""
        merged: list[Hit] = []
        first: dict[tuple[int, str], int] = {}  # the first kept passage of a document and text
        for hit, places in zip(self.kept, self.places):
            hit = hit.model_copy(update={"repeats": [*hit.repeats, *places]}) if places else hit
            if hit.modality != "text":
                merged.append(hit)
                continue
            at = first.setdefault((hit.document_id, hit.text), len(merged))
            if at < len(merged) and hit.image is None:
                merged[at] = merged[at].model_copy(update={"repeats": [*merged[at].repeats, *_places(hit)]})
            else:
                merged.append(hit)
        return merged

    def _earlier(self, hit: Hit) -> int | None:
        """The position of the first kept hit that ``hit`` repeats or belongs with, if any."""
        document = hit.document_id
        found = [self.by_text.get((document, hit.text))] if hit.modality == "text" else \
            [self.by_picture.get((document, hit.image.sha256))] if hit.image is not None else []
        spans = (self.images if hit.modality == "text" else self.passages).get(document)
        if spans is not None:
            found += [position for position in spans.near(hit) if _belong_together(self.kept[position], hit)]
        return min((position for position in found if position is not None), default=None)

    def _index(self, hit: Hit, position: int) -> None:
        """Make ``hit``, kept at ``position``, findable by what a later hit may share with it."""
        document = hit.document_id
        if hit.modality == "text":
            key = (document, hit.text)
            self.by_text[key] = min(self.by_text.get(key, position), position)
        if hit.image is not None:
            key = (document, hit.image.sha256)
            self.by_picture[key] = min(self.by_picture.get(key, position), position)
        if hit.modality == "image":
            self.images.setdefault(document, _Spans()).add(hit, position)
        elif hit.image is None:
            self.passages.setdefault(document, _Spans()).add(hit, position)


def _repeats(earlier: Hit, hit: Hit) -> bool:
    """The same passage text, or the same picture, as an earlier hit of the same document."""
    if hit.modality == "image":
        return earlier.image is not None and hit.image is not None and earlier.image.sha256 == hit.image.sha256
    return earlier.modality == "text" and earlier.text == hit.text


def _belong_together(earlier: Hit, hit: Hit) -> bool:
    """One is a passage without an image yet, the other an image whose span lies in or overlaps the passage."""
    if {earlier.modality, hit.modality} != {"text", "image"}:
        return False
    passage, image = (earlier, hit) if earlier.modality == "text" else (hit, earlier)
    if passage.image is not None:
        return False
    if image.start == image.end:  # placed between two texts: in the passage, or where it ends
        return passage.start <= image.start <= passage.end
    return image.start < passage.end and image.end > passage.start


def _passage_with_image(earlier: Hit, hit: Hit) -> Hit:
    """The passage of the two, carrying the other's image, at the better score of both."""
    passage, image = (earlier, hit) if earlier.modality == "text" else (hit, earlier)
    return passage.model_copy(update={
        "image": image.image, "score": max(earlier.score, hit.score),
        "clip_score": image.clip_score if image.clip_score is not None else passage.clip_score,
        "repeats": [*earlier.repeats, *hit.repeats]})


def _places(hit: Hit) -> list[Place]:
    """Where a folded hit was, and the places already folded into it."""
    return [Place(page=hit.page, start=hit.start, end=hit.end, chunk_id=hit.chunk_id), *hit.repeats]


def best_of_both(first: list[Hit], second: list[Hit]) -> list[Hit]:
    """Two searches' hits for one question as one list, best first, one hit per piece of evidence across both.

    Taken best first, a hit for a chunk that a better hit already stands for (the same chunk, its image or one of
    its repeats) is folded into that hit, which takes over the image and repeats it came with; a hit that only
    shares an image or repeats with a better one keeps its own chunk without them. Then images fold into their
    passages and repeats into their first occurrence as within one search, so a passage found by one search and
    its own photo found by the other are one hit."""
    kept: list[Hit] = []
    holder: dict[int, int] = {}  # chunk id -> position of the kept hit that stands for it
    for hit in sorted([*first, *second], key=lambda hit: (-hit.score, hit.chunk_id)):
        position = holder.get(hit.chunk_id)
        if position is None:
            kept.append(_without(hit, holder.keys()))
            position = len(kept) - 1
        else:
            kept[position] = _carrying(kept[position], hit)
        for chunk_id in _chunk_ids(kept[position]):
            holder.setdefault(chunk_id, position)
    return one_hit_per_evidence(kept)


def _carrying(hit: Hit, weaker: Hit) -> Hit:
    """``hit`` also carrying what ``weaker``, a hit for one of the chunks it stands for, came with: its image (and
    that image's CLIP score) when ``hit`` has none, and its repeats."""
    image = hit.image if hit.image is not None else weaker.image
    clip_score = hit.clip_score if hit.image is not None or weaker.clip_score is None else weaker.clip_score
    held = _chunk_ids(hit) | ({image.chunk_id} if image is not None else set())
    repeats = [*hit.repeats, *(place for place in weaker.repeats if place.chunk_id not in held)]
    return hit.model_copy(update={"image": image, "clip_score": clip_score, "repeats": repeats})


def _without(hit: Hit, held: Collection[int]) -> Hit:
    """``hit`` without the image and repeats a better hit already carries (a passage loses its image's CLIP
    score with it)."""
    update: dict[str, object] = {"repeats": [place for place in hit.repeats if place.chunk_id not in held]}
    if hit.modality == "text" and hit.image is not None and hit.image.chunk_id in held:
        update |= {"image": None, "clip_score": None}
    return hit.model_copy(update=update)


def _chunk_ids(hit: Hit) -> set[int]:
    """Every chunk a hit stands for."""
    image = {hit.image.chunk_id} if hit.image is not None else set()
    return {hit.chunk_id, *image, *(place.chunk_id for place in hit.repeats)}
