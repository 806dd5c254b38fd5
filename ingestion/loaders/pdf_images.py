"""The images each page of a PDF draws, found by the names its content (and the forms it draws) calls with ``Do``,
and decoded by pypdf within the document's image allowance."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

from pypdf import PageObject
from pypdf.filters import decode_stream_data
from pypdf.generic import DictionaryObject, EncodedStreamObject, IndirectObject, NameObject, StreamObject

from ingestion.loaders.images import EmbeddedImages, ImageError, describe_error, refuse_many_scans
from ingestion.loaders.jbig2 import jbig2_pixels
from kb.types import Page

MAX_FORM_DEPTH = 8  # form XObjects nested deeper than this are not searched for images
# Content decoded to find the names it draws, per document; past it, every image a page's or form's resources
# name counts as drawn (as when its content cannot be read). pypdf itself decodes each stream to at most 75 MB.
MAX_CONTENT_BYTES = 64 * 2**20
_WHITE = rb"\x00\t\n\x0c\r "  # PDF white space
_DELIMITERS = _WHITE + rb"()<>\[\]{}/%"  # white space and delimiters, which end a name
# An inline image's "BI", a token wherever white space or a delimiter (or nothing) is on either side, as pdfium reads
# it: "()BI/W 16" is one too (not the name "/BI").
_INLINE_IMAGE = re.compile(rb"(?<![^%s])BI(?![^%s])" % (_DELIMITERS.replace(b"/", b""), _DELIMITERS))
_DO = re.compile(rb"(?<![^%s])Do(?![^%s])" % (_DELIMITERS.replace(b"/", b""), _DELIMITERS))  # every Do operator
_DEVICE_SPACES = frozenset({"/DeviceGray", "/DeviceRGB", "/DeviceCMYK", "/G", "/RGB", "/CMYK"})
_BAD_ESCAPE = re.compile(rb"#(?![0-9A-Fa-f]{2})")  # in a name: pdfium decodes it all the same ("#4g"), pypdf not
# "/Im1 Do", with white space or comments between; a name pypdf reads (at most 4096 bytes)
# A comment runs to its line break: one that could end anywhere let "%%%%..." split 2^n ways (40 of them never ended).
_DRAW = re.compile(rb"/([^%s]{1,4096})(?:[%s]|%%[^\r\n]*[\r\n])+Do(?=[%s]|$)" % (_DELIMITERS, _WHITE, _DELIMITERS))

Failure = tuple[str, str]  # an image's name and why it could not be decoded
MAX_DRAWS = 1024  # pictures a page draws, through forms too, and still drawn whole (an A4 scan in 8 px strips: 439)


class _Cost(NamedTuple):
    """What drawing a page or form costs pdfium: its pictures' pixels and how many it draws, each as often as it is
    drawn."""

    pixels: int
    draws: int


class PageOutcome(NamedTuple):
    """What ``PageImages.keep`` found on a page."""

    shown: bool  # a picture is shown: one kept, or met on an earlier page, or refused for its size or the allowance
    failures: list[Failure]  # the images that failed to decode (JBIG2 without jbig2dec, say), with the reason
    drawable: bool  # everything the page draws was checked (sizes, JPEG scans, JBIG2 segments; no patterns,
    # shadings or inline images): another library may draw the page whole without escaping the checks


class PageImages:
    """Finds and keeps the images of one document's pages, in page order: an image drawn on several pages is kept
    once, where it is first drawn; pages drawn from the same content and resources are searched once; each form
    is searched again only where it is reached less deep than before."""

    def __init__(self, images: EmbeddedImages) -> None:
        self.images = images
        self.seen: set[tuple[int, int] | int] = set()  # the images met, by object number
        self.failed: set[tuple[int, int] | int] = set()  # ... of which pypdf could not decode these
        self.masks: dict[tuple[int, int] | int, tuple[bool, ImageError | None]] = {}  # masks vetted, by object
        self.walked: dict[object, int] = {}  # page contents searched, and forms at the least depth they were met
        self.pictured: set[object] = set()  # the forms walked that hold an image
        self.undrawable: set[object] = set()  # ... and those that draw what the checks did not see
        self.content_left = MAX_CONTENT_BYTES
        self._drawable, self._repeated = True, False
        self._yielded = 0
        self._cost = _Cost(0, 0)  # of the page (or form) being walked: its pictures' pixels and draws, each as
        # often as it is drawn (through forms too)
        self.form_costs: dict[object, _Cost] = {}  # each form's own, by its identity
        self.type3: dict[int, bool] = {}  # whether a resources dictionary holds a Type3 font, by its id
        self.verdicts: dict[tuple[int, int] | int, bool] = {}  # whether each image met passed the checks

    def keep(self, pdf_page: PageObject, page: Page, scanned: bool) -> PageOutcome:
        """Keep the images the page draws, and say what else it shows (see ``PageOutcome``).

        Only the images its content draws belong to a page: resources shared by many pages name them all, and a
        scanned page's picture credited to the text page before it was never read by OCR."""
        key = content_key(pdf_page)
        if key is not None:
            if key in self.walked:
                return PageOutcome(True, [], False)
            self.walked[key] = 0
        shown, failures = False, []
        self._drawable, self._repeated, self._cost = True, False, _Cost(0, 0)
        for ordinal, (path, xobject) in enumerate(self._image_xobjects(pdf_page), 1):
            identity = _identity(xobject)
            if identity in self.seen:
                shown = shown or identity not in self.failed
                self._drawable = self._drawable and self.verdicts.get(identity, False)  # met before: as it was
                continue
            self.seen.add(identity)
            name = f"page {page.number} image {ordinal}"
            try:
                kept, failure = self._keep_one(pdf_page, path, xobject, name, page, scanned)
            finally:
                forget_decoded(xobject, *(mask for _, mask, _ in _masks(xobject)))
            shown = shown or kept
            if failure is not None:
                failures.append((name, failure))
                self.failed.add(identity)
        return PageOutcome(shown or self._repeated, failures, self._drawable)

    def _keep_one(self, pdf_page: PageObject, path: list[str], xobject: StreamObject, name: str, page: Page,
                  scanned: bool) -> tuple[bool, str | None]:
        """Vet, decode and keep one image a page draws: whether it shows a picture, and why it failed if it did."""
        size = _size(xobject)
        vetted, refusal = self._vetted(xobject, size) if self.images.takes(scanned) else (False, None)
        self.verdicts[_identity(xobject)] = vetted
        self._drawable = self._drawable and vetted
        if not self.images.wants(name, *size, scanned):  # a decoration (or a strip of a scan cut in strips) is not a
            return min(size) >= self.images.limits.min_side, None  # picture; one refused for its size is
        if refusal is not None:  # refused, not failed: nothing else may decode it either
            self.images.skip(name, str(refusal))
            return True, None
        with self.images.decoding(scanned):
            # pypdf signals unsupported or broken image data with many exception types, as it does for pages.
            try:
                found = pdf_page.images[path if len(path) > 1 else path[0]]
            except MemoryError:  # the file is over the memory budget: that is the reason
                raise
            except Exception as error:
                return False, f"cannot decode: {describe_error(error)}"
            self.images.add_decoded(found.image, found.data, name, page=page.number, start=page.start,
                                    end=page.end, scanned_page=scanned)
        return True, None

    def _vetted(self, xobject: StreamObject, size: tuple[int, int]) -> tuple[bool, ImageError | None]:
        """Whether an image, whatever its size, passes the checks another decoder would skip (its declared pixels,
        a JPEG's scans, the pixels a JBIG2 stream's own segments declare), and why it is refused if it is: pypdf
        decodes JPEGs without the image files' checks, and decodes a soft mask of any size with its image (a
        picture of 100 px had a mask of 8,000 px decoded and scaled to it). Its masks pass the same checks, each
        once a document (300 tiny pictures sharing one mask of 70 MB took 73 s): one pypdf decodes (a soft mask,
        and its own soft mask...) refuses the picture, any other (a stencil mask) only keeps pdfium from drawing."""
        limit = self.images.limits.max_pixels
        if size[0] * size[1] > limit:
            return False, None  # ``wants`` refuses it, saying why
        vetted, refusal = _stream_vetted(xobject, limit)
        vetted = vetted and not _tinted(xobject.get("/ColorSpace"))
        for said, mask, decoded in _masks(xobject):
            identity = _identity(mask)
            if identity not in self.masks:
                width, height = _size(mask)
                self.masks[identity] = (False, ImageError(
                    f"its {said} of {width}x{height} is over the limit of {limit / 1e6:g} megapixels "
                    "(max_image_pixels)")) if width * height > limit else _stream_vetted(mask, limit)
                forget_decoded(mask)
            mask_vetted, mask_refusal = self.masks[identity]
            vetted, refusal = vetted and mask_vetted, refusal or (mask_refusal if decoded else None)
        return vetted, refusal

    def _image_xobjects(self, container: DictionaryObject, path: tuple[str, ...] = (), depth: int = 0,
                        inherited: tuple[DictionaryObject, tuple[str, ...]] | None = None,
                        ) -> Iterator[tuple[list[str], StreamObject]]:
        """(resource path, image XObject) for each image a page or form draws (every one in its resources when its
        content cannot be read), in the forms it draws too. A form without resources of its own draws from its
        parent's (``inherited``: the parent's XObjects and their path). A form named thirty times by itself was
        walked 30^8 times, 1.4 KB that never finished: hence ``walked``."""
        drawn = self._drawn(container)
        try:
            resources = container["/Resources"] if "/Resources" in container else None
            if resources is not None and ("/Pattern" in resources or "/Shading" in resources
                                          or _soft_masked(resources) or self._type3(resources)):
                self._drawable = False  # fills of unbounded cost, a form drawn as a mask, glyphs drawn as content
            xobjects = resources["/XObject"] if resources is not None and "/XObject" in resources else None
            if xobjects is None and inherited is not None:  # a form draws from its parent's (pdfium: the page's)
                xobjects, path = inherited
            names = list(xobjects) if drawn is None else [name for name in drawn if name in xobjects]
            entries = [(name, xobjects[name]) for name in names]
        except MemoryError:  # the file is over the memory budget: that is the reason
            raise
        except Exception:  # no resources, no XObjects, or a broken dictionary: no images here
            return
        for name, xobject in entries:
            if not isinstance(xobject, StreamObject):
                continue
            subtype = xobject.get("/Subtype")
            times = drawn.get(name, 1) if drawn is not None else 1
            if subtype == "/Image":
                width, height = _size(xobject)
                self._count_drawing(_Cost(width * height, 1), times)
                self._yielded += 1
                yield [*path, name], xobject
            elif subtype == "/Form" and depth < MAX_FORM_DEPTH:
                form = xobject.indirect_reference
                identity: object = ("form", form.idnum, form.generation) if form is not None else id(xobject)
                if "/Resources" not in xobject:  # what it draws depends on whose XObjects it draws from
                    identity = (identity, id(xobjects))
                if self.walked.get(identity, MAX_FORM_DEPTH + 1) > depth + 1:
                    self.walked[identity] = depth + 1
                    before, drawable, self._drawable = self._yielded, self._drawable, True
                    outer, self._cost = self._cost, _Cost(0, 0)  # the form is judged on its own cost
                    yield from self._image_xobjects(xobject, (*path, name), depth + 1, (xobjects, path))
                    self.form_costs[identity], self._cost = self._cost, outer
                    if self._yielded > before:
                        self.pictured.add(identity)
                    if self._drawable:
                        self.undrawable.discard(identity)
                    else:
                        self.undrawable.add(identity)
                    self._drawable = drawable and self._drawable
                elif identity in self.pictured:  # a form whose images an earlier page showed
                    self._repeated = True
                if identity in self.undrawable:  # a form an earlier page met: its verdict holds here too
                    self._drawable = False
                self._count_drawing(self.form_costs.get(identity, _Cost(0, 0)), times)
            elif subtype == "/Form":  # deeper than searched: what it draws is not known
                self._drawable = False

    def _type3(self, resources: DictionaryObject) -> bool:
        """Whether the resources hold a Type3 font, whose glyphs are content drawn as a form's (pictures too) and
        read as no text; each resources dictionary looked at once."""
        if id(resources) not in self.type3:
            fonts = resources["/Font"] if "/Font" in resources else {}
            self.type3[id(resources)] = any(
                isinstance(font := _resolved(value), DictionaryObject) and font.get("/Subtype") == "/Type3"
                for value in (fonts.values() if isinstance(fonts, DictionaryObject) else ()))
        return self.type3[id(resources)]

    def _count_drawing(self, cost: _Cost, times: int) -> None:
        """Count what a picture or form costs, drawn ``times`` times, to the page (or form) being walked: past
        ``max_image_pixels`` (150 draws of one picture of 64 megapixels) or ``MAX_DRAWS`` draws (3,000 of a tiny
        picture over the whole page: 16 s), pdfium does not draw the page whole."""
        self._cost = _Cost(self._cost.pixels + cost.pixels * times, self._cost.draws + cost.draws * times)
        if self._cost.pixels > self.images.limits.max_pixels or self._cost.draws > MAX_DRAWS:
            self._drawable = False

    def _drawn(self, container: DictionaryObject) -> dict[str, int] | None:
        """The XObject names a page's or form's content draws (its ``Do`` operators), in order, each with how often
        (a content stream listed again counts again); None when the content cannot be read or the document's
        ``MAX_CONTENT_BYTES`` are spent. A regular expression over the content, not pypdf's parser, which takes
        seconds on a page of large drawings."""
        if self.content_left <= 0:
            self._drawable = False
            return None
        try:
            if isinstance(container, StreamObject):  # a form: its own data is its content
                parts: list[object] = [container]
            else:
                contents = container.get("/Contents")
                contents = contents.get_object() if contents is not None else []
                parts = contents if isinstance(contents, list) else [contents]
            pieces: dict[int, bytes] = {}  # a stream listed again is read once
            listed = 0  # ... and counted again
            for part in parts:
                stream = part.get_object() if isinstance(part, IndirectObject) else part
                listed += isinstance(stream, StreamObject)
                if not isinstance(stream, StreamObject) or id(stream) in pieces:
                    continue
                # Decoded without pypdf's cache, which would keep every form decoded for the whole document.
                data = decode_stream_data(stream) if isinstance(stream, EncodedStreamObject) else stream.get_data()
                if not data and isinstance(stream, EncodedStreamObject):  # pypdf decodes broken data to nothing
                    self._drawable = False
                    return None
                self.content_left -= len(data)
                if self.content_left <= 0:
                    self._drawable = False
                    return None
                pieces[id(stream)] = data
        except MemoryError:  # the file is over the memory budget: that is the reason
            raise
        except Exception:  # broken or undecodable content: its images are not told apart
            self._drawable = False
            return None
        content = b"\n".join(pieces.values())
        if _INLINE_IMAGE.search(content):  # an image inside the content, which pypdf's image search passes over
            self._drawable = False
        again = max(listed - len(pieces) + 1, 1)  # (each stream taken as listed as often as one of them can be)
        counted = Counter(match.group(1) for match in _DRAW.finditer(content))
        if sum(1 for _ in _DO.finditer(content)) > counted.total() or any(_BAD_ESCAPE.search(raw) for raw in counted):
            self._drawable = False  # a Do of an operand that is no name pypdf reads as pdfium does ("(Im0) Do")
        names: dict[str, int] = {}
        for raw, count in counted.items():
            try:
                name = _name(raw)
            except Exception:  # a name pypdf refuses (too long, say) names no resource
                continue
            names[name] = names.get(name, 0) + count * again
        return names


