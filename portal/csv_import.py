"""Uploaded bytes -> a checked table of strings, and the CSV files handed back. Pure: no
database, no Streamlit (DESIGN §5, Upload).

    read_upload(data, max_bytes=…)            the whole pipeline, each step below in order:
        check_size       refuse an empty or oversized file
        mime_type        python-magic on the bytes: text only, whatever the name says
        detect_encoding  UTF-8 (with or without BOM) accepted; another encoding is *proposed*
        decode           strict: a byte that does not decode refuses the file, never mangled
        sniff_dialect    comma, semicolon or tab (the caller may override; Excel's first line
                         ``sep=;`` names it, and is skipped as a blank line)
        parse_text       every value a string; ragged rows, quotes and headers checked
    portal.spec.validate(spec, parsed.frame, line_numbers=parsed.line_numbers)
    error_report_csv / annotated_original_csv   downloads, formula-safe (portal.csv_safe)
    copy_stream                                 the COPY CSV that audit.bulk.bulk_insert loads

Every refusal is an ``ImportRefused`` (a ``ValidationError``) whose message says what is wrong and
what to do, with the details in ``.problems``. A file in another encoding raises
``EncodingNotConfirmed`` carrying the proposal: the caller shows it (with its preview) and calls
again with ``encoding=`` once the person confirms.

Decisions:

- MIME verdicts accepted: ``text/csv``, ``text/plain``, ``application/csv``, ``text/x-csv``,
  ``text/tab-separated-values`` and libmagic's ``text/x-<language>`` guesses (text that happens
  to contain words like ``#include`` or ``begin``: still plain text, and parsed strictly as
  CSV like any other). Everything else is refused: images, archives (so ``.xlsx``), PDF,
  executables, ``application/json``, ``text/html``, ``image/svg+xml``, and
  ``application/octet-stream`` (control characters). libmagic reads the first 64 KiB; a control
  character it would call binary is refused further on too, by its line.
- Legacy encodings: charset-normalizer on the first MiB proposes one; among the decodings it
  finds equally plausible, the usual Windows code page wins (Windows-1252 before Latin-1,
  which it extends). The proposal is checked to decode the whole file. A file with whole lines
  of UTF-8 besides its bytes of a Latin code page (two files pasted together) is refused: no
  one encoding reads it without garbling the other's lines.
- Parsing follows Python's ``csv`` module in strict mode (RFC 4180 quoting, ``""`` inside
  quotes). pyarrow parses files whose every record is one line and whose quotes are regular
  (the common case, fast); any other file is read by the ``csv`` module itself, which also gives
  each row's line number and every shape problem. Blank lines are skipped.
- A cell or header written by the portal's own downloads comes back as it was: the ``'`` they
  put before a formula character (``csv_safe.neutralise``) is taken off (``unneutralise``), so
  ``'-5`` reads as ``-5``. A quote before anything else is data.
- Line numbers are the file's: header = 1; a quoted value spanning lines moves the later rows
  down accordingly. ``ParsedCSV.line_numbers`` holds each data row's first line.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import charset_normalizer
import magic
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pcsv  # type: ignore[import-untyped]

from portal.csv_safe import FORMULA_TRIGGERS, PLAIN_VALUE, csv_bytes, neutralise, unneutralise
from portal.errors import ValidationError
from portal.spec import MAX_COLUMNS, CellError, ColumnSpec, DatasetSpec, label_key, quoted
from portal.wording import agreeing, counted

MIME_ACCEPTED: Final = frozenset(
    {"text/csv", "text/plain", "application/csv", "text/x-csv", "text/tab-separated-values"}
)
MIME_ACCEPTED_PREFIX: Final = "text/x-"
MAGIC_SAMPLE_BYTES: Final = 65536
ENCODING_SAMPLE_BYTES: Final = 1 << 20
SNIFF_SAMPLE_CHARS: Final = 65536
DELIMITERS: Final = (",", ";", "\t")
DELIMITER_NAMES: Final = {",": "comma", ";": "semicolon", "\t": "tab"}
MAX_PROBLEMS_KEPT: Final = 1000
MAX_PROBLEMS_SHOWN: Final = 10
UTF8_NAMES: Final = ("utf-8", "utf-8-sig")
# Legacy encodings charset-normalizer may propose, most usual first (ties go to the earlier).
LEGACY_ENCODINGS: Final = (
    "cp1252",
    "cp1250",
    "cp1251",
    "cp1253",
    "cp1254",
    "cp1257",
    "cp1255",
    "cp1256",
    "cp1258",
    "iso8859_15",
    "latin_1",
    "iso8859_2",
    "mac_roman",
    "koi8_r",
    "cp850",
    "cp437",
    "cp852",
    "cp932",
    "euc_jp",
    "gb18030",
    "big5",
    "cp949",
)
ENCODING_LABELS: Final = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 (with BOM)",
    "cp1252": "Windows-1252 (Western European)",
    "cp1250": "Windows-1250 (Central European)",
    "cp1251": "Windows-1251 (Cyrillic)",
    "cp1253": "Windows-1253 (Greek)",
    "cp1254": "Windows-1254 (Turkish)",
    "cp1257": "Windows-1257 (Baltic)",
    "iso8859-1": "ISO-8859-1 (Latin-1)",
    "iso8859-15": "ISO-8859-15 (Latin-9)",
    "iso8859-2": "ISO-8859-2 (Latin-2)",
    "mac-roman": "Mac Roman",
    "cp932": "Shift JIS (Windows-932)",
    "gb18030": "GB18030 (Chinese)",
    "big5": "Big5 (Traditional Chinese)",
}
_BOM: Final = codecs.BOM_UTF8
_REFUSED_KINDS: Final = {
    "application/zip": "a ZIP archive (an Excel .xlsx workbook is one)",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "an Excel workbook",
    "application/vnd.ms-excel": "an Excel workbook",
    "application/vnd.oasis.opendocument.spreadsheet": (
        "an OpenDocument spreadsheet (LibreOffice, OpenOffice)"
    ),
    "application/x-ole-storage": "an Office document (an Excel .xls workbook is one)",
    "application/CDFV2": "an Office document (an Excel .xls workbook is one)",
    "application/gzip": "a compressed file",
    "application/x-bzip2": "a compressed file",
    "application/x-xz": "a compressed file",
    "application/x-7z-compressed": "a compressed file",
    "application/x-rar": "a compressed file",
    "application/zstd": "a compressed file",
    "application/pdf": "a PDF document",
    "application/json": "a JSON document",
    "text/html": "an HTML page",
    "application/x-empty": "empty",
    "application/octet-stream": "binary data",
    "application/x-executable": "an executable program",
    "application/x-sharedlib": "an executable program",
    "application/x-pie-executable": "an executable program",
    "application/x-dosexec": "an executable program",
    "application/x-mach-binary": "an executable program",
}


class ImportRefused(ValidationError):
    """A file the portal will not import. ``problems`` lists each detail (line numbers
    included); the message shows the first few."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        shown = [f"\n- {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"\n- … and {len(self.problems) - MAX_PROBLEMS_SHOWN} more")
        super().__init__(message + "".join(shown))


