"""The schema spec: a dataset's columns, and everything derived from them (DESIGN §4).

One ``DatasetSpec`` is the single source of a dataset's rules; three renderings follow from it:

    DatasetSpec ─┬─ ddl_table()          types, NOT NULL, CHECK, UNIQUE: PostgreSQL refuses bad data
                 ├─ editor_columns()     a Streamlit-free description of st.column_config
                 └─ validate()           the server-side validator: uploads (vectorised) and,
                    validate_value()     value by value, every edit the editor sends back
    infer_spec()                         a first spec guessed from an uploaded CSV, for the user
                                         to confirm or adjust
    physical_names()                     safe column identifiers from the labels people wrote

Decisions a reader needs:

- Types: ``text``, ``integer`` (int64), ``decimal`` (exact: ``NUMERIC`` without a typmod, at most
  38 digits before and 38 after the point; a ``scale`` is enforced by the validator and a CHECK,
  never by rounding), ``boolean``, ``date``, ``datetime`` (``timestamptz``: a value written
  without an offset is read as UTC; values come back in UTC), ``category`` (text restricted to
  ``options``).
- An empty cell — an empty string — is a missing value, for every type.
- Numbers, booleans, dates and datetimes may carry surrounding spaces or tabs, which are ignored;
  text and category values are kept exactly as written.
- Row numbers in ``CellError`` are the file's line numbers: the header is line 1, so the first
  data row is 2, and a row with a quoted line break counts the lines it spans (``validate`` takes
  them from ``csv_import.ParsedCSV.line_numbers``). ``validate_value`` reports the ``row`` it is
  given (the editor passes ``_row_id``).
- Regular expressions search the value, as PostgreSQL's ``~`` does: anchor with ``^…$`` to
  match all of it. Both validators run them with RE2 (pyarrow), whose ``$`` is the end of the
  value as in PostgreSQL (Python's ``re`` would also match before a final line break); the CHECK
  constraint runs PostgreSQL's engine. Write patterns in the common subset (no back-references
  or named groups; a digit class means ASCII digits).
- ``validate`` and ``validate_value`` share one set of patterns and messages; every error
  message comes from ``validate_value``, and a property test holds the two in agreement.
- Text PostgreSQL cannot store (a NUL, a lone UTF-16 surrogate from a browser's JSON) is
  refused; a ``CellError``'s value and message show a lone surrogate as its escape,
  ``\\ud800`` (``escape_surrogates``), since no UTF-8 text can hold it.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Final, Literal, TypeAlias, cast, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ColumnElement,
    Date,
    DateTime,
    Identity,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    literal,
    literal_column,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import conv
from sqlalchemy.types import TypeEngine

from portal.csv_safe import value_text
from portal.errors import ValidationError

ColumnType: TypeAlias = Literal[
    "text", "integer", "decimal", "boolean", "date", "datetime", "category"
]
COLUMN_TYPES: Final[tuple[ColumnType, ...]] = get_args(ColumnType)
DateFormat: TypeAlias = Literal["YYYY-MM-DD", "DD.MM.YYYY", "DD/MM/YYYY", "MM/DD/YYYY"]
DATE_FORMATS: Final[tuple[DateFormat, ...]] = get_args(DateFormat)
ISO_DATE: Final[DateFormat] = "YYYY-MM-DD"
Rule: TypeAlias = Literal[
    "required", "type", "scale", "min", "max", "max_length", "regex", "options", "unique"
]
RULES: Final[tuple[Rule, ...]] = get_args(Rule)

Bound: TypeAlias = int | Decimal | date | datetime
"""A min, max: ``int`` (integer), ``Decimal`` (decimal), ``date``, ``datetime`` (aware, UTC)."""
Value: TypeAlias = str | int | Decimal | bool | date | datetime | None
"""A typed cell value as the validator returns it (``None`` for a missing value)."""

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_DECIMAL_DIGITS: Final = 38
"""At most this many digits before, and this many after, the decimal point."""
MAX_COLUMNS: Final = 1000
MAX_IDENTIFIER_BYTES: Final = 63
SYSTEM_COLUMNS: Final = ("_row_id", "_version")
# PostgreSQL's own system columns: a user column of that name cannot be created.
_PG_SYSTEM_NAMES: Final = frozenset(
    {"tableoid", "xmin", "cmin", "xmax", "cmax", "ctid", "oid", *SYSTEM_COLUMNS}
)
_SAFE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_BLANKS = " \t\r\n"
"""Stripped around numbers, booleans, dates and datetimes (ASCII only, in both validators)."""

TRUE_WORDS: Final = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS: Final = frozenset({"false", "f", "no", "n", "0"})

# One set of patterns for both validators: Python's ``re`` (fullmatch) and RE2 in pyarrow
# (anchored below). Only syntax both read the same way: [0-9] rather than \d (Unicode in re).
_INT = r"[+-]?[0-9]+"
_INT_GROUPED = r"[+-]?(?:[1-9][0-9]{0,2}(?:\.[0-9]{3})+|[0-9]+)"
_DEC = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DEC_COMMA = r"[+-]?(?:(?:[1-9][0-9]{0,2}(?:\.[0-9]{3})+|[0-9]+)(?:,[0-9]*)?|,[0-9]+)"
_DEC_PARTS = r"(?P<sign>[+-]?)(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?"
_DATE_PATTERNS: Final[dict[DateFormat, str]] = {
    "YYYY-MM-DD": r"(?P<y>[0-9]{4})-(?P<m>[0-9]{2})-(?P<d>[0-9]{2})",
    "DD.MM.YYYY": r"(?P<d>[0-9]{1,2})\.(?P<m>[0-9]{1,2})\.(?P<y>[0-9]{4})",
    "DD/MM/YYYY": r"(?P<d>[0-9]{1,2})/(?P<m>[0-9]{1,2})/(?P<y>[0-9]{4})",
    "MM/DD/YYYY": r"(?P<m>[0-9]{1,2})/(?P<d>[0-9]{1,2})/(?P<y>[0-9]{4})",
}
_DATE_EXAMPLES: Final[dict[DateFormat, str]] = {
    "YYYY-MM-DD": "2024-12-24",
    "DD.MM.YYYY": "24.12.2024",
    "DD/MM/YYYY": "24/12/2024",
    "MM/DD/YYYY": "12/24/2024",
}
_DATETIME = (
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
    r"(?:[T ](?P<h>[0-9]{2}):(?P<mi>[0-9]{2})(?::(?P<s>[0-9]{2})(?:[.,](?P<f>[0-9]{1,6}))?)?"
    r"(?P<tz>[Zz]|(?P<ts>[+-])(?P<th>[0-9]{2})(?::?(?P<tm>[0-9]{2}))?)?)?"
)
_RE_CACHE: dict[str, re.Pattern[str]] = {}


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _RE_CACHE.get(pattern)
    if found is None:
        found = _RE_CACHE[pattern] = re.compile(pattern)
    return found


# ---------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its label (the header as written), physical name, type and rules.

    Construction checks everything and normalises bounds and defaults to typed values
    (``min="5"`` on an integer column becomes ``5``).

    Raises:
        ValidationError: a rule that does not fit the type, or a malformed value.
    """

    label: str
    name: str
    type: ColumnType
    required: bool = False
    unique: bool = False
    min: Bound | None = None
    max: Bound | None = None
    max_length: int | None = None
    regex: str | None = None
    options: tuple[str, ...] | None = None
    default: Value = None
    scale: int | None = None
    format: DateFormat | None = None
    """For ``date`` columns: the accepted format besides ISO ``YYYY-MM-DD``."""

    def __post_init__(self) -> None:
        _check_column(self)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's columns in table order, and the spec's version.

    Raises:
        ValidationError: no columns, too many, or two with the same label or name.
    """

    columns: tuple[ColumnSpec, ...]
    version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        _check_dataset(self)

    @property
    def names(self) -> list[str]:
        """The physical column names in table order (what ``bulk_insert`` takes)."""
        return [c.name for c in self.columns]

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON-ready data, as ``portal.datasets.spec`` stores it."""
        return {"version": self.version, "columns": [column_json(c) for c in self.columns]}

    @classmethod
    def from_json(cls, data: object) -> DatasetSpec:
        """Read a spec stored by ``to_json``, checking every part of it.

        Raises:
            ValidationError: the data is not a well-formed spec; the message says where.
        """
        return _spec_from_json(data)


@dataclass(frozen=True)
class CellError:
    """One cell breaking one rule.

    ``row`` is the file's line number (header = 1, first data row = 2) for uploads, or the row
    number the caller passed to ``validate_value``; ``value`` the cell as written (a lone
    surrogate as its escape, ``\\ud800``, so that it can be shown and exported).
    """

    row: int
    column: str
    value: str
    rule: Rule
    message: str


@dataclass(frozen=True, eq=False)
class ValidationResult:
    """What ``validate`` found: the typed frame and the errors, in row then column order.

    ``typed`` has one column per spec column, named by physical name, Arrow-backed (int64,
    decimal128/256, bool, date32, timestamp[us, UTC], string); a cell with an error is null.
    ``error_count`` counts every error, also those past ``max_errors``.
    """

    typed: pd.DataFrame
    errors: list[CellError]
    error_count: int

    @property
    def ok(self) -> bool:
        return self.error_count == 0


@dataclass(frozen=True)
class EditorColumn:
    """What ``st.column_config`` needs for one column, without importing Streamlit.

    ``kind`` maps to a column config class: text -> TextColumn, number -> NumberColumn,
    checkbox -> CheckboxColumn, date -> DateColumn, datetime -> DatetimeColumn,
    selectbox -> SelectboxColumn. ``format`` is printf-style for numbers and moment.js-style
    for dates.

    A column's rules — required, bounds, maximum length, pattern — are said in ``help`` but
    not given to the grid: the browser would set a number above its maximum to the maximum and
    cut a longer text, both silently, drop a number below its minimum or a text off its pattern
    without a word (a pasted block too), and keep a new row to itself until every required
    cell is filled, so a half-filled row would be missing from the review with nothing said.
    Unchecked there, every such value reaches the server, which refuses it with a message per
    cell saying what to enter instead.
    """

    name: str
    label: str
    kind: Literal["text", "number", "checkbox", "date", "datetime", "selectbox"]
    help: str
    disabled: bool = False
    step: int | float | None = None
    format: str | None = None
    options: tuple[str, ...] | None = None
    default: Value = None
    timezone: str | None = None


# ---------------------------------------------------------------------------------------------
# Checking a spec, and its JSON form
# ---------------------------------------------------------------------------------------------


_DECIMAL_COMMA_ADVICE: Final = (
    "; for a file written with a decimal comma, choose that option on the Upload page"
)
"""Part of the message for a cell that is not a number: advice about a file, left out of the
message about a rule's minimum or maximum (``without_file_advice``)."""


def without_file_advice(message: str) -> str:
    """A value's message without the advice about reading a file (for a value typed as a rule
    or a filter, where no file is read)."""
    return message.replace(_DECIMAL_COMMA_ADVICE, "")


def _check_column(c: ColumnSpec) -> None:
    where = f"Column “{c.label}”" if isinstance(c.label, str) else "A column"
    problem = _column_problem(c)
    if problem:
        raise ValidationError(f"{where}: {problem}")


