"""Synthetic master prompts and term specs: the one benchmark corpus generator.

Used by the pytest benchmarks, the criterion benches (benches/stages.rs reads what
`python benches/corpus.py DIR` writes) and the tests that need a large prompt.

This module owns the deterministic benchmark corpus: a Markdown "master prompt" that
reads like a large agent brief (headings, paragraphs, bullet and numbered lists,
fenced code blocks, a little non-ASCII) and a matching term spec, in the JSON shape
the compiler accepts (`{"options": {...}, "terms": [...]}`).

Guarantees, for the same arguments:

- the output is byte-identical across runs and processes (one `random.Random(seed)`,
  no iteration over sets or hash-ordered containers);
- there are exactly `n_terms` terms carrying `n_terms * aliases_per_term` aliases in
  total (the name counts as one), unique after case folding;
- every term is mentioned at least once in the text, frequencies are Zipf-like, and
  mentions use the name and the aliases in mixed case;
- `requires` and the terms named inside a definition always point to terms of a lower
  index, so the dependency graph has no cycle;
- the text and the spec never contain the default tag prefix (`__` + `SYS_STATE_`).

The vocabulary is split in two disjoint halves: words that build term names (and so
only ever appear inside a mention) and filler words for the surrounding prose.
Abbreviations are checked against the filler, so a term matches only where the
generator put a mention. A few term names extend another term's name
("Refund Window" / "Refund Window Extension") and a few terms take a bare first word
as an alias, so leftmost-longest matching is exercised.

`generate` returns the text and the spec, `write` puts them on disk as `corpus.md` and
`terms.json`; run as a script it writes them into a directory:

    python benches/corpus.py build/bench/corpus/1k-terms [--size 4000000] [--terms 1000]
"""

from __future__ import annotations

import json
import random
import re
from itertools import accumulate
from pathlib import Path

from aotcc._io import atomic_write

__all__ = ["english", "generate", "write"]

# --- vocabulary: term names ----------------------------------------------------------

# Term names are [qualifier] subject head; extension terms add one more head word.
_QUALIFIERS = (
    "Tier Two|Tier Three|Priority|Regional|Deferred|Manual|Automated|Emergency|"
    "Provisional|Standing|Rolling|Interim|Secondary|Primary|Global|Partner|Enterprise|"
    "Legacy|Seasonal|Overnight|Weekend|Expedited|Conditional|Temporary|Statutory|"
    "Internal|External|Bulk|Partial|Final|Preliminary|Scheduled|Silent|Soft|Hard|Cold|"
    "Warm|Live|Shadow|Grace|Frozen|Sealed|Pooled|Dormant|Staged|Tiered|Hybrid|Federated|"
    "Mirrored|Premium"
).split("|")
_SUBJECTS = (
    "Refund Ledger Invoice Shipment Warranty Credential Quota Dispatch Payout Carrier "
    "Voucher Tariff Manifest Pallet Firmware Roaming Handset Parcel Courier Rebate Escrow "
    "Consent Locale Bundle Meter Beacon Vault Tenant Cohort Routing Kiosk Outage Backorder "
    "Subsidy Loyalty Referral Chargeback Dunning Settlement Compliance Onboarding Renewal "
    "Downgrade Upgrade Activation Porting Telemetry Sandbox Fallback Throttle Surcharge "
    "Deposit Lease Custody Calibration Inventory Fulfilment Procurement Clearance Billing "
    "Warehouse Freight Customs Tax Coupon Membership Trial Session Identity"
).split()
_HEADS = (
    "Window Hold Review Policy Threshold Queue Override Protocol Flag Matrix Ladder Gate "
    "Ticket Token Lock Ceiling Cap Audit Waiver Notice Register Quorum Cycle Budget Freeze "
    "Buffer Ruleset Charter Baseline Playbook Snapshot Checkpoint Roster Tranche Escalation "
    "Exception Allowance Digest Handoff Sweep Cutoff Backlog Band Schedule Registry Envelope "
    "Channel Pipeline Safeguard Scorecard Signoff Index Lane Tracker Reserve Mandate Claim "
    "Dispute Limit Score"
).split()
_EXTENSIONS = "Extension Appeal Reset Carryover Amendment Exemption Rollback".split()
_SUFFIXES = (
    "Alpha Bravo Charlie Delta Echo Foxtrot Golf Hotel India Juliet Kilo Lima Mike "
    "November Oscar Papa Quebec Romeo Sierra Tango Uniform Victor Whiskey Xray Yankee Zulu"
).split()
_INITIAL = {"Two": "2", "Three": "3"}
_PLURAL = {"Matrix": "Matrices", "Index": "Indexes", "Exemption": "Exemptions"}

