//! Detection: one Aho-Corasick automaton over every alias of every term, run on the
//! case-folded text. All matches are collected (overlapping), checked for case and
//! whole-word boundaries, and the valid ones chosen leftmost-longest, so a longer match
//! rejected by a boundary never hides a valid shorter one at the same place.
//! Aliases hold no line break, so the text is searched in parallel, cut at newlines.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use rayon::prelude::*;

use crate::spec::Spec;
use crate::text::{char_at, char_before, fold_into, is_word_char};

/// A whole-word match of a term alias: `[start, end)` in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Occurrence {
    /// Byte offset of the match.
    pub start: usize,
    /// Byte offset one past the match.
    pub end: usize,
    /// Index of the term in the spec.
    pub term: u32,
    /// Index of the alias within the term.
    pub alias: u32,
}

#[derive(Debug, Clone)]
struct Pattern {
    term: u32,
    alias: u32,
    /// The alias as written (compared byte for byte when the term is case-sensitive).
    exact: Box<str>,
    case_sensitive: bool,
    whole_word: bool,
}

/// The detection automaton for one spec.
#[derive(Debug, Clone)]
pub struct Detector {
    automaton: AhoCorasick,
    patterns: Vec<Pattern>,
}

/// Pieces smaller than this are not worth a thread.
const MIN_PIECE: usize = 256 * 1024;

impl Detector {
    /// Builds the automaton over all aliases of all terms of `spec`.
    pub fn new(spec: &Spec) -> Detector {
        let mut patterns = Vec::new();
        let mut folded = Vec::new();
        for (t, term) in spec.terms.iter().enumerate() {
            for (a, alias) in term.aliases.iter().enumerate() {
                let mut f = String::with_capacity(alias.len());
                fold_into(alias, &mut f);
                folded.push(f);
                patterns.push(Pattern {
                    term: t as u32,
                    alias: a as u32,
                    exact: alias.as_str().into(),
                    case_sensitive: term.case_sensitive,
                    whole_word: term.whole_word,
                });
            }
        }
        // A DFA is the fastest search; its size grows with the patterns, so very large
        // glossaries fall back to the contiguous NFA.
        let total: usize = folded.iter().map(String::len).sum();
        let kind = if total <= 200_000 { AhoCorasickKind::DFA } else { AhoCorasickKind::ContiguousNFA };
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(Some(kind))
            .build(&folded)
            .or_else(|_| AhoCorasick::builder().match_kind(MatchKind::Standard).build(&folded))
            .expect("aliases are non-empty, bounded strings");
        Detector { automaton, patterns }
    }

    /// All occurrences in `text`, in order. `file_starts` are offsets no match may cross.
    pub fn find(&self, text: &str, file_starts: &[usize]) -> Vec<Occurrence> {
        let pieces = split_at_newlines(text, rayon::current_num_threads() * 4);
        if pieces.len() <= 1 {
            return self.find_in(text, 0, text.len(), file_starts);
        }
        let found: Vec<Vec<Occurrence>> =
            pieces.par_iter().map(|&(s, e)| self.find_in(text, s, e, file_starts)).collect();
        let mut all = Vec::with_capacity(found.iter().map(Vec::len).sum());
        for f in found {
            all.extend(f);
        }
        all
    }

    /// Occurrences inside `text[start..end]`, judged against the whole `text`.
    /// `start` and `end` must sit on line boundaries (or the ends of the text).
    pub(crate) fn find_in(&self, text: &str, start: usize, end: usize, file_starts: &[usize]) -> Vec<Occurrence> {
        let mut folded = String::with_capacity(end - start);
        fold_into(&text[start..end], &mut folded);
        let mut candidates: Vec<Occurrence> = Vec::new();
        for m in self.automaton.find_overlapping_iter(folded.as_bytes()) {
            let p = &self.patterns[m.pattern().as_usize()];
            let (s, e) = (start + m.start(), start + m.end());
            if p.case_sensitive && &text.as_bytes()[s..e] != p.exact.as_bytes() {
                continue;
            }
            if p.whole_word && !whole_word(text, s, e) {
                continue;
            }
            if crosses(file_starts, s, e) {
                continue;
            }
            candidates.push(Occurrence { start: s, end: e, term: p.term, alias: p.alias });
        }
        leftmost_longest(candidates)
    }
}