def _column_problem(c: ColumnSpec) -> str | None:
    if not isinstance(c.label, str) or not c.label.strip() or "\x00" in c.label:
        return "the label must be non-empty text."
    if not isinstance(c.name, str) or not _SAFE_NAME.fullmatch(c.name):
        return (
            f"the physical name {c.name!r} must be 1 to 63 characters of a-z, 0-9 and _,"
            " not starting with a digit."
        )
    if c.name in _PG_SYSTEM_NAMES or c.name.startswith("pg_"):
        return f"the physical name {c.name!r} is reserved; choose another."
    if c.type not in COLUMN_TYPES:
        return f"unknown type {c.type!r}; use one of {', '.join(COLUMN_TYPES)}."
    if not isinstance(c.required, bool) or not isinstance(c.unique, bool):
        return "required and unique must be true or false."
    if (c.min is not None or c.max is not None) and c.type not in (
        "integer",
        "decimal",
        "date",
        "datetime",
    ):
        return f"a {c.type} column cannot have a minimum or maximum."
    for attr in ("min", "max"):
        bound = getattr(c, attr)
        if bound is not None:
            typed = validate_value(_bare(c), bound)
            if isinstance(typed, CellError):  # a rule typed in the rules grid, not a file's cell
                said = without_file_advice(typed.message)
                return f"the {attr}imum {bound!r} is not valid: {said}"
            object.__setattr__(c, attr, typed)
    if c.min is not None and c.max is not None and cast(Any, c.min) > c.max:
        return f"the minimum {_show(c.min)} is above the maximum {_show(c.max)}."
    if c.max_length is not None:
        if c.type not in ("text", "category"):
            return f"a {c.type} column cannot have a maximum length."
        if not isinstance(c.max_length, int) or isinstance(c.max_length, bool):
            return "the maximum length must be a whole number."
        if c.max_length < 1:
            return "the maximum length must be at least 1."
    if c.regex is not None:
        if c.type != "text":
            return "only a text column can have a pattern."
        problem = _regex_problem(c.regex)
        if problem:
            return problem
    if c.type == "category":
        if c.options is None or isinstance(c.options, str):
            return "a category column needs its list of options."
        options = tuple(c.options)
        if not options:
            return "a category column needs at least one option."
        if not all(isinstance(o, str) and o != "" and "\x00" not in o for o in options):
            return "every option must be non-empty text."
        if len(set(options)) != len(options):
            return "the options must differ from each other."
        if c.max_length is not None and any(len(o) > c.max_length for o in options):
            return f"an option is longer than the maximum length {c.max_length}."
        object.__setattr__(c, "options", options)
    elif c.options is not None:
        return "only a category column can have options."
    if c.scale is not None:
        if c.type != "decimal":
            return "only a decimal column can have decimal places."
        if not isinstance(c.scale, int) or isinstance(c.scale, bool):
            return "its decimal places must be a whole number."
        if not 0 <= c.scale <= MAX_DECIMAL_DIGITS:
            return f"its decimal places must be between 0 and {MAX_DECIMAL_DIGITS}."
    if c.format is not None:
        if c.type != "date":
            return "only a date column can have a date format."
        if c.format not in DATE_FORMATS:
            return f"unknown date format {c.format!r}; use one of {', '.join(DATE_FORMATS)}."
    if c.default is not None:
        typed = validate_value(replace(c, default=None), c.default)
        if isinstance(typed, CellError):
            return f"the default {c.default!r} is not valid: {typed.message}"
        object.__setattr__(c, "default", typed)
    return None


def _bare(c: ColumnSpec) -> ColumnSpec:
    """The column's type alone, without rules: to read its bounds."""
    return ColumnSpec(label=c.label, name=c.name, type=c.type, scale=c.scale, format=c.format)


def type_only(c: ColumnSpec) -> ColumnSpec:
    """The column's type alone (and its date format), without rules or a scale: to read a value
    as the column's type whatever the rules say (a filter, an image from the audit log)."""
    return ColumnSpec(label=c.label, name=c.name, type=c.type, format=c.format)


def stored_value(c: ColumnSpec, raw: object) -> Value | CellError:
    """A value as the audit log holds it, read exactly as the column's type alone: a text as
    stored (an empty text is not a missing value here), ``None`` as missing, a date and time
    as ``logged_datetime`` reads it, anything else through ``validate_value`` of
    ``type_only(c)``."""
    if raw is None:
        return None
    if c.type in ("text", "category") and isinstance(raw, str):
        return raw
    if c.type == "datetime" and isinstance(raw, str) and (moment := logged_datetime(raw)):
        return moment
    return validate_value(type_only(c), raw)


_LOGGED_DATETIME: Final = re.compile(r"([0-9]{4,5})(-[0-9]{2}-[0-9]{2}T[0-9:.]+[+-][0-9:]+)( BC)?")
_400_YEARS: Final = timedelta(days=146_097)  # the Gregorian calendar repeats every 400 years


def logged_datetime(text_: str) -> datetime | None:
    """A date and time as the audit log holds it (``to_jsonb`` of a ``timestamptz``, printed
    in the time zone of the session that wrote it), in UTC; ``None`` if it is not one.

    A session in another time zone than UTC (psql, say) may print an offset to the second (a
    zone's local mean time, as Europe/Amsterdam's +00:19:32 until 1937) and, near the ends of
    a column's range, a year Python cannot hold: 9999-12-31 23:00 UTC at +14:00 is
    ``10000-01-01T13:00:00+14:00`` and 0001-01-01 01:00 UTC at -12:00 is
    ``0001-12-31T13:00:00-12:00 BC``. Such a year is read 400 years nearer, where the calendar
    is the same, and the moment moved back by as much once in UTC.
    """
    found = _LOGGED_DATETIME.fullmatch(text_)
    if found is None:
        return None
    year = 1 - int(found[1]) if found[3] else int(found[1])
    cycles = 1 if year < 1 else -1 if year > 9999 else 0
    try:
        moment = datetime.fromisoformat(f"{year + 400 * cycles:04d}{found[2]}")
        return moment.astimezone(UTC) - cycles * _400_YEARS
    except (ValueError, OverflowError):
        return None


def _regex_problem(pattern: object) -> str | None:
    if not isinstance(pattern, str) or not pattern:
        return "the pattern must be non-empty text."
    if "(?P" in pattern or re.search(r"\(\?<(?![=!])", pattern):
        return "named groups are not supported in patterns; use plain (…) groups."
    if "\x00" in pattern or not _storable(pattern):
        return "the pattern must be valid text without NUL characters."
    if (divergent := _divergent_syntax(pattern)) is not None:
        return f"the pattern {pattern!r} cannot be used: {divergent}; write it another way."
    try:
        _regex_matches(pa.array([""], pa.large_string()), pattern)
    except pa.ArrowInvalid as exc:
        reason = str(exc).split(":", 1)[-1].strip().replace(_DOT_ALL, "", 1)
        return f"the pattern {pattern!r} is not a valid regular expression ({reason})."
    return None


# A pattern is checked by two engines: RE2 (pyarrow) on upload and on every edit, PostgreSQL's
# own in the table's CHECK. Syntax that one of them refuses, or that they read differently, is
# refused up front. Escapes as (escape letter -> why).
_DIVERGENT_ESCAPES: Final = {
    "b": "\\b means a word boundary to one regex engine and a backspace to the other",
    "B": "\\B means a non-boundary to one regex engine and is refused by the other",
    "p": "\\p{…} (a Unicode class) is not understood by PostgreSQL",
    "P": "\\P{…} (a Unicode class) is not understood by PostgreSQL",
    "Q": "\\Q…\\E (quoted text) is not understood by PostgreSQL",
    "E": "\\Q…\\E (quoted text) is not understood by PostgreSQL",
    "z": "\\z is not understood by PostgreSQL",
    "Z": "\\Z is not understood by the validator",
    "C": "\\C is not understood by PostgreSQL",
}
_REPEAT_MAX: Final = 255  # PostgreSQL's limit on {n,m}


def _divergent_syntax(pattern: str) -> str | None:
    """Syntax of ``pattern`` that RE2 and PostgreSQL do not both read the same way."""
    escaped = False
    for k, char in enumerate(pattern):
        if escaped:
            escaped = False
            if char in _DIVERGENT_ESCAPES:
                return _DIVERGENT_ESCAPES[char]
            if char == "x" and pattern[k + 1 : k + 2] == "{":
                return "\\x{…} is not understood by PostgreSQL (write the character itself)"
        elif char == "\\":
            escaped = True
        elif char == "(" and pattern[k + 1 : k + 2] == "?":
            flags = re.match(r"\(\?[a-zA-Z-]+[:)]", pattern[k:])
            if flags and not (k == 0 and flags.group() == "(?i)"):
                return f"flags such as {flags.group()} (but a leading (?i)) differ between engines"
    for counts in re.findall(r"(?<!\\)\{(\d+)(?:,(\d*))?\}", pattern):
        if any(n and int(n) > _REPEAT_MAX for n in counts):
            return f"a repeat count over {_REPEAT_MAX} is refused by PostgreSQL"
    return None


def check_new_patterns(spec: DatasetSpec) -> None:
    """Refuse, in a spec about to become a table, a pattern that the validator's RE2 and the
    table's CHECK (PostgreSQL) would judge differently for some value: the upload would call a
    file valid that the table then refuses, or refuse values the table takes. A stored spec
    read back (``from_json``) is not held to this: its table exists, with its rule.

    Raises:
        ValidationError: names the column, the construct and what to write instead.
    """
    for c in spec.columns:
        if c.regex is not None and (problem := unportable_pattern(c.regex)) is not None:
            raise ValidationError(
                f"Column “{c.label}”: the pattern {c.regex!r} cannot be used: {problem}."
            )


# What the two engines read differently although both accept it, beyond _DIVERGENT_ESCAPES
# (refused in any spec): classes that PostgreSQL takes from the locale (letters, digits and
# spaces of every script) and RE2 keeps to ASCII, and syntax each parses its own way.
_LOCALE_ESCAPES: Final = {
    "w": "\\w is a letter or digit of any language to PostgreSQL but only A-Z, a-z, 0-9 or _ "
    "to the validator: write [A-Za-z0-9_] instead",
    "W": "\\W is anything but a letter or digit of any language to PostgreSQL but anything "
    "but A-Z, a-z, 0-9 or _ to the validator: write [^A-Za-z0-9_] instead",
    "s": "\\s takes more spaces to PostgreSQL (a vertical tab, an em space) than to the "
    "validator: write [ \\t\\n\\r\\f\\v] instead",
    "S": "\\S is anything but a space, and PostgreSQL counts more characters as spaces (a "
    "vertical tab, an em space) than the validator: write [^ \\t\\n\\r\\f\\v] instead",
}
_PORTABLE_CLASSES: Final = ("digit", "xdigit", "ascii")
_ASCII_CLASSES: Final = {
    "alpha": "[A-Za-z]",
    "alnum": "[A-Za-z0-9]",
    "word": "[A-Za-z0-9_]",
    "upper": "[A-Z]",
    "lower": "[a-z]",
    "space": "[ \\t\\n\\r\\f\\v]",
    "blank": "[ \\t]",
    "punct": "the signs you allow, such as [.,;:!?-],",
    "cntrl": "[\\x01-\\x1f\\x7f]",
    "print": "[ -~]",
    "graph": "[!-~]",
}
_POSIX_CLASS: Final = re.compile(r"\[:(\^?[a-z]+):\]")
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def unportable_pattern(pattern: str) -> str | None:
    """What in ``pattern`` (a pattern RE2 accepts) PostgreSQL reads differently, with what to
    write instead, or ``None``: ``\\w \\W \\s \\S`` and POSIX classes but ``[:digit:]``,
    ``[:xdigit:]`` and ``[:ascii:]``; ``[.a.]`` and ``[=a=]`` in brackets; a class at the end
    of a range; ``\\x`` followed by more than two hex digits; ``\\1`` to ``\\9``."""
    k, in_brackets = 0, False
    items = dash = -1  # in brackets: where the items begin, where the last plain - is
    while k < len(pattern):
        char = pattern[k]
        if char == "\\":
            escape = pattern[k + 1 : k + 2]
            if escape in _LOCALE_ESCAPES:
                return _LOCALE_ESCAPES[escape]
            if escape != "" and escape in "123456789":
                return (
                    f"\\{escape} is a back-reference to PostgreSQL when the pattern has that many "
                    "groups, a character code to the validator: write the character itself"
                )
            digits = pattern[k + 2 : k + 5]
            if escape == "x" and len(digits) == 3 and set(digits) <= _HEX:
                return (
                    f"\\x{digits} is one character to PostgreSQL, which reads every hex digit "
                    f"after \\x, but \\x{digits[:2]} then {digits[2]} to the validator: write the "
                    "character itself"
                )
            if in_brackets and escape in ("d", "D") and _range_follows(pattern, k + 2):
                return _class_in_range(f"\\{escape}")
            k += 2
            continue
        if not in_brackets:
            if char == "[":
                k += 2 if pattern[k + 1 : k + 2] == "^" else 1
                in_brackets, items = True, k
                k += 1 if pattern[k : k + 1] == "]" else 0  # a ] first is itself
                continue
        elif char == "]":
            in_brackets = False
        elif char == "-":
            dash = k
        elif char == "[" and pattern[k + 1 : k + 2] in (".", "=", ":"):
            found = _POSIX_CLASS.match(pattern, k)
            if found is None:
                return (
                    "in brackets, [. [= and [: begin a collating element ([[.a.]]), an "
                    "equivalence class ([[=a=]]) or a class to PostgreSQL but are plain "
                    "characters to the validator: write the character itself, such as [a], "
                    "and a [ in brackets as \\["
                )
            name = found.group(1)
            if name in _ASCII_CLASSES:
                return (
                    f"[:{name}:] takes characters of every language to PostgreSQL but only "
                    f"ASCII ones to the validator: write {_ASCII_CLASSES[name]} instead"
                )
            if name not in _PORTABLE_CLASSES:
                return f"[:{name}:] is not read alike by the two engines: list the characters"
            if dash == k - 1 > items or _range_follows(pattern, found.end()):
                return _class_in_range(found.group())
            k = found.end()
            continue
        k += 1
    return None


