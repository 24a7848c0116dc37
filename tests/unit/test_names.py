"""The characters refused in names people choose (``portal.names.hidden_character``): those that
draw nothing, whatever their Unicode category, and no character a real name uses."""

from __future__ import annotations

import pytest

from portal.names import hidden_character


@pytest.mark.parametrize(
    "ch",
    [
        "\u200b",  # zero-width space (Cf)
        "\u202e",  # right-to-left override (Cf)
        "\x1b",  # escape (Cc)
        "\ue000",  # private use (Co)
        "\u0378",  # unassigned (Cn)
        "\u034f",  # combining grapheme joiner (Mn)
        "\u115f",  # Hangul choseong filler (Lo)
        "\u1160",  # Hangul jungseong filler (Lo)
        "\u3164",  # Hangul filler (Lo)
        "\uffa0",  # halfwidth Hangul filler (Lo)
        "\u17b4",  # Khmer vowel inherent aq (Mn)
        "\u180b",  # Mongolian free variation selector one (Mn)
        "\u2800",  # Braille pattern blank (So)
    ],
)
def test_a_character_that_draws_nothing_is_found(ch: str) -> None:
    assert hidden_character(f"Sales{ch} 2024") == (6, f"U+{ord(ch):04X}")


@pytest.mark.parametrize(
    "name",
    [
        "Sales 2024",
        "Ventes été",
        "매출 2024",  # Hangul syllables: letters that draw
        "Продажи",
        "مبيعات",
        "Sales ❤️",  # an emoji with its variation selector
        "Khmer ក្រុម",
        "⠁⠃⠉ braille",  # Braille that draws
    ],
)
def test_the_letters_of_real_names_pass(name: str) -> None:
    assert hidden_character(name) is None


def test_an_allowed_character_passes() -> None:
    assert hidden_character("a\tb", allowed=frozenset("\t")) is None
    assert hidden_character("a\tb") == (2, "U+0009")
