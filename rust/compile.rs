//! The compile pipeline: `segment → count → detect → chunk → plan → rewrite → emit`,
//! with per-stage timings and progress counters that another thread may read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use crate::artifact::{
    Artifact, Body, ChunkTable, FileRecord, Hashes, OccurrenceTable, OptionsRecord, SourceMap,
    TermRecord, FORMAT_VERSION,
};
use crate::chunk::chunk;
use crate::count::Counter;
use crate::detect::Detector;
use crate::error::{Error, ErrorKind};
use crate::hash::blake3_hex;
use crate::plan::{label, plan, Dependencies};
use crate::rewrite::rewrite;
use crate::segment::segment;
use crate::spec::Spec;
use crate::tags::{definition_block, TagStyle};

/// Where definition blocks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the chunk where each term first appears (aotcc's layout).
    Chunk,
    /// All stacked before the first chunk (the classic layout).
    Top,
}

/// What later mentions become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum References {
    /// A reference tag replaces the mention.
    Tag,
    /// The mention stays and a reference tag follows it.
    Annotate,
    /// The mention stays as written.
    Keep,
}

/// How tag ids without an explicit `id` are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagIds {
    /// `A`, `B`, … `Z`, `AA`, … in first-appearance order.
    #[default]
    Alpha,
    /// The same labels reordered by what one reference tag costs in the compile's
    /// tokenizer (fewest first, label order on a tie): deterministic, still collision-free.
    Cheap,
}

impl TagIds {
    /// Parses `alpha` or `cheap`.
    pub fn parse(s: &str) -> Option<TagIds> {
        match s {
            "alpha" => Some(TagIds::Alpha),
            "cheap" => Some(TagIds::Cheap),
            _ => None,
        }
    }
    /// The option's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TagIds::Alpha => "alpha",
            TagIds::Cheap => "cheap",
        }
    }
}

impl Placement {
    /// Parses `chunk` or `top`.
    pub fn parse(s: &str) -> Option<Placement> {
        match s {
            "chunk" => Some(Placement::Chunk),
            "top" => Some(Placement::Top),
            _ => None,
        }
    }
    /// The option's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Chunk => "chunk",
            Placement::Top => "top",
        }
    }
}

impl References {
    /// Parses `tag`, `annotate` or `keep`.
    pub fn parse(s: &str) -> Option<References> {
        match s {
            "tag" => Some(References::Tag),
            "annotate" => Some(References::Annotate),
            "keep" => Some(References::Keep),
            _ => None,
        }
    }
    /// The option's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            References::Tag => "tag",
            References::Annotate => "annotate",
            References::Keep => "keep",
        }
    }
}

/// Compile options (the term spec carries its own matching options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileOptions {
    /// Maximum source tokens per chunk (default 512).
    pub budget: u32,
    /// Where definition blocks go (default [`Placement::Chunk`]).
    pub placement: Placement,
    /// What later mentions become (default [`References::Tag`]).
    pub references: References,
    /// How tag ids are chosen (default [`TagIds::Alpha`]).
    pub tag_ids: TagIds,
    /// How tags are spelled (default [`TagStyle::Seed`]).
    pub tag_style: TagStyle,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            budget: 512,
            placement: Placement::Chunk,
            references: References::Tag,
            tag_ids: TagIds::Alpha,
            tag_style: TagStyle::Seed,
        }
    }
}

impl CompileOptions {
    /// Sets the token budget per chunk.
    pub fn budget(mut self, budget: u32) -> Self {
        self.budget = budget;
        self
    }
    /// Sets the placement of definition blocks.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }
    /// Sets what later mentions become.
    pub fn references(mut self, references: References) -> Self {
        self.references = references;
        self
    }
    /// Sets how tag ids are chosen.
    pub fn tag_ids(mut self, tag_ids: TagIds) -> Self {
        self.tag_ids = tag_ids;
        self
    }
    /// Sets how tags are spelled.
    pub fn tag_style(mut self, tag_style: TagStyle) -> Self {
        self.tag_style = tag_style;
        self
    }
}