@dataclass(frozen=True)
class EncodingGuess:
    """A file's encoding: ``name`` is a Python codec name, ``confidence`` 0 to 1.

    UTF-8 needs no confirmation; anything else is a proposal the person confirms, helped by
    ``preview`` (the first lines decoded that way) and ``alternatives`` (other encodings that
    decode the whole file)."""

    name: str
    confidence: float
    alternatives: tuple[str, ...] = ()
    preview: str = ""

    @property
    def needs_confirmation(self) -> bool:
        return self.name not in UTF8_NAMES

    @property
    def label(self) -> str:
        return encoding_label(self.name)


class EncodingNotConfirmed(ImportRefused):
    """The file is not UTF-8; ``guess`` is the proposed encoding, to confirm and pass back."""

    def __init__(self, guess: EncodingGuess, detail: str) -> None:
        self.guess = guess
        super().__init__(
            f"The file is not UTF-8 ({detail}). It looks like {guess.label}"
            f" ({guess.confidence:.0%} sure): check the preview and confirm that encoding to"
            " convert it, or save the file as “CSV UTF-8” and upload it again."
        )


@dataclass(frozen=True)
class Dialect:
    """How the file separates fields: comma, semicolon or tab, with ``"`` quoting.

    Raises:
        ValidationError: another delimiter.
    """

    delimiter: str

    def __post_init__(self) -> None:
        if self.delimiter not in DELIMITERS:
            raise ValidationError(
                f"The delimiter {self.delimiter!r} is not supported: choose comma, semicolon or"
                " tab."
            )

    @property
    def name(self) -> str:
        return DELIMITER_NAMES[self.delimiter]


@dataclass(frozen=True, eq=False)
class ParsedCSV:
    """A parsed upload: the header as written, and every value as a string.

    ``frame`` has one ``string[pyarrow]`` column per header label, NA for an empty cell;
    ``line_numbers[i]`` is the file line where data row ``i`` starts (header = line 1)."""

    header: list[str]
    frame: pd.DataFrame
    encoding: str
    dialect: Dialect
    line_numbers: npt.NDArray[np.int64]
    row_count: int
    mime: str
    left_out: tuple[int, ...] = ()
    """Columns (1-based, as in the file) without a name or any value, which spreadsheets
    export after the last column and which are not read."""
    empty_rows: int = 0
    """Rows without any value (``,,``, as spreadsheets export blank rows): not read, as blank
    lines are not."""
    first_empty_lines: tuple[int, ...] = ()
    """The lines of the first few of them."""


def encoding_label(name: str) -> str:
    """A person's name for a Python codec name (``cp1252`` -> ``Windows-1252 (…)``)."""
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        return name
    return ENCODING_LABELS.get(canonical, canonical)


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------


