"""Analysis hints in the core: requested chunk breaks and term anchors, in characters of
the joined source, and the errors for hints that do not fit the source."""

from __future__ import annotations

import pytest

import aotcc
from aotcc.errors import InputError

SPEC = {
    "terms": [
        {"name": "Refund Policy", "definition": "Refunds within 30 days, with a receipt."},
        {"name": "Ticket", "definition": "One customer request, tracked end to end."},
    ]
}
TEXT = (
    "Café greeting ☕: say hello and ask how to help.\n\n"
    "If someone wants their money back, be kind and check the date.\n\n"
    "Open a Ticket for every request you handle today.\n\n"
    "The Refund Policy decides. Quote the Refund Policy when asked.\n"
)


def chunk_texts(c: aotcc.Compiled) -> list[str]:
    return [TEXT[s:e] for s, e in zip(c.chunks.src_start, c.chunks.src_end)]


def test_no_hints_is_byte_identical_to_empty_hints():
    a = aotcc.compile(TEXT, SPEC, progress=False)
    b = aotcc.compile(TEXT, SPEC, progress=False, breaks=[], anchors={})
    assert a.to_bytes() == b.to_bytes()


def test_breaks_close_chunks_at_the_next_unit_boundary():
    whole = aotcc.compile(TEXT, SPEC, progress=False)
    assert len(whole.chunks) == 1
    # character offsets: the ☕ before them is one character but three bytes
    inside = TEXT.index("money back")
    ticket = TEXT.index("Open a Ticket")
    c = aotcc.compile(TEXT, SPEC, progress=False, breaks=[inside, ticket])
    texts = chunk_texts(c)
    assert [t[:12] for t in texts] == ["Café greetin", "Open a Ticke"]
    assert "".join(texts) == TEXT
    # the hints are part of the options hash: a different compile, a different artifact
    assert c.manifest["hashes"]["options"] != whole.manifest["hashes"]["options"]


def test_an_earlier_anchor_moves_the_definition_block():
    breaks = [TEXT.index("If someone"), TEXT.index("Open a Ticket"), TEXT.index("The Refund")]
    plain = aotcc.compile(TEXT, SPEC, progress=False, breaks=breaks)
    refund = {t.name: t for t in plain.terms}["Refund Policy"]
    assert refund.first_chunk == 3
    moved = aotcc.compile(TEXT, SPEC, progress=False, breaks=breaks,
                          anchors={"Refund Policy": TEXT.index("money back")})
    info = {t.name: t for t in moved.terms}["Refund Policy"]
    assert info.first_chunk == 1
    assert moved.chunk_text(1).startswith('<A term="Refund Policy">')
    assert 'term="Refund Policy"' in moved.chunk_text(1)
    assert 'term="Refund Policy"' not in moved.chunk_text(3)
    # an anchor after the literal first mention changes nothing
    late = aotcc.compile(TEXT, SPEC, progress=False, breaks=breaks, anchors={"Refund Policy": len(TEXT)})
    assert late.text == plain.text
    assert moved.decompile() == TEXT


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"anchors": {"No Such Term": 3}}, "unknown term \"No Such Term\""),
        ({"breaks": [len(TEXT) + 1]}, "past the end"),
        ({"breaks": [-1]}, "negative"),
    ],
)
def test_bad_hints_are_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        aotcc.compile(TEXT, SPEC, progress=False, **kwargs)