/// Where analysis asks the compile to deviate from structure alone, in byte offsets
/// of the joined source. Empty hints compile exactly as without them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// Offsets where a chunk should end: the open chunk closes at the first unit
    /// boundary at or after each (the budget still bounds every chunk).
    pub breaks: Vec<usize>,
    /// `(term index, offset)`: the term is first needed at `offset`, so its definition
    /// goes into that offset's chunk when that is before its literal first mention.
    pub anchors: Vec<(usize, usize)>,
}

impl Hints {
    fn is_empty(&self) -> bool {
        self.breaks.is_empty() && self.anchors.is_empty()
    }

    /// A stable digest for the options hash (empty hints leave the hash as it was).
    fn digest(&self) -> String {
        let mut s = String::new();
        for b in &self.breaks {
            s.push_str(&format!("b{b},"));
        }
        for (t, a) in &self.anchors {
            s.push_str(&format!("a{t}@{a},"));
        }
        blake3_hex(s.as_bytes())
    }
}

/// One input file.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its name, for errors and the manifest.
    pub name: String,
    /// Its bytes (must be UTF-8).
    pub bytes: Vec<u8>,
}

impl Source {
    /// A named source.
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Source {
        Source {
            name: name.into(),
            bytes,
        }
    }
}

/// The pipeline stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Not started.
    Idle = 0,
    /// Reading and validating the sources.
    Read,
    /// Segmenting into units.
    Segment,
    /// Counting tokens.
    Count,
    /// Detecting occurrences.
    Detect,
    /// Packing chunks.
    Chunk,
    /// Planning first appearances and ids.
    Plan,
    /// Rewriting the text.
    Rewrite,
    /// Serializing and hashing the artifact.
    Emit,
    /// Finished.
    Done,
}

impl Stage {
    const ALL: [Stage; 10] = [
        Stage::Idle,
        Stage::Read,
        Stage::Segment,
        Stage::Count,
        Stage::Detect,
        Stage::Chunk,
        Stage::Plan,
        Stage::Rewrite,
        Stage::Emit,
        Stage::Done,
    ];
    /// The stage's name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Idle => "idle",
            Stage::Read => "read",
            Stage::Segment => "segment",
            Stage::Count => "count",
            Stage::Detect => "detect",
            Stage::Chunk => "chunk",
            Stage::Plan => "plan",
            Stage::Rewrite => "rewrite",
            Stage::Emit => "emit",
            Stage::Done => "done",
        }
    }
}

/// Progress counters, written by the compiler and readable from another thread.
#[derive(Debug, Default)]
pub struct Progress {
    stage: AtomicU8,
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// The current stage.
    pub fn stage(&self) -> Stage {
        Stage::ALL[self.stage.load(Ordering::Relaxed) as usize % Stage::ALL.len()]
    }
    /// Work done in the current stage (bytes or units).
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
    /// Work in the current stage.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
    fn enter(&self, stage: Stage, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.stage.store(stage as u8, Ordering::Relaxed);
    }
    fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

/// A validated spec with its automaton and dependency graph, ready to compile sources.
#[derive(Debug, Clone)]
pub struct Compiler {
    spec: Spec,
    detector: Detector,
    deps: Dependencies,
    options: CompileOptions,
    spec_hash: String,
}

/// Units are counted in batches of this many, so progress moves.
const COUNT_BATCH: usize = 16_384;

impl Compiler {
    /// Validates the spec (JSON) and builds the detection automaton.
    ///
    /// # Errors
    /// A [`ErrorKind::Spec`] error for a malformed spec (the message starts with
    /// `spec_name`), a [`ErrorKind::Plan`] error for a `requires` cycle.
    pub fn new(
        spec_json: &str,
        spec_name: &str,
        options: CompileOptions,
    ) -> Result<Compiler, Error> {
        let prefix = |e: Error| Error::new(e.kind(), format!("{spec_name}: {}", e.message()));
        if options.budget == 0 {
            return Err(Error::new(
                ErrorKind::Input,
                "budget must be at least 1 token",
            ));
        }
        let spec = Spec::from_json(spec_json).map_err(prefix)?;
        Compiler::from_spec(spec, options).map_err(prefix)
    }