def content_key(page: PageObject) -> tuple[object, object] | None:
    """What a page's text and images depend on, as a key equal for pages that share their content stream(s) and
    resources; None when it cannot be told (the page is then read on its own)."""
    try:
        return _reference(page.raw_get("/Contents")), _reference(page.raw_get("/Resources"))
    except Exception:  # a missing or broken entry: no sharing to exploit
        return None


def _reference(value: object) -> object:
    """An indirect object's number, the numbers of an array of them, else the value's text (small direct dicts)."""
    if isinstance(value, IndirectObject):
        return value.idnum, value.generation
    if isinstance(value, list):
        return tuple(_reference(item) for item in value)
    return repr(value)


def _name(raw: bytes) -> str:
    """A name as pypdf reads it ("/Im1"): plain ASCII directly, escapes (#20) and other bytes through pypdf."""
    if raw.isascii() and b"#" not in raw:
        return "/" + raw.decode("ascii")
    return NameObject.read_from_stream(io.BytesIO(b"/" + raw), None)


def _identity(stream: StreamObject) -> tuple[int, int] | int:
    """A stream's object number and generation; its ``id`` for a direct one."""
    reference = stream.indirect_reference
    return (reference.idnum, reference.generation) if reference is not None else id(stream)


def _stream_vetted(stream: StreamObject, limit: int) -> tuple[bool, ImageError | None]:
    """``PageImages._vetted``'s checks of one image stream's data (its declared size apart)."""
    filters = _filters(stream)
    try:
        if "/DCTDecode" in filters:
            refuse_many_scans(stream.get_data())
        if "/JBIG2Decode" in filters:  # alone: its raw data are the segments (pypdf keeps them as _data)
            pixels = jbig2_pixels(stream._data) if filters == ["/JBIG2Decode"] else None
            return pixels is not None and pixels <= limit, None
    except MemoryError:
        raise
    except ImageError as error:
        return False, error
    except Exception:  # data that cannot be read (pypdf's decoding then says why): not for another decoder
        return False, None
    return True, None


