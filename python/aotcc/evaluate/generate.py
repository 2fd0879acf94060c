"""The suite generator: invented terms whose definitions state a value, mentioned in a
distractor-rich operations handbook of a chosen length, and questions that ask for
those values. Deterministic: the same `[generate]` table gives the same bytes.

Why it is built this way:
- Terms are invented words ("Vornic Seal"), so the model cannot know a value from
  pre-training; the only source of a term's signal colour is its definition.
- A question's wrong candidates are other terms' values of the same kind, all present
  in the (compiled) prompt, so a model that merely favours "a colour from the context"
  gains nothing: it has to bind the value to the right term.
- The handbook never states a term's value. Its distractor sentences use the same
  phrasing ("signal colour", "routing code") with values from disjoint pools, and term
  mentions never carry a value. `raw` (the source without definitions) is therefore a
  chance-level control.
- Terms, definitions and values depend only on the seed, the filler also on the
  length: accuracy across lengths compares the same facts at different distances.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace
from typing import Any

from aotcc.errors import InputError
from aotcc.evaluate.cases import Case, Question, Suite, word_spans

# --- vocabulary ----------------------------------------------------------------------

_SYLLABLES = ["vor", "nic", "tal", "mer", "quo", "rin", "zeb", "kas", "tor", "fen", "dri", "sol", "bax", "myr",
              "oth", "pel", "gri", "lun", "vex", "ond", "sar", "bel", "wix", "dro", "cal", "ith", "mok", "zan"]
_NOUNS = ["Seal", "Ledger", "Protocol", "Gate", "Badge", "Charter", "Beacon", "Ward", "Registry", "Clause",
          "Manifest", "Circuit", "Vault", "Permit", "Docket", "Roster"]
_OBJECTS = ["clearance", "handover step", "inspection", "escalation path", "storage rule", "sign-off",
            "inventory check", "access rule", "intake form", "priority lane", "audit trail", "release step"]
_PURPOSES = ["night deliveries", "returned equipment", "cold storage", "the records room", "customer callbacks",
             "damaged parcels", "vendor audits", "after-hours access", "bulk orders", "spare parts",
             "warranty claims", "site visits", "key handovers", "hazardous goods", "courier pickups",
             "lost property"]
#: values stated by term definitions (the candidates) ...
TERM_COLOURS = ["amber", "crimson", "teal", "violet", "ochre", "indigo", "scarlet", "olive", "maroon", "cobalt",
                "emerald", "coral", "navy", "ivory", "lilac", "bronze", "saffron", "turquoise", "magenta",
                "charcoal", "copper", "jade", "mauve", "plum"]
#: ... and values that only the distractor sentences use (never a candidate)
_DISTRACTOR_COLOURS = ["beige", "grey", "white", "black", "pink", "tan", "gold", "rust"]
_CODE_LETTERS = "BCDFGHJKLMNPRSTVWXZ"

_TEAMS = ["billing", "logistics", "returns", "facilities", "security", "onboarding", "warranty", "field service",
          "procurement", "quality"]
_ROLES = ["shift lead", "duty manager", "floor supervisor", "records clerk", "site coordinator", "night porter",
          "compliance officer", "stock controller"]
_PLACES = ["north depot", "loading bay", "west annex", "mail room", "parts cage", "front desk", "yard office",
           "south store", "print room", "server closet"]
_TOPICS = ["late parcels", "invoice errors", "broken seals on boxes", "missing serial numbers", "noise complaints",
           "parking permits", "duplicate orders", "address changes"]
_TIMES = ["six in the evening", "noon", "eight at night", "half past four", "seven in the morning"]
_SITUATIONS = ["a shift changes over", "a delivery is refused", "stock is moved between sites",
               "a ticket is reopened", "a supplier sends a correction", "the weekly audit starts"]
_SECTIONS = ["Intake", "Shift handover", "Deliveries", "Storage", "Escalations", "Records", "Customer calls",
             "Access", "Audits", "Returns", "Safety", "Billing", "Suppliers", "Maintenance", "Reporting"]
_SITES = ["Harrowgate", "Millbrook", "Eastwick", "Fairhaven", "Stonebridge", "Ashford"]

_FILLER = [
    "{Team} requests are logged within {n} hours and reviewed by the {role}.",
    "The {role} checks the {place} log at the start of every shift.",
    "Parcels that arrive after {time} are held in the {place} until the next morning.",
    "A {role} may approve up to {n} exceptions per week and must record each one.",
    "Customers who call about {topic} are transferred to the {team} desk.",
    "Keep notes short, factual and free of personal opinion.",
    "When two rules seem to conflict, follow the stricter one and tell the {role}.",
    "The {place} is closed on public holidays, so urgent work goes to the {place2}.",
    "Every {n} days the {team} team reviews open tickets older than a week.",
    "Do not promise dates that the {team} team has not confirmed in writing.",
    "Questions about {topic} are answered from the knowledge base, never from memory.",
    "The {role} signs the {place} register before any equipment leaves the building.",
    "If a form is incomplete, return it to the sender with a one-line reason.",
    "Stock counts in the {place} are repeated whenever they differ by more than {n} items.",
    "A second person checks any refund above {n} hundred before it is released.",
    "Visitors wait at the {place} until the {role} collects them.",
]
_DISTRACTORS = [
    "The {place} uses the signal colour {dcolour} on its door labels.",
    "Mail for the {place} carries the routing code {dcode}.",
    "Boxes packed by the {team} team are sealed with {dcolour} tape.",
    "The {team} desk files its own forms under routing code {dcode}.",
]
_FIRST_MENTION = [
    "From this section on, staff must follow the {name}.",
    "This part of the handbook relies on the {name}.",
    "Work described here falls under the {name}.",
]
_LATER_MENTION = [
    "Any request that involves the {name} must be logged before it is approved.",
    "Staff on the {team} rota apply the {name} when {situation}.",
    "If a customer mentions the {name}, confirm the details before acting.",
    "The {name} takes priority over local habits whenever the two disagree.",
    "Check the {name} again when {situation}.",
    "Nothing covered by the {name} changes without a second reviewer.",
]

#: what a question can ask for: (kind, phrase in the definition and the question)
ATTRIBUTES = {"colour": "signal colour", "code": "routing code"}


@dataclass(frozen=True)
class GenConfig:
    """The `[generate]` table of a suite file (every field optional)."""

    seed: int = 0
    lengths: tuple[int, ...] = (1024, 2048, 4096)  # nominal source tokens per case
    depths: tuple[float, ...] = (0.1, 0.5, 0.9)  # where terms first appear (fraction of the prompt)
    terms: int = 12  # invented terms per case; each gets one question per attribute
    candidates: int = 4  # right answer + wrong ones per question
    mentions: int = 2  # later mentions of each term after its first appearance
    attributes: tuple[str, ...] = ("colour", "code")
    distractor_rate: float = 0.2  # share of filler sentences that state a (non-candidate) value
    chars_per_token: float = 4.6  # to size the filler without a tokenizer (Gemma 3 on this prose)
    replicas: int = 1  # independent handbooks per length (seeds seed, seed+1, ...): more questions, same design

    @classmethod
    def from_table(cls, table: Any, where: str) -> GenConfig:
        if not isinstance(table, dict):
            raise InputError(f"{where}: expected a table")
        known = {f.name for f in fields(cls)}
        extra = sorted(set(table) - known)
        if extra:
            raise InputError(f"{where}.{extra[0]}: unknown field (known: {', '.join(sorted(known))})")
        kw: dict[str, Any] = {}
        lists = {"lengths", "depths", "attributes"}
        for k, v in table.items():
            if k in lists and not isinstance(v, list):
                raise InputError(f"{where}.{k}: expected a list, got {v!r}")
            kw[k] = tuple(v) if isinstance(v, list) else v
        cfg = cls(**kw)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "generate") -> None:
        def bad(name: str, msg: str) -> InputError:
            return InputError(f"{where}.{name}: {msg}")

        def whole(name: str, v: Any, low: int, high: int | None = None) -> None:
            if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
                rng = f"{low}..{high}" if high is not None else f"at least {low}"
                raise bad(name, f"expected a whole number {rng}, got {v!r}")

        whole("seed", self.seed, 0)
        whole("terms", self.terms, 2, len(TERM_COLOURS))
        whole("candidates", self.candidates, 2, self.terms if isinstance(self.terms, int) else None)
        whole("mentions", self.mentions, 0, 20)
        whole("replicas", self.replicas, 1, 64)
        if not self.lengths:
            raise bad("lengths", "needs at least one length")
        for i, n in enumerate(self.lengths):
            if isinstance(n, bool) or not isinstance(n, int) or not 128 <= n <= 131072:
                raise InputError(f"{where}.lengths[{i}]: expected a token count from 128 to 131072, got {n!r}")
        if len(set(self.lengths)) != len(self.lengths):
            raise bad("lengths", "lists a length twice")
        if not self.depths:
            raise bad("depths", "needs at least one depth")
        for i, d in enumerate(self.depths):
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d <= 1.0:
                raise InputError(f"{where}.depths[{i}]: expected a number from 0 to 1, got {d!r}")
        if not self.attributes:
            raise bad("attributes", "needs at least one attribute")
        for i, a in enumerate(self.attributes):
            if a not in ATTRIBUTES:
                raise InputError(f"{where}.attributes[{i}]: {a!r} is not one of {', '.join(ATTRIBUTES)}")
        if isinstance(self.distractor_rate, bool) or not isinstance(self.distractor_rate, (int, float)) \
                or not 0.0 <= self.distractor_rate <= 1.0:
            raise bad("distractor_rate", f"expected a number from 0 to 1, got {self.distractor_rate!r}")
        if isinstance(self.chars_per_token, bool) or not isinstance(self.chars_per_token, (int, float)) \
                or not 1.0 <= self.chars_per_token <= 16.0:
            raise bad("chars_per_token", f"expected a number from 1 to 16, got {self.chars_per_token!r}")

    def to_table(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


@dataclass(frozen=True)
class _Term:
    name: str
    object: str
    purpose: str
    values: dict[str, str]  # kind -> value
    depth: float

    def definition(self) -> str:
        said = " ".join(f"Its {ATTRIBUTES[k]} is {v}." for k, v in self.values.items())
        return f"The {self.name} is the {self.object} for {self.purpose}. {said}"


def _code(rng: random.Random, used: set[str]) -> str:
    while True:
        c = f"{rng.choice(_CODE_LETTERS)}{rng.choice(_CODE_LETTERS)}-{rng.randint(11, 98)}"
        if c not in used:
            used.add(c)
            return c


def _invented_word(rng: random.Random, used: set[str]) -> str:
    while True:
        w = "".join(rng.sample(_SYLLABLES, rng.choice((2, 2, 3)))).capitalize()
        if w not in used and len(w) >= 5:
            used.add(w)
            return w


def _terms(cfg: GenConfig) -> tuple[list[_Term], set[str]]:
    """The invented terms (seed only) and the distractor codes reserved beside theirs."""
    rng = random.Random(f"aotcc-eval:{cfg.seed}:terms")
    words: set[str] = set()
    nouns = rng.sample(_NOUNS, len(_NOUNS))
    colours = rng.sample(TERM_COLOURS, cfg.terms)
    codes_used: set[str] = set()
    depths = [cfg.depths[i % len(cfg.depths)] for i in range(cfg.terms)]
    rng.shuffle(depths)
    out = []
    for i in range(cfg.terms):
        values = {}
        for kind in cfg.attributes:
            values[kind] = colours[i] if kind == "colour" else _code(rng, codes_used)
        name = f"{_invented_word(rng, words)} {nouns[i % len(nouns)]}"
        out.append(_Term(name, rng.choice(_OBJECTS), rng.choice(_PURPOSES), values, float(depths[i])))
    return out, codes_used


def _fill(template: str, rng: random.Random, dcodes: list[str], **extra: str) -> str:
    team = rng.choice(_TEAMS)
    place, place2 = rng.sample(_PLACES, 2)
    vals = {
        "team": team, "Team": team.capitalize(), "role": rng.choice(_ROLES), "place": place, "place2": place2,
        "topic": rng.choice(_TOPICS), "time": rng.choice(_TIMES), "n": str(rng.randint(2, 48)),
        "situation": rng.choice(_SITUATIONS), "dcolour": rng.choice(_DISTRACTOR_COLOURS),
        "dcode": rng.choice(dcodes),
    }
    vals.update(extra)
    return template.format(**vals)


def generate_case(cfg: GenConfig, length: int) -> Case:
    """One case: a handbook of about `length` tokens that mentions every term, its spec
    and its questions."""
    terms, codes_used = _terms(cfg)
    rng = random.Random(f"aotcc-eval:{cfg.seed}:case:{length}")
    dcodes = [_code(rng, codes_used) for _ in range(6)]  # disjoint from every term's code
    target = int(length * cfg.chars_per_token)

    # term mentions: (term index, first?) with the sentence text
    mentions: list[tuple[int, bool, str]] = []
    for i, t in enumerate(terms):
        mentions.append((i, True, rng.choice(_FIRST_MENTION).format(name=t.name)))
        for _ in range(cfg.mentions):
            mentions.append((i, False, _fill(rng.choice(_LATER_MENTION), rng, dcodes, name=t.name)))
    site = rng.choice(_SITES)
    title = f"# Operations handbook: {site} site\n\nThis handbook sets the rules for every shift at the {site} site."
    budget = target - len(title) - sum(len(s) + 1 for _, _, s in mentions)
    filler: list[str] = []
    used = 0
    while used < budget or not filler:
        tmpl = rng.choice(_DISTRACTORS) if rng.random() < cfg.distractor_rate else rng.choice(_FILLER)
        s = _fill(tmpl, rng, dcodes)
        filler.append(s)
        used += len(s) + 1
    n = len(filler)

    # lay mentions out by position in the final sentence list, so a term's depth is the
    # share of the prompt before its first mention; filler takes the places left
    total = n + len(mentions)
    placed: list[str | None] = [None] * total

    def put(at: int, text: str) -> int:
        for p in range(max(0, at), len(placed)):
            if placed[p] is None:
                placed[p] = text
                return p
        placed.append(text)  # nothing free after `at`: the very end
        return len(placed) - 1

    first_at: dict[int, int] = {}
    jitter = max(1, total // 40)  # terms of one depth should not form one block of mentions
    firsts = [(round(terms[i].depth * (total - 1)) + rng.randint(-jitter, jitter), i, s) for i, f, s in mentions if f]
    for at, i, s in sorted(firsts):
        first_at[i] = put(min(total - 1, at), s)
    for i, f, s in mentions:
        if not f:
            put(rng.randint(first_at[i] + 1, max(first_at[i] + 1, total - 1)), s)
    it = iter(filler)
    # a mention pushed past the end leaves one free place more than there is filler
    sentences = [x for x in (p if p is not None else next(it, None) for p in placed) if x is not None]

    # paragraphs of 3-6 sentences, a numbered section heading every 3-5 paragraphs
    parts = [title]
    section = 0
    until_heading = 0
    pos = 0
    while pos < len(sentences):
        if until_heading == 0:
            section += 1
            parts.append(f"## {section}. {rng.choice(_SECTIONS)}")
            until_heading = rng.randint(3, 5)
        size = rng.randint(3, 6)
        parts.append(" ".join(sentences[pos : pos + size]))
        pos += size
        until_heading -= 1
    prompt = "\n\n".join(parts) + "\n"

    questions = []
    q_rng = random.Random(f"aotcc-eval:{cfg.seed}:questions")
    for i, t in enumerate(terms):
        for kind in cfg.attributes:
            others = [u.values[kind] for u in terms if u is not t]
            wrong = q_rng.sample(others, cfg.candidates - 1)
            questions.append(Question(
                id=f"t{i:02d}-{kind}", term=t.name, ask=f"What is the {ATTRIBUTES[kind]} of the {t.name}?",
                answer=t.values[kind], wrong=tuple(wrong), depth=t.depth, kind=kind,
            ))
    spec = {"options": {}, "terms": [{"name": t.name, "definition": t.definition()} for t in terms]}
    case = Case(f"L{length}", length, prompt, spec, tuple(questions))
    _check_generated(case, cfg)
    return case


def _check_generated(case: Case, cfg: GenConfig) -> None:
    """The generator's promise, checked on every case it makes: no candidate value in the
    source, and each term named exactly at its first and later mentions."""
    for q in case.questions:
        for cand in q.candidates:
            if word_spans(case.prompt, cand):
                raise RuntimeError(f"generator bug: candidate {cand!r} of {q.id} appears in the source of {case.id}")
    for t in case.terms["terms"]:
        got = len(word_spans(case.prompt, t["name"]))
        if got != 1 + cfg.mentions:
            raise RuntimeError(f"generator bug: {t['name']!r} appears {got} times in {case.id}, not {1 + cfg.mentions}")


def generate_cases(cfg: GenConfig) -> list[Case]:
    cfg.validate()
    if cfg.replicas == 1:
        return [generate_case(cfg, n) for n in cfg.lengths]
    out = []
    for r in range(cfg.replicas):
        one = replace(cfg, seed=cfg.seed + r, replicas=1)
        out += [replace(c, id=f"{c.id}-r{r}") for c in (generate_case(one, n) for n in cfg.lengths)]
    return out


def generate_suite(cfg: GenConfig, name: str = "generated") -> Suite:
    """A `Suite` of the generated cases (what a suite file with this `[generate]` loads as)."""
    return Suite(name, tuple(generate_cases(cfg)), f"generated from seed {cfg.seed}", cfg.to_table())


__all__ = ["ATTRIBUTES", "GenConfig", "TERM_COLOURS", "generate_case", "generate_cases", "generate_suite"]