    /// Builds a compiler from an already validated spec.
    ///
    /// # Errors
    /// A [`ErrorKind::Plan`] error for a `requires` cycle.
    pub fn from_spec(spec: Spec, options: CompileOptions) -> Result<Compiler, Error> {
        let detector = Detector::new(&spec)?;
        let deps = Dependencies::build(&spec, &detector)?;
        let spec_hash = blake3_hex(spec.canonical_json().as_bytes());
        Ok(Compiler {
            spec,
            detector,
            deps,
            options,
            spec_hash,
        })
    }

    /// The validated spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }
    /// The detection automaton.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }
    /// The options.
    pub fn options(&self) -> CompileOptions {
        self.options
    }
    /// BLAKE3 of the canonical spec.
    pub fn spec_hash(&self) -> &str {
        &self.spec_hash
    }

    /// Candidate labels ordered by the token cost of their reference tag (stable, so
    /// label order breaks ties): enough for every term even after collisions.
    fn cheap_labels(&self, counter: &dyn Counter) -> Result<Vec<String>, Error> {
        let n = (self.spec.terms.len() * 2).max(26 * 27);
        let labels: Vec<String> = (0..n).map(label).collect();
        let prefix = &self.spec.options.id_prefix;
        let style = self.options.tag_style;
        let tags: Vec<String> = labels
            .iter()
            .map(|l| style.reference(&style.element(prefix, l)))
            .collect();
        let strs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let costs = counter.count(&strs)?;
        if costs.len() != labels.len() {
            return Err(Error::new(
                ErrorKind::Count,
                format!(
                    "token counter returned {} counts for {} tags",
                    costs.len(),
                    labels.len()
                ),
            ));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (costs[i], i));
        Ok(order.into_iter().map(|i| labels[i].clone()).collect())
    }

    /// Compiles `sources` (concatenated in order) into an artifact.
    ///
    /// # Errors
    /// [`ErrorKind::Input`] for a source that is not UTF-8 (naming the file and byte
    /// offset), [`ErrorKind::Count`] when `counter` fails, [`ErrorKind::Plan`] when an
    /// explicit tag id occurs in the source.
    pub fn compile(
        &self,
        sources: &[Source],
        counter: &dyn Counter,
        tokenizer: &str,
        progress: Option<&Progress>,
    ) -> Result<Artifact, Error> {
        self.compile_hinted(sources, counter, tokenizer, progress, &Hints::default())
    }

    /// [`Compiler::compile`] with analysis [`Hints`] (chunk breaks and term anchors).
    ///
    /// # Errors
    /// As [`Compiler::compile`], and [`ErrorKind::Input`] for a hint offset past the
    /// end of the source or inside a character, or an anchor for an unknown term.
    pub fn compile_hinted(
        &self,
        sources: &[Source],
        counter: &dyn Counter,
        tokenizer: &str,
        progress: Option<&Progress>,
        hints: &Hints,
    ) -> Result<Artifact, Error> {
        let quiet = Progress::default();
        let progress = progress.unwrap_or(&quiet);
        let mut timings: Vec<(String, f64)> = Vec::new();
        let mut clock = Instant::now();
        let mut lap = |name: &str, timings: &mut Vec<(String, f64)>| {
            let now = Instant::now();
            let secs = (now - clock).as_secs_f64();
            match timings.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 += secs,
                None => timings.push((name.to_string(), secs)),
            }
            clock = now;
        };