def _masks(xobject: StreamObject) -> Iterator[tuple[str, StreamObject, bool]]:
    """An image's masks that are images of their own ("/Mask" may instead be an array of colours), its masks' masks
    and so on, each once: how it is named, the mask, and whether pypdf decodes it with the image (a soft mask
    whose every parent is a soft mask: pypdf reads soft masks down the chain, and no stencil mask)."""
    seen, waiting = {id(xobject)}, [(xobject, True)]
    while waiting:
        parent, decoded = waiting.pop()
        for key, said in (("/SMask", "soft mask"), ("/Mask", "mask")):
            try:
                mask = parent.get(key)
                mask = mask.get_object() if mask is not None else None
            except MemoryError:
                raise
            except Exception:  # a broken reference: pypdf's decoding then says why
                continue
            if isinstance(mask, StreamObject) and id(mask) not in seen:
                seen.add(id(mask))
                yield said, mask, decoded and key == "/SMask"
                waiting.append((mask, decoded and key == "/SMask"))


def _soft_masked(resources: DictionaryObject) -> bool:
    """Whether a graphics state in ``resources`` sets a soft mask: a form pdfium draws that no check has seen."""
    try:
        states = resources.get("/ExtGState")
        states = states.get_object() if states is not None else {}
        return any(isinstance(state.get_object(), DictionaryObject)
                   and isinstance(_resolved(state.get_object().get("/SMask")), DictionaryObject)
                   for state in states.values())
    except MemoryError:
        raise
    except Exception:  # a broken graphics state: what it draws is not known
        return True


