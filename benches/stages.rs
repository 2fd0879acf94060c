//! Criterion benches of the compile stages, in bytes of source per second.
//!
//! The corpus is a ~4 MB Markdown-ish master prompt with 1000 terms of 3 aliases each,
//! generated here from a fixed-seed LCG (same bytes on every run). It reads like the
//! Python corpus (`aotcc.corpus`) without matching it byte for byte; to bench that one
//! instead, set `AOTCC_BENCH_CORPUS=DIR` to a directory holding `corpus.md` and
//! `terms.json` (the pytest benches leave one in build/bench/corpus/1k-terms, and
//! `aotcc.corpus.write(DIR)` makes one).
//!
//! Benches: `segment`, `detect` (`Detector::find`), `compile_estimator` (the whole
//! `Compiler::compile` with the `Estimator`) and `detect_plan_rewrite` (the sum of those
//! three stage timings reported by the same compile: the hot path without counting,
//! chunking and emitting).

use std::collections::HashSet;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use aotcc::{segment, CompileOptions, Compiler, Estimator, Source};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const CORPUS_BYTES: usize = 4_000_000;
const TERMS: usize = 1000;
const ALIASES_PER_TERM: usize = 3;
const SEED: u64 = 7;

/// Knuth's MMIX LCG; the high bits are the output.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }
}

const ADJECTIVES: &[&str] = &[
    "active",
    "annual",
    "approved",
    "automatic",
    "blocked",
    "central",
    "critical",
    "customer",
    "daily",
    "default",
    "delayed",
    "digital",
    "direct",
    "disputed",
    "domestic",
    "early",
    "escalated",
    "external",
    "final",
    "flagged",
    "formal",
    "global",
    "internal",
    "late",
    "legal",
    "manual",
    "monthly",
    "open",
    "partial",
    "pending",
    "primary",
    "priority",
    "regional",
    "restricted",
    "secure",
    "shared",
    "standard",
    "temporary",
    "verified",
    "weekly",
];
const SUBJECTS: &[&str] = &[
    "account",
    "audit",
    "billing",
    "booking",
    "carrier",
    "claim",
    "contract",
    "credit",
    "data",
    "delivery",
    "device",
    "discount",
    "email",
    "export",
    "fraud",
    "identity",
    "invoice",
    "loyalty",
    "merchant",
    "order",
    "partner",
    "password",
    "payment",
    "payout",
    "privacy",
    "refund",
    "return",
    "risk",
    "routing",
    "shipping",
    "subscription",
    "support",
    "tax",
    "ticket",
    "transfer",
    "travel",
    "vendor",
    "voucher",
    "wallet",
    "warranty",
];
const NOUNS: &[&str] = &[
    "window",
    "policy",
    "threshold",
    "limit",
    "review",
    "queue",
    "hold",
    "check",
    "rule",
    "score",
    "fee",
    "cap",
    "period",
    "process",
    "flow",
    "note",
    "record",
    "request",
    "notice",
    "handoff",
    "budget",
    "ledger",
    "quota",
    "tier",
    "override",
    "workflow",
    "form",
    "report",
    "signal",
    "trigger",
    "schedule",
    "buffer",
    "reserve",
    "lock",
    "match",
    "protocol",
    "register",
    "sweep",
    "ticket",
    "token",
    "balance",
    "mandate",
    "waiver",
    "route",
    "batch",
    "bucket",
    "cycle",
    "dispute",
    "exception",
    "grace",
    "journal",
    "manifest",
    "marker",
    "offset",
    "pledge",
    "quorum",
    "ratio",
    "roster",
    "summary",
    "tally",
];
const VERBS: &[&str] = &[
    "checks",
    "confirms",
    "records",
    "updates",
    "blocks",
    "routes",
    "reviews",
    "flags",
    "resolves",
    "escalates",
    "explains",
    "verifies",
    "closes",
    "opens",
    "holds",
    "releases",
    "logs",
    "notes",
    "approves",
    "rejects",
];
const PEOPLE: &[&str] = &[
    "the agent",
    "the customer",
    "the reviewer",
    "the supervisor",
    "the assistant",
    "the team",
];
const PREPOSITIONS: &[&str] = &[
    "under", "before", "after", "within", "against", "for", "with", "per",
];
const ASIDES: &[&str] = &[
    "see above",
    "for example",
    "naïve cases aside",
    "café orders too",
    "rare",
    "注意",
    "→ next step",
];
const TOOLS: &[&str] = &[
    "lookup_order",
    "issue_refund",
    "open_ticket",
    "send_email",
    "update_account",
    "hold_payment",
];

