//! Rewriting: the compiled text, chunk by chunk — the definition blocks of the terms
//! that first appear in the chunk, then the chunk's source with later mentions turned
//! into reference tags — and the source map that undoes it.

use crate::artifact::SpanKind;
use crate::chunk::Chunk;
use crate::compile::{CompileOptions, Placement, References};
use crate::detect::Occurrence;
use crate::plan::Plan;
use crate::spec::Spec;
use crate::tags::definition_block;

/// The rewritten text and how to map it back.
#[derive(Debug, Default)]
pub(crate) struct Rewritten {
    pub text: String,
    /// Per chunk: `[start, end)` in the compiled text.
    pub chunk_spans: Vec<(usize, usize)>,
    /// Source map rows: out span, source span, kind, term (-1 for none).
    pub map: Vec<(usize, usize, usize, usize, SpanKind, i32)>,
    /// The source text of each reference, in order (what decompile puts back).
    pub originals: String,
    /// Per injected term: its definition block's span in the compiled text.
    pub definition_spans: Vec<Option<(usize, usize)>>,
}

struct Writer {
    out: Rewritten,
}

impl Writer {
    fn copy(&mut self, source: &str, s: usize, e: usize) {
        if s == e {
            return;
        }
        let o = self.out.text.len();
        self.out.text.push_str(&source[s..e]);
        // Merge with a directly preceding copy row.
        if let Some(last) = self.out.map.last_mut() {
            if last.4 == SpanKind::Copy && last.1 == o && last.3 == s {
                last.1 = o + (e - s);
                last.3 = e;
                return;
            }
        }
        self.out
            .map
            .push((o, o + (e - s), s, e, SpanKind::Copy, -1));
    }

    fn insert(&mut self, text: &str, at_source: usize, kind: SpanKind, term: usize) {
        let o = self.out.text.len();
        self.out.text.push_str(text);
        self.out
            .map
            .push((o, o + text.len(), at_source, at_source, kind, term as i32));
    }
}

pub(crate) fn rewrite(
    source: &str,
    spec: &Spec,
    chunks: &[Chunk],
    occurrences: &[Occurrence],
    plan: &Plan,
    options: &CompileOptions,
) -> Rewritten {
    let (placement, references, style) = (options.placement, options.references, options.tag_style);
    let n = spec.terms.len();
    let prefix = &spec.options.id_prefix;
    let blocks: Vec<Option<String>> = (0..n)
        .map(|t| {
            plan.ids[t]
                .as_deref()
                .map(|id| definition_block(spec, style, t, id))
        })
        .collect();
    let tags: Vec<Option<String>> = plan
        .ids
        .iter()
        .map(|id| {
            id.as_deref()
                .map(|id| style.reference(&style.element(prefix, id)))
        })
        .collect();
    let extra: usize = blocks.iter().flatten().map(String::len).sum();
    let mut w = Writer {
        out: Rewritten {
            text: String::with_capacity(source.len() + extra + source.len() / 16),
            map: Vec::with_capacity(occurrences.len() * 2 + chunks.len() + 1),
            definition_spans: vec![None; n],
            ..Rewritten::default()
        },
    };
    // Injection order grouped by chunk (placement top: everything before chunk 0).
    let mut by_chunk: Vec<Vec<usize>> = vec![Vec::new(); chunks.len().max(1)];
    for &t in &plan.order {
        let c = match placement {
            Placement::Chunk => plan.first_chunk[t].expect("injected terms have a chunk") as usize,
            Placement::Top => 0,
        };
        by_chunk[c].push(t);
    }
    let mut occ = 0;
    for (c, chunk) in chunks.iter().enumerate() {
        let chunk_out_start = w.out.text.len();
        for &t in &by_chunk[c] {
            let block = blocks[t].as_deref().expect("injected");
            let o = w.out.text.len();
            w.insert(block, chunk.start, SpanKind::Definition, t);
            w.out.definition_spans[t] = Some((o, o + block.len()));
        }
        let mut pos = chunk.start;
        while occ < occurrences.len() && occurrences[occ].start < chunk.end {
            let o = occurrences[occ];
            let t = o.term as usize;
            let is_first = plan.first_occurrence[t] == Some(occ);
            occ += 1;
            if is_first || references == References::Keep {
                continue; // copied with the surrounding text
            }
            w.copy(source, pos, o.start);
            let tag = tags[t].as_deref().expect("occurring terms are injected");
            match references {
                References::Tag => {
                    let at = w.out.text.len();
                    w.out.text.push_str(tag);
                    w.out.map.push((
                        at,
                        at + tag.len(),
                        o.start,
                        o.end,
                        SpanKind::Reference,
                        t as i32,
                    ));
                    w.out.originals.push_str(&source[o.start..o.end]);
                }
                References::Annotate => {
                    w.copy(source, o.start, o.end);
                    w.insert(tag, o.end, SpanKind::Annotation, t);
                }
                References::Keep => unreachable!("handled above"),
            }
            pos = o.end;
        }
        w.copy(source, pos, chunk.end);
        w.out.chunk_spans.push((chunk_out_start, w.out.text.len()));
    }
    w.out
}