def _resolved(value: object) -> object:
    return value.get_object() if isinstance(value, IndirectObject) else value


def forget_decoded(*streams: object) -> None:
    """Drop the data pypdf keeps decoded on each stream (an image, its masks, a page's content, a JBIG2 image's
    globals) for the reader's life: kept for every image of a document, 30 pictures of 4,900 px grew past 2 GB
    (even where they failed to decode), and 45 pages' content streams of 49 MB each past 2 GB too. An array (of
    a page's content streams) is each of its streams."""
    for value in streams:
        try:
            stream = _resolved(value)
            if isinstance(stream, list):
                forget_decoded(*stream)
            elif isinstance(stream, StreamObject):
                parameters = _resolved(stream.get("/DecodeParms"))
                if isinstance(parameters, DictionaryObject):
                    forget_decoded(parameters.get("/JBIG2Globals"))
                if isinstance(stream, EncodedStreamObject):
                    stream.decoded_self = None
        except MemoryError:
            raise
        except Exception:  # a broken reference holds nothing decoded
            continue


def _tinted(space: object, depth: int = 0) -> bool:
    """Whether an image's colour space runs a function for each pixel (DeviceN and Separation spaces, whose tint
    transform may be a PostScript program: pdfium took 5 s to draw 200 px square of one, and minutes for a
    scan's size), or cannot be told."""
    try:
        space = _resolved(space)
        if isinstance(space, NameObject):  # a device space, or one the resources name (pdfium looks it up)
            return str(space) not in _DEVICE_SPACES
        if not isinstance(space, list) or not space:
            return False
        family = str(_resolved(space[0]))
        if family in ("/DeviceN", "/Separation"):
            return True
        return family in ("/Indexed", "/I") and len(space) > 1 and (depth >= 2 or _tinted(space[1], depth + 1))
    except MemoryError:
        raise
    except Exception:  # a broken colour space: what pdfium would run for it is not known
        return True


def _filters(xobject: StreamObject) -> list[str]:
    """The names of a stream's filters (one name or an array of them)."""
    value = xobject.get("/Filter")
    return [str(item) for item in value] if isinstance(value, list) else [str(value)] if value is not None else []


def _size(xobject: StreamObject) -> tuple[int, int]:
    """An image XObject's declared width and height; (0, 0) when they are missing or not numbers."""
    try:
        return int(xobject["/Width"]), int(xobject["/Height"])
    except (KeyError, TypeError, ValueError):
        return 0, 0
