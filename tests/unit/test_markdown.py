"""Names, values and the messages that quote them are shown as written, not as Markdown."""

from __future__ import annotations

import re

import pytest

from portal.ui.markdown import WORD_JOINER, md_escape, md_text

INLINE = "\\`*_[]~$"  # what formats text wherever it stands (emphasis, code, links, LaTeX…)


def unescaped(markdown: str) -> str:
    """What CommonMark shows for backslash escapes: the escaped character itself (and the word
    joiners that stop autolinks show as nothing)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", shown_with_joiners(markdown)).replace(
        WORD_JOINER, ""
    )


def shown_with_joiners(markdown: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


@pytest.mark.parametrize(
    "message",
    [
        "Row 3, Note: “a*b*c” is not a number.",
        "Qty 2_000_000 is over the maximum.",
        "“[x](https://example.com)” is not a date.",
        "A value `rm -rf` and ~~gone~~ and a \\ backslash, between $5 and $6.",
        "# 1 first\nTwo lines:\n# no heading\n- no list\n  1. no list\n> no quote\n= no",
    ],
)
def test_a_message_is_shown_as_the_text_it_is(message: str) -> None:
    said = md_text(message)
    assert unescaped(said) == message  # nothing lost or added once shown
    for i, char in enumerate(said):
        if char in INLINE and char != "\\":
            assert said[i - 1] == "\\", (said, i)  # every formatting character escaped
    for line in said.split("\n"):  # no line starts a block (heading, list, quote, rule)
        assert not re.match(r"[ \t]*([#>+\-=]|\d+[.)])", line), line


def test_a_plain_sentence_is_left_as_it_is() -> None:
    """Only what would format is escaped: punctuation in an ordinary sentence stays as it is in
    the Markdown source, which Streamlit also gives a widget as its accessible name."""
    said = "The file has 3 invalid cells (rows 2-4); fix them and upload it again."
    assert md_text(said) == said
    assert md_escape(said) != said  # md_escape escapes every character Markdown may read
    assert unescaped(md_escape(said)) == said


def test_streamlit_s_colon_codes_are_escaped_and_a_colon_before_a_space_is_not() -> None:
    """Streamlit reads ":red[…]", ":material/…:" and emoji codes even with "[" escaped."""
    said = md_escape(":red[hi] :material/home: :smile: Name: ann")
    assert said == r"\:red\[hi\] \:material/home: \:smile: Name: ann"  # an opening one is enough
    assert unescaped(said) == ":red[hi] :material/home: :smile: Name: ann"


# What GitHub-style autolinking finds in the text once its escapes are read (remark-gfm).
AUTOLINK = re.compile(r"(?i)https?://|www\.|[-.\w+]+@[-\w]+\.")


@pytest.mark.parametrize("escape", [md_escape, md_text])
def test_a_url_or_an_address_in_a_name_is_no_link(escape: object) -> None:
    """A name holding "http://x.com" was turned into a link by the browser's Markdown, with
    the escape's backslash inside it ("http://x\\"): autolinks are found after escapes are
    read. A word joiner stops them; the text reads the same."""
    name = "see http://x.com, HTTPS://y.org/a?b=1, www.z.net and ann@example.com [l](http://x)"
    shown = shown_with_joiners(escape(name))  # type: ignore[operator]
    assert not AUTOLINK.search(shown), shown
    assert unescaped(escape(name)) == name  # type: ignore[operator]
