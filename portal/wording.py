"""Small pieces of wording shared by messages: a number with its noun, words that agree with it,
every one of a number of things ("both datasets").

Kept free of imports from the rest of the portal so that ``audit`` and ``portal`` modules alike
can use it.
"""

from __future__ import annotations

from collections.abc import Iterable


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` with thousands separators and ``noun``, or its plural unless ``count`` is 1:
    ``counted(1, "row")`` is "1 row", ``counted(1200, "row")`` "1,200 rows", ``counted(0,
    "cell or row", "cells or rows")`` "0 cells or rows". The plural is ``noun`` + "s" unless
    given."""
    return f"{count:,} {noun if count == 1 else (plural or noun + 's')}"


def agreeing(count: int, singular: str, plural: str) -> str:
    """``singular`` if ``count`` is 1, else ``plural``: the word or words that agree with a
    number said elsewhere in the message. ``agreeing(1, "was", "were")`` is "was",
    ``agreeing(0, "was", "were")`` and ``agreeing(2, "was", "were")`` "were"; so
    ``f"{counted(n, 'row')} {agreeing(n, 'was', 'were')} changed"``. Both forms are given in
    full, since verbs and pronouns (holds/hold, it/them) have no one rule."""
    return singular if count == 1 else plural


def all_of(count: int, noun: str, plural: str | None = None, *, capital: bool = False) -> str:
    """Every one of ``count`` things, as the subject of a sentence: "the dataset" for 1, "both
    datasets" for 2, "all 1,200 datasets" past that, and "no datasets" for none (say that case
    in a sentence of its own: "no datasets match" would read as a failure). The plural as in
    ``counted``; ``capital`` starts a sentence ("Both datasets"). Its verb agrees by
    ``agreeing(count, …)``: ``f"{all_of(n, 'dataset', capital=True)} {agreeing(n, 'matches',
    'match')}"``."""
    many = plural or noun + "s"
    if count == 1:
        words = f"the {noun}"
    elif count == 2:
        words = f"both {many}"
    elif count <= 0:
        words = f"no {many}"
    else:
        words = f"all {count:,} {many}"
    return words[:1].upper() + words[1:] if capital else words


def quoted_names(names: Iterable[str]) -> str:
    """Names in the portal's quotes, joined by "and": "“Qty”", "“Qty” and “Note”"."""
    return " and ".join(f"“{name}”" for name in names)