def read_upload(
    data: bytes,
    *,
    max_bytes: int,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> ParsedCSV:
    """Check and parse an uploaded file.

    ``encoding`` is what the person confirmed (after an ``EncodingNotConfirmed``); by default
    only UTF-8 is read. ``delimiter`` overrides the detected one.

    Raises:
        EncodingNotConfirmed: the file is not UTF-8 and no encoding was confirmed.
        ImportRefused: anything else wrong with the file (the message says what to do).
        ValidationError: ``delimiter`` is not comma, semicolon or tab.
    """
    check_size(data, max_bytes=max_bytes)
    mime = mime_type(data)
    if encoding is None:
        text, encoding = _decode_utf8(data)
    else:
        text = decode(data, encoding)
    _refuse_control_characters(data)
    text, named = _separator_line(text)
    if delimiter is None and named is not None:
        if named not in DELIMITERS:
            raise ImportRefused(
                f"The file's first line “sep={named}” asks for the delimiter {named!r}, which the"
                " portal does not read: save the file with comma, semicolon or tab as the"
                " delimiter and upload it again."
            )
        delimiter = named
    dialect = Dialect(delimiter) if delimiter is not None else sniff_dialect(text)
    return parse_text(text, dialect, encoding=encoding, mime=mime)


# The control characters libmagic takes for binary data (tab, line ends, form feed, backspace,
# bell and escape it takes for text); in UTF-8 and the single-byte code pages these bytes are
# only ever those characters (a UTF-16 file, whose bytes they could be part of, is refused by
# its NUL bytes before this).
_BINARY_CONTROLS: Final = bytes([*range(0x01, 0x07), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_NOT_BINARY_CONTROLS: Final = bytes(b for b in range(256) if b not in _BINARY_CONTROLS)


def _refuse_control_characters(data: bytes) -> None:
    """Refuse a control character anywhere, as libmagic refuses one in the first
    ``MAGIC_SAMPLE_BYTES`` ("binary data"): past them, it was stored.

    Raises:
        ImportRefused: naming the first one's line.
    """
    if not data.translate(None, _NOT_BINARY_CONTROLS):  # fast: keeps only those characters
        return
    offset = min(i for i in (data.find(bytes([c])) for c in _BINARY_CONTROLS) if i >= 0)
    raise ImportRefused(
        f"The file's line {_line_of(data, offset)} holds a control character"
        f" (U+{data[offset]:04X}), which a CSV text file does not: the file is damaged, or it"
        " is not all text. Remove the character (or export the data as CSV again) and upload"
        " it again."
    )


_SEPARATOR_LINE: Final = re.compile(r"sep=([^\r\n])(?=\r\n|\r|\n|\Z)", re.IGNORECASE)


def _separator_line(text: str) -> tuple[str, str | None]:
    """Excel's first line ``sep=;``, which names the delimiter and is not the header: the text
    with that line left blank (the lines after it keep their numbers) and the delimiter it
    names; or the text as it is and None."""
    found = _SEPARATOR_LINE.match(text)
    if found is None:
        return text, None
    return text[found.end() :], found[1]


def check_size(data: bytes, *, max_bytes: int) -> None:
    """Raises:
    ImportRefused: the file is empty or larger than ``max_bytes``."""
    if not data:
        raise ImportRefused("The file is empty: choose a CSV file with a header line and rows.")
    if len(data) > max_bytes:
        size, limit = _megabytes(len(data)), _megabytes(max_bytes)
        rounded_alike = round(len(data) / MEGABYTE, 1) == round(max_bytes / MEGABYTE, 1)
        if limit.endswith(" MB") and rounded_alike:  # just over: the two would read the same
            size, limit = f"{len(data):,} bytes", f"{limit} ({max_bytes:,} bytes)"
        raise ImportRefused(
            f"The file is {size}; the limit is {limit}. Split it into smaller files, or ask an"
            " administrator to raise PORTAL_MAX_UPLOAD_MB."
        )


MEGABYTE: Final = 1024 * 1024
"""PORTAL_MAX_UPLOAD_MB's megabyte, as Streamlit's ``server.maxUploadSize`` and the page count."""


def _megabytes(size: int) -> str:
    """``size`` in megabytes (a whole number of them without decimals), or bytes if small."""
    if size < 100_000:
        return f"{size:,} bytes"
    if size % MEGABYTE == 0:
        return f"{size // MEGABYTE:,} MB"
    return f"{size / MEGABYTE:,.1f} MB"


MARKUP_VERDICTS: Final = frozenset({"text/html", "text/xml", "application/xml"})


def mime_type(data: bytes) -> str:
    """python-magic's verdict on the content (never the name), if it is an accepted one.

    Raises:
        ImportRefused: the content is not text a CSV can be.
    """
    sample = data[:MAGIC_SAMPLE_BYTES]
    if len(data) > MAGIC_SAMPLE_BYTES and b"\n" in sample:
        sample = sample[: sample.rindex(b"\n") + 1]  # never cut a UTF-8 character in two
    try:
        verdict = str(magic.from_buffer(sample, mime=True))
    except magic.MagicException as exc:
        raise ImportRefused(
            f"The file could not be inspected ({exc}): upload a CSV file."
        ) from None
    if verdict in MIME_ACCEPTED or verdict.startswith(MIME_ACCEPTED_PREFIX):
        return verdict
    if verdict in MARKUP_VERDICTS and not sample.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        # libmagic calls text with tags anywhere in it HTML or XML; a page or document starts
        # with one, a CSV with its header. Cells holding markup are data, stored as text.
        return verdict
    kind = _REFUSED_KINDS.get(verdict) or ("an image" if verdict.startswith("image/") else "")
    described = f"{kind} ({verdict})" if kind else f"of type {verdict}"
    raise ImportRefused(
        f"This file is not a CSV text file: its content is {described}, whatever its name says."
        " Export the data as CSV (comma, semicolon or tab separated) and upload that."
    )


def detect_encoding(data: bytes) -> EncodingGuess:
    """UTF-8 (``utf-8`` or, with a byte-order mark, ``utf-8-sig``) with confidence 1, or a
    proposed legacy encoding for the person to confirm.

    Raises:
        ImportRefused: NUL bytes (binary or UTF-16/32), or invalid UTF-8 in an encoding that
            cannot be recognised.
    """
    try:
        _, name = _decode_utf8(data)
    except EncodingNotConfirmed as exc:
        return exc.guess
    return EncodingGuess(name, 1.0)


def decode(data: bytes, encoding: str) -> str:
    """The file's text in ``encoding``, strictly: a byte sequence that does not decode
    refuses the file. A UTF-8 byte-order mark is dropped.

    Raises:
        ImportRefused: unknown encoding, NUL bytes, or bytes invalid in that encoding (the
            message names the byte, its offset and its line).
    """
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise ImportRefused(
            f"“{encoding}” is not an encoding the portal knows: choose a proposed one, or save"
            " the file as “CSV UTF-8”."
        ) from None
    if not getattr(codec, "_is_text_encoding", True) or codec.name == "utf-7":
        raise ImportRefused(f"“{encoding}” is not a text encoding for CSV files: use UTF-8.")
    _refuse_nul(data)
    if codec.name in UTF8_NAMES:
        return _decode_utf8(data)[0]
    _refuse_mixed(data, codec.name)
    try:
        text = data.decode(codec.name)
    except UnicodeDecodeError as exc:
        raise ImportRefused(
            f"The file is not valid {encoding_label(codec.name)}: {_where(data, exc)}. Choose"
            " another encoding, or save the file as “CSV UTF-8” and upload it again."
        ) from None
    return _clean_text(text)


def _refuse_nul(data: bytes) -> None:
    # UTF-32's little-endian mark starts as UTF-16's: it is looked for first.
    for marks, name in (
        ((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE), "UTF-32"),
        ((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "UTF-16"),
    ):
        if data.startswith(marks):
            raise ImportRefused(
                f"The file is {name} text: save it as “CSV UTF-8” (in Excel: Save As, CSV"
                " UTF-8) and upload it again."
            )
    offset = data.find(b"\x00")
    if offset >= 0:
        raise ImportRefused(
            f"The file contains a NUL byte at offset {offset} (line {_line_of(data, offset)}):"
            " it is binary, or text in UTF-16/UTF-32. Save it as “CSV UTF-8” and upload it"
            " again."
        )


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _where(data: bytes, exc: UnicodeDecodeError, base: int = 0) -> str:
    """Where decoding failed; ``base`` is the offset of the decoded part within ``data``."""
    offset = base + exc.start
    return (
        f"byte 0x{data[offset]:02X} at offset {offset} (line {_line_of(data, offset)}) cannot be"
        " decoded"
    )


def _clean_text(text: str) -> str:
    if "\x00" in text:
        raise ImportRefused("The decoded text contains a NUL character: save it as “CSV UTF-8”.")
    return text[1:] if text.startswith("\ufeff") else text


def _decode_utf8(data: bytes) -> tuple[str, str]:
    """(text, "utf-8" or "utf-8-sig"), or EncodingNotConfirmed with a proposal."""
    _refuse_nul(data)
    has_bom = data.startswith(_BOM)
    start = len(_BOM) if has_bom else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        if has_bom:  # the file says it is UTF-8: no other encoding to propose
            raise ImportRefused(
                f"The file starts as UTF-8 but is not valid UTF-8: {_where(data, exc, start)}."
                " Save it again as “CSV UTF-8” and upload it again."
            ) from None
        guess = _propose_encoding(data)
        if guess is None:
            raise ImportRefused(
                f"The file is not UTF-8 ({_where(data, exc)}) and its encoding could not be"
                " recognised: save it as “CSV UTF-8” and upload it again."
            ) from None
        _refuse_mixed(data, guess.name)
        raise EncodingNotConfirmed(guess, _where(data, exc)) from None
    return _clean_text(text), "utf-8-sig" if has_bom else "utf-8"


# Single-byte code pages of Latin script, and what in them can only be UTF-8 read the wrong
# way: a UTF-8 letter of Latin-1 Supplement or Latin Extended-A (é, ü, ł: "Ã©", "Ã¼", "Å‚" in
# Windows-1252), a typographic dash, quote or ellipsis, or the euro sign ("â€™").
LATIN_SINGLE_BYTE: Final = frozenset(
    {
        "cp1250", "cp1252", "cp1254", "cp1257", "cp1258", "iso8859-1", "iso8859-2",
        "iso8859-3", "iso8859-4", "iso8859-9", "iso8859-10", "iso8859-13", "iso8859-14",
        "iso8859-15", "iso8859-16", "mac-roman", "mac-latin2", "cp437", "cp850", "cp852",
        "cp858", "hp-roman8",
    }
)  # fmt: skip
_UTF8_LATIN: Final = re.compile(
    rb"\xC2[\xA0-\xBF]|[\xC3-\xC5][\x80-\xBF]|\xE2\x80[\x90-\xA7\xB0-\xBA]|\xE2\x82\xAC"
)


def _refuse_mixed(data: bytes, encoding: str) -> None:
    """Refuse a file that is not UTF-8 but has UTF-8 characters, when ``encoding`` (proposed
    or chosen) is a Latin single-byte code page: lines of two encodings pasted together, which
    it would read with its UTF-8 characters garbled (“JÃ¼rgen”), past lines a preview shows."""
    if codecs.lookup(encoding).name not in LATIN_SINGLE_BYTE:
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = _where(data, exc)
    else:
        return  # all UTF-8: nothing mixed
    raw = np.frombuffer(data, dtype=np.uint8)
    leads = np.flatnonzero(((raw >= 0xC2) & (raw <= 0xC5)) | (raw == 0xE2))  # fast, unlike re
    line_end = 0  # the end of the last line found not to be UTF-8
    for lead in leads.tolist():
        if lead < line_end:
            continue  # on a line already read: each line is decoded once
        found = _UTF8_LATIN.match(data, lead)
        if found is None:
            continue
        # A whole line of UTF-8 around it: one from a UTF-8 file, not an uppercase letter of the
        # code page that happens to stand before a quote or a dash ("PÅ…").
        start = data.rfind(b"\n", 0, found.start()) + 1
        end = data.find(b"\n", found.end())
        line_end = end if end >= 0 else len(data)
        try:
            data[start:line_end].decode("utf-8")
        except UnicodeDecodeError:
            continue
        break
    else:
        return
    raise ImportRefused(
        f"The file mixes UTF-8 with another encoding: {where}, but line"
        f" {_line_of(data, found.start())} is UTF-8 (“{found.group().decode('utf-8')}”), so no"
        " one encoding reads it all. Save it as “CSV UTF-8” (or retype the lines that are"
        " not) and upload it again."
    )


def _propose_encoding(data: bytes) -> EncodingGuess | None:
    sample = data[:ENCODING_SAMPLE_BYTES]
    if len(data) > len(sample) and b"\n" in sample:
        sample = sample[: sample.rindex(b"\n") + 1]
    results = list(charset_normalizer.from_bytes(sample, cp_isolation=list(LEGACY_ENCODINGS)))
    results = results or list(charset_normalizer.from_bytes(sample))
    if not results:
        return None
    best = results[0]
    close = [
        r for r in results if r.chaos <= best.chaos + 0.1 and r.coherence >= best.coherence - 0.1
    ]

    def preference(name: str) -> tuple[int, str]:
        order = LEGACY_ENCODINGS.index(name) if name in LEGACY_ENCODINGS else len(LEGACY_ENCODINGS)
        return order, name

    ranked: list[tuple[tuple[int, str], float, str]] = []
    for result in close:
        names = [n for n in (result.could_be_from_charset or [result.encoding]) if n]
        name = min(names, key=preference)
        ranked.append((preference(name), result.chaos, name))
    ranked.sort()
    candidates = list(dict.fromkeys(name for _, _, name in ranked))
    candidates += [r.encoding for r in results if r.encoding not in candidates]
    working = [name for name in candidates if _decodes(data, name)]
    if not working:
        return None
    # The usual Windows code page is always offered, next to the proposal, when it reads the
    # file: charset-normalizer can rank it below a Mac, DOS or Cyrillic one (a "€" before a
    # digit looks odd to it) or leave it out, and the file could not be converted as what it is.
    usual = LEGACY_ENCODINGS[0]
    if codecs.lookup(working[0]).name != usual and _decodes(data, usual):
        rest = [name for name in working[1:] if codecs.lookup(name).name != usual]
        working = [working[0], usual, *rest]
    chosen = working[0]
    chaos = next((c for _, c, name in ranked if name == chosen), best.chaos)
    return EncodingGuess(
        name=codecs.lookup(chosen).name,
        confidence=round(max(0.0, 1.0 - float(chaos)), 2),
        alternatives=tuple(codecs.lookup(n).name for n in working[1:6]),
        preview=preview(data, chosen),
    )


def preview(data: bytes, encoding: str, lines: int = 5) -> str:
    """The first lines decoded with ``encoding`` (one ``EncodingGuess`` offers, which decodes
    the whole file)."""
    head = data[:8192]
    if len(data) > len(head) and b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]
    try:
        return "\n".join(head.decode(encoding).splitlines()[:lines])
    except UnicodeDecodeError:  # a cut inside a multi-byte character
        return ""


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return "\x00" not in text and codecs.lookup(encoding).name not in UTF8_NAMES


def sniff_dialect(text: str) -> Dialect:
    """The delimiter (comma, semicolon or tab) that splits a sample of ``text`` into rows of
    the same width as the header, the widest such; csv.Sniffer breaks ties. A file no
    delimiter splits is one column (comma)."""
    sample = text[:SNIFF_SAMPLE_CHARS]
    truncated = len(text) > len(sample)
    if truncated and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]
    try:
        sniffed: str | None = (
            csv.Sniffer().sniff(sample[:8192], delimiters="".join(DELIMITERS)).delimiter
        )
    except csv.Error:
        sniffed = None
    scores = {d: _consistency(sample, d, truncated) for d in DELIMITERS}
    # Consistency first, then width: a tab file whose values hold commas splits consistently on
    # commas too, but into fewer columns. csv.Sniffer only breaks what is left of a tie.
    best = max(DELIMITERS, key=lambda d: (*scores[d], d == sniffed))
    if scores[best][2] <= 1:
        return Dialect(sniffed if sniffed in DELIMITERS else ",")
    return Dialect(best)


def _consistency(sample: str, delimiter: str, truncated: bool) -> tuple[bool, float, int]:
    """(every row as wide as the header and wider than 1, share of such rows, header width)."""
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    widths: list[int] = []
    try:
        for row in reader:
            if row:
                widths.append(len(row))
            if len(widths) > 200:
                break
    except csv.Error:
        pass  # a malformed sample: judge the rows read so far
    if truncated and len(widths) > 1:
        widths.pop()
    if not widths or widths[0] <= 1:
        return False, 0.0, widths[0] if widths else 0
    share = sum(w == widths[0] for w in widths) / len(widths)
    return share == 1.0, share, widths[0]


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def parse_text(
    text: str, dialect: Dialect, *, encoding: str = "utf-8", mime: str = "text/plain"
) -> ParsedCSV:
    """Parse decoded CSV text: the header, then every row as strings.

    Raises:
        ImportRefused: no header, a blank or repeated header cell, no data rows, or rows that
            do not parse (each named with its line).
    """
    text = _clean_text(text)
    header_line, written_header = _read_header(text, dialect)
    header = [unneutralise(label) for label in written_header]
    try:
        payload = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ImportRefused(
            f"The text has an unpaired surrogate at character {exc.start}: save the file as"
            " “CSV UTF-8”."
        ) from None
    fast = _fast_parse(payload, len(header), dialect)
    table, lines = fast if fast is not None else _slow_parse(text, len(header), dialect)
    if table.num_rows == 0:
        raise ImportRefused(
            "The file has a header line but no data rows: add at least one row under the header."
        )
    left_out = _unnamed_columns(table, header, header_line, lines)
    empty = np.logical_and.reduce(
        [np.asarray(c.is_null().to_numpy(), dtype=np.bool_) for c in table.columns]
    )
    empty_lines = lines[empty]
    if empty_lines.size:
        if empty_lines.size == table.num_rows:
            raise ImportRefused(
                "The file has a header line but no value in any row under it: add at least one"
                " row with values."
            )
        table, lines = table.filter(pa.array(~empty)), lines[~empty]
    kept = [i for i in range(len(header)) if i + 1 not in left_out]
    header = [header[i] for i in kept]
    table = pa.Table.from_arrays(
        [_unsafe_array(table.column(i)) for i in kept], names=[table.column_names[i] for i in kept]
    )
    frame = table.rename_columns(header).to_pandas(
        types_mapper={pa.large_string(): pd.StringDtype("pyarrow")}.get
    )
    return ParsedCSV(
        header=header,
        frame=frame,
        encoding=encoding,
        dialect=dialect,
        line_numbers=lines,
        row_count=table.num_rows,
        mime=mime,
        left_out=left_out,
        empty_rows=int(empty_lines.size),
        first_empty_lines=tuple(int(n) for n in empty_lines[:EMPTY_LINES_NAMED]),
    )


EMPTY_LINES_NAMED: Final = 5
"""The lines of rows without any value a parse keeps, to name them."""


def _unnamed_columns(
    table: Any, header: list[str], header_line: int, lines: npt.NDArray[np.int64]
) -> tuple[int, ...]:
    """The columns (1-based) without a name, each of which must have no value either: such
    columns, which spreadsheets export past the last one, are left out.

    Raises:
        ImportRefused: an unnamed column holds a value (named with its line), or no column
            has a name.
    """
    unnamed = tuple(i + 1 for i, label in enumerate(header) if not label_key(label))
    problems = []
    for position in unnamed:
        column = table.column(position - 1)
        if column.null_count < len(column):
            row = pc.index(pc.is_valid(column), True).as_py()
            problems.append(
                f"column {position} has no name but holds values (line {int(lines[row])}:"
                f" {quoted(str(column[row].as_py()))}): give it a name, or delete the column."
            )
    if problems:
        raise ImportRefused(f"The header line (line {header_line}) has problems:", problems)
    if len(unnamed) == len(header):
        raise ImportRefused(
            f"The header line (line {header_line}) names no column: the first line must name"
            " the columns."
        )
    return unnamed


_LINE: Final = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their ends (\\n, \\r\\n or \\r), lazily and without a copy
    (an ``io.StringIO`` of a large text costs four bytes per character up front)."""
    return (match.group() for match in _LINE.finditer(text))


def _reader(text: str, dialect: Dialect) -> Any:
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    return csv.reader(
        _lines(text),
        delimiter=dialect.delimiter,
        quotechar='"',
        doublequote=True,
        strict=True,
    )


def _read_header(text: str, dialect: Dialect) -> tuple[int, list[str]]:
    """The header line's number and its cells (a cell may be blank: see ``_unnamed_columns``).

    Raises:
        ImportRefused: no header line, or one that cannot be read, names a column twice or
            has too many.
    """
    reader = _reader(text, dialect)
    header: list[str] = []
    try:
        while not header:
            header = next(reader)
    except StopIteration:
        raise ImportRefused(
            "The file has no header line: the first line must name the columns."
        ) from None
    except csv.Error as exc:
        raise ImportRefused(f"The header line cannot be read: {_csv_problem(str(exc))}") from None
    problems: list[str] = []
    seen: dict[str, int] = {}
    for position, label in enumerate(header, start=1):
        key = label_key(label)
        if not key:
            continue  # left out when it has no values either, once the rows are read
        if key in seen:
            first = header[seen[key] - 1].strip()
            named = f"“{first}”" + (f" and “{label.strip()}”" if label.strip() != first else "")
            problems.append(
                f"columns {seen[key]} and {position} are both named {named} (names are"
                " compared ignoring case, surrounding spaces and how accents are encoded):"
                " rename one."
            )
        else:
            seen[key] = position
    if len(header) > MAX_COLUMNS:
        problems.append(f"the file has {len(header)} columns; at most {MAX_COLUMNS} are allowed.")
    line = reader.line_num  # the header's line, after any blank lines the reader skipped
    if problems:
        raise ImportRefused(f"The header line (line {line}) has problems:", problems)
    return line, header


def _csv_problem(message: str) -> str:
    if "unexpected end of data" in message:
        return (
            "a quoted value starts here but its closing quote is missing: close the quote, or"
            ' double any quote inside a quoted value ("").'
        )
    if "expected after" in message:
        return (
            "text follows a closing quote: quote the whole value and double the quotes inside"
            ' it ("").'
        )
    return f"the line cannot be parsed ({message})."


def _fast_parse(
    payload: bytes, width: int, dialect: Dialect
) -> tuple[Any, npt.NDArray[np.int64]] | None:
    """pyarrow's parse when it provably equals the csv module's: every record on one line,
    every quote regular; None otherwise (or when pyarrow refuses the file)."""
    if b"\r" in payload and payload.count(b"\r") != payload.count(b"\r\n"):
        return None  # a lone carriage return: old Mac line ends, or one inside a value
    raw = np.frombuffer(payload, dtype=np.uint8)
    quotes = np.flatnonzero(raw == ord('"'))
    if quotes.size and not _regular_quotes(raw, quotes, dialect.delimiter):
        return None
    names = [f"c{i}" for i in range(width)]
    try:
        table = pcsv.read_csv(
            io.BytesIO(payload),
            read_options=pcsv.ReadOptions(column_names=names),
            parse_options=pcsv.ParseOptions(
                delimiter=dialect.delimiter,
                quote_char='"',
                double_quote=True,
                escape_char=False,
                newlines_in_values=True,
                ignore_empty_lines=True,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()),
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowException:
        return None
    lines = int(np.count_nonzero(raw == ord("\n"))) + (0 if payload.endswith(b"\n") else 1)
    if table.num_rows != lines:
        return None  # blank lines or values spanning lines: the csv module numbers them
    return table.slice(1), np.arange(2, table.num_rows + 1, dtype=np.int64)


def _regular_quotes(
    raw: npt.NDArray[np.uint8], quotes: npt.NDArray[np.intp], delimiter: str
) -> bool:
    """Every quote opens a value, closes one, or is half of a doubled quote inside one.

    Counting quotes from the start, an even-numbered quote (outside a quoted value) must
    follow a delimiter, a line end or the start, or directly follow a quote (the second half
    of ``""``); an odd-numbered one (inside) must precede a delimiter, a line end or the end,
    or directly precede a quote. A bare quote inside an unquoted value, text after a closing
    quote, or an unclosed quote breaks this, and the file goes to the csv module instead.
    """
    if quotes.size % 2:
        return False
    edges = np.array([ord(delimiter), ord("\n"), ord("\r")], np.uint8)
    before = np.where(quotes > 0, raw[np.maximum(quotes - 1, 0)], ord("\n"))
    after = np.where(quotes < raw.size - 1, raw[np.minimum(quotes + 1, raw.size - 1)], ord("\n"))
    opening = np.isin(before, edges) | (before == ord('"'))
    closing = np.isin(after, edges) | (after == ord('"'))
    even = np.arange(quotes.size) % 2 == 0
    return bool(np.where(even, opening, closing).all())


def _slow_parse(text: str, width: int, dialect: Dialect) -> tuple[Any, npt.NDArray[np.int64]]:
    """The csv module's parse, with each record's first line, and every shape problem."""
    reader = _reader(text, dialect)
    columns: list[list[str | None]] = [[] for _ in range(width)]
    lines: list[int] = []
    problems: list[str] = []
    problem_count = 0
    consumed = 0
    header_seen = False
    header_line = 1
    widths: set[int] = set()  # the numbers of fields of the rows
    while True:
        start = consumed + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problem_count += 1
            if len(problems) < MAX_PROBLEMS_KEPT:
                problems.append(f"line {start}: {_csv_problem(str(exc))}")
            if reader.line_num == consumed:  # no progress: stop rather than loop
                break
            consumed = reader.line_num
            continue
        consumed = reader.line_num
        if not row:
            continue
        if not header_seen:
            header_seen, header_line = True, start
            continue
        widths.add(len(row))
        if len(row) != width:
            problem_count += 1
            if len(problems) < MAX_PROBLEMS_KEPT:
                problems.append(
                    f"line {start}: {len(row)} {agreeing(len(row), 'field', 'fields')}, but the"
                    f" header has {width}."
                )
            continue
        if not problem_count:
            for values, value in zip(columns, row, strict=True):
                values.append(value or None)
            lines.append(start)
    if problem_count:
        if problem_count > len(problems):
            more = problem_count - len(problems)
            problems.append(f"… {counted(more, 'more problem', 'more problems')} not listed.")
        if len(widths) == 1 and (wider := min(widths)) > width:
            # A title above the table ("Sales report Q1"): every row "breaks" the header.
            problems.insert(
                0,
                f"line {header_line}, read as the header, has {counted(width, 'field')} and every"
                f" line after it has {wider}: if it is a title above the table, delete it"
                " (and any other line above the column names), so that the first line names the"
                " columns.",
            )
        raise ImportRefused(
            f"{counted(problem_count, 'line')} of the file"
            " cannot be read as rows of the table. Fix"
            f" {agreeing(problem_count, 'it', 'them')} (in a text editor, or re-export the"
            " file) and upload it again:",
            problems,
        )
    arrays = [pa.array(values, pa.large_string()) for values in columns]
    table = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(width)])
    return table, np.asarray(lines, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# What goes back out: reports and the COPY stream
# ---------------------------------------------------------------------------------------------


def error_report_csv(errors: Sequence[CellError], *, error_count: int | None = None) -> bytes:
    """The errors as a CSV download (line, column, value, rule, problem: the table the Upload
    page shows, ``line`` the file's line number), formula-safe, UTF-8
    with a byte-order mark so spreadsheets read it as UTF-8. ``error_count`` is how many there
    are (``ValidationResult.error_count``): when ``errors`` lists fewer, a last row says how many
    more are not listed."""
    rows = [[str(e.row), e.column, e.value, e.rule, e.message] for e in errors]
    if error_count is not None and error_count > len(errors):
        more = error_count - len(errors)
        rows.append(
            [
                "",
                "",
                "",
                "",
                f"… and {more:,} more {agreeing(more, 'error', 'errors')}, not listed"
                " here: fix those above and upload the file again to see the rest.",
            ]
        )
    return csv_bytes(["line", "column", "value", "rule", "problem"], rows)


def annotated_original_csv(
    parsed: ParsedCSV, errors: Sequence[CellError], *, error_count: int | None = None
) -> bytes:
    """The uploaded rows in their delimiter, with an ``errors`` column ("Column: message; …",
    empty for a row without errors) appended; every cell formula-safe; UTF-8 with BOM. When
    ``errors`` lists fewer than ``error_count`` (the first ones, by line), each row past the
    last one listed says that its errors, if any, are not listed, rather than look clean."""
    unlisted = ""
    last_listed = max((e.row for e in errors), default=0)
    if error_count is not None and error_count > len(errors):
        unlisted = (
            f"errors, if any, not listed: the report lists the first {len(errors):,} of"
            f" {error_count:,}; fix those and upload the file again to see the rest."
        )
    by_line: dict[int, list[str]] = {}
    for e in errors:
        by_line.setdefault(e.row, []).append(f"{e.column}: {e.message}")
    column_name = "errors"
    taken = {h.strip().casefold() for h in parsed.header}
    n = 2
    while column_name.casefold() in taken:
        column_name, n = f"errors_{n}", n + 1
    notes = [
        "; ".join(by_line[line])
        if line in by_line
        else (unlisted if unlisted and line > last_listed else None)
        for line in parsed.line_numbers.tolist()
    ]
    arrays = [_safe_array(pa.array(parsed.frame[label])) for label in parsed.header]
    arrays.append(_safe_array(pa.array(notes, pa.large_string())))
    header = [neutralise(h) for h in [*parsed.header, column_name]]
    table = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])
    sink = pa.BufferOutputStream()
    pcsv.write_csv(
        table,
        sink,
        pcsv.WriteOptions(include_header=False, delimiter=parsed.dialect.delimiter),
    )
    head = io.StringIO()
    csv.writer(head, delimiter=parsed.dialect.delimiter, lineterminator="\n").writerow(header)
    return _BOM + head.getvalue().encode("utf-8") + bytes(sink.getvalue().to_pybytes())


_TRIGGER_CLASS: Final = (
    "[" + "".join("\\" + t if t in "-\\^]" else t for t in FORMULA_TRIGGERS) + "]"
)
_FORMULA_PATTERN: Final = "^'*" + _TRIGGER_CLASS
_NEUTRALISED_PATTERN: Final = "^'('*" + _TRIGGER_CLASS + ")"
_PLAIN_VALUE_PATTERN: Final = f"^(?:{PLAIN_VALUE})$"


def _unsafe_array(array: Any) -> Any:
    """``csv_safe.unneutralise`` over an Arrow string array at once; untouched (no copy) when
    no value starts with a quote, as in most files."""
    if not pc.any(pc.starts_with(array, "'")).as_py():
        return array
    return pc.replace_substring_regex(array, pattern=_NEUTRALISED_PATTERN, replacement="\\1")


def _safe_array(array: Any) -> Any:
    """``csv_safe.neutralise`` over an Arrow string array at once."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = array.cast(pa.large_string())
    risky = pc.and_(
        pc.match_substring_regex(array, pattern=_FORMULA_PATTERN),
        pc.invert(pc.match_substring_regex(array, pattern=_PLAIN_VALUE_PATTERN)),
    )
    quoted = pc.binary_join_element_wise(
        pa.scalar("'", pa.large_string()), array, pa.scalar("", pa.large_string())
    )
    return pc.if_else(risky, quoted, array)


def copy_stream(typed: pd.DataFrame, spec: DatasetSpec, first_row_id: int) -> bytes:
    """The rows as the COPY CSV ``audit.bulk.bulk_insert`` loads: no header; ``_row_id``
    (``first_row_id``, ``first_row_id + 1``, …) then the spec's columns in order, taken from
    ``typed`` by physical name (``ValidationResult.typed``). NULL is an unquoted empty field and
    every other value is quoted, so an empty string stays one. Decimals are written exactly,
    dates ISO, datetimes ISO 8601 in UTC with ``Z``, booleans ``true``/``false``.

    Raises:
        ValidationError: a column is missing from ``typed`` or holds values of another type.
    """
    return b"".join(copy_stream_chunks(typed, spec, first_row_id))


def copy_stream_chunks(
    typed: pd.DataFrame, spec: DatasetSpec, first_row_id: int, rows_per_chunk: int = 100_000
) -> Iterator[bytes]:
    """``copy_stream`` in pieces of ``rows_per_chunk`` rows, written as they are asked for, so a
    COPY can load one piece while the next is written.

    Raises:
        ValidationError: as ``copy_stream``, before the first piece.
    """
    table = _copy_table(typed, spec, first_row_id)
    options = pcsv.WriteOptions(include_header=False, quoting_style="all_valid")

    def pieces() -> Iterator[bytes]:
        for offset in range(0, table.num_rows, rows_per_chunk):
            sink = pa.BufferOutputStream()
            pcsv.write_csv(table.slice(offset, rows_per_chunk), sink, options)
            yield bytes(sink.getvalue().to_pybytes())

    return pieces()


def _copy_table(typed: pd.DataFrame, spec: DatasetSpec, first_row_id: int) -> Any:
    count = len(typed)
    arrays = [pa.array(np.arange(first_row_id, first_row_id + count, dtype=np.int64))]
    for column in spec.columns:
        if column.name not in typed.columns:
            raise ValidationError(f"The typed rows lack the column {column.name!r}.")
        arrays.append(_copy_array(column, typed[column.name]))
    return pa.Table.from_arrays(arrays, names=["_row_id", *spec.names])


def _copy_array(column: ColumnSpec, series: pd.Series[Any]) -> Any:
    array = _typed_array(column.type, series)
    if column.type == "decimal" and column.scale is None and not pa.types.is_null(array.type):
        # An Arrow decimal column has one scale for all its values; without a spec scale, write
        # each value as short as it is exact (1.5, not 1.50000) so PostgreSQL keeps it that way.
        text = array.cast(pa.large_string())
        text = pc.replace_substring_regex(
            text, pattern=r"^(-?[0-9]*\.[0-9]*?)0+$", replacement=r"\1"
        )
        text = pc.replace_substring_regex(text, pattern=r"\.$", replacement="")
        return pc.replace_substring_regex(text, pattern=r"^-?0E-[0-9]+$", replacement="0")
    return array


def _typed_array(column_type: str, series: pd.Series[Any]) -> Any:
    try:
        array = pa.array(series, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValidationError(
            f"The typed column {series.name!r} cannot be written: {exc}"
        ) from None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    targets = {
        "text": pa.large_string(),
        "category": pa.large_string(),
        "integer": pa.int64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "datetime": pa.timestamp("us", tz="UTC"),
    }
    if column_type == "decimal":
        if pa.types.is_decimal(kind) or pa.types.is_null(kind):
            return array
        raise ValidationError(
            f"The typed column {series.name!r} must hold exact decimals, not {kind}."
        )
    target = targets[column_type]
    if column_type in ("text", "category") and not (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)
    ):
        raise ValidationError(f"The typed column {series.name!r} must hold text, not {kind}.")
    try:
        return array.cast(target)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValidationError(
            f"The typed column {series.name!r} cannot be written: {exc}"
        ) from None