def _range_follows(pattern: str, k: int) -> bool:
    """Whether a - at ``k`` makes a range in brackets (not the last character)."""
    return pattern[k : k + 1] == "-" and pattern[k + 1 : k + 2] not in ("]", "")


def _class_in_range(shown: str) -> str:
    return (
        f"{shown} at an end of a range is refused by PostgreSQL (the validator takes the - as "
        "itself): put the - first or last in the brackets"
    )


def _regex_matches(values: Any, pattern: str) -> Any:
    """Whether each value contains a match of ``pattern`` (RE2 syntax and semantics, like
    PostgreSQL's ``~``: a search; ``$`` is the end of the value; ``.`` any character, a line
    break too, which RE2 takes only with its flag ``s``)."""
    return pc.match_substring_regex(values, pattern=_DOT_ALL + pattern)


_DOT_ALL: Final = "(?s)"


def _storable(text_: str) -> bool:
    """Text PostgreSQL can store: valid Unicode (no lone surrogates)."""
    try:
        text_.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escape_surrogates(text_: str) -> str:
    """``text_`` with each lone surrogate written as its escape (``\\ud800``): text a browser's
    JSON can carry but no UTF-8 text can hold (Arrow, a CSV download, PostgreSQL), made safe to
    show and export; any other text as it is."""
    return text_ if _storable(text_) else text_.encode("utf-8", "backslashreplace").decode()


def _check_dataset(spec: DatasetSpec) -> None:
    if not isinstance(spec.version, int) or isinstance(spec.version, bool) or spec.version < 1:
        raise ValidationError("The spec version must be a whole number of at least 1.")
    if not spec.columns:
        raise ValidationError("A dataset needs at least one column.")
    if len(spec.columns) > MAX_COLUMNS:
        raise ValidationError(
            f"A dataset can have at most {MAX_COLUMNS} columns; this one has {len(spec.columns)}."
        )
    if not all(isinstance(c, ColumnSpec) for c in spec.columns):
        raise ValidationError("Every column of a spec must be a ColumnSpec.")
    names: dict[str, str] = {}
    labels: dict[str, str] = {}
    for c in spec.columns:
        if c.name in names:
            raise ValidationError(
                f"Columns “{names[c.name]}” and “{c.label}” have the same physical name"
                f" {c.name!r}: give each its own."
            )
        names[c.name] = c.label
        key = label_key(c.label)
        if key in labels:
            raise ValidationError(
                f"Columns “{labels[key]}” and “{c.label}” have the same label (ignoring case"
                " and surrounding spaces): rename one."
            )
        labels[key] = c.label


def label_key(label: str) -> str:
    """A label as labels are compared: ignoring case and surrounding spaces, and how an accent
    is written (é as one character or as e and a combining accent look the same)."""
    return unicodedata.normalize("NFC", label.strip().casefold())


_JSON_KEYS: Final = (
    "label",
    "name",
    "type",
    "required",
    "unique",
    "min",
    "max",
    "max_length",
    "regex",
    "options",
    "default",
    "scale",
    "format",
)


def _json_value(value: Value) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # str() would write 0.0000001 as 1E-7
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def column_json(c: ColumnSpec) -> dict[str, Any]:
    """One column as ``DatasetSpec.to_json`` stores it (JSON-ready values)."""
    data: dict[str, Any] = {
        "label": c.label,
        "name": c.name,
        "type": c.type,
        "required": c.required,
        "unique": c.unique,
    }
    for key in ("min", "max", "max_length", "regex", "default", "scale", "format"):
        value = getattr(c, key)
        if value is not None:
            data[key] = _json_value(value)
    if c.options is not None:
        data["options"] = list(c.options)
    return data


def _spec_from_json(data: object) -> DatasetSpec:
    def malformed(problem: str) -> ValidationError:
        return ValidationError(f"The stored schema spec is malformed: {problem}")

    if not isinstance(data, Mapping):
        raise malformed("expected an object with “columns”.")
    unknown = sorted(set(data) - {"version", "columns"})
    if unknown:
        raise malformed(f"unknown keys {unknown}.")
    version = data.get("version", 1)
    columns = data.get("columns")
    if not isinstance(columns, list):
        raise malformed("“columns” must be a list.")
    parsed: list[ColumnSpec] = []
    for position, item in enumerate(columns, start=1):
        if not isinstance(item, Mapping):
            raise malformed(f"column {position} is not an object.")
        unknown = sorted(set(item) - set(_JSON_KEYS))
        if unknown:
            raise malformed(f"column {position} has unknown keys {unknown}.")
        missing = [k for k in ("label", "name", "type") if k not in item]
        if missing:
            raise malformed(f"column {position} lacks {missing}.")
        kwargs = dict(item)
        if "options" in kwargs and isinstance(kwargs["options"], list):
            kwargs["options"] = tuple(kwargs["options"])
        for key in ("min", "max", "default"):
            value = kwargs.get(key)
            if isinstance(value, float | list | dict):
                raise malformed(
                    f"column {position}: {key} must be text, a whole number or true/false"
                    " (decimals are stored as text to stay exact)."
                )
        for key in ("max_length", "scale"):
            value = kwargs.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise malformed(f"column {position}: {key} must be a whole number.")
        try:
            parsed.append(ColumnSpec(**kwargs))
        except ValidationError as exc:
            raise malformed(f"column {position}: {exc}") from None
        except TypeError as exc:  # a wrongly typed field the checks could not read
            raise malformed(f"column {position}: {exc}") from None
    try:
        return DatasetSpec(columns=tuple(parsed), version=version)
    except ValidationError as exc:
        raise malformed(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Physical names
# ---------------------------------------------------------------------------------------------

_TRANSLITERATE: Final = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "ł": "l",
        "Ł": "L",
        "þ": "th",
        "Þ": "TH",
        "ı": "i",
    }
)


def physical_names(
    labels: Iterable[str], *, taken: Iterable[str] = (), start: int = 1
) -> list[str]:
    """Safe, unique PostgreSQL column names for header labels, in order.

    Each name is ASCII ``[a-z0-9_]``, starts with a letter, has at most 63 bytes, and is never
    ``_row_id``, ``_version``, a PostgreSQL system column or ``pg_…``. Labels are transliterated
    (``Größe`` -> ``grosse``); a label with nothing left becomes ``col_<position>`` (positions
    counted from ``start``); a clash after case folding, or with a name in ``taken`` (the
    columns a table has already), gets ``_2``, ``_3``, … (``Name``, ``name `` -> ``name``,
    ``name_2``).
    """
    used = set(taken)
    names: list[str] = []
    for position, label in enumerate(labels, start=start):
        base = _base_name(label, position)
        name, n = base, 2
        while name in used:
            suffix = f"_{n}"
            name = base[: MAX_IDENTIFIER_BYTES - len(suffix)].rstrip("_") + suffix
            n += 1
        used.add(name)
        names.append(name)
    return names


def _base_name(label: str, position: int) -> str:
    ascii_text = (
        unicodedata.normalize("NFKD", label.translate(_TRANSLITERATE))
        .encode("ascii", "ignore")
        .decode("ascii")
    )
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if not name:
        name = f"col_{position}"
    elif name[0].isdigit() or name in _PG_SYSTEM_NAMES or name == "pg" or name.startswith("pg_"):
        name = f"col_{name}"  # "pg" too: a second "PG" would be "pg_2"
    return name[:MAX_IDENTIFIER_BYTES].rstrip("_")


# ---------------------------------------------------------------------------------------------
# Messages (one place, used by both validators)
# ---------------------------------------------------------------------------------------------