        // read
        let total: usize = sources.iter().map(|s| s.bytes.len()).sum();
        progress.enter(Stage::Read, total as u64);
        let mut files = Vec::with_capacity(sources.len());
        let mut text = String::with_capacity(total);
        for s in sources {
            let valid = std::str::from_utf8(&s.bytes).map_err(|e| {
                let at = e.valid_up_to();
                let line = s.bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                Error::new(
                    ErrorKind::Input,
                    format!("{}: invalid UTF-8 at byte {at} (line {line})", s.name),
                )
            })?;
            let start = text.len() as u64;
            text.push_str(valid);
            files.push(FileRecord {
                name: s.name.clone(),
                start,
                end: text.len() as u64,
                blake3: blake3_hex(&s.bytes),
            });
            progress.add(s.bytes.len() as u64);
        }
        let file_starts: Vec<usize> = files.iter().map(|f| f.start as usize).collect();
        let mut breaks = hints.breaks.clone();
        breaks.sort_unstable();
        for &at in breaks.iter().chain(hints.anchors.iter().map(|(_, a)| a)) {
            if at > text.len() || !text.is_char_boundary(at) {
                return Err(Error::new(
                    ErrorKind::Input,
                    format!(
                        "hint offset {at} is not a character boundary of the {}-byte source",
                        text.len()
                    ),
                ));
            }
        }
        if let Some(&(t, _)) = hints
            .anchors
            .iter()
            .find(|(t, _)| *t >= self.spec.terms.len())
        {
            return Err(Error::new(
                ErrorKind::Input,
                format!(
                    "anchor for term #{t}, but the spec has {} terms",
                    self.spec.terms.len()
                ),
            ));
        }
        let source_hash = blake3_hex(text.as_bytes());
        lap("read", &mut timings);

        // segment
        progress.enter(Stage::Segment, text.len() as u64);
        let units = segment(&text, &file_starts);
        progress.add(text.len() as u64);
        lap("segment", &mut timings);

        // count
        progress.enter(Stage::Count, units.len() as u64);
        let mut counts: Vec<u32> = Vec::with_capacity(units.len());
        for batch in units.chunks(COUNT_BATCH) {
            let strs: Vec<&str> = batch.iter().map(|u| &text[u.start..u.end]).collect();
            let got = counter.count(&strs)?;
            if got.len() != strs.len() {
                return Err(Error::new(
                    ErrorKind::Count,
                    format!(
                        "token counter returned {} counts for {} units",
                        got.len(),
                        strs.len()
                    ),
                ));
            }
            counts.extend(got);
            progress.add(batch.len() as u64);
        }
        lap("count", &mut timings);

        // detect
        progress.enter(Stage::Detect, text.len() as u64);
        let occurrences = self.detector.find(&text, &file_starts);
        progress.add(text.len() as u64);
        lap("detect", &mut timings);

        // chunk
        progress.enter(Stage::Chunk, units.len() as u64);
        let chunks = chunk(
            &text,
            &units,
            &counts,
            &occurrences,
            self.options.budget,
            &breaks,
            counter,
        )?;
        drop(units);
        lap("chunk", &mut timings);

        // plan
        progress.enter(Stage::Plan, occurrences.len() as u64);
        let labels = match self.options.tag_ids {
            TagIds::Alpha => None,
            TagIds::Cheap => Some(self.cheap_labels(counter)?),
        };
        let plan = plan(
            &self.spec,
            &self.deps,
            &occurrences,
            &chunks,
            &text,
            &hints.anchors,
            labels.as_deref(),
            self.options.tag_style,
        )?;
        lap("plan", &mut timings);

        // rewrite
        progress.enter(Stage::Rewrite, text.len() as u64);
        let rewritten = rewrite(
            &text,
            &self.spec,
            &chunks,
            &occurrences,
            &plan,
            &self.options,
        );
        lap("rewrite", &mut timings);