fn capitalize(word: &str) -> String {
    let mut c = word.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn plural(word: &str) -> String {
    if let Some(stem) = word.strip_suffix('y') {
        format!("{stem}ies")
    } else if word.ends_with('s') || word.ends_with('x') || word.ends_with("ch") {
        format!("{word}es")
    } else {
        format!("{word}s")
    }
}

struct Terms {
    names: Vec<String>,
    aliases: Vec<Vec<String>>,
}

/// Unique names of three words, and aliases: initials, hyphenated, plural (unique
/// after lowercasing, as the spec requires for case-insensitive terms).
fn make_terms(rng: &mut Lcg) -> Terms {
    let mut taken: HashSet<String> = HashSet::new();
    let claim = |s: &str, taken: &mut HashSet<String>| taken.insert(s.to_lowercase());
    let mut names = Vec::with_capacity(TERMS);
    let mut words = Vec::with_capacity(TERMS);
    while names.len() < TERMS {
        let w = [rng.pick(ADJECTIVES), rng.pick(SUBJECTS), rng.pick(NOUNS)];
        let name = w
            .iter()
            .map(|x| capitalize(x))
            .collect::<Vec<_>>()
            .join(" ");
        if claim(&name, &mut taken) {
            names.push(name);
            words.push(w);
        }
    }
    let mut aliases = Vec::with_capacity(TERMS);
    for (name, w) in names.iter().zip(&words) {
        let mut list = Vec::with_capacity(ALIASES_PER_TERM);
        let initials: String = w.iter().map(|x| x[..1].to_uppercase()).collect();
        let mut k = 1;
        while list.len() < ALIASES_PER_TERM {
            let candidate = match (list.len(), k) {
                (0, 1) => initials.clone(),
                (0, _) => format!("{initials}{k}"),
                (1, 1) => format!("{}-{}", w[1], w[2]),
                (1, _) => format!("{}-{}-{k}", w[1], w[2]),
                (2, 1) => format!(
                    "{} {}",
                    &name[..name.rfind(' ').expect("three words")],
                    capitalize(&plural(w[2]))
                ),
                (_, _) => format!("{}-{}-{k}", w[0], w[2]),
            };
            if claim(&candidate, &mut taken) {
                list.push(candidate);
                k = 1;
            } else {
                k += 1;
            }
        }
        aliases.push(list);
    }
    Terms { names, aliases }
}

/// Mentions: every term once (shuffled), then a skewed draw that favours a few terms.
struct Mentions<'a> {
    terms: &'a Terms,
    order: Vec<usize>,
    popular: Vec<usize>,
    next: usize,
}

impl Mentions<'_> {
    fn mention(&mut self, rng: &mut Lcg) -> String {
        let n = self.terms.names.len();
        let t = if self.next < n {
            self.next += 1;
            self.order[self.next - 1]
        } else {
            let u = rng.unit();
            self.popular[((u * u * u) * n as f64) as usize % n]
        };
        let name = &self.terms.names[t];
        let r = rng.unit();
        if r < 0.5 {
            name.clone()
        } else if r < 0.7 {
            name.to_lowercase()
        } else if r < 0.75 {
            name.to_uppercase()
        } else {
            let a = &self.terms.aliases[t];
            a[rng.below(a.len())].clone()
        }
    }
}