def _show(value: object) -> str:
    """A value as a person reads it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def quoted(raw: str) -> str:
    """``raw`` in quotes as messages show a value: at most 60 characters, unpaired surrogates
    escaped."""
    raw = escape_surrogates(raw)
    shown = raw if len(raw) <= 60 else raw[:57] + "…"
    return f"“{shown}”"


def _type_message(c: ColumnSpec, raw: str, decimal_comma: bool, reason: str = "") -> str:
    v = quoted(raw)
    if c.type == "integer":
        if reason == "range":
            return (
                f"{v} is too large for a whole-number column (at most"
                f" ±{INT64_MAX:,}): make the column a decimal column."
            )
        grouping = " (thousands may be grouped with points: 1.234)" if decimal_comma else ""
        return (
            f"{v} is not a whole number: write digits only, such as 42 or -7{grouping};"
            " no decimals, spaces or thousands separators."
        )
    if c.type == "decimal":
        if reason == "digits":
            return (
                f"{v} has more than {MAX_DECIMAL_DIGITS} digits before or after the decimal"
                " point: shorten it."
            )
        if decimal_comma:
            return f"{v} is not a number: write it like 1234,56 or 1.234,56 (decimal comma)."
        return (
            f"{v} is not a number: write it like 1234.56 (a point before the decimals, no"
            f" thousands separators{_DECIMAL_COMMA_ADVICE})."
        )
    if c.type == "boolean":
        return f"{v} is not a yes/no value: write true or false (yes/no, y/n, t/f, 1/0 also work)."
    if c.type == "date":
        fmt = c.format or ISO_DATE
        forms = fmt if fmt == ISO_DATE else f"{fmt} or {ISO_DATE}"
        return (
            f"{v} is not a date in the form {forms}, or not a day that exists: write it like"
            f" {_DATE_EXAMPLES[fmt]}."
        )
    if c.type == "datetime":
        return (
            f"{v} is not a valid date and time: write it as ISO 8601, like"
            " 2024-12-24T18:30:00+01:00 (without an offset it is read as UTC)."
        )
    if reason == "unstorable":
        return (
            f"{v} contains a NUL character or invalid Unicode, which cannot be stored: remove it."
        )
    if reason.startswith("arrived as "):  # only a forged or broken grid state sends one
        return f"{v} {reason}, not as text; reload the page and type it again."
    return f"{v} is not text."


def _arrived_as(value: object) -> str:
    """What kind of value a text cell was sent instead of text, in words."""
    if isinstance(value, bool):
        return "arrived as a yes/no value"
    if isinstance(value, int | float | Decimal):
        return "arrived as a number"
    if isinstance(value, date):
        return "arrived as a date"
    return "arrived as a list or an object" if isinstance(value, list | dict) else "arrived"


def _options_list(options: Sequence[str]) -> str:
    shown = [quoted(o) for o in options[:10]]
    return ", ".join(shown) + (f" and {len(options) - 10} more" if len(options) > 10 else "")


def _rule_message(c: ColumnSpec, rule: Rule, raw: str, typed: Value) -> str:
    v = quoted(raw)
    if rule == "scale":
        return f"{v} has more than {c.scale} digits after the decimal point: round it to {c.scale}."
    if rule == "min":
        return f"{v} is below the minimum {_show(c.min)}: enter {_show(c.min)} or more."
    if rule == "max":
        return f"{v} is above the maximum {_show(c.max)}: enter {_show(c.max)} or less."
    if rule == "max_length":
        text_ = typed if isinstance(typed, str) else ""
        # é typed as e and an accent counts twice, as PostgreSQL's char_length counts it.
        marks = sum(1 for char in text_ if unicodedata.combining(char))
        accents = f", {marks} of them accents typed as characters of their own" if marks else ""
        return (
            f"{v} is {len(text_)} characters long{accents}; at most {c.max_length} are allowed:"
            " shorten it."
        )
    if rule == "regex":
        return f"{v} does not match the pattern {c.regex} this column requires: correct it."
    if rule == "options":
        near = _near_option(raw, c.options or ())
        if near is not None:  # they may look alike: é is one character, or e and an accent
            return (
                f"{v} is not one of the allowed values but nearly {quoted(near)}: write it "
                "exactly as the option is written (letter case, no spaces around it, accents "
                "typed the same way)."
            )
        return f"{v} is not one of the allowed values ({_options_list(c.options or ())})."
    return f"{v} breaks the rule {rule}."


def _near_option(raw: str, options: Sequence[str]) -> str | None:
    """The option ``raw`` is but for letter case, spaces around it and how its accents are
    encoded (as labels are compared), if any."""
    key = label_key(escape_surrogates(raw))
    return next((o for o in options if label_key(o) == key), None)


REQUIRED_MESSAGE: Final = "A value is required here: fill it in."


def _unique_message(raw: str, first_row: int) -> str:
    return (
        f"{quoted(raw)} also appears in line {first_row}: values in this column must be unique;"
        " keep one and change the others."
    )


# ---------------------------------------------------------------------------------------------
# Validating one value
# ---------------------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, rule: Rule, message: str) -> None:
        super().__init__(message)
        self.rule: Rule = rule
        self.message = message


def is_missing(value: object) -> bool:
    """A missing value, as the validator reads one: ``None``, an empty text, NaN, NA, NaT."""
    kind = type(value)
    if kind is str:  # the common cases first: this runs for every cell an editor sends
        return value == ""
    if kind is int or kind is bool or kind is Decimal:
        return False
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(value != value)  # NaN only (np.isnan costs ten times more)
    return isinstance(value, str) and value == ""


def validate_value(
    column: ColumnSpec, value: object, *, row: int = 0, decimal_comma: bool = False
) -> Value | CellError:
    """Check one value against the column's rules: the typed value, or a ``CellError``.

    Takes what a CSV holds (strings) or what an editor sends (``int``, ``float``, ``Decimal``,
    ``bool``, ``date``, ``datetime``, ``str``, ``None``); an empty string, ``None`` or NaN is a
    missing value. Gives the same verdicts and messages as ``validate`` for the same strings.
    Uniqueness needs the whole column: the table's UNIQUE constraint enforces it for edits.
    Never raises.
    """
    if is_missing(value):
        if column.required:
            return CellError(row, column.label, "", "required", REQUIRED_MESSAGE)
        return None
    try:
        typed = _typed(column, value, decimal_comma)
        _check_rules(column, typed, value)
    except _Invalid as exc:
        return CellError(row, column.label, _as_shown(value), exc.rule, exc.message)
    return typed


def typed_only(column: ColumnSpec, value: object) -> Value | CellError:
    """``value`` read as the column's type, as ``validate_value`` reads it, without the
    column's rules (required, min and max, length, pattern, options): a value that breaks
    them, kept to be corrected. A ``CellError`` for a value of another type."""
    if is_missing(value):
        return None
    try:
        return _typed(column, value, False)
    except _Invalid as exc:
        return CellError(0, column.label, _as_shown(value), exc.rule, exc.message)


def _as_shown(value: object) -> str:
    """The value as a message quotes it (made only for a message: most values pass), lone
    surrogates escaped."""
    return escape_surrogates(value if isinstance(value, str) else _show(value))


def _typed(c: ColumnSpec, value: object, decimal_comma: bool) -> Value:
    raw = value  # as it arrived, for a message

    def invalid(reason: str = "") -> _Invalid:
        return _Invalid("type", _type_message(c, _as_shown(raw), decimal_comma, reason))

    if c.type in ("text", "category"):
        if not isinstance(value, str):
            raise invalid(_arrived_as(value))
        if "\x00" in value or not _storable(value):
            raise invalid("unstorable")
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if c.type == "integer":
        return _typed_integer(value, decimal_comma, invalid)
    if c.type == "decimal":
        return _typed_decimal(c, value, decimal_comma, invalid)
    if c.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, str):
            word = value.strip(_BLANKS)
            word = word.lower() if word.isascii() else word
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
        raise invalid()
    if c.type == "date":
        return _typed_date(c, value, invalid)
    return _typed_datetime(value, invalid)


def _typed_integer(value: object, decimal_comma: bool, invalid: Any) -> int:
    number: int
    if isinstance(value, bool):
        raise invalid()
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise invalid()
        number = int(value)
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise invalid()
        number = int(value)
    elif isinstance(value, str):
        text_ = value.strip(_BLANKS)
        if not _compiled(_INT_GROUPED if decimal_comma else _INT).fullmatch(text_):
            raise invalid()
        digits = text_.replace(".", "").lstrip("+-").lstrip("0") or "0"
        if len(digits) > 19:  # before int(): Python refuses to read over 4,300 digits
            raise invalid("range")
        number = -int(digits) if text_.startswith("-") else int(digits)
    else:
        raise invalid()
    if not INT64_MIN <= number <= INT64_MAX:
        raise invalid("range")
    return number


def _decimal_digits(number: Decimal) -> tuple[int, int]:
    """Significant digits before and after the point (leading and trailing zeros ignored)."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return 0, 0
    count = len(digits)
    while exponent < 0 and digits[count - 1] == 0:  # a nonzero digit stops it
        count -= 1
        exponent += 1
    return max(0, count + exponent), max(0, -exponent)


def _typed_decimal(c: ColumnSpec, value: object, decimal_comma: bool, invalid: Any) -> Decimal:
    if isinstance(value, bool):
        raise invalid()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise invalid()
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise invalid()
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text_ = value.strip(_BLANKS)
        if not _compiled(_DEC_COMMA if decimal_comma else _DEC).fullmatch(text_):
            raise invalid()
        if decimal_comma:
            text_ = text_.replace(".", "").replace(",", ".")
        try:
            number = Decimal(text_)
        except InvalidOperation:  # the pattern admits only what Decimal reads
            raise invalid() from None
    else:
        raise invalid()
    before, after = _decimal_digits(number)
    if before > MAX_DECIMAL_DIGITS or after > MAX_DECIMAL_DIGITS:
        raise invalid("digits")
    if c.scale is not None and after > c.scale:
        raise _Invalid("scale", _rule_message(c, "scale", _as_shown(value), None))
    return number


def stored_decimal(c: ColumnSpec, number: Decimal) -> Decimal:
    """``number``, a valid value of the decimal column ``c``, written as an upload writes it
    (``csv_import.copy_stream``), for PostgreSQL's numeric keeps the digits after the point it
    is given: with exactly the column's scale (1.5 -> 1.50), or without one, no zeros after the
    last significant digit (1.50 -> 1.5, 0.000 -> 0); zero without a sign."""
    if c.scale is not None:
        number = number.quantize(_QUANTUM[c.scale], context=_STORE_CONTEXT)
    else:
        number = number.normalize(_STORE_CONTEXT)
        if cast(int, number.as_tuple().exponent) > 0:  # 1E+2: back to 100
            number = number.quantize(Decimal(1), context=_STORE_CONTEXT)
    return number.copy_abs() if number.is_zero() else number


_STORE_CONTEXT: Final = Context(prec=4 * MAX_DECIMAL_DIGITS)
"""Room for every valid value (only its flags change as it is used)."""
_QUANTUM: Final = [Decimal(1).scaleb(-scale) for scale in range(MAX_DECIMAL_DIGITS + 1)]
"""``_QUANTUM[scale]``: the exponent ``stored_decimal`` writes a value of that scale with."""


def _typed_date(c: ColumnSpec, value: object, invalid: Any) -> date:
    if isinstance(value, datetime):
        if value.tzinfo is None and value.time() == datetime.min.time():
            return date(value.year, value.month, value.day)
        raise invalid()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise invalid()
    text_ = value.strip(_BLANKS)
    for fmt in dict.fromkeys((c.format or ISO_DATE, ISO_DATE)):
        found = _compiled(_DATE_PATTERNS[fmt]).fullmatch(text_)
        if found:
            try:
                return date(int(found["y"]), int(found["m"]), int(found["d"]))
            except ValueError:
                continue
    raise invalid()


def _typed_datetime(value: object, invalid: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = _parse_datetime(value.strip(_BLANKS), invalid)
    else:
        raise invalid()
    try:
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
    except OverflowError:
        raise invalid() from None
    return datetime(
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
        tzinfo=UTC,
    )


def _parse_datetime(text_: str, invalid: Any) -> datetime:
    """An ISO 8601 string as a naive UTC datetime (an offset applied)."""
    found = _compiled(_DATETIME).fullmatch(text_)
    if not found:
        raise invalid()

    def number(group: str) -> int:
        return int(found[group] or 0)

    try:
        moment = datetime(
            number("y"),
            number("mo"),
            number("d"),
            number("h"),
            number("mi"),
            number("s"),
            int((found["f"] or "").ljust(6, "0")),
        )
    except ValueError:
        raise invalid() from None
    if found["ts"]:
        if number("th") > 23 or number("tm") > 59:
            raise invalid()
        offset = (number("th") * 60 + number("tm")) * (-1 if found["ts"] == "-" else 1)
        try:
            moment = moment - timedelta(minutes=offset)
        except OverflowError:
            raise invalid() from None
    return moment


def _check_rules(c: ColumnSpec, typed: Value, raw: object) -> None:
    """The column's rules on a typed value; ``raw`` is what arrived, quoted in messages."""
    if c.min is not None and cast(Any, typed) < c.min:
        raise _Invalid("min", _rule_message(c, "min", _as_shown(raw), typed))
    if c.max is not None and cast(Any, typed) > c.max:
        raise _Invalid("max", _rule_message(c, "max", _as_shown(raw), typed))
    if isinstance(typed, str):
        if c.max_length is not None and len(typed) > c.max_length:
            raise _Invalid("max_length", _rule_message(c, "max_length", _as_shown(raw), typed))
        if (
            c.regex is not None
            and not _regex_matches(pa.array([typed], pa.large_string()), c.regex)[0].as_py()
        ):
            raise _Invalid("regex", _rule_message(c, "regex", _as_shown(raw), typed))
        if c.options is not None and typed not in c.options:
            raise _Invalid("options", _rule_message(c, "options", _as_shown(raw), typed))


# ---------------------------------------------------------------------------------------------
# Validating a whole frame, column by column (vectorised with pyarrow and numpy)
# ---------------------------------------------------------------------------------------------

BoolArray: TypeAlias = npt.NDArray[np.bool_]
IntArray: TypeAlias = npt.NDArray[np.int64]
_RULE_CODES: Final[dict[Rule, int]] = {rule: code for code, rule in enumerate(RULES, start=1)}
_DAYS_IN_MONTH: Final = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)
_US_PER_DAY: Final = 86_400_000_000
_EPOCH_DATE: Final = date(1970, 1, 1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_DAY: Final = (date(1, 1, 1) - _EPOCH_DATE).days
_MIN_US: Final = _MIN_DAY * _US_PER_DAY
_MAX_US: Final = ((date(9999, 12, 31) - _EPOCH_DATE).days + 1) * _US_PER_DAY - 1
_Checks: TypeAlias = list[tuple[Rule, BoolArray]]


def validate(
    spec: DatasetSpec,
    frame: pd.DataFrame,
    *,
    decimal_comma: bool = False,
    line_numbers: Sequence[int] | npt.NDArray[np.integer[Any]] | None = None,
    max_errors: int | None = None,
) -> ValidationResult:
    """Check every cell of ``frame`` (strings; empty or NA = missing) against ``spec``.

    Columns are matched by label (exactly, or ignoring case and surrounding spaces) or by
    physical name, in any order; ``_row_id`` and ``_version`` columns are ignored. Each cell
    reports at most one error: the first rule it breaks, in the order required, type, scale,
    min, max, max_length, regex, options, unique. ``line_numbers`` gives each row's line in the
    file (default: position + 2, the header being line 1). ``max_errors`` caps the errors
    listed (the first ones by row), not the count.

    Raises:
        ValidationError: the frame's columns do not match the spec's (names what to rename).
    """
    sources = _frame_columns(spec, frame)
    rows = _row_numbers(len(frame), line_numbers)
    raws: list[Any] = []
    codes: list[npt.NDArray[np.int8]] = []
    firsts: list[IntArray | None] = []
    typed: dict[str, Any] = {}
    for column in spec.columns:
        raw = _string_array(frame[sources[column.name]])
        checked, column_codes, first = _check_array(column, raw, decimal_comma)
        raws.append(raw)
        codes.append(column_codes)
        firsts.append(first)
        typed[column.name] = checked
    errors, count = _collect_errors(spec, raws, codes, firsts, rows, decimal_comma, max_errors)
    table = pa.table(typed) if typed else pa.table({})
    out = table.to_pandas(types_mapper=pd.ArrowDtype)
    out.index = frame.index
    return ValidationResult(out, errors, count)


def _frame_columns(spec: DatasetSpec, frame: pd.DataFrame) -> dict[str, Any]:
    keys = list(frame.columns)
    if len({str(k) for k in keys}) != len(keys):
        raise ValidationError("The table has two columns with the same name: rename one.")
    exact = {str(k): k for k in keys}
    folded: dict[str, list[Any]] = {}  # however their accents are written (label_key)
    for k in keys:
        folded.setdefault(label_key(str(k)), []).append(k)
    found: dict[str, Any] = {}
    missing: list[str] = []
    for c in spec.columns:
        candidates = [exact.get(c.label), exact.get(c.name)]
        same = folded.get(label_key(c.label), [])
        candidates.append(same[0] if len(same) == 1 else None)
        key = next((k for k in candidates if k is not None and k not in found.values()), None)
        if key is None:
            missing.append(c.label)
        else:
            found[c.name] = key
    extra = [str(k) for k in keys if k not in found.values() and str(k) not in SYSTEM_COLUMNS]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing: " + ", ".join(quoted(m) for m in missing))
        if extra:
            parts.append("not in the dataset: " + ", ".join(quoted(e) for e in extra))
        # A dataset's columns cannot be changed: a file of other columns goes into a new one.
        names = ", ".join(quoted(c.label) for c in spec.columns)
        raise ValidationError(
            f"The file's columns do not match the dataset's ({'; '.join(parts)}): rename the"
            f" header cells to the dataset's column names (its columns are {names}; any order),"
            " or upload the file as a new dataset. Nothing was stored."
        )
    return found


def _row_numbers(
    count: int, line_numbers: Sequence[int] | npt.NDArray[np.integer[Any]] | None
) -> IntArray:
    if line_numbers is None:
        return np.arange(2, count + 2, dtype=np.int64)
    rows = np.asarray(line_numbers, dtype=np.int64)
    if rows.shape != (count,):
        raise ValueError(f"line_numbers has {rows.size} entries for {count} rows")
    return rows


def _string_array(series: pd.Series[Any]) -> Any:
    """The column as an Arrow large_string array, null where missing or empty."""
    dtype = series.dtype
    is_arrow_string = (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow") or (
        isinstance(dtype, pd.ArrowDtype)
        and (
            pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype)
        )
    )
    if not is_arrow_string:
        series = series.astype(pd.StringDtype("pyarrow"))
    array = pa.array(series)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = array.cast(pa.large_string())
    return pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.large_string()), array)