        // Token cost of what was added and removed: definition blocks, tags, and the
        // distinct texts of replaced mentions, counted in one batch.
        let prefix = &self.spec.options.id_prefix;
        let style = self.options.tag_style;
        let injected: Vec<usize> = plan.order.clone();
        let mut extra: Vec<String> = Vec::with_capacity(injected.len() * 2);
        for &t in &injected {
            let id = plan.ids[t].as_deref().expect("injected");
            extra.push(definition_block(&self.spec, style, t, id));
            extra.push(style.reference(&style.element(prefix, id)));
        }
        let mut mention_index: HashMap<&str, usize> = HashMap::new();
        let mut mention_texts: Vec<&str> = Vec::new();
        let mut references = vec![0u32; self.spec.terms.len()];
        let map = &rewritten.map;
        for row in map {
            if row.4 == crate::artifact::SpanKind::Reference {
                let s = &text[row.2..row.3];
                if !mention_index.contains_key(s) {
                    mention_index.insert(s, mention_texts.len());
                    mention_texts.push(s);
                }
            }
            if matches!(
                row.4,
                crate::artifact::SpanKind::Reference | crate::artifact::SpanKind::Annotation
            ) {
                references[row.5 as usize] += 1;
            }
        }
        if self.options.references == References::Keep {
            for (k, o) in occurrences.iter().enumerate() {
                if plan.first_occurrence[o.term as usize] != Some(k) {
                    references[o.term as usize] += 1;
                }
            }
        }
        let mut strs: Vec<&str> = extra.iter().map(String::as_str).collect();
        strs.extend(mention_texts.iter().copied());
        let extra_counts = counter.count(&strs)?;
        if extra_counts.len() != strs.len() {
            return Err(Error::new(
                ErrorKind::Count,
                format!(
                    "token counter returned {} counts for {} pieces",
                    extra_counts.len(),
                    strs.len()
                ),
            ));
        }
        lap("count", &mut timings);
        let mut block_tokens = vec![0u32; self.spec.terms.len()];
        let mut tag_tokens = vec![0u32; self.spec.terms.len()];
        for (k, &t) in injected.iter().enumerate() {
            block_tokens[t] = extra_counts[2 * k];
            tag_tokens[t] = extra_counts[2 * k + 1];
        }
        let mention_tokens = &extra_counts[2 * injected.len()..];

        // Per chunk compiled tokens: source tokens − replaced mentions + tags + blocks.
        let mut out_tokens: Vec<i64> = chunks.iter().map(|c| i64::from(c.tokens)).collect();
        let mut c = 0;
        for row in map {
            while c + 1 < rewritten.chunk_spans.len() && rewritten.chunk_spans[c].1 <= row.0 {
                c += 1;
            }
            match row.4 {
                crate::artifact::SpanKind::Definition => {
                    out_tokens[c] += i64::from(block_tokens[row.5 as usize])
                }
                crate::artifact::SpanKind::Annotation => {
                    out_tokens[c] += i64::from(tag_tokens[row.5 as usize])
                }
                crate::artifact::SpanKind::Reference => {
                    out_tokens[c] += i64::from(tag_tokens[row.5 as usize]);
                    out_tokens[c] -= i64::from(mention_tokens[mention_index[&text[row.2..row.3]]]);
                }
                crate::artifact::SpanKind::Copy => {}
            }
        }

