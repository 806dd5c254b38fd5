"""Bytes to text for formats without a fixed encoding (plain text, Markdown, HTML).

Order: byte-order mark; when there are NUL bytes, UTF-8 with a stray few, else UTF-16/32 detection (else the data is
binary); 7-bit ISO-2022 text (Japanese, Korean; Chinese in GB 2312) in the ISO-2022 codec it declares or whose
escape sequences it reads; 7-bit Chinese in HZ; UTF-8, which legacy text almost never forms by accident, also with a
stray few bad bytes read as U+FFFD; the charset the file declares, if it is a text encoding that reads ASCII as
ASCII (a browser ignores any other label), also with a stray few bad bytes when it is a single-byte charset, or a
last character cut off; windows-1252 when the bytes have the shape of European text (windows-1250 when only a
Central European language's letters explain them); charset_normalizer's detection. Every step is deterministic.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata

import charset_normalizer

from ingestion.loaders.base import LoadError
from kb.text import valid_unicode

# Longest marks first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Declared labels that really mean a superset, as browsers read them (WHATWG Encoding Standard).
_LABEL_SUPERSETS = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252", "us-ascii": "cp1252",
    "big5": "big5hkscs", "shift_jis": "cp932", "sjis": "cp932", "euc-kr": "cp949", "ks_c_5601-1987": "cp949",
}

# Tie-breaking among equally good decodings: the most widespread legacy encodings first.
_PREFERRED = ("cp1252", "gb18030", "big5", "cp932", "cp949")
_CHAOS_TIE = 0.01  # charset_normalizer's own margin for "equally clean"
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_WESTERN = frozenset(
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿŒœŠšŽžŸ‘’‚“”„–—…•€™«»°·¡¿£©®§¢¥ªº±½¼¾µ\u00a0"
)

# The letters beyond ASCII each language writes (lower case): a reading whose letters no single language explains
# ("zamìstnanec", "ètyøi": Czech read as windows-1252) is mojibake.
_WESTERN_LANGUAGES = (
    "àâçéèêëîïôùûüÿœ",  # French
    "äöüß",  # German
    "áéíñóúü",  # Spanish
    "àáâãçéêíóôõú",  # Portuguese
    "àèéìíîòóùú",  # Italian
    "àçèéíïòóúü",  # Catalan
    "áéèëïóöü",  # Dutch
    "æøåé",  # Danish, Norwegian
    "åäöé",  # Swedish
    "äöåšž",  # Finnish
    "áðéíóúýþæö",  # Icelandic
    "äöõüšž",  # Estonian
)
_CENTRAL_EUROPEAN_LANGUAGES = (
    "áčďéěíňóřšťúůýž",  # Czech
    "áäčďéíĺľňóôŕšťúýž",  # Slovak
    "ąćęłńóśźż",  # Polish
    "áéíóöőúüű",  # Hungarian
    "čćđšž",  # Slovenian, Croatian, Bosnian
    "ăâîşţ",  # Romanian
)

_CENTRAL = frozenset("".join(_CENTRAL_EUROPEAN_LANGUAGES) + "".join(_CENTRAL_EUROPEAN_LANGUAGES).upper()
                     + "‘’‚“”„–—…•€°·§\u00a0")
_WORD = re.compile(r"[^\s\d!-/:-@\[-`{-~]+")  # runs without spaces, digits or ASCII punctuation
_INSIDE_WORDS = "’‘-–—·"  # what may stand between a word's letters (l’école, Paris–Berlin)
_NOT_LETTERS = "".join(chr(code) for code in range(0x80, 0x100) if not chr(code).isalpha()) \
    + "’‘‚“”„–—…•€™"

# At most this share of the non-ASCII characters undecodable in UTF-8 or a declared single-byte charset: stray bytes,
# read as U+FFFD; more, and the text is in another encoding (legacy text almost never forms UTF-8 by chance).
_MAX_REPLACED_SHARE = 0.05
_MAX_NUL_SHARE = 0.05  # stray NUL bytes in UTF-8 text (UTF-16 of Latin text is half NULs)
# Above this share of control, private-use or unassigned characters the "text" is taken to be binary.
_MAX_SUSPICIOUS = 0.05
# Every ASCII byte but the backslash, then sequences (with backslashes) that escaping and 7-bit codecs read as
# something else: escapes (unicode_escape, raw_unicode_escape), shifted runs (utf-7, hz, iso2022), a punycode
# label (idna, punycode). A codec that reads it all as ASCII does reads ASCII as ASCII.
_ASCII_PROBE = bytes(range(0x5c)) + bytes(range(0x5d, 0x80)) + b"\\x41\\u0041 +AEE- ~{0A~} \x1b$B0A\x1b(B .xn--ls8h."
# ISO-2022 codecs, tried in turn on 7-bit text that designates a multi-byte set (ESC $ ...) or half-width katakana
# (ESC ( I): Japanese, Korean, then the Japanese supersets (Korean and Chinese sets; half-width katakana; JIS X 0213).
# Python has no ISO-2022-CN codec: its GB 2312 part is read by ``_iso2022_cn``.
_ISO2022 = ("iso2022_jp", "iso2022_kr", "iso2022_jp_2", "iso2022_jp_ext", "iso2022_jp_2004")
_ISO2022_DESIGNATION = re.compile(rb"\x1b(?:\$|\(I)")
# Escape and shift characters left in a decoding: the codec skipped what it did not read (ISO-2022-JP-2 takes the
# ISO-2022-KR and ISO-2022-CN designations without an error, and leaves their shifted text as ASCII).
_UNREAD_SHIFTS = re.compile("[\x0e\x0f\x1b]")
# ISO-2022-CN (RFC 1922): ESC $ ) A designates GB 2312, SO shifts into it and SI out; each character is then two
# bytes of 0x21-0x7E, the GB 2312 bytes less 0x80. The other designations (CNS 11643, ISO-IR-165) have no codec here.
_ISO2022_CN = re.compile(rb"\x1b\$\)A|\x0e([\x21-\x7e]*)(?:\x0f|(?=[\r\n])|$)|\x1b|\x0e|\x0f")
_GB2312 = b"\x1b$)A"
# HZ (RFC 1843): ~{ begins GB 2312 text of two bytes of 0x21-0x7E a character (the GB 2312 bytes less 0x80), ~} ends
# it, on the same line.
_HZ_MARK = re.compile(rb"~[{}]")
_HZ_RUN = re.compile(rb"(?:[\x21-\x7e]{2})+")
_HIGH_HALF = bytes(byte | 0x80 for byte in range(256))  # 7-bit GB 2312 bytes back to 8-bit
_NEWLINES = re.compile(r"\r\n?")
# Windows code pages Python names otherwise than cpNNN (the Internet ones are what e-mail declares).
_CODE_PAGES = {1200: "utf-16-le", 1201: "utf-16-be", 1361: "johab", 10000: "mac_roman", 20127: "ascii",
               20866: "koi8_r", 21866: "koi8_u", 20936: "gb2312", 50220: "iso2022_jp", 50221: "iso2022_jp",
               50222: "iso2022_jp", 50225: "iso2022_kr", 51932: "euc_jp", 51949: "euc_kr", 52936: "hz",
               54936: "gb18030", 65000: "utf-7", 65001: "utf-8",
               **{28590 + part: f"iso8859_{part}" for part in (1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 15)}}
_C1_CONTROL = re.compile("[\x80-\x9f]")


def windows_codec(code_page: int) -> str | None:
    """The Python codec of a Windows code page number (16 bits), as RTF and Office files name their text's; None
    when Python has none."""
    return _known_codec(code_page) if 0 <= code_page <= 0xFFFF else None


def windows_text(data: bytes, code_page: int) -> str:
    """``data`` in a Windows code page (cp1252 where Python has none), a bad byte as U+FFFD, and so a lone
    surrogate, which UTF-7 (65000) can spell: it made a whole message fail where its text was written out."""
    return valid_unicode(data.decode(windows_codec(code_page) or "cp1252", "replace"))


@functools.cache
def _known_codec(code_page: int) -> str | None:
    """Remembered: a file may switch code pages millions of times, and looking up a codec Python lacks searches
    the disk (about 25 us)."""
    try:
        return codecs.lookup(_CODE_PAGES.get(code_page, f"cp{code_page}")).name
    except LookupError:
        return None


def decode_text(data: bytes, declared: str | None = None, warnings: list[str] | None = None) -> str:
    """The text in ``data`` with "\\n" line ends; ``declared`` is a charset the file claims (HTML meta). UTF-8 text
    but for a stray few bytes (a pasted character of another encoding), or text in its declared charset but for
    those (a single-byte one) or a last character cut off, is read as browsers read it, the bad bytes as U+FFFD, and
    says so in ``warnings``.

    Raises ``LoadError("binary or undecodable: ...")`` when no decoding gives plausible text.
    """
    text = _decode(data, declared, warnings if warnings is not None else [])
    if _suspicious_share(text) > _MAX_SUSPICIOUS:
        raise LoadError("binary or undecodable: decoded text is mostly control or unassigned characters")
    return _NEWLINES.sub("\n", text)


def _decode(data: bytes, declared: str | None, warnings: list[str]) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(encoding, errors="replace")
    if b"\x00" in data:
        return _decode_with_nuls(data, declared, warnings)
    shifted = _iso2022(data, declared)
    if shifted is None:
        shifted = _hz(data, declared)
    if shifted is not None:
        return shifted
    try:
        return _repair_double_utf8(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    stray = _with_stray_bytes(data, "utf-8")
    if stray is not None:
        warnings.append(_replaced(stray[1], "UTF-8"))
        return stray[0]
    codec = _usable_label(declared)
    if codec is not None and codec != "utf-8":
        try:
            return data.decode(codec)
        except UnicodeError:
            pass
        # A multi-byte charset half reads another one, so only a last character cut off is taken as a stray
        stray = _with_stray_bytes(data, codec) if _single_byte(codec) else _cut_short(data, codec)
        if stray is not None:
            warnings.append(_replaced(stray[1], declared))
            return stray[0]
    return _european(data) or _detect(data)  # mislabelled: the bytes are not in the declared charset


def _with_stray_bytes(data: bytes, codec: str) -> tuple[str, int] | None:
    """``data`` in ``codec`` with each undecodable sequence as U+FFFD, and how many there were, when they are a stray
    few (``_MAX_REPLACED_SHARE``); else None."""
    text = data.decode(codec, errors="replace")
    written = "\ufffd".encode(codec, errors="ignore")  # U+FFFD the text itself holds
    replaced = text.count("\ufffd") - (data.count(written) if written else 0)
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return (text, replaced) if replaced <= _MAX_REPLACED_SHARE * (non_ascii - replaced) else None


def _cut_short(data: bytes, codec: str) -> tuple[str, int] | None:
    """``data`` in ``codec`` when only its last character is cut off (as U+FFFD), and 1; else None."""
    for cut in range(1, 4):
        try:
            return data[:-cut].decode(codec) + "\ufffd", 1
        except UnicodeError:
            continue
    return None


@functools.cache
def _single_byte(codec: str) -> bool:
    """Whether ``codec`` reads each byte as one character (windows-1252 leaves 5 bytes undefined)."""
    return len(bytes(range(256)).decode(codec, errors="replace")) == 256


def _replaced(count: int, charset: str | None) -> str:
    return f"{count} byte sequence(s) not valid {charset} (stray bytes, or a character cut off) read as \ufffd"


def _iso2022(data: bytes, declared: str | None) -> str | None:
    """7-bit ``data`` in the ISO-2022 codec it declares, else in the first that reads its escape sequences; else
    None. UTF-8 would read every byte as ASCII, escape sequences and all ("\\x1b$B$3$s\\x1b(B")."""
    if not data.isascii():
        return None
    codec = _iso2022_label(declared)
    if codec is None and not _ISO2022_DESIGNATION.search(data):
        return None
    for candidate in (codec, *_ISO2022) if codec else _ISO2022:
        text = _decoded(data, candidate)
        if text is not None and not _UNREAD_SHIFTS.search(text):
            return text
    return _iso2022_cn(data)  # None when not that either (CNS 11643, a stray escape): read as ASCII


def _iso2022_cn(data: bytes) -> str | None:
    """7-bit ``data`` as ISO-2022-CN whose shifted text is all GB 2312 (designated before it is shifted into, a
    line ending in it or not), else None."""
    if _GB2312 not in data:
        return None
    parts: list[str] = []
    designated, at = False, 0
    for found in _ISO2022_CN.finditer(data):
        parts.append(data[at : found.start()].decode("ascii"))
        at = found.end()
        if found.group(0) == _GB2312:
            designated = True
        elif found.group(1) is None or not designated or len(found.group(1)) % 2:
            return None  # another escape, a lone shift, or a shift before the designation
        elif (text := _gb2312(found.group(1))) is None:
            return None
        else:
            parts.append(text)
    parts.append(data[at:].decode("ascii"))
    return "".join(parts)


def _hz(data: bytes, declared: str | None) -> str | None:
    """7-bit ``data`` as HZ, else None: only when it has a run of GB 2312 between ~{ and ~} and every ~{ begins one,
    so that ASCII text with a stray "~{" (LaTeX, code) reads as before, and when it declares no other charset the
    loader uses (an unknown label, or one it ignores, does not count)."""
    if not data.isascii() or b"~{" not in data or _usable_label(declared) is not None:
        return None
    opened: int | None = None  # where the run after the last ~{ begins, until its ~}
    for mark in _HZ_MARK.finditer(data):  # each byte is looked at once: no ~{ can cost a scan of the rest
        if mark.group() == b"~{":
            if opened is not None:
                return None
            opened = mark.end()
        elif opened is not None:
            run = data[opened : mark.start()]
            if not _HZ_RUN.fullmatch(run) or _gb2312(run) is None:
                return None
            opened = None
    return _decoded(data, "hz") if opened is None else None


def _gb2312(shifted: bytes) -> str | None:
    """Two bytes of 0x21-0x7E a character as the GB 2312 text they encode (each byte plus 0x80), else None."""
    return _decoded(shifted.translate(_HIGH_HALF), "gb2312")


def _iso2022_label(declared: str | None) -> str | None:
    """The ISO-2022 codec a declared charset names (iso-2022-jp, csISO2022KR...), else None."""
    if not declared:
        return None
    try:
        name = codecs.lookup(declared.strip().lower()).name
    except (LookupError, ValueError):  # (a label holding a NUL is a ValueError)
        return None
    return name if name.startswith("iso2022_") else None


def _decode_with_nuls(data: bytes, declared: str | None, warnings: list[str]) -> str:
    """Valid UTF-8 with a few stray NUL bytes (the text cleaner drops them), else UTF-16/32, else text in another
    encoding with a few stray NUL bytes, read without them (one in a file of Windows-1252 refused it whole), else
    binary."""
    nuls = data.count(b"\x00")
    if nuls <= len(data) * _MAX_NUL_SHARE:
        try:
            return _repair_double_utf8(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    try:
        return _decode_wide(data)
    except LoadError as binary:
        if nuls > len(data) * _MAX_NUL_SHARE:
            raise
        try:
            text = _decode(data.replace(b"\x00", b""), declared, warnings)
        except LoadError:
            raise binary from None
    warnings.append(f"{nuls:,} NUL byte(s) left out")
    return text


def _decode_wide(data: bytes) -> str:
    """UTF-16/32 without a byte-order mark; any other data holding NUL bytes is binary."""
    best = charset_normalizer.from_bytes(data).best()
    if best is None or not best.encoding.startswith(("utf_16", "utf_32")):
        raise LoadError("binary or undecodable: contains NUL bytes and is not UTF-16 or UTF-32")
    return str(best)


def _european(data: bytes) -> str | None:
    """The windows-1252 or windows-1250 reading of European text, else None.

    charset_normalizer often misreads short Western text as cp1250 or cp1257 ("crčme"), and Czech or Hungarian in
    windows-1250 reads in windows-1252 as letters no one language writes together ("zamìstnanec", "fõvárosa"). So
    a reading is European when each of its words is written in some language of its group (names of several
    languages, "Hélène Martínez", are words of their own), its non-ASCII characters stand alone or doubled between
    ASCII letters (multi-byte CJK encodings and Cyrillic give longer runs), and it is preferred when one language
    writes every letter of its lower-case words. Else the windows-1252 reading when it has the old shape of Western
    text: non-ASCII characters mostly alone.
    """
    western, central = _decoded(data, "cp1252"), _decoded(data, "cp1250")
    readings = [(text, languages) for text, allowed, languages in ((western, _WESTERN, _WESTERN_LANGUAGES),
                                                                  (central, _CENTRAL, _CENTRAL_EUROPEAN_LANGUAGES))
                if text is not None and all(char in allowed for char in text if char > "\x7f")
                and _runs_of_letters(text) and _written_in(text, languages)]
    for text, languages in readings:
        if _one_language_writes(text, languages):
            return text
    if readings:
        return readings[0][0]
    if western is None or not all(char in _WESTERN for char in western if char > "\x7f"):
        return None
    runs = [len(run) for run in _NON_ASCII_RUN.findall(western)]
    singles = sum(1 for length in runs if length == 1)
    return western if max(runs, default=0) <= 3 and singles >= len(runs) - singles else None


def _decoded(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None


def _runs_of_letters(text: str) -> bool:
    """Non-ASCII runs of at most 3 characters, some alone or a letter doubled ("Hyvää"): a double-byte encoding
    read one byte at a time gives runs of two unlike characters and longer."""
    runs = _NON_ASCII_RUN.findall(text)
    return max(map(len, runs), default=0) <= 3 and \
        (not runs or any(len(run) == 1 or (len(run) == 2 and run[0] == run[1] and run[0].isalpha())
                     for run in runs))


def _cores(text: str) -> list[str]:
    """The words of ``text`` without the punctuation around them (and a trailing ordinal sign: nº, 1ª)."""
    return [word.strip(_NOT_LETTERS).rstrip("ªº") for word in _WORD.findall(text)]


def _written_in(text: str, languages: tuple[str, ...]) -> bool:
    """Whether each word of ``text`` is written in one of ``languages`` (their letters beyond ASCII): its letters
    all one language's, and nothing but an apostrophe or a dash between them ("Mo¿e" is Polish "Może" misread)."""
    for core in _cores(text.lower()):
        if any(not char.isalpha() and char not in _INSIDE_WORDS for char in core):
            return False
        letters = {char for char in core if char > "\x7f"}
        if letters and not any(letters <= set(language) for language in languages):
            return False
    return True


def _one_language_writes(text: str, languages: tuple[str, ...]) -> bool:
    """Whether one of ``languages`` writes every non-ASCII letter of the lower-case words of ``text`` (capitalised
    words may be names from elsewhere)."""
    letters = {char for core in _cores(text) if core[:1].islower() for char in core if char > "\x7f"}
    return any(letters <= set(language) for language in languages)


def _detect(data: bytes) -> str:
    """charset_normalizer's guess; among decodings it finds equally clean, the most coherent and then the
    most widespread wins (it would otherwise keep its trial order: cp1250 before cp1252, cp949 before GBK)."""
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        raise LoadError("binary or undecodable: not valid text in any known encoding")
    contenders = [m for m in matches if m.chaos <= matches[0].chaos + _CHAOS_TIE]
    chosen = min(contenders, key=lambda m: (-round(m.coherence, 2), _preference(m.could_be_from_charset)))
    for encoding in _PREFERRED:
        if encoding in chosen.could_be_from_charset:
            return data.decode(encoding, errors="replace")
    return str(chosen)


def _preference(encodings: list[str]) -> int:
    return min((_PREFERRED.index(e) for e in encodings if e in _PREFERRED), default=len(_PREFERRED))


def _usable_label(declared: str | None) -> str | None:
    """The codec for a declared charset, or None when it is unknown or cannot be right (UTF-16 in ASCII)."""
    if not declared:
        return None
    label = declared.strip().lower()
    label = _LABEL_SUPERSETS.get(label, label)
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError):  # (a label holding a NUL is a ValueError: the whole e-mail was lost)
        return None
    return name if _ascii_compatible(name) else None


def _ascii_compatible(codec: str) -> bool:
    """Whether ``codec`` is a text encoding that reads ASCII as ASCII, as every charset a page can really be in
    does: not UTF-16/32, EBCDIC, escaping or 7-bit codecs, nor bytes-to-bytes ones (rot13, zlib_codec). Such a
    label is ignored, and the text detected (7-bit text is read as UTF-8 before, and ISO-2022 text, which browsers
    honour, before that by ``_iso2022``)."""
    try:
        return _ASCII_PROBE.decode(codec) == _ASCII_PROBE.decode("ascii")
    except (LookupError, UnicodeError):
        return False


def _repair_double_utf8(text: str) -> str:
    """Undo UTF-8 that was decoded as Latin-1 and encoded again ("â\\x80\\x93" for "–").

    C1 control characters almost never occur in real text, so their presence plus a clean round trip is
    strong evidence; anything else is returned unchanged.
    """
    if not _C1_CONTROL.search(text):
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _suspicious_share(text: str) -> float:
    if not text:
        return 0.0
    suspicious = sum(
        1 for char in text
        if char == "\ufffd" or (unicodedata.category(char) in ("Cc", "Co", "Cn") and char not in "\t\n\r\f\v")
    )
    return suspicious / len(text)