def _np(mask: Any) -> BoolArray:
    """An Arrow boolean array as numpy, null as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _ints(array: Any) -> IntArray:
    return np.asarray(pc.fill_null(array, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _digits(array: Any) -> IntArray:
    """Digit strings (empty = 0) as numbers."""
    return _ints(pc.cast(_or_zero(array), pa.int64()))


def _text(value: str) -> Any:
    """A large_string scalar, to combine with the arrays (all large_string)."""
    return pa.scalar(value, pa.large_string())


def _or_zero(array: Any) -> Any:
    """Empty strings as "0"."""
    array = array.cast(pa.large_string())
    return pc.if_else(pc.equal(array, ""), _text("0"), array)


def _matches(values: Any, pattern: str) -> BoolArray:
    return _np(pc.match_substring_regex(values, pattern=_anchored(pattern)))


def _scatter(sub: Any, idx: IntArray, count: int) -> Any:
    """An array of ``count`` nulls with ``sub``'s values at positions ``idx``."""
    where = np.full(count, -1, dtype=np.int64)
    where[idx] = np.arange(len(idx), dtype=np.int64)
    return sub.take(pa.array(where, mask=where < 0))


def _check_array(
    c: ColumnSpec, raw: Any, decimal_comma: bool
) -> tuple[Any, npt.NDArray[np.int8], IntArray | None]:
    """The typed array, a rule code per cell (0 = fine) and, for unique columns, the position
    of each value's first occurrence."""
    present = _np(raw.is_valid())
    codes = np.zeros(len(raw), dtype=np.int8)

    def mark(rule: Rule, mask: BoolArray) -> None:
        codes[mask & (codes == 0)] = _RULE_CODES[rule]

    if c.required:
        mark("required", ~present)
    if c.type in ("text", "category"):
        typed = raw
        checks = _string_checks(c, raw, present)
    else:
        values = pc.utf8_trim(raw, characters=_BLANKS)
        typed, checks = _VECTOR_PARSERS[c.type](c, values, present, decimal_comma)
    for rule, mask in checks:
        mark(rule, mask)
    first: IntArray | None = None
    if c.unique:
        duplicate, first = _duplicates(typed, present & (codes == 0))
        mark("unique", duplicate)
    if codes.any():
        typed = pc.if_else(pa.array(codes == 0), typed, pa.scalar(None, typed.type))
    return typed, codes, first


def _string_checks(c: ColumnSpec, raw: Any, present: BoolArray) -> _Checks:
    checks: _Checks = [("type", present & _np(pc.match_substring(raw, "\x00")))]
    if c.max_length is not None:
        checks.append(("max_length", present & (_ints(pc.utf8_length(raw)) > c.max_length)))
    if c.regex is not None:
        checks.append(("regex", present & ~_np(_regex_matches(raw, c.regex))))
    if c.options is not None:
        allowed = pa.array(list(c.options), pa.large_string())
        checks.append(("options", present & ~_np(pc.is_in(raw, value_set=allowed))))
    return checks


def _bounds_checks(c: ColumnSpec, ok: BoolArray, keys: IntArray, to_key: Any) -> _Checks:
    checks: _Checks = []
    if c.min is not None:
        checks.append(("min", ok & (keys < to_key(c.min))))
    if c.max is not None:
        checks.append(("max", ok & (keys > to_key(c.max))))
    return checks


def _vector_integer(c: ColumnSpec, values: Any, present: BoolArray, decimal_comma: bool) -> Any:
    syntax = present & _matches(values, _INT_GROUPED if decimal_comma else _INT)
    written = pc.replace_substring(values, ".", "") if decimal_comma else values
    if _np(pc.starts_with(written, "+")).any():
        written = pc.replace_substring_regex(written, r"^\+", "")
    candidates = pc.if_else(pa.array(syntax), written, pa.scalar(None, written.type))
    try:
        typed, ok = pc.cast(candidates, pa.int64()), syntax  # the usual case: all in range
    except pa.ArrowInvalid:
        typed, ok = _int64_in_range(candidates, syntax)
    checks: _Checks = [("type", present & ~ok)]
    checks += _bounds_checks(c, ok, _ints(typed), lambda bound: bound)
    return typed, checks


def _int64_in_range(candidates: Any, syntax: BoolArray) -> tuple[Any, BoolArray]:
    """Whole numbers (optional ``-``, digits) as int64, and which of them fit."""
    negative = _np(pc.starts_with(candidates, "-"))
    unsigned = pc.utf8_ltrim(pc.replace_substring_regex(candidates, r"^-", ""), "0")
    length = _ints(pc.utf8_length(unsigned))
    below_limit = np.where(
        negative,
        _np(pc.less_equal(unsigned, str(-INT64_MIN))),
        _np(pc.less_equal(unsigned, str(INT64_MAX))),
    )
    ok = syntax & ((length < 19) | ((length == 19) & below_limit))
    digits = _or_zero(unsigned)
    signed = pc.binary_join_element_wise(_text("-"), digits, _text(""))
    canonical = pc.if_else(pa.array(negative), signed, digits)
    typed = pc.cast(
        pc.if_else(pa.array(ok), canonical, pa.scalar(None, canonical.type)), pa.int64()
    )
    return typed, ok


def _decimal_type(before: int, scale: int) -> Any:
    if before + scale <= MAX_DECIMAL_DIGITS:
        return pa.decimal128(MAX_DECIMAL_DIGITS, scale)
    return pa.decimal256(2 * MAX_DECIMAL_DIGITS, scale)


def _vector_decimal(c: ColumnSpec, values: Any, present: BoolArray, decimal_comma: bool) -> Any:
    count = len(values)
    idx = np.flatnonzero(present & _matches(values, _DEC_COMMA if decimal_comma else _DEC))
    sub = values.take(pa.array(idx))
    if decimal_comma:
        sub = pc.replace_substring(pc.replace_substring(sub, ".", ""), ",", ".")
    # Digits as written bound the significant ones: when they fit, Arrow reads the values
    # directly; only values written longer than a limit need their zeros counted.
    point = _ints(pc.find_substring(sub, "."))
    length = _ints(pc.utf8_length(sub))
    signed = _np(pc.match_substring_regex(sub, pattern="^[+-]"))
    written_after = np.where(point >= 0, length - point - 1, 0)
    written_before = np.where(point >= 0, point, length) - signed
    scale_limit = MAX_DECIMAL_DIGITS if c.scale is None else c.scale
    long = (written_before > MAX_DECIMAL_DIGITS) | (written_after > scale_limit)
    fits = ~long
    scale_ok = ~long
    if long.any():
        before, after = _significant_digits(sub.filter(pa.array(long)))
        fits[long] = (before <= MAX_DECIMAL_DIGITS) & (after <= MAX_DECIMAL_DIGITS)
        scale_ok[long] = fits[long] & (after <= scale_limit)
        written_before[long] = before
        written_after[long] = after
    scale = c.scale if c.scale is not None else int(written_after[scale_ok].max(initial=0))
    dtype = _decimal_type(int(written_before[scale_ok].max(initial=0)), scale)
    readable = sub.filter(pa.array(scale_ok))
    if long.any():  # rewrite the long ones without their extra zeros
        readable = _canonical_decimal(readable)
    typed = _scatter(pc.cast(readable, dtype), idx[scale_ok], count)
    ok = np.zeros(count, dtype=np.bool_)
    ok[idx[scale_ok]] = True
    bad_scale = np.zeros(count, dtype=np.bool_)
    bad_scale[idx[fits & ~scale_ok]] = True
    checks: _Checks = [("type", present & ~ok & ~bad_scale), ("scale", bad_scale)]
    for rule, bound in (("min", c.min), ("max", c.max)):
        if bound is not None:
            assert isinstance(bound, Decimal)
            bound_before, bound_after = _decimal_digits(bound)
            common_scale = max(scale, bound_after)
            if common_scale == scale and bound_before + scale <= dtype.precision:
                common = dtype  # the bound fits the column's type: no cast of a million values
            else:
                common = pa.decimal256(2 * MAX_DECIMAL_DIGITS, common_scale)
            scalar = pa.scalar(_rescaled(bound, common_scale), common)
            compare = pc.less if rule == "min" else pc.greater
            checks.append((cast(Rule, rule), ok & _np(compare(typed.cast(common), scalar))))
    return typed, checks


def _significant_digits(numbers: Any) -> tuple[IntArray, IntArray]:
    """Digits before and after the point of decimal strings, leading and trailing zeros
    ignored (as ``_decimal_digits``)."""
    parts = pc.extract_regex(numbers, pattern=_anchored(_DEC_PARTS))
    whole = pc.utf8_ltrim(parts.field("int"), "0")
    fraction = pc.utf8_rtrim(parts.field("frac"), "0")
    return _ints(pc.utf8_length(whole)), _ints(pc.utf8_length(fraction))


def _canonical_decimal(numbers: Any) -> Any:
    """Decimal strings without leading zeros before, or trailing zeros after, the point."""
    parts = pc.extract_regex(numbers, pattern=_anchored(_DEC_PARTS))
    return pc.binary_join_element_wise(
        parts.field("sign").cast(pa.large_string()),
        _or_zero(pc.utf8_ltrim(parts.field("int"), "0")),
        _text("."),
        _or_zero(pc.utf8_rtrim(parts.field("frac"), "0")),
        _text(""),
    )


def _rescaled(number: Decimal, scale: int) -> Decimal:
    """``number`` with exactly ``scale`` digits after the point (it has no more significant)."""
    return number.quantize(Decimal(1).scaleb(-scale), context=Context(prec=200))


def _vector_boolean(c: ColumnSpec, values: Any, present: BoolArray, decimal_comma: bool) -> Any:
    words = pc.ascii_lower(values)
    true = _np(pc.is_in(words, value_set=pa.array(sorted(TRUE_WORDS), pa.large_string())))
    false = _np(pc.is_in(words, value_set=pa.array(sorted(FALSE_WORDS), pa.large_string())))
    ok = present & (true | false)
    return pa.array(true, mask=~ok, type=pa.bool_()), [("type", present & ~ok)]


def _valid_ymd(y: IntArray, m: IntArray, d: IntArray) -> BoolArray:
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    month = np.clip(m, 1, 12)
    days = _DAYS_IN_MONTH[month - 1] + ((month == 2) & leap)
    valid = (y >= 1) & (y <= 9999) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= days)
    return np.asarray(valid, dtype=np.bool_)