        // emit
        progress.enter(Stage::Emit, 1);
        let chunk_table = ChunkTable {
            src_start: chunks.iter().map(|c| c.start as u64).collect(),
            src_end: chunks.iter().map(|c| c.end as u64).collect(),
            out_start: rewritten.chunk_spans.iter().map(|s| s.0 as u64).collect(),
            out_end: rewritten.chunk_spans.iter().map(|s| s.1 as u64).collect(),
            tokens: chunks.iter().map(|c| c.tokens).collect(),
            out_tokens: out_tokens
                .iter()
                .map(|&t| t.clamp(0, i64::from(u32::MAX)) as u32)
                .collect(),
        };
        let source_map = SourceMap {
            out_start: map.iter().map(|r| r.0 as u64).collect(),
            out_end: map.iter().map(|r| r.1 as u64).collect(),
            src_start: map.iter().map(|r| r.2 as u64).collect(),
            src_end: map.iter().map(|r| r.3 as u64).collect(),
            kind: map.iter().map(|r| r.4 as u8).collect(),
            term: map.iter().map(|r| r.5).collect(),
        };
        let occurrence_table = OccurrenceTable {
            start: occurrences.iter().map(|o| o.start as u64).collect(),
            end: occurrences.iter().map(|o| o.end as u64).collect(),
            term: occurrences.iter().map(|o| o.term).collect(),
            chunk: plan.occurrence_chunk.clone(),
        };
        let terms: Vec<TermRecord> = self
            .spec
            .terms
            .iter()
            .enumerate()
            .map(|(t, term)| TermRecord {
                name: term.name.clone(),
                id: plan.ids[t].clone(),
                tag: plan.ids[t].as_deref().map(|id| style.element(prefix, id)),
                first_chunk: plan.first_chunk[t],
                first_offset: plan.first_occurrence[t].map(|k| occurrences[k].start as u64),
                occurrences: plan.occurrence_count[t],
                references: references[t],
                definition_span: rewritten.definition_spans[t].map(|(s, e)| (s as u64, e as u64)),
                definition_tokens: block_tokens[t],
                tag_tokens: tag_tokens[t],
                depends_on: self.deps.deps[t]
                    .iter()
                    .map(|&d| self.spec.terms[d].name.clone())
                    .collect(),
                pulled_in: plan.ids[t].is_some()
                    && plan.first_occurrence[t].is_none_or(|k| {
                        plan.occurrence_chunk[k] != plan.first_chunk[t].unwrap_or(u32::MAX)
                    }),
            })
            .collect();
        let options_record = OptionsRecord {
            budget: self.options.budget,
            placement: self.options.placement.as_str().into(),
            references: self.options.references.as_str().into(),
            case_sensitive: self.spec.options.case_sensitive,
            whole_word: self.spec.options.whole_word,
            id_prefix: self.spec.options.id_prefix.clone(),
            tag_ids: (self.options.tag_ids != TagIds::Alpha)
                .then(|| self.options.tag_ids.as_str().to_string()),
            tag_style: (style != TagStyle::Seed).then(|| style.as_str().to_string()),
        };
        let mut options_text = format!(
            "budget={} placement={} references={} tokenizer={tokenizer}",
            self.options.budget, options_record.placement, options_record.references
        );
        if !hints.is_empty() {
            options_text.push_str(&format!(" hints={}", hints.digest()));
        }
        if self.options.tag_ids != TagIds::Alpha {
            options_text.push_str(&format!(" tag_ids={}", self.options.tag_ids.as_str()));
        }
        if style != TagStyle::Seed {
            options_text.push_str(&format!(" tag_style={}", style.as_str()));
        }
        let options_hash = blake3_hex(options_text.as_bytes());
        let body = Body {
            format: "aotc".into(),
            version: FORMAT_VERSION,
            aotcc_version: crate::VERSION.into(),
            hashes: Hashes {
                source: source_hash,
                spec: self.spec_hash.clone(),
                options: options_hash,
                output: blake3_hex(rewritten.text.as_bytes()),
            },
            tokenizer: tokenizer.into(),
            options: options_record,
            files,
            source_len: text.len() as u64,
            source_tokens: counts.iter().map(|&c| u64::from(c)).sum(),
            out_tokens: chunk_table.out_tokens.iter().map(|&c| u64::from(c)).sum(),
            text: rewritten.text,
            originals: rewritten.originals,
            chunks: Vec::new(),
            source_map: Vec::new(),
            occurrences: Vec::new(),
            terms,
            warnings: self.deps.warnings.clone(),
        };
        let mut artifact = Artifact::new(body, chunk_table, source_map, occurrence_table);
        lap("emit", &mut timings);
        progress.enter(Stage::Done, 1);
        artifact.timings = timings;
        Ok(artifact)
    }
}