fn shuffled(rng: &mut Lcg, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

fn sentence(rng: &mut Lcg, m: &mut Mentions, out: &mut String) {
    let start = out.len();
    match rng.below(4) {
        0 => {
            out.push_str(rng.pick(PEOPLE));
            out.push(' ');
            out.push_str(rng.pick(VERBS));
            out.push_str(" the ");
            out.push_str(rng.pick(ADJECTIVES));
            out.push(' ');
            out.push_str(rng.pick(NOUNS));
        }
        1 => {
            out.push_str("each ");
            out.push_str(rng.pick(SUBJECTS));
            out.push(' ');
            out.push_str(rng.pick(NOUNS));
            out.push(' ');
            out.push_str(rng.pick(VERBS));
            out.push_str(" a ");
            out.push_str(rng.pick(NOUNS));
            out.push(' ');
            out.push_str(rng.pick(PREPOSITIONS));
            out.push_str(" the ");
            out.push_str(rng.pick(SUBJECTS));
            out.push_str(" team");
        }
        2 => {
            out.push_str("when the ");
            out.push_str(rng.pick(NOUNS));
            out.push_str(" is ");
            out.push_str(rng.pick(ADJECTIVES));
            out.push_str(", ");
            out.push_str(rng.pick(PEOPLE));
            out.push(' ');
            out.push_str(rng.pick(VERBS));
            out.push_str(" it");
        }
        _ => {
            out.push_str(rng.pick(PEOPLE));
            out.push_str(" never ");
            out.push_str(rng.pick(VERBS).trim_end_matches('s'));
            out.push_str(" a ");
            out.push_str(rng.pick(SUBJECTS));
            out.push(' ');
            out.push_str(rng.pick(NOUNS));
            out.push_str(" without a reason");
        }
    }
    if rng.chance(0.3) {
        out.push(' ');
        out.push_str(rng.pick(PREPOSITIONS));
        out.push_str(" the ");
        out.push_str(&m.mention(rng));
    }
    if rng.chance(0.05) {
        out.push_str(" (");
        out.push_str(rng.pick(ASIDES));
        out.push(')');
    }
    out.push('.');
    // Capitalize the first letter (all sentence openers are ASCII).
    let first = out.as_bytes()[start].to_ascii_uppercase();
    out.replace_range(
        start..start + 1,
        std::str::from_utf8(&[first]).expect("ascii"),
    );
}

fn block(rng: &mut Lcg, m: &mut Mentions, out: &mut String) {
    let r = rng.unit();
    if r < 0.65 {
        for i in 0..2 + rng.below(5) {
            if i > 0 {
                out.push(' ');
            }
            sentence(rng, m, out);
        }
        out.push_str("\n\n");
    } else if r < 0.9 {
        let numbered = rng.chance(0.3);
        for k in 0..3 + rng.below(5) {
            if numbered {
                out.push_str(&format!("{}. ", k + 1));
            } else {
                out.push_str("- ");
            }
            if rng.chance(0.25) {
                out.push_str("**");
                out.push_str(&m.mention(rng));
                out.push_str("**: ");
            }
            sentence(rng, m, out);
            out.push('\n');
        }
        out.push('\n');
    } else if r < 0.96 {
        out.push_str("```json\n{\n  \"tool\": \"");
        out.push_str(rng.pick(TOOLS));
        out.push_str("\",\n  \"arguments\": {\n");
        for _ in 0..2 + rng.below(4) {
            out.push_str(&format!(
                "    \"{}_{}\": \"{:05}\",\n",
                rng.pick(SUBJECTS),
                rng.pick(NOUNS),
                rng.below(100_000)
            ));
        }
        out.push_str("    \"dry_run\": true\n  }\n}\n```\n\n");
    } else {
        out.push_str("> **Note:** ");
        sentence(rng, m, out);
        out.push(' ');
        sentence(rng, m, out);
        out.push_str("\n\n");
    }
}

/// The generated corpus: `(markdown, spec_json)`.
fn generate() -> (String, String) {
    let mut rng = Lcg(SEED);
    let terms = make_terms(&mut rng);
    let spec_terms: Vec<serde_json::Value> = (0..TERMS)
        .map(|i| {
            let mut definition = format!(
                "The {} {} the {} {} {} every {}.",
                terms.names[i],
                rng.pick(VERBS),
                rng.pick(ADJECTIVES),
                rng.pick(NOUNS),
                rng.pick(PREPOSITIONS),
                rng.pick(SUBJECTS)
            );
            if i > 0 && rng.chance(0.15) {
                definition.push_str(&format!(" It follows the {}.", terms.names[rng.below(i)]));
            }
            let requires: Vec<&str> = if i > 0 && rng.chance(0.1) {
                vec![terms.names[rng.below(i)].as_str()]
            } else {
                vec![]
            };
            serde_json::json!({
                "name": terms.names[i],
                "aliases": terms.aliases[i],
                "definition": definition,
                "requires": requires,
            })
        })
        .collect();
    let spec = serde_json::json!({"options": {}, "terms": spec_terms}).to_string();

    let order = shuffled(&mut rng, TERMS);
    let popular = shuffled(&mut rng, TERMS);
    let mut m = Mentions {
        terms: &terms,
        order,
        popular,
        next: 0,
    };
    let mut out = String::with_capacity(CORPUS_BYTES + 4096);
    out.push_str("# Operations Agent Master Prompt\n\n");
    let mut section = 0;
    while out.len() < CORPUS_BYTES || m.next < TERMS {
        section += 1;
        out.push_str(&format!("## {section}. "));
        if rng.chance(0.5) {
            out.push_str(&capitalize(&m.mention(&mut rng)));
        } else {
            out.push_str(&format!(
                "{} {}",
                capitalize(rng.pick(ADJECTIVES)),
                rng.pick(NOUNS)
            ));
        }
        out.push_str("\n\n");
        for _ in 0..2 + rng.below(4) {
            block(&mut rng, &mut m, &mut out);
        }
    }
    (out, spec)
}

/// The corpus from `AOTCC_BENCH_CORPUS` (a directory with `corpus.md` and
/// `terms.json`), else the generated one.
fn corpus() -> (String, String, String) {
    match std::env::var_os("AOTCC_BENCH_CORPUS") {
        Some(dir) => {
            let dir = Path::new(&dir);
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name))
                    .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
            };
            (
                read("corpus.md"),
                read("terms.json"),
                format!("{}", dir.display()),
            )
        }
        None => {
            let (text, spec) = generate();
            (text, spec, "generated (LCG)".to_string())
        }
    }
}