def _days_from_civil(y: IntArray, m: IntArray, d: IntArray) -> IntArray:
    """Days since 1970-01-01 of valid proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return np.asarray(era * 146097 + doe - 719468, dtype=np.int64)


def _vector_date(c: ColumnSpec, values: Any, present: BoolArray, decimal_comma: bool) -> Any:
    count = len(values)
    days = np.zeros(count, dtype=np.int64)
    ok = np.zeros(count, dtype=np.bool_)
    for fmt in dict.fromkeys((c.format or ISO_DATE, ISO_DATE)):
        pattern = _DATE_PATTERNS[fmt]
        idx = np.flatnonzero(present & ~ok)
        sub = values.take(pa.array(idx))
        idx = idx[_matches(sub, pattern)]
        if fmt == ISO_DATE:  # Arrow reads ISO dates itself when all of them are valid
            try:
                read = _ints(pc.cast(values.take(pa.array(idx)), pa.date32()).cast(pa.int32()))
            except pa.ArrowInvalid:
                read = None
            if read is not None and read.min(initial=_MIN_DAY) >= _MIN_DAY:
                days[idx] = read
                ok[idx] = True
                continue
        parts = pc.extract_regex(values.take(pa.array(idx)), pattern=_anchored(pattern))
        y, m, d = (_digits(parts.field(k)) for k in ("y", "m", "d"))
        valid = _valid_ymd(y, m, d)
        days[idx[valid]] = _days_from_civil(y[valid], m[valid], d[valid])
        ok[idx[valid]] = True
    typed = pa.array(days.astype(np.int32), mask=~ok).cast(pa.date32())
    checks: _Checks = [("type", present & ~ok)]
    checks += _bounds_checks(c, ok, days, lambda bound: (bound - _EPOCH_DATE).days)
    return typed, checks


def _vector_datetime(c: ColumnSpec, values: Any, present: BoolArray, decimal_comma: bool) -> Any:
    count = len(values)
    idx = np.flatnonzero(present & _matches(values, _DATETIME))
    parts = pc.extract_regex(values.take(pa.array(idx)), pattern=_anchored(_DATETIME))
    y, mo, d, h, mi, s, th, tm = (
        _digits(parts.field(k)) for k in ("y", "mo", "d", "h", "mi", "s", "th", "tm")
    )
    micro = _digits(pc.utf8_rpad(parts.field("f"), 6, "0"))
    has_offset = _np(pc.not_equal(parts.field("ts"), ""))
    west = _np(pc.equal(parts.field("ts"), "-"))
    valid = (
        _valid_ymd(y, mo, d)
        & (h <= 23)
        & (mi <= 59)
        & (s <= 59)
        & (~has_offset | ((th <= 23) & (tm <= 59)))
    )
    local = (
        _days_from_civil(np.where(valid, y, 1970), np.where(valid, mo, 1), np.where(valid, d, 1))
        * _US_PER_DAY
        + ((h * 60 + mi) * 60 + s) * 1_000_000
        + micro
    )
    offset = np.where(has_offset, (th * 60 + tm) * np.where(west, -1, 1), 0)
    utc = local - offset * 60_000_000
    valid &= (utc >= _MIN_US) & (utc <= _MAX_US)
    stamps = np.zeros(count, dtype=np.int64)
    stamps[idx[valid]] = utc[valid]
    ok = np.zeros(count, dtype=np.bool_)
    ok[idx[valid]] = True
    typed = pa.array(stamps, mask=~ok).cast(pa.timestamp("us", tz="UTC"))
    checks: _Checks = [("type", present & ~ok)]
    checks += _bounds_checks(
        c, ok, stamps, lambda bound: (bound - _EPOCH) // timedelta(microseconds=1)
    )
    return typed, checks


_VECTOR_PARSERS: Final[dict[str, Any]] = {
    "integer": _vector_integer,
    "decimal": _vector_decimal,
    "boolean": _vector_boolean,
    "date": _vector_date,
    "datetime": _vector_datetime,
}


def _duplicates(typed: Any, candidates: BoolArray) -> tuple[BoolArray, IntArray]:
    """Cells repeating an earlier candidate's value, and each cell's first occurrence."""
    count = len(typed)
    masked = pc.if_else(pa.array(candidates), typed, pa.scalar(None, typed.type))
    codes = _ints(pc.fill_null(pc.dictionary_encode(masked).indices, -1))
    positions = np.flatnonzero(codes >= 0)
    first = np.full(count, -1, dtype=np.int64)
    if positions.size == 0:
        return np.zeros(count, dtype=np.bool_), first
    values, first_index = np.unique(codes[positions], return_index=True)
    first_of_code = np.zeros(int(values.max()) + 1, dtype=np.int64)
    first_of_code[values] = positions[first_index]
    first[positions] = first_of_code[codes[positions]]
    duplicate = np.zeros(count, dtype=np.bool_)
    duplicate[positions] = first[positions] != positions
    return duplicate, first


def _collect_errors(
    spec: DatasetSpec,
    raws: list[Any],
    codes: list[npt.NDArray[np.int8]],
    firsts: list[IntArray | None],
    rows: IntArray,
    decimal_comma: bool,
    max_errors: int | None,
) -> tuple[list[CellError], int]:
    positions = [np.flatnonzero(c) for c in codes]
    position = np.concatenate(positions) if positions else np.zeros(0, np.int64)
    column = (
        np.concatenate([np.full(len(p), i) for i, p in enumerate(positions)])
        if positions
        else np.zeros(0, np.int64)
    )
    order = np.lexsort((column, position))
    if max_errors is not None:
        order = order[:max_errors]
    errors: list[CellError] = []
    for o in order:
        p, ci = int(position[o]), int(column[o])
        spec_column = spec.columns[ci]
        rule = RULES[int(codes[ci][p]) - 1]
        row = int(rows[p])
        raw = raws[ci][p].as_py()
        if rule == "required":
            errors.append(CellError(row, spec_column.label, "", "required", REQUIRED_MESSAGE))
        elif rule == "unique":
            first = firsts[ci]
            assert first is not None
            message = _unique_message(raw, int(rows[first[p]]))
            errors.append(CellError(row, spec_column.label, raw, "unique", message))
        else:
            found = validate_value(spec_column, raw, row=row, decimal_comma=decimal_comma)
            if not isinstance(found, CellError):  # the two validators disagree: still refuse
                found = CellError(
                    row, spec_column.label, raw, rule, _rule_message(spec_column, rule, raw, raw)
                )
            errors.append(found)
    return errors, int(position.size)


# ---------------------------------------------------------------------------------------------
# Inferring a spec from an uploaded CSV
# ---------------------------------------------------------------------------------------------

CATEGORY_MAX_OPTIONS: Final = 20
"""A text column becomes a category with at most this many distinct values …"""
CATEGORY_MIN_ROWS_PER_OPTION: Final = 2
"""… when there are at least this many filled cells per distinct value (values repeat) …"""
CATEGORY_MAX_OPTION_LENGTH: Final = 100
"""… and no value is longer than this (long texts are notes, not categories)."""
OPTION_SEPARATOR: Final = "|"
"""Between a category's options where they are edited as one text (the Upload page's rules
grid); options holding it, or spaces at either end, are not inferred as a category."""
_ID_LABEL = re.compile(r"(?:^|[^0-9a-z])(?:id|uuid|guid|key)$")
_ID_LABEL_CAMEL = re.compile(r"[a-z0-9](?:Id|ID|Uuid|UUID|Guid|GUID|Key)$")
_LEADING_ZERO = r"[+-]?0[0-9].*"


def infer_spec(
    header: Sequence[str],
    columns: Mapping[str, Sequence[str | None] | pd.Series[Any]],
    *,
    decimal_comma: bool = False,
    comma_separated: bool = False,
) -> tuple[DatasetSpec, list[str]]:
    """A first spec for a CSV's columns, and notes explaining the choices worth a look
    (``comma_separated``: the file's fields are separated by commas, so a comma inside a
    number is a thousands separator rather than a decimal comma, and said so).

    ``columns`` maps each header label to its raw cells (strings; empty or None = missing).
    Each column gets the narrowest type every filled cell fits, tried in this order:

    - boolean: true/false, yes/no, y/n, t/f words (a column of only 0 and 1 stays integer);
    - integer: 64-bit whole numbers. Codes with leading zeros (``007``, zip codes) stay text;
      a number beyond 64 bits makes the column decimal (scale 0), never a rounded float;
    - decimal: with ``scale`` = the most digits written after the point;
    - date: one format for the whole column: ISO ``YYYY-MM-DD``, or ``DD.MM.YYYY``,
      ``DD/MM/YYYY``, ``MM/DD/YYYY`` only when some value settles the order (a first part
      above 12 means day first; a second part above 12 means month first, with slashes).
      A column where every value could be either order stays text, with a note;
    - datetime: ISO 8601 date and time, with or without an offset (none = UTC, noted);
    - category: 2 to 20 distinct values, each filled cell count at least twice the number of
      distinct values, none longer than 100 characters; options in alphabetical order;
    - text otherwise.

    ``required`` is set when no cell is empty. ``unique`` is set only when every value differs
    and the label looks like an identifier (``id``, ``Order ID``, ``customerId``, ``key``,
    ``uuid``); other all-distinct text or integer columns of at least ``UNIQUE_HINT_FROM``
    filled cells get a note suggesting it.

    Raises:
        ValidationError: a label has no values, or two labels clash.
    """
    names = physical_names(header)
    specs: list[ColumnSpec] = []
    notes: list[str] = []
    for label, name in zip(header, names, strict=True):
        if label not in columns:
            raise ValidationError(f"No values were given for the column “{label}”.")
        values = columns[label]
        series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        column, column_notes = _infer_column(
            label, name, _string_array(series), decimal_comma, comma_separated
        )
        specs.append(column)
        notes += column_notes
    return DatasetSpec(columns=tuple(specs)), notes


def _infer_column(
    label: str, name: str, raw: Any, decimal_comma: bool, comma_separated: bool = False
) -> tuple[ColumnSpec, list[str]]:
    q = quoted(label)
    filled = raw.drop_null()
    required = len(raw) > 0 and len(filled) == len(raw)
    if len(filled) == 0:
        return ColumnSpec(label, name, "text"), [f"{q}: every cell is empty; it is kept as text."]
    distinct = pc.unique(filled)
    trimmed = pc.utf8_trim(distinct, characters=_BLANKS)
    found = _infer_type(q, trimmed, decimal_comma, comma_separated)
    if found is None:
        found = _infer_category(distinct, len(filled)) or ("text", {}, [])
    column_type, extra, notes = found
    if column_type in ("text", "category") and (not notes or notes == [_mixed_dates_note(q)]):
        kept_as = "text" if column_type == "text" else "a category"
        filled_trimmed = pc.utf8_trim(filled, characters=_BLANKS)
        mostly = _mostly_note(q, filled_trimmed, decimal_comma, kept_as)
        notes = [mostly] if mostly else notes
    all_distinct = len(filled) >= 2 and len(distinct) == len(filled)
    unique = False
    if all_distinct and column_type in ("text", "integer"):
        if _ID_LABEL.search(label.strip().casefold()) or _ID_LABEL_CAMEL.search(label.strip()):
            unique = True
            notes.append(
                f"{q}: every value differs and the name looks like an identifier, so it is"
                " marked unique; untick unique if repeats are allowed."
            )
        elif len(filled) >= UNIQUE_HINT_FROM:  # in a few rows, values differ by chance
            notes.append(f"{q}: every value differs; mark it unique if it must stay that way.")
    column = ColumnSpec(label, name, column_type, required=required, unique=unique, **extra)
    return column, notes


UNIQUE_HINT_FROM: Final = 20
"""The fewest filled cells, all different, for which a column not named like an identifier is
suggested as unique: in a smaller file, every column of numbers or names has all its values
different, and the note on each said nothing."""
_PROBE_SIZE: Final = 1000


def _all_match(values: Any, pattern: str) -> bool:
    """Every value matches ``pattern`` (tried on the first thousand first: most columns fail
    there, cheaply)."""
    if len(values) > _PROBE_SIZE and not _matches(values.slice(0, _PROBE_SIZE), pattern).all():
        return False
    return bool(_matches(values, pattern).all())


def _all_fit(column_type: ColumnType, values: Any, decimal_comma: bool, **extra: Any) -> bool:
    """Every value is a valid ``column_type`` (with ``extra`` rules such as a format)."""
    if len(values) > _PROBE_SIZE and not _all_fit(
        column_type, values.slice(0, _PROBE_SIZE), decimal_comma, **extra
    ):
        return False
    return bool(_fitting(column_type, values, decimal_comma, **extra).all())


def _fitting(column_type: ColumnType, values: Any, decimal_comma: bool, **extra: Any) -> BoolArray:
    """Which values are valid ``column_type`` values (with ``extra`` rules such as a format)."""
    probe = ColumnSpec("probe", "probe", column_type, **extra)
    _, checks = _VECTOR_PARSERS[column_type](
        probe, values, np.ones(len(values), dtype=np.bool_), decimal_comma
    )
    broken = np.zeros(len(values), dtype=np.bool_)
    for _, mask in checks:
        broken |= mask
    return ~broken


MOSTLY_SHARE: Final = 0.8
"""A column kept as text (or a category) although at least this share of its filled cells are
values of one type gets a note naming the type and the cells that are not."""
_MOSTLY_KINDS: Final[tuple[tuple[ColumnType, DateFormat | None, str, str], ...]] = (
    # the type, its date format, what its values are, what they are stored as
    ("integer", None, "whole numbers", "numbers"),
    ("decimal", None, "numbers", "numbers"),
    ("date", None, "dates written YYYY-MM-DD", "dates"),
    ("date", "DD.MM.YYYY", "dates written DD.MM.YYYY", "dates"),
    ("date", "DD/MM/YYYY", "dates written DD/MM/YYYY", "dates"),
    ("date", "MM/DD/YYYY", "dates written MM/DD/YYYY", "dates"),
    ("datetime", None, "dates with times", "dates with times"),
    ("boolean", None, "yes/no values", "yes/no values"),
)


def _mostly_note(q: str, values: Any, decimal_comma: bool, kept_as: str) -> str | None:
    """For a column kept as text or a category (``kept_as``): when most of its filled cells
    (``values``, trimmed) are of one type, a note saying how many are not, with examples, and
    which type to choose; the check then lists each cell to correct. None otherwise."""
    count = len(values)
    sample = values.slice(0, _PROBE_SIZE) if count > _PROBE_SIZE else None
    found: list[tuple[int, int, BoolArray]] = []  # (good, index in _MOSTLY_KINDS, which fit)
    for i, (column_type, fmt, _, _) in enumerate(_MOSTLY_KINDS):
        extra = {"format": fmt} if fmt else {}
        if (  # most columns are told apart on their first values, cheaply
            sample is not None
            and _fitting(column_type, sample, decimal_comma, **extra).mean() < MOSTLY_SHARE
        ):
            continue
        ok = _fitting(column_type, values, decimal_comma, **extra)
        good = int(ok.sum())
        if good < MOSTLY_SHARE * count or good == count:
            continue
        if (
            column_type in ("integer", "decimal")
            and _matches(values.filter(pa.array(ok)), _LEADING_ZERO).any()
        ):
            continue  # codes such as 007: as numbers they would lose their zeros
        found.append((good, i, ok))
    if not found:
        return None
    good, best, ok = max(found, key=lambda f: f[0])  # the first of equals
    column_type, fmt, kind, stored_as = _MOSTLY_KINDS[best]
    choose = f"choose the type {column_type}"
    if fmt and sum(g == good and _MOSTLY_KINDS[i][1] is not None for g, i, _ in found) > 1:
        kind, choose = "dates", "choose the type date and its date format"  # 03/04: which?
    elif fmt:
        choose += f" and the date format {fmt}"
    others = pc.unique(values.filter(pa.array(~ok))).to_pylist()
    examples = ", ".join(quoted(str(v)) for v in others[:3]) + (", …" if len(others) > 3 else "")
    return (
        f"{q}: all but {count - good:,} of the {count:,} filled cells are {kind} (not:"
        f" {examples}), so the column is kept as {kept_as}. To store {stored_as}, {choose}: the"
        " check then lists each cell that is not one, to correct in the file or leave empty."
    )


def _letters_of_one_truth(values: Any) -> bool:
    """The values are single letters (``y``, ``T``) all meaning the same truth: an initial or a
    code as likely as a yes or no, which as a boolean would be stored as ``true``, the letter
    lost."""
    if len(values) > 4 or not pc.all(pc.equal(pc.utf8_length(values), 1)).as_py():
        return False
    letters = {str(v).casefold() for v in values.to_pylist()}
    return not (letters & {"y", "t"} and letters & {"n", "f"})


def _first(values: Any, pattern: str) -> str:
    hits = values.filter(pc.match_substring_regex(values, pattern=_anchored(pattern)))
    return str(hits[0].as_py()) if len(hits) else ""


def _infer_type(
    q: str, values: Any, decimal_comma: bool, comma_separated: bool = False
) -> tuple[ColumnType, dict[str, Any], list[str]] | None:
    """The type every value fits, or None for text (or a category)."""
    if (
        _all_fit("boolean", values, decimal_comma)
        and not pc.all(pc.is_in(values, value_set=pa.array(["0", "1"], values.type))).as_py()
        and not _letters_of_one_truth(values)
    ):
        return "boolean", {}, []
    number = _INT_GROUPED if decimal_comma else _INT
    if _all_match(values, number) or _all_match(values, _DEC_COMMA if decimal_comma else _DEC):
        if _matches(values, _LEADING_ZERO).any():
            example = _first(values, _LEADING_ZERO)
            return (
                "text",
                {},
                [
                    f"{q}: values such as {quoted(example)} have leading zeros, so the column is"
                    " kept as text to keep them."
                ],
            )
        if _all_fit("integer", values, decimal_comma):
            return "integer", {}, []
        if _all_match(values, number) and _all_fit("decimal", values, decimal_comma):
            return (
                "decimal",
                {"scale": 0},
                [
                    f"{q}: some values are beyond the 64-bit whole-number range, so the column is"
                    " a decimal column (no digit is lost)."
                ],
            )
        if _all_fit("decimal", values, decimal_comma):
            return "decimal", {"scale": _written_scale(values, decimal_comma)}, []
        return (
            "text",
            {},
            [
                f"{q}: some numbers have more than {MAX_DECIMAL_DIGITS} digits, so the column is"
                " kept as text (no digit is lost)."
            ],
        )
    date_found = _infer_date(q, values, decimal_comma)
    if date_found is not None:
        return date_found
    if _all_fit("datetime", values, decimal_comma):
        offsets = pc.extract_regex(values, pattern=_anchored(_DATETIME)).field("tz")
        notes = []
        if not _np(pc.not_equal(offsets, "")).all():
            notes.append(f"{q}: some values have no UTC offset; they will be read as UTC.")
        return "datetime", {}, notes
    if _all_match(values, _DRESSED_NUMBER) and _matches(values, _DRESSED).any():
        example = _first(values, _DRESSED)
        percent = bool(_matches(values, r".*%").any())
        what, plain = (
            ("percentages", "0.12 or 12 for 12%")
            if percent
            else ("amounts with a currency sign", "1200.50 for $1,200.50")
        )
        note = (
            f"{q}: values such as {quoted(example)} look like {what}, whose signs and separators"
            " are not read as part of a number, so the column is kept as text; to store them as"
            f" numbers, save the file with plain numbers ({plain})."
        )
        return "text", {}, [note]
    example = _first(values, r".*,.*")
    if example and comma_separated and _all_match(values, _THOUSANDS):
        # "1,200" quoted in a comma-separated file: a thousands separator, as such files
        # write them, not a decimal comma (the option is for semicolon- or tab-separated ones)
        note = (
            f"{q}: values such as {quoted(example)} look like numbers with a thousands"
            " separator, which is not read as part of a number, so the column is kept as text;"
            " to store them as numbers, save the file without the separators (1200)."
        )
        return "text", {}, [note]
    if example and not decimal_comma and _all_fit("decimal", values, True):
        note = (
            f"{q}: values such as {quoted(example)} look like numbers with a decimal comma,"
            " so the column is kept as text; "
            + (
                "a comma-separated file cannot use one: save it separated by semicolons, then"
                " choose the decimal-comma option to read them as numbers."
                if comma_separated
                else "choose the decimal-comma option to read them as numbers."
            )
        )
        return "text", {}, [note]
    return None


_DRESSED_NUMBER: Final = (
    r"[(+-]?[ ]?[$€£¥]?[ ]?[+-]?[0-9][0-9., \x{00a0}\x{202f}']*[ ]?(?:[$€£¥%]|EUR|USD|GBP)?[)]?"
)
"""A number as a spreadsheet may show it: a currency sign or code, a percent sign, thousands
separators, parentheses for a negative amount …"""
_DRESSED: Final = r".*(?:[$€£¥%]|EUR|USD|GBP).*"
"""… of which a currency sign or code, or a percent sign, makes it an amount or percentage."""
_THOUSANDS: Final = r"[+-]?[0-9]{1,3}(?:,[0-9]{3})*(?:\.[0-9]+)?"
"""A number whose digits are grouped by thousands with commas (``1,200``, ``12,345.67``)."""


def _written_scale(values: Any, decimal_comma: bool) -> int:
    """The most digits written after the decimal point (or comma)."""
    point = _ints(pc.find_substring(values, "," if decimal_comma else "."))
    after = np.where(point >= 0, _ints(pc.utf8_length(values)) - point - 1, 0)
    return min(int(after.max(initial=0)), MAX_DECIMAL_DIGITS)


def _infer_date(
    q: str, values: Any, decimal_comma: bool
) -> tuple[ColumnType, dict[str, Any], list[str]] | None:
    if _all_fit("date", values, decimal_comma):
        return "date", {}, []
    for sep in (".", "/"):
        pattern = rf"(?P<a>[0-9]{{1,2}})\{sep}(?P<b>[0-9]{{1,2}})\{sep}(?P<y>[0-9]{{4}})"
        if not _all_match(values, pattern):
            continue
        parts = pc.extract_regex(values, pattern=_anchored(pattern))
        first_big = bool((_digits(parts.field("a")) > 12).any())
        second_big = bool((_digits(parts.field("b")) > 12).any())
        fmt: DateFormat | None = None
        if first_big and not second_big:
            fmt = "DD.MM.YYYY" if sep == "." else "DD/MM/YYYY"
        elif second_big and not first_big and sep == "/":
            fmt = "MM/DD/YYYY"
        elif not first_big and not second_big:
            example = str(values[0].as_py())
            return (
                "text",
                {},
                [
                    f"{q}: dates such as {quoted(example)} could be day/month or month/day and no"
                    " value settles it, so the column is kept as text; if you know the order,"
                    " change the type to date and choose its date format."
                ],
            )
        if fmt and _all_fit("date", values, decimal_comma, format=fmt):
            return "date", {"format": fmt}, []
    any_date = r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{1,2}[./][0-9]{1,2}[./][0-9]{4}"
    if _all_match(values, any_date):
        return "text", {}, [_mixed_dates_note(q)]
    return None


def _mixed_dates_note(q: str) -> str:
    return (
        f"{q}: the values look like dates but are not all written the same way (a column of"
        " dates takes one format), so the column is kept as text; write every date the same"
        " way, e.g. YYYY-MM-DD, to make it a date column."
    )


def _infer_category(
    distinct: Any, filled: int
) -> tuple[ColumnType, dict[str, Any], list[str]] | None:
    count = len(distinct)
    if not 2 <= count <= CATEGORY_MAX_OPTIONS or filled < CATEGORY_MIN_ROWS_PER_OPTION * count:
        return None
    options = [str(v) for v in distinct.to_pylist()]
    if max(len(o) for o in options) > CATEGORY_MAX_OPTION_LENGTH:
        return None
    if any(OPTION_SEPARATOR in o or o != o.strip() for o in options):
        return None  # options are edited as one text, split at the separator and trimmed
    return "category", {"options": tuple(sorted(options, key=lambda o: (o.casefold(), o)))}, []


# ---------------------------------------------------------------------------------------------
# DDL
# ---------------------------------------------------------------------------------------------

DATA_SCHEMA: Final = "data"
ROW_ID: Final = "_row_id"
"""Every dataset table's key column, assigned by the portal."""