/// Keeps the leftmost, then longest, non-overlapping occurrences.
fn leftmost_longest(mut candidates: Vec<Occurrence>) -> Vec<Occurrence> {
    candidates.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)).then(a.term.cmp(&b.term)));
    let mut out = Vec::with_capacity(candidates.len());
    let mut last_end = 0;
    for c in candidates {
        if c.start >= last_end {
            last_end = c.end;
            out.push(c);
        }
    }
    out
}

/// True when `[s, e)` is not part of a larger word.
#[inline]
fn whole_word(text: &str, s: usize, e: usize) -> bool {
    let left_ok = match char_before(text, s) {
        None => true,
        Some(prev) => !is_word_char(prev) || !is_word_char(char_at(text, s).expect("non-empty match")),
    };
    left_ok
        && match char_at(text, e) {
            None => true,
            Some(next) => !is_word_char(next) || !is_word_char(char_before(text, e).expect("non-empty match")),
        }
}

fn crosses(file_starts: &[usize], s: usize, e: usize) -> bool {
    file_starts.len() > 1 && {
        let i = file_starts.partition_point(|&f| f <= s);
        file_starts.get(i).is_some_and(|&f| f < e)
    }
}

/// Cuts `text` into about `n` pieces, each ending just after a newline.
pub(crate) fn split_at_newlines(text: &str, n: usize) -> Vec<(usize, usize)> {
    let len = text.len();
    let target = (len / n.max(1)).max(MIN_PIECE);
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < len {
        let want = start + target;
        if want >= len {
            pieces.push((start, len));
            break;
        }
        let cut = memchr::memchr(b'\n', &text.as_bytes()[want..]).map_or(len, |i| want + i + 1);
        pieces.push((start, cut));
        start = cut;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(spec: &str, text: &str) -> Vec<(String, u32)> {
        let spec = Spec::from_json(spec).unwrap();
        Detector::new(&spec).find(text, &[0]).iter().map(|o| (text[o.start..o.end].to_string(), o.term)).collect()
    }

    #[test]
    fn longest_wins_and_rejected_long_match_reveals_shorter() {
        let spec = r#"[{"name": "Refund", "definition": "a"}, {"name": "Refund Window", "definition": "b"}]"#;
        assert_eq!(detect(spec, "the refund window opens"), vec![("refund window".into(), 1)]);
        // "Refund Windows" rejects the long alias at its right boundary; "Refund" stays valid.
        assert_eq!(detect(spec, "Refund Windows"), vec![("Refund".into(), 0)]);
    }

    #[test]
    fn boundaries_and_case() {
        let spec = r#"[{"name": "RP", "definition": "a", "case_sensitive": true}, {"name": "C++", "definition": "b"}]"#;
        assert_eq!(detect(spec, "RP rp RPX xRP (RP)"), vec![("RP".into(), 0), ("RP".into(), 0)]);
        // "C++" ends in a non-word character, so "C++x" still holds a whole-word match.
        assert_eq!(detect(spec, "c++, C++x xC++"), vec![("c++".into(), 1), ("C++".into(), 1)]);
        let spec = r#"[{"name": "cafe", "definition": "a"}, {"name": "退款", "definition": "b"}]"#;
        assert_eq!(detect(spec, "cafe\u{301} café CAFE 我的退款"), vec![("CAFE".into(), 0), ("退款".into(), 1)]);
    }

    #[test]
    fn parallel_pieces_agree() {
        let spec = Spec::from_json(r#"[{"name": "alpha beta", "definition": "a"}, {"name": "beta", "definition": "b"}]"#).unwrap();
        let d = Detector::new(&spec);
        let line = "x alpha beta y beta-z alphabeta\n";
        let text = line.repeat(40_000);
        let whole = d.find_in(&text, 0, text.len(), &[0]);
        assert_eq!(d.find(&text, &[0]), whole);
        assert_eq!(whole.len(), 80_000);
    }
}