# --- vocabulary: filler prose --------------------------------------------------------

_NOUNS = (
    "agent customer account request reply message record note order payment device "
    "address team supervisor case issue step reason answer summary contact report field "
    "form detail amount balance charge credit plan date deadline system tool result "
    "change action owner status level rule section example history response question "
    "update error process document product service price fee label box unit user staff "
    "manager operator category code value entry list page link file log time item batch "
    "source target route reference condition branch store phone chat "
    "screen option setting version promise problem outcome decision approval signal "
    "estimate method task area site role person group office desk"
).split()
_PEOPLE = "agent customer operator supervisor reviewer caller specialist owner manager user".split()
_ADJECTIVES = (
    "open closed pending active current previous next new old clear exact correct valid "
    "invalid late early short long small large simple complex urgent routine normal local "
    "remote shared private public safe unsafe ready full empty written verbal formal "
    "common rare stale fresh signed unsigned linked missing visible hidden known "
    "unknown stable minor major single double direct indirect"
).split()
_ADVERBS = "always never only first then again promptly clearly briefly directly carefully usually rarely".split()
_PREPOSITIONS = "for with from into under after before during within across against".split()
_UNITS = ["minutes", "hours", "days", "business days", "weeks"]
# (base, third person, past participle, gerund)
_VERBS = [
    ("check", "checks", "checked", "checking"),
    ("confirm", "confirms", "confirmed", "confirming"),
    ("record", "records", "recorded", "recording"),
    ("send", "sends", "sent", "sending"),
    ("close", "closes", "closed", "closing"),
    ("open", "opens", "opened", "opening"),
    ("update", "updates", "updated", "updating"),
    ("explain", "explains", "explained", "explaining"),
    ("verify", "verifies", "verified", "verifying"),
    ("link", "links", "linked", "linking"),
    ("reject", "rejects", "rejected", "rejecting"),
    ("approve", "approves", "approved", "approving"),
    ("assign", "assigns", "assigned", "assigning"),
    ("move", "moves", "moved", "moving"),
    ("cancel", "cancels", "cancelled", "cancelling"),
    ("attach", "attaches", "attached", "attaching"),
    ("mark", "marks", "marked", "marking"),
    ("note", "notes", "noted", "noting"),
    ("share", "shares", "shared", "sharing"),
    ("apply", "applies", "applied", "applying"),
    ("track", "tracks", "tracked", "tracking"),
    ("resolve", "resolves", "resolved", "resolving"),
    ("forward", "forwards", "forwarded", "forwarding"),
    ("block", "blocks", "blocked", "blocking"),
    ("accept", "accepts", "accepted", "accepting"),
    ("merge", "merges", "merged", "merging"),
    ("request", "requests", "requested", "requesting"),
    ("read", "reads", "read", "reading"),
    ("log", "logs", "logged", "logging"),
    ("set", "sets", "set", "setting"),
]
_NUMBERS = "2 3 4 5 7 10 12 14 15 24 30 48 60 72 90".split()

# Non-ASCII asides: accented Latin, CJK, emoji. Kept short and sparse (~1% of words).
_ASIDES = [
    "see the café rota", "per the Zürich desk", "São Paulo office", "as in the résumé",
    "the naïve reading", "Malmö team", "Kraków hub", "façade only", "déjà vu case",
    "über-urgent", "Ærøskøbing pilot", "Łódź desk", "coöperative reading",
    "客户支持", "注意事项", "返金規定", "サポート窓口", "확인 필요",
    "✅", "⚠️", "📦", "🔒", "🙂", "→ next step", "≈ same day",
]

_TITLE_WORDS = (
    "Handling|Rules for|Working with|Checks on|Constraints on|Notes on|Exclusions from|"
    "Changes to|Escalating|Reporting|Recording|Verifying|Closing"
).split("|")