def ddl_table(spec: DatasetSpec, table_name: str, metadata: MetaData) -> Table:
    """The dataset's table ``data.<table_name>``, built on ``metadata``.

    ``_row_id bigint GENERATED ALWAYS AS IDENTITY`` primary key, ``_version integer NOT NULL
    DEFAULT 1``, then the spec's columns: text and category -> text, integer -> bigint,
    decimal -> numeric (no typmod: exact, never rounded; a scale is a CHECK), boolean, date,
    datetime -> timestamptz. Required -> NOT NULL; min, max, scale, max_length
    (``char_length``), regex (``~``) and options (``IN``) -> CHECK; unique -> UNIQUE
    ``DEFERRABLE INITIALLY IMMEDIATE``. Every
    value reaches SQL as a bound literal rendered by SQLAlchemy for the executing dialect.
    Constraint names are deterministic and at most 63 bytes: ``pk_<table>``,
    ``uq_<table>_<column>`` and ``ck_<column>_<rule>``, shortened with a hash when longer; each
    CHECK and UNIQUE constraint's ``info`` names its ``column`` and ``rule`` (for
    ``portal.rule_changes``).

    Raises:
        ValidationError: the table name is not a safe identifier.
    """
    if not _SAFE_NAME.fullmatch(table_name) or table_name.startswith("pg_"):
        raise ValidationError(
            f"The table name {table_name!r} must be 1 to 63 characters of a-z, 0-9 and _,"
            " not starting with a digit or pg_."
        )
    table = Table(
        table_name,
        metadata,
        Column("_row_id", BigInteger, Identity(always=True), nullable=False),
        Column("_version", Integer, nullable=False, server_default=text("1")),
        *(_sql_column(c) for c in spec.columns),
        PrimaryKeyConstraint("_row_id", name=conv(_identifier("pk", table_name))),
        schema=DATA_SCHEMA,
    )
    for c in spec.columns:
        column = table.c[c.name]
        for rule, condition in _sql_checks(c, column):
            name = conv(_identifier("ck", c.name, rule))
            info = {"column": c.name, "rule": rule}
            table.append_constraint(CheckConstraint(condition, name=name, info=info))
        if c.unique:
            name = conv(_identifier("uq", table_name, c.name))
            # Deferrable: checked at the end of the statement, or of the commit's writes (see
            # portal.writes), not row by row, so two rows may swap their values.
            unique = UniqueConstraint(
                column,
                name=name,
                deferrable=True,
                initially="IMMEDIATE",
                info={"column": c.name, "rule": "unique"},
            )
            table.append_constraint(unique)
    return table