fn stages(c: &mut Criterion) {
    let (text, spec, origin) = corpus();
    let compiler = Compiler::new(&spec, "terms.json", CompileOptions::default())
        .expect("the bench spec is valid");
    let occurrences = compiler.detector().find(&text, &[0]).len();
    eprintln!(
        "corpus: {origin}: {} bytes, {} terms, {} occurrences",
        text.len(),
        compiler.spec().terms.len(),
        occurrences
    );
    let bytes = text.as_bytes().to_vec();
    let source = || vec![Source::new("corpus.md", bytes.clone())];

    let mut g = c.benchmark_group("stages");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(text.len() as u64));

    g.bench_function("segment", |b| b.iter(|| segment(black_box(&text), &[0])));
    g.bench_function("detect", |b| {
        b.iter(|| compiler.detector().find(black_box(&text), &[0]))
    });
    g.bench_function("compile_estimator", |b| {
        b.iter_batched(
            source,
            |sources| {
                compiler
                    .compile(&sources, &Estimator, "estimator", None)
                    .expect("compiles")
            },
            BatchSize::LargeInput,
        )
    });
    // The compile's own timings of detect, plan and rewrite, summed per run.
    g.bench_function("detect_plan_rewrite", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let artifact = compiler
                    .compile(&source(), &Estimator, "estimator", None)
                    .expect("compiles");
                let secs: f64 = artifact
                    .timings()
                    .iter()
                    .filter(|(stage, _)| matches!(stage.as_str(), "detect" | "plan" | "rewrite"))
                    .map(|(_, s)| s)
                    .sum();
                total += Duration::from_secs_f64(secs);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