# Sentence templates. Slots: {n} noun, {c} person, {a} adjective, {d} adverb,
# {p} preposition, {v}/{vs}/{vn}/{vg} verb forms, {num} number, {u} time unit,
# {T} term mention.
_PLAIN_TEMPLATES = [
    "The {c} must {v} the {n} before {vg} the {n}.",
    "Never {v} a {n} that is still {a}; {v} the {n} first.",
    "Each {n} should be {vn} {p} the {a} {n} and {vn} in the {n}.",
    "If the {c} asks about the {n}, {v} the {a} {n} and explain it in plain words.",
    "The {n} {vs} the {n} within {num} {u}.",
    "This {n} is {a} only when the {n} has been {vn} by the {c}.",
    "Record every {n} in the {n} and {v} it {p} the {a} {n}.",
    "In most cases the {n} is {a}, so {v} the {n} and move on.",
    "Ask the {c} to {v} the {n}, then wait {num} {u} before you {v} the {n}.",
    "Keep the {n} {a} and {a}, and {v} any {n} that looks {a}.",
    "You may {v} the {n} yourself, but the {c} has to {v} the {a} {n}.",
    "Do not {v} the {n} twice; a {a} {n} is enough.",
    "When a {n} is {a}, the {c} {d} {vs} the {n} {p} the {n}.",
    "A {a} {n} is not a {n}, and it does not change the {n}.",
    "Tell the {c} what you will {v} next and when the {n} will be {vn}.",
    "Use the {n} tool to {v} the {n}, and {v} the result in the {n}.",
    "The {c} is responsible for the {n}, not for the {n}.",
    "After {num} {u}, a {a} {n} is {vn} and the {n} is {vn} again.",
    "{d} {v} the {n} {p} the {n}, even when the {c} says it is {a}.",
    "It is fine to {v} a {n} {p} a {a} {n} if the {c} agrees.",
]
_TERM_TEMPLATES = [
    "When {T} applies, the {c} must {v} the {a} {n} and {v} the {n} {p} the {n}.",
    "If the {c} asks about {T}, {v} the {n} and explain the {a} {n} in plain words.",
    "{T} does not {v} the {n}, but it {vs} the {a} {n}.",
    "Use {T} only after the {n} has been {vn}.",
    "Do not {v} {T} for a {n} that is {a}.",
    "Check {T} before you {v} the {n} or {v} any {a} {n}.",
    "The {c} {d} {vs} {T} {p} the {n}.",
    "{T} is {vn} by the {c} and {vn} in the {n} within {num} {u}.",
    "A {n} that is {a} falls under {T}, not under the {a} {n}.",
    "Explain {T} to the {c} in one sentence, then {v} the {n}.",
    "Every {a} {n} must list {T} and the {n} it {vs}.",
    "If {T} and the {n} disagree, {T} wins and the {c} {vs} the {n}.",
    "{T} and {T} are handled by different teams; do not {v} them in one {n}.",
    "Before {vg} the {n}, confirm that {T} is {a} for this {n}.",
]
_DEF_FIRST = [
    "{N} is the {a} {n} that {vs} the {n} when a {n} is {vn}.",
    "{N} sets how the {c} {vs} a {n} {p} the {a} {n}.",
    "{N} is the rule by which a {a} {n} is {vn} before the {c} can {v} it.",
    "{N} decides which {n} the {c} must {v} {p} a {a} {n}.",
    "{N} covers every {n} that is {vn} {p} the {n} and not yet {vn}.",
]
_DEF_SECOND_REF = [
    "It applies only after {R} has been {vn}.",
    "It never replaces {R}, and the {c} must {v} both.",
    "The {c} checks {R} first and then {vs} the {n}.",
    "It is {vn} together with {R}.",
]
_DEF_SECOND = [
    "It lapses after {num} {u} unless the {c} {vs} it again.",
    "The {c} must {v} it in the {n} before any {a} {n}.",
    "Only a {c} may {v} it {p} a {a} {n}.",
]
_CODE_KEYS = (
    "ticket_id account_ref reason_code note_text owner_id queue_name priority_level "
    "reply_channel due_at region_code device_ref amount_minor currency approval_id"
).split()
_TOOLS = (
    "lookup_account update_record send_reply attach_log open_case close_case "
    "request_approval link_case assign_owner set_status"
).split()
_STATES = "new triage in_progress waiting_on_customer on_hold resolved closed merged".split()

_TEMPLATE_RE = re.compile(r"\{(\w+)\}")
# "a" before a vowel sound becomes "an" (the templates cannot know the word they get).
_ARTICLE_RE = re.compile(r"\b([Aa]) (?=[AEIOaeio]|[Uu][nrp])")
_SENTINEL = "__" + "SYS_STATE_"  # spelled in two parts so this file never holds it


def _parse(template: str) -> list[tuple[str, str]]:
    """Split a template into ("lit", text) and ("slot", name) pieces."""
    pieces: list[tuple[str, str]] = []
    pos = 0
    for match in _TEMPLATE_RE.finditer(template):
        if match.start() > pos:
            pieces.append(("lit", template[pos : match.start()]))
        pieces.append(("slot", match.group(1)))
        pos = match.end()
    if pos < len(template):
        pieces.append(("lit", template[pos:]))
    return pieces


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _term_tokens() -> set[str]:
    tokens: set[str] = set()
    for group in (_QUALIFIERS, _SUBJECTS, _HEADS, _EXTENSIONS, _SUFFIXES, list(_PLURAL.values())):
        for word in group:
            tokens.update(_words(word))
    for word in _HEADS + _EXTENSIONS:
        tokens.update(_words(_pluralize(word)))
    return tokens