@lru_cache(maxsize=256)
def dataset_table(spec: DatasetSpec, table_name: str) -> Table:
    """``ddl_table`` on a MetaData of its own, built once per spec and table name: for reading
    and writing rows (building one costs milliseconds, more than the statement it serves)."""
    return ddl_table(spec, table_name, MetaData())


def index_name(table_name: str, column: str) -> str:
    """The name of the ``(column, _row_id)`` index ``portal.indexes`` builds on demand."""
    return _identifier("ix", table_name, column)


def _identifier(*parts: str) -> str:
    name = "_".join(parts)
    if len(name) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:10]
    return f"{name[: MAX_IDENTIFIER_BYTES - 11]}_{digest}"


SQL_TYPES: Final[dict[ColumnType, TypeEngine[Any]]] = {
    "text": Text(),
    "category": Text(),
    "integer": BigInteger(),
    "decimal": Numeric(asdecimal=True),
    "boolean": Boolean(),
    "date": Date(),
    "datetime": DateTime(timezone=True),
}
"""The SQL type of each column type (the table's DDL, and the casts of ``portal.writes``)."""
SQL_TYPE_NAMES: Final[dict[ColumnType, str]] = {
    t: str(sql.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    for t, sql in SQL_TYPES.items()
}
"""Their names in PostgreSQL, for casts: ``text``, ``BIGINT``, ``TIMESTAMP WITH TIME ZONE``…"""


def _sql_type(c: ColumnSpec) -> TypeEngine[Any]:
    return SQL_TYPES[c.type]


def _sql_column(c: ColumnSpec) -> Column[Any]:
    default = None if c.default is None else literal(c.default, _sql_type(c))
    return Column(c.name, _sql_type(c), nullable=not c.required, server_default=default)


def check_rule(spec: DatasetSpec, constraint: str) -> tuple[ColumnSpec, str] | None:
    """The column and, in words, the rule a CHECK constraint of ``ddl_table`` named
    ``constraint`` holds (``the pattern ^[A-Z]+$``), or None if it is none of them: for a
    refusal by the table to say what it refused."""
    for c in spec.columns:
        words = {
            "filled": "a value is required",
            "finite": "a number, not NaN or infinity",
            "years": "a year from 1 to 9999",
            "min": f"the minimum {_show(c.min)}",
            "max": f"the maximum {_show(c.max)}",
            "scale": f"at most {c.scale} digits after the decimal point",
            "len": f"at most {c.max_length} characters",
            "re": f"the pattern {c.regex}",
            "in": "one of the allowed values",
        }
        for rule, said in words.items():
            if _identifier("ck", c.name, rule) == constraint:
                return c, said
    return None


_UNIQUE_DETAIL: Final = re.compile(r"Key \((?P<column>[^)]*)\)=\((?P<value>.*)\) already exists")


def taken_value(spec: DatasetSpec, name: str, detail: str) -> tuple[str, Value] | None:
    """The value a unique violation's ``detail`` names (``Key (code)=(A-1) already exists``):
    as PostgreSQL printed it (a date and time as ``2024-01-01 00:00:00+00``, a boolean as
    ``t``) and read as column ``name``'s type, or as printed when it cannot be read so; None
    if the detail names no value. For a refusal to say, and find, which value was taken."""
    found = _UNIQUE_DETAIL.search(detail)
    if found is None:
        return None
    printed = found.group("value")
    column = next((c for c in spec.columns if c.name == name), None)
    typed = printed if column is None else stored_value(column, printed)
    return printed, printed if isinstance(typed, CellError) else typed


def _sql_checks(c: ColumnSpec, column: Column[Any]) -> list[tuple[str, ColumnElement[bool]]]:
    checks: list[tuple[str, ColumnElement[bool]]] = []
    # What the validator reads as missing or as no value at all, the table refuses too.
    if c.required and c.type in ("text", "category"):
        checks.append(("filled", func.char_length(column) > 0))
    if c.type == "decimal":  # NaN sorts above every number, Infinity included
        checks.append(
            (
                "finite",
                and_(
                    column > literal_column("'-Infinity'::numeric"),
                    column < literal_column("'Infinity'::numeric"),
                ),
            )
        )
    if c.type == "date":
        checks.append(
            (
                "years",
                column.between(
                    literal_column("'0001-01-01'::date"), literal_column("'9999-12-31'::date")
                ),
            )
        )
    if c.type == "datetime":
        checks.append(
            (
                "years",
                and_(
                    column >= literal_column("'0001-01-01 00:00:00+00'::timestamptz"),
                    column < literal_column("'10000-01-01 00:00:00+00'::timestamptz"),
                ),
            )
        )
    if c.min is not None:
        checks.append(("min", column >= literal(c.min, _sql_type(c))))
    if c.max is not None:
        checks.append(("max", column <= literal(c.max, _sql_type(c))))
    if c.scale is not None:
        checks.append(("scale", column == func.round(column, c.scale)))
    if c.max_length is not None:
        checks.append(("len", func.char_length(column) <= c.max_length))
    if c.regex is not None:
        checks.append(("re", column.op("~", is_comparison=True)(literal(c.regex, Text()))))
    if c.options is not None:
        checks.append(("in", column.in_([literal(o, Text()) for o in c.options])))
    return checks


# ---------------------------------------------------------------------------------------------
# Editor columns
# ---------------------------------------------------------------------------------------------

BROWSER_EXACT_INTEGER: Final = 2**53 - 1
"""The largest whole number a browser's grid (64-bit floats) holds exactly."""
BROWSER_EXACT_DIGITS: Final = 15
"""The most significant digits a 64-bit float always keeps."""


def browser_exact(value: object) -> bool:
    """Whether a browser's grid, which holds numbers as 64-bit floats, holds ``value`` exactly:
    a whole number up to 2**53 - 1 in size, a decimal of at most 15 digits (as stored, its
    scale's zeros too), a float (as a browser sends one) up to 2**53 - 1 in size and of at
    most 15 significant digits in its shortest form. Anything else is exact."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= BROWSER_EXACT_INTEGER
    if isinstance(value, Decimal):
        return len(value.as_tuple().digits) <= BROWSER_EXACT_DIGITS
    if isinstance(value, float) and math.isfinite(value):
        # Its shortest form has at most 15 significant digits exactly when 15 give it back.
        short = float(f"{value:.{BROWSER_EXACT_DIGITS}g}") == value
        return abs(value) <= BROWSER_EXACT_INTEGER and short
    return True


BROWSER_DEFAULT_DECIMALS: Final = 4
"""The decimals a browser's grid shows of a number it has no format for (a decimal column
without a scale): 0.123456 shows as 0.1235."""


def browser_shows(column: ColumnSpec, value: object) -> bool:
    """Whether a browser's grid shows ``value``, a cell of ``column``, exactly: it holds it
    exactly (``browser_exact``) and, in a decimal column without a scale, it has at most
    ``BROWSER_DEFAULT_DECIMALS`` decimals."""
    if not browser_exact(value):
        return False
    if column.type == "decimal" and column.scale is None and isinstance(value, Decimal):
        return _decimal_digits(value)[1] <= BROWSER_DEFAULT_DECIMALS
    return True


def browser_rounds(column: ColumnSpec, values: Iterable[object]) -> bool:
    """Whether a browser's grid would show one of ``values``, cells of ``column``, rounded
    (``browser_shows``): then the column goes to the grid as text (``as_grid_text``). Only
    number columns can; a missing cell shows as missing."""
    if column.type == "integer" and isinstance(values, pd.Series):  # Int64: compared at once
        return bool(((values > BROWSER_EXACT_INTEGER) | (values < -BROWSER_EXACT_INTEGER)).any())
    if column.type not in ("integer", "decimal"):
        return False
    return not all(v is None or v is pd.NA or browser_shows(column, v) for v in values)


def as_grid_text(values: Iterable[object]) -> Any:
    """Cells of a column the grid is given as text: each value's exact text
    (``csv_safe.value_text``, as downloads write it), a missing one missing."""
    return pd.array(
        [None if v is None or v is pd.NA else value_text(v) for v in values],
        dtype=pd.StringDtype("pyarrow"),
    )


_EDITOR_KINDS: Final[dict[str, Any]] = {
    "text": "text",
    "integer": "number",
    "decimal": "number",
    "boolean": "checkbox",
    "date": "date",
    "datetime": "datetime",
    "category": "selectbox",
}


def editor_columns(spec: DatasetSpec) -> list[EditorColumn]:
    """How the editor shows and checks each column, in table order (the browser's checks are a
    convenience: the server re-validates everything with ``validate_value``)."""
    return [_editor_column(c) for c in spec.columns]


def _editor_column(c: ColumnSpec) -> EditorColumn:
    column = EditorColumn(
        name=c.name,
        label=c.label,
        kind=_EDITOR_KINDS[c.type],
        help=_help(c),
        default=c.default,
    )
    if c.type == "integer":
        return replace(column, step=1, format="%d")
    if c.type == "decimal":
        step = None if c.scale is None else float(Decimal(1).scaleb(-c.scale))
        fmt = None if c.scale is None else f"%.{c.scale}f"
        return replace(column, step=step, format=fmt)
    if c.type == "date":
        return replace(column, format=c.format or ISO_DATE)
    if c.type == "datetime":
        return replace(column, format="YYYY-MM-DD HH:mm:ss", timezone="UTC")
    if c.type == "category":
        return replace(column, options=c.options)
    return column


def _help(c: ColumnSpec) -> str:
    kinds = {
        "text": "Text",
        "integer": "Whole number",
        "decimal": "Number" if c.scale is None else f"Number with up to {c.scale} decimals",
        "boolean": "Yes or no",
        "date": f"Date ({c.format or ISO_DATE})",
        "datetime": "Date and time (UTC)",
        "category": "One of the listed values",
    }
    parts = [kinds[c.type]]
    if c.required:
        parts.append("required")
    if c.unique:
        parts.append("unique")
    if c.min is not None:
        parts.append(f"at least {_show(c.min)}")
    if c.max is not None:
        parts.append(f"at most {_show(c.max)}")
    if c.max_length is not None:
        parts.append(f"at most {c.max_length} characters")
    if c.regex is not None:
        parts.append(f"matching {c.regex}")
    return "; ".join(parts) + "."
