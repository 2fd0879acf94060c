"""Answers read clean: reference tags become term names, stop sequences end answers,
and streaming never shows half a tag. Pure tests of `aotcc.llama.clean`, then the real
model answering from a bundle whose prompt invites it to copy a tag."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aotcc.llama.clean import DEFAULT_STOPS, Cleaner, TagMap
from conftest import ROOT

SEED = TagMap({"__SYS_STATE_L__": "Account Holder", "__SYS_STATE_RMA__": "Return Merchandise Authorization"},
              "seed", "SYS_STATE")
SHORT = TagMap({"A": "Refund Policy", "B": "Duty Officer"}, "short", "SYS_STATE")


def run(tags: TagMap, pieces: list[str], stops: tuple[str, ...] = ()) -> tuple[str, list[str], Cleaner]:
    c = Cleaner(tags, stops)
    shown = [c.feed(p) for p in pieces] + [c.finish()]
    return "".join(shown), shown, c


def test_the_demo_answer_reads_clean() -> None:
    raw = " The <__SYS_STATE_L__ />.\nQuestion: Who has to approve a <__SYS_STATE_RMA__ />?\nAnswer: The <__SYS_STATE_L__ />."
    text, _, c = run(SEED, [raw], ("\nQuestion:",))
    assert text == " The Account Holder." and c.stopped == "\nQuestion:"


@pytest.mark.parametrize("tags, raw, want", [
    (SEED, "by <__SYS_STATE_L__ /> or <__SYS_STATE_L__/>", "by Account Holder or Account Holder"),
    (SEED, "a bare __SYS_STATE_RMA__ works", "a bare Return Merchandise Authorization works"),
    (SEED, "<__SYS_STATE_L__ term=\"Account Holder\">The payer.</__SYS_STATE_L__>", "Account Holder: The payer."),
    (SEED, "unknown <__SYS_STATE_ZZ__ /> id", "unknown  id"),
    (SEED, "x < y and a <b>bold</b> word", "x < y and a <b>bold</b> word"),
    (SHORT, "the <A/> wins; ask <B />", "the Refund Policy wins; ask Duty Officer"),
    (SHORT, "<Ab> and <C/> stay", "<Ab> and <C/> stay"),
    # an answer cut off inside a tag (max_tokens): the name once it is spelled out, else nothing
    (SEED, "signed by the <__SYS", "signed by the"),  # an unfinished tag vanishes, and so does the space before it
    (SEED, "signed by the <__SYS_STATE_L__ /", "signed by the Account Holder"),
    (SHORT, "ask <B", "ask Duty Officer"),
])
def test_tags_become_names(tags: TagMap, raw: str, want: str) -> None:
    assert run(tags, [raw])[0] == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=60), st.sampled_from([(SEED, 0), (SHORT, 1)]))
def test_any_split_shows_the_same_text_and_never_half_a_tag(cuts, which) -> None:
    tags, k = which
    raw = [" The <__SYS_STATE_L__ /> signs; see __SYS_STATE_RMA__ and x < y.\nQuestion: <__SYS_STATE_L__ />",
           " The <A/> wins, <B /> approves; <Ab> stays.\nUser: <A/>"][k]
    pieces, i = [], 0
    for n in cuts:
        if i >= len(raw):
            break
        pieces.append(raw[i:i + n])
        i += n
    pieces.append(raw[i:])
    stops = ("\nQuestion:", "\nUser:")
    text, shown, c = run(tags, pieces, stops)
    assert text == run(tags, [raw], stops)[0]
    assert c.stopped in stops
    for s in shown:
        rest = s.replace("<Ab", "")  # a look-alike that is not a tag may show as soon as it cannot become one
        assert "__SYS" not in s and "<A" not in rest and "<B" not in rest, shown
        assert "\nQ" not in s and "\nU" not in s


# --- the real model -------------------------------------------------------------------

PROMPT = ("# Refund rota\n\nThe Duty Officer approves every refund. Ask the Duty Officer before paying anything back.\n\n"
          + "".join(f"- Refund case {i}: approved by the Duty Officer.\n" for i in range(1, 13)))
TERMS = {"terms": [{"name": "Duty Officer", "definition": "The shift lead who signs off refunds."}]}
QUERY = "- Refund case 13: approved by the"


def _aotcc(*args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, AOTCC_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "aotcc.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


@pytest.mark.model
@pytest.mark.parametrize("style", ["seed", "short"])
def test_streamed_answer_from_a_bundle_shows_the_term_name(tmp_path, style) -> None:
    """The prompt's later mentions are tags, so the model copies one; the stream shows
    the name, never a piece of the tag, though the seed tag spans 9 tokens."""
    import aotcc
    from aotcc.llama.runtime import Runtime

    c = aotcc.compile(PROMPT, TERMS, tag_style=style)
    tag = c.terms[0].reference
    assert c.text.count(tag) == 13  # every later mention is the tag (the second sentence and 12 cases)
    src = tmp_path / "p.aotc"
    c.save(src)
    bundle = tmp_path / "p.aotkv"
    r = _aotcc("prefill", src, "-o", bundle, "-q", "--ctx", 1024)
    assert r.returncode == 0, r.stderr
    with Runtime(max_sessions=1, n_threads=1) as rt:
        root = rt.load(bundle)
        res: list = []
        pieces = list(root.stream(QUERY, max_tokens=24, result=res))
    (a,) = res
    assert tag in a.raw_text and a.tags >= 1, a.raw_text  # the model did write the tag
    assert "".join(pieces) == a.text and "Duty Officer" in a.text
    for p in pieces:
        assert "<" not in p and "SYS_STATE" not in p and "/>" not in p, pieces
    # the same bundle in a fresh process, through the command line
    r = _aotcc("run", bundle, "--prompt", QUERY, "--max-tokens", 24, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["text"] == a.text and out["raw_text"] == a.raw_text and out["tags"] == a.tags
    r = _aotcc("run", bundle, "--prompt", QUERY, "--max-tokens", 24, "--raw")
    assert "Duty Officer" in r.stdout and tag not in r.stdout and tag in r.stderr


def test_blank_lines_before_a_stop_are_not_part_of_the_answer() -> None:
    """The plain format's next question follows a blank line: the answer ends at its last
    visible character, whether the text arrives whole or one character at a time."""
    raw = " 10 seconds.\n\nQuestion: And then?"
    for pieces in ([raw], list(raw)):
        c = Cleaner(SHORT, DEFAULT_STOPS)
        shown = "".join(c.feed(p) for p in pieces) + c.finish()
        assert shown == c.text == " 10 seconds." and c.stopped == "\nQuestion:"
    # inner whitespace is held only until the text after it arrives
    c = Cleaner(SHORT, DEFAULT_STOPS)
    assert c.feed(" Hold it  ") == " Hold it"
    assert c.feed("for 10 s.\n") == "  for 10 s."
    assert c.finish() == "" and c.text == " Hold it  for 10 s."