def _pluralize(word: str) -> str:
    if word in _PLURAL:
        return _PLURAL[word]
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "o", "u"):
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


_TERM_TOKENS = _term_tokens()


def _clean(words: list[str]) -> list[str]:
    """Drop filler words that would collide with a term-name word (defensive)."""
    return [w for w in words if not (set(_words(w)) & _TERM_TOKENS)]


_NOUNS = _clean(_NOUNS)
_PEOPLE = _clean(_PEOPLE)
_ADJECTIVES = _clean(_ADJECTIVES)
_VERBS = [v for v in _VERBS if not (set(_words(" ".join(v))) & _TERM_TOKENS)]

# Every word the generator may write outside a mention: abbreviations must avoid them.
_RESERVED: set[str] = set(_TERM_TOKENS)
for _group in (
    _NOUNS, _PEOPLE, _ADJECTIVES, _ADVERBS, _PREPOSITIONS, _UNITS, _NUMBERS, _ASIDES,
    _TITLE_WORDS, _PLAIN_TEMPLATES, _TERM_TEMPLATES, _DEF_FIRST, _DEF_SECOND_REF,
    _DEF_SECOND, _CODE_KEYS, _TOOLS, _STATES, [" ".join(v) for v in _VERBS],
):
    for _item in _group:
        _RESERVED.update(_words(_item))
_RESERVED.update(["json", "yaml", "text", "true", "false", "null", "tool", "arguments",
                  "states", "name", "on_enter", "next", "important", "note", "tip", "t"])

_PLAIN = [_parse(t) for t in _PLAIN_TEMPLATES]
_WITH_TERM = [_parse(t) for t in _TERM_TEMPLATES]
_DEF1 = [_parse(t) for t in _DEF_FIRST]
_DEF2_REF = [_parse(t) for t in _DEF_SECOND_REF]
_DEF2 = [_parse(t) for t in _DEF_SECOND]

# Share of sentences built from a template with a mention, and of sentences with an aside.
# Tuned so a mention falls roughly every 55 words of running text.
_P_TERM_SENTENCE = 0.12
_P_ASIDE = 0.14


# --- terms ---------------------------------------------------------------------------


class _Terms:
    """Names, aliases, definitions and rendered mention variants of all terms."""

    def __init__(self, rng: random.Random, n_terms: int, aliases_per_term: int) -> None:
        self.rng = rng
        self.taken: set[str] = set()  # case-folded aliases already claimed
        self.names: list[str] = []
        self.words: list[list[str]] = []
        self.aliases: list[list[str]] = []
        self.kinds: list[list[str]] = []
        self._make_names(n_terms)
        for i in range(n_terms):
            self._make_aliases(i, aliases_per_term - 1)

    # names

    def _claim(self, alias: str) -> bool:
        key = alias.casefold()
        if key in self.taken:
            return False
        self.taken.add(key)
        return True

    def _make_names(self, n_terms: int) -> None:
        rng = self.rng
        extendable: list[int] = []
        suffix_round = 0
        for i in range(n_terms):
            words: list[str] | None = None
            if i >= 8 and extendable and rng.random() < 0.02:
                base = extendable.pop(int(rng.random() * len(extendable)))
                ext = _EXTENSIONS[int(rng.random() * len(_EXTENSIONS))]
                candidate = self.words[base] + [ext]
                if " ".join(candidate).casefold() not in self.taken:
                    words = candidate
            tries = 0
            while words is None:
                tries += 1
                subject = _SUBJECTS[int(rng.random() * len(_SUBJECTS))]
                head = _HEADS[int(rng.random() * len(_HEADS))]
                if rng.random() < 0.45:
                    candidate = [subject, head]
                else:
                    qualifier = _QUALIFIERS[int(rng.random() * len(_QUALIFIERS))]
                    candidate = qualifier.split() + [subject, head]
                if tries > 40:  # the combinations are running out: add a call sign
                    suffix_round += 1
                    candidate.append(_SUFFIXES[suffix_round % len(_SUFFIXES)])
                    if suffix_round >= len(_SUFFIXES):
                        candidate.append(str(suffix_round // len(_SUFFIXES) + 1))
                if " ".join(candidate).casefold() not in self.taken:
                    words = candidate
            name = " ".join(words)
            self._claim(name)
            self.names.append(name)
            self.words.append(words)
            if words[-1] in _HEADS and len(words) <= 4:
                extendable.append(i)

    # aliases

    def _abbreviation(self, words: list[str]) -> str:
        initials = "".join(_INITIAL.get(w, w[0]) for w in words).upper()
        candidates = [initials] if len(initials) >= 3 else []
        candidates += [f"{initials}{k}" for k in range(2, 10)]
        candidates += [f"{initials}-{k}" for k in range(10, 100)]
        for candidate in candidates:
            if candidate.casefold() not in _RESERVED and self._claim(candidate):
                return candidate
        return self._numbered(initials)

    def _hyphenated(self, words: list[str]) -> str:
        first, last = words[0], words[-1]
        lead = "".join(_INITIAL.get(w, w[0]) for w in words[:-1]).upper()
        candidates = [
            f"{first.lower()}-{last[:3].lower()}",
            f"{lead}-{last[:4].lower()}",
            f"{first[:4].lower()}-{last.lower()}",
        ]
        candidates += [f"{lead}{k}-{last[:3].lower()}" for k in range(2, 10)]
        for candidate in candidates:
            if self._claim(candidate):
                return candidate
        return self._numbered(f"{lead}-{last[:3].lower()}")

    def _plural(self, words: list[str]) -> str | None:
        candidate = " ".join(words[:-1] + [_pluralize(words[-1])])
        return candidate if self._claim(candidate) else None

    def _numbered(self, stem: str) -> str:
        k = 2
        while not self._claim(f"{stem}-x{k}"):
            k += 1
        return f"{stem}-x{k}"

    def _make_aliases(self, i: int, extra: int) -> None:
        rng = self.rng
        words = self.words[i]
        kinds = ["abbr", "hyphen", "plural"]
        rng.shuffle(kinds)
        # A few terms take their bare first word ("Refund"): a prefix of other aliases.
        if extra >= 1 and rng.random() < 0.02 and words[0] in _SUBJECTS:
            kinds.insert(0, "word")
        aliases: list[str] = []
        used_kinds: list[str] = []
        k = 0
        while len(aliases) < extra:
            kind = kinds[k] if k < len(kinds) else ("abbr" if k % 2 else "hyphen")
            k += 1
            alias: str | None
            if kind == "word":
                alias = words[0] if self._claim(words[0]) else None
            elif kind == "abbr":
                alias = self._abbreviation(words)
            elif kind == "hyphen":
                alias = self._hyphenated(words)
            else:
                alias = self._plural(words)
            if alias is not None:
                aliases.append(alias)
                used_kinds.append(kind)
        self.aliases.append(aliases)
        self.kinds.append(used_kinds)

    # mentions

    def variants(self, i: int) -> list[str]:
        """Twenty rendered mentions of term i; picking one uniformly gives the mix."""
        rng = self.rng
        name = self.names[i]
        out: list[str] = []
        for _ in range(10 if self.aliases[i] else 20):
            r = rng.random()
            if r < 0.6:
                out.append(name)
            elif r < 0.9:
                out.append(name.lower())
            elif r < 0.97:
                out.append(name[0] + name[1:].lower())
            else:
                out.append(name.upper())
        for slot in range(20 - len(out)):
            j = slot % len(self.aliases[i])
            alias, kind = self.aliases[i][j], self.kinds[i][j]
            if kind == "abbr":
                out.append(alias if rng.random() < 0.85 else alias.lower())
            elif kind in ("plural", "word"):
                out.append(alias if rng.random() < 0.6 else alias.lower())
            else:
                out.append(alias)
        return out


# --- text ----------------------------------------------------------------------------


class _Writer:
    """Builds the Markdown text block by block, consuming a stream of term picks."""

    def __init__(self, rng: random.Random, terms: _Terms, size_bytes: int) -> None:
        self.rng = rng
        self.rnd = rng.random
        self.terms = terms
        n = len(terms.names)
        self.variants = [terms.variants(i) for i in range(n)]
        # Zipf-like popularity over a random permutation of the terms.
        order = list(range(n))
        rng.shuffle(order)
        self.popular = order
        self.cum = list(accumulate(1.0 / (rank + 1.5) ** 0.95 for rank in range(n)))
        # Every term once (twice when the text is long enough), plus Zipf draws, shuffled: the guaranteed mentions spread
        # over the first ~80% of the text; after that, plain Zipf draws.
        est_mentions = int(size_bytes / 5.7 / 55 * 0.8)
        copies = 2 if est_mentions >= 4 * n else 1
        picks = list(range(n)) * copies + self._zipf(max(0, est_mentions - copies * n))
        rng.shuffle(picks)
        self.picks = picks
        self.guaranteed = len(picks)
        self.used = 0
        self.slots = {
            "n": _NOUNS, "c": _PEOPLE, "a": _ADJECTIVES, "d": _ADVERBS, "p": _PREPOSITIONS,
            "u": _UNITS, "num": _NUMBERS,
            "v": [v[0] for v in _VERBS], "vs": [v[1] for v in _VERBS],
            "vn": [v[2] for v in _VERBS], "vg": [v[3] for v in _VERBS],
        }

    def _zipf(self, k: int) -> list[int]:
        ranks = self.rng.choices(range(len(self.popular)), cum_weights=self.cum, k=k)
        popular = self.popular
        return [popular[r] for r in ranks]

    def done_with_terms(self) -> bool:
        return self.used >= self.guaranteed

    def mention(self) -> str:
        if self.used >= len(self.picks):
            self.picks.extend(self._zipf(4096))
        term = self.picks[self.used]
        self.used += 1
        return self.variants[term][int(self.rnd() * 20)]

    def pick(self, words: list[str]) -> str:
        return words[int(self.rnd() * len(words))]

    def fill(self, pieces: list[tuple[str, str]], extra: dict[str, str] | None = None) -> str:
        rnd, slots = self.rnd, self.slots
        out: list[str] = []
        for kind, value in pieces:
            if kind == "lit":
                out.append(value)
            elif value == "T":
                out.append(self.mention())
            elif extra is not None and value in extra:
                out.append(extra[value])
            else:
                words = slots[value]
                out.append(words[int(rnd() * len(words))])
        text = "".join(out)
        return text[0].upper() + text[1:]

    def sentence(self) -> str:
        rnd = self.rnd
        if rnd() < _P_TERM_SENTENCE:
            text = self.fill(_WITH_TERM[int(rnd() * len(_WITH_TERM))])
        else:
            text = self.fill(_PLAIN[int(rnd() * len(_PLAIN))])
        if rnd() < _P_ASIDE:
            text = f"{text[:-1]} ({self.pick(_ASIDES)}){text[-1]}"
        return text

    def paragraph(self) -> str:
        count = 2 + int(self.rnd() * 5)
        body = " ".join([self.sentence() for _ in range(count)])
        if self.rnd() < 0.08:
            body = f"**{self.pick(_ADJECTIVES).capitalize()} {self.pick(_NOUNS)}.** {body}"
        return body + "\n\n"

    def bullets(self, numbered: bool) -> str:
        rnd = self.rnd
        count = 3 + int(rnd() * 5)
        lines: list[str] = []
        for k in range(count):
            marker = f"{k + 1}." if numbered else "-"
            r = rnd()
            if r < 0.25:
                item = f"**{self.mention()}**: {self.sentence()}"
            elif r < 0.35:
                item = f"**{self.pick(_ADJECTIVES).capitalize()} {self.pick(_NOUNS)}.** {self.sentence()}"
            else:
                item = self.sentence()
            if not numbered and rnd() < 0.03:
                item = f"{self.pick(_ASIDES[-7:-2])} {item}"
            lines.append(f"{marker} {item}")
            if not numbered and rnd() < 0.1:
                lines.append(f"  - {self.sentence()}")
        return "\n".join(lines) + "\n\n"

    def quote(self) -> str:
        label = self.pick(["Important", "Note", "Tip"])
        return f"> **{label}:** {self.sentence()} {self.sentence()}\n\n"

    def table(self) -> str:
        rows = ["| Item | Rule |", "|---|---|"]
        for _ in range(2 + int(self.rnd() * 4)):
            rows.append(f"| {self.mention()} | {self.sentence()} |")
        return "\n".join(rows) + "\n\n"

    def code(self) -> str:
        rnd = self.rnd
        r = rnd()
        if r < 0.5:
            lines = ["```json", "{", f'  "tool": "{self.pick(_TOOLS)}",', '  "arguments": {']
            keys = [self.pick(_CODE_KEYS) for _ in range(2 + int(rnd() * 4))]
            for key in keys:
                if rnd() < 0.5:
                    value = f"{self.pick(_NUMBERS)}{int(rnd() * 100000):05d}"
                else:
                    value = f"{self.pick(_NOUNS)}_{self.pick(_NOUNS)}"
                lines.append(f'    "{key}": "{value}",')
            lines.append(f'    "dry_run": {self.pick(["true", "false"])}')
            lines.append("  },")
            lines.append(f'  "note": "{self.sentence()}"')
            lines += ["}", "```"]
        elif r < 0.8:
            lines = ["```yaml", "states:"]
            for _ in range(2 + int(rnd() * 4)):
                lines.append(f"  - name: {self.pick(_STATES)}")
                lines.append(f"    on_enter: {self.pick(_TOOLS)}")
                lines.append(f"    next: [{self.pick(_STATES)}, {self.pick(_STATES)}]")
            lines.append(f"    # {self.sentence()}")
            lines.append("```")
        else:
            lines = ["```text"]
            for _ in range(3 + int(rnd() * 5)):
                a, b = self.pick(_STATES), self.pick(_STATES)
                lines.append(f"{a:<20} -> {b:<20} on: {self.pick(_NOUNS)} {self.pick(_VERBS)[2]}")
            lines.append("```")
        return "\n".join(lines) + "\n\n"

    def block(self) -> str:
        r = self.rnd()
        if r < 0.66:
            return self.paragraph()
        if r < 0.84:
            return self.bullets(numbered=False)
        if r < 0.92:
            return self.bullets(numbered=True)
        if r < 0.96:
            return self.code()
        if r < 0.985:
            return self.quote()
        return self.table()

    def heading(self, level: int, number: str) -> str:
        r = self.rnd()
        if r < 0.35:
            title = self.mention()
            title = title[0].upper() + title[1:]
        elif r < 0.7:
            title = f"{self.pick(_TITLE_WORDS)} {self.mention()}"
        else:
            title = (f"{self.pick(_TITLE_WORDS)} the {self.pick(_ADJECTIVES)} "
                     f"{self.pick(_NOUNS)}")
        return f"{'#' * level} {number} {title}\n\n"


def _definition(w: _Writer, terms: _Terms, i: int, requires: list[int]) -> str:
    """One or two sentences; the second may name a lower-index term."""
    name = terms.names[i]
    first = w.fill(_DEF1[int(w.rnd() * len(_DEF1))], {"N": name})
    refs = [r for r in requires if w.rnd() < 0.5]
    if i > 0 and not refs and w.rnd() < 0.15:
        refs = [int(w.rnd() * i)]
    if refs:
        second = w.fill(_DEF2_REF[int(w.rnd() * len(_DEF2_REF))], {"R": terms.names[refs[0]]})
        return f"{first} {second}"
    if w.rnd() < 0.5:
        return f"{first} {w.fill(_DEF2[int(w.rnd() * len(_DEF2))])}"
    return first


def generate(
    size_bytes: int = 4_000_000,
    n_terms: int = 1000,
    aliases_per_term: int = 3,
    seed: int = 7,
) -> tuple[str, dict]:
    """Returns (markdown_text, spec_dict) where spec_dict is {"options": {}, "terms": [{"name":..., "aliases": [...], "definition": ..., "requires": [...]}, ...]}

    The text is at least `size_bytes` UTF-8 bytes long (it stops after the block that
    crosses the size, and runs longer only when that is needed to mention every term
    at least once). Same arguments, same bytes.
    """
    if size_bytes < 0:
        raise ValueError("size_bytes must be >= 0")
    if n_terms < 1:
        raise ValueError("n_terms must be >= 1")
    if aliases_per_term < 1:
        raise ValueError("aliases_per_term must be >= 1 (the name is one alias)")

    rng = random.Random(seed)
    terms = _Terms(rng, n_terms, aliases_per_term)
    w = _Writer(rng, terms, size_bytes)

    # Spec: requires on ~10% of terms, always to lower indices.
    spec_terms: list[dict] = []
    for i in range(n_terms):
        requires: list[int] = []
        if i > 0 and rng.random() < 0.10:
            k = 1 if rng.random() < 0.6 else 2
            requires = rng.sample(range(i), min(k, i))
        spec_terms.append({
            "name": terms.names[i],
            "aliases": list(terms.aliases[i]),
            "definition": _ARTICLE_RE.sub(r"\1n ", _definition(w, terms, i, requires)),
            "requires": [terms.names[r] for r in requires],
        })
    spec = {"options": {}, "terms": spec_terms}

    # Text.
    parts: list[str] = ["# Operations Agent Master Prompt\n\n", w.paragraph(), w.paragraph()]
    size = sum(len(p.encode("utf-8")) for p in parts)
    section = 0
    while size < size_bytes or not w.done_with_terms():
        section += 1
        block = w.heading(2, f"{section}.")
        parts.append(block)
        size += len(block.encode("utf-8"))
        subsections = 1 + int(w.rnd() * 3)
        finished = False
        for sub in range(subsections):
            if sub > 0 or w.rnd() < 0.5:
                block = w.heading(3, f"{section}.{sub + 1}")
                parts.append(block)
                size += len(block.encode("utf-8"))
            for _ in range(2 + int(w.rnd() * 3)):
                block = w.block()
                parts.append(block)
                size += len(block.encode("utf-8"))
                if size >= size_bytes and w.done_with_terms():
                    finished = True
                    break
            if finished:
                break
    text = _ARTICLE_RE.sub(r"\1n ", "".join(parts).rstrip("\n") + "\n")
    # Cannot happen with the vocabulary above; the check keeps it that way.
    if _SENTINEL in text or _SENTINEL in json.dumps(spec, ensure_ascii=False):
        raise AssertionError("generated corpus contains the tag prefix")
    return text, spec


def write(
    dir: Path,
    size_bytes: int = 4_000_000,
    n_terms: int = 1000,
    aliases_per_term: int = 3,
    seed: int = 7,
) -> tuple[Path, Path]:
    """Generate a corpus and write `corpus.md` and `terms.json` into `dir`.

    Each file is written to a temporary file in `dir` and renamed into place, so a
    reader never sees a half-written file. Returns (corpus_path, terms_path).
    """
    directory = Path(dir)
    directory.mkdir(parents=True, exist_ok=True)
    text, spec = generate(size_bytes, n_terms, aliases_per_term, seed)
    corpus_path = directory / "corpus.md"
    terms_path = directory / "terms.json"
    atomic_write(corpus_path, text.encode("utf-8"))
    atomic_write(terms_path, (json.dumps(spec, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    return corpus_path, terms_path


# --- natural English: this repository's own documentation ---------------------------

_ROOT = Path(__file__).resolve().parent.parent
_WORD_RE = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")


def english(size_bytes: int = 4_000_000, n_terms: int = 1000, aliases_per_term: int = 3,
            seed: int = 5) -> tuple[str, dict]:
    """Natural English: README.md and docs/*.md of this repository (human-written prose
    with some Markdown and code), joined and repeated to `size_bytes` (cut after a line
    break), and a term spec drawn from its own vocabulary: `n_terms` names that are word
    pairs found in the text, and as the other aliases its single words (then more word
    pairs when those run out), so most aliases are short and occur often. The 40 most frequent words (the, of, a, …)
    are left out. Same arguments and same docs, same bytes."""
    files = [_ROOT / "README.md", *sorted((_ROOT / "docs").glob("*.md"))]
    base = "\n\n".join(f.read_text(encoding="utf-8").strip() for f in files) + "\n\n"
    reps = -(-size_bytes // len(base.encode("utf-8"))) or 1
    text = base * reps
    if len(text.encode("utf-8")) > size_bytes > 0:
        cut = text.encode("utf-8")[:size_bytes].rfind(b"\n") + 1
        text = text.encode("utf-8")[:cut].decode("utf-8")
    words = [w.lower() for w in _WORD_RE.findall(base)]
    freq: dict[str, int] = {}
    for w in words:
        freq[w] = freq.get(w, 0) + 1
    ranked = sorted(freq, key=lambda w: (-freq[w], w))
    common = set(ranked[:40])
    singles = [w for w in ranked[40:] if len(w) >= 2]
    pairs: dict[str, int] = {}
    for a, b in zip(words, words[1:]):
        if a not in common and b not in common and a != b and min(len(a), len(b)) >= 2:
            pairs[f"{a} {b}"] = pairs.get(f"{a} {b}", 0) + 1
    ranked_pairs = sorted(pairs, key=lambda p: (-pairs[p], p))
    extra = aliases_per_term - 1
    # Single words first, then the word pairs that are not names.
    pool = (singles + ranked_pairs[n_terms:])[: n_terms * extra]
    if len(ranked_pairs) < n_terms or len(pool) < n_terms * extra:
        raise ValueError(f"the docs' vocabulary is too small for {n_terms} terms x {aliases_per_term} aliases")
    names = ranked_pairs[:n_terms]
    random.Random(seed).shuffle(pool)
    terms = [
        {"name": name, "aliases": pool[i * extra:(i + 1) * extra],
         "definition": f"The project's meaning of {name!r}."}
        for i, name in enumerate(names)
    ]
    return text, {"options": {}, "terms": terms}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from aotcc.cli.args import int_range

    p = argparse.ArgumentParser(description="write a synthetic corpus (corpus.md) and term spec (terms.json)")
    p.add_argument("dir", type=Path)
    p.add_argument("--size", type=int_range(1, 1 << 30, "bytes"), default=4_000_000, help="bytes of text (default 4000000)")
    p.add_argument("--terms", type=int_range(1, 10_000_000), default=1000, help="terms (default 1000)")
    p.add_argument("--aliases", type=int_range(1, 1000), default=3, help="aliases per term, the name included (default 3)")
    p.add_argument("--seed", type=int_range(0, 2**63 - 1), default=7)
    a = p.parse_args(argv)
    corpus, terms = write(a.dir, a.size, a.terms, a.aliases, a.seed)
    print(f"wrote {corpus} and {terms}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
