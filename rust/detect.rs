//! Detection: one Aho-Corasick automaton over every alias of every term, run on the
//! case-folded text. All matches are collected (overlapping), checked for case and
//! whole-word boundaries, and the valid ones chosen leftmost-longest, so a longer match
//! rejected by a boundary never hides a valid shorter one at the same place.
//! Aliases hold no line break, so the text is searched in parallel, cut at newlines.

use aho_corasick::automaton::OverlappingState;
use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};
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
///
/// Most aliases are whole-word and start with a word character, so a match can only
/// begin where a word begins. Those go into an anchored automaton run from each word
/// start that passes a small prefix filter; the rest (aliases that may start anywhere)
/// go into an ordinary unanchored automaton. Both report every match (overlapping),
/// so a longer match rejected by a check never hides a shorter valid one.
#[derive(Debug, Clone)]
pub struct Detector {
    anchored: Option<(AhoCorasick, Vec<Pattern>)>,
    /// Byte length of the longest anchored alias: the window searched at a word start.
    max_anchored: usize,
    anywhere: Option<(AhoCorasick, Vec<Pattern>)>,
    filter: PrefixFilter,
}

/// Bitsets over the first one, two and three bytes of the anchored aliases: a word
/// start whose bytes hit none of them cannot begin a match.
#[derive(Debug, Clone)]
struct PrefixFilter {
    one: Vec<u64>,   // 256 bits
    two: Vec<u64>,   // 65,536 bits
    three: Vec<u64>, // 65,536 bits, hashed
}

#[inline]
fn hash3(a: u8, b: u8, c: u8) -> usize {
    ((u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c)).wrapping_mul(0x9E37_79B1) >> 16)
        as usize
}

#[inline]
fn bit(set: &[u64], i: usize) -> bool {
    set[i >> 6] >> (i & 63) & 1 == 1
}

#[inline]
fn set_bit(set: &mut [u64], i: usize) {
    set[i >> 6] |= 1 << (i & 63);
}

impl PrefixFilter {
    fn new<'a>(patterns: impl Iterator<Item = &'a [u8]>) -> PrefixFilter {
        let mut f = PrefixFilter {
            one: vec![0; 4],
            two: vec![0; 1024],
            three: vec![0; 1024],
        };
        for p in patterns {
            match p.len() {
                0 => {}
                1 => set_bit(&mut f.one, p[0] as usize),
                2 => set_bit(&mut f.two, (p[0] as usize) << 8 | p[1] as usize),
                _ => set_bit(&mut f.three, hash3(p[0], p[1], p[2])),
            }
        }
        f
    }

    #[inline]
    fn may_match(&self, b: &[u8]) -> bool {
        bit(&self.one, b[0] as usize)
            || (b.len() >= 2 && bit(&self.two, (b[0] as usize) << 8 | b[1] as usize))
            || (b.len() >= 3 && bit(&self.three, hash3(b[0], b[1], b[2])))
    }
}

/// Pieces smaller than this are not worth a thread.
const MIN_PIECE: usize = 256 * 1024;

/// Byte classes for the word-start scan: ASCII non-word, ASCII word, UTF-8 lead, continuation.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphanumeric() || b == b'_' {
            1
        } else if b < 0x80 {
            0
        } else if b >= 0xC0 {
            2
        } else {
            3
        };
        i += 1;
    }
    t
};

/// Bit k of `word` is set when byte k is an ASCII word byte; of `high` when it is not ASCII.
#[inline]
fn ascii_masks(block: &[u8; 64]) -> (u64, u64) {
    let (mut word, mut high) = (0u64, 0u64);
    for (k, &b) in block.iter().enumerate() {
        let lower = b | 0x20;
        let is_word = lower.wrapping_sub(b'a') < 26 || b.wrapping_sub(b'0') < 10 || b == b'_';
        word |= u64::from(is_word) << k;
        high |= u64::from(b >> 7) << k;
    }
    (word, high)
}

fn build(folded: &[String], anchored: bool) -> AhoCorasick {
    // A DFA is the fastest; its size grows with the patterns, so very large glossaries
    // fall back to the contiguous NFA.
    let total: usize = folded.iter().map(String::len).sum();
    let kind = if total <= 400_000 {
        AhoCorasickKind::DFA
    } else {
        AhoCorasickKind::ContiguousNFA
    };
    let start = if anchored {
        StartKind::Anchored
    } else {
        StartKind::Unanchored
    };
    AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .start_kind(start)
        .kind(Some(kind))
        .build(folded)
        .or_else(|_| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .start_kind(start)
                .build(folded)
        })
        .expect("aliases are non-empty, bounded strings")
}

impl Detector {
    /// Builds the automata over all aliases of all terms of `spec`.
    pub fn new(spec: &Spec) -> Detector {
        let mut at_word: Vec<(String, Pattern)> = Vec::new();
        let mut anywhere: Vec<(String, Pattern)> = Vec::new();
        for (t, term) in spec.terms.iter().enumerate() {
            for (a, alias) in term.aliases.iter().enumerate() {
                let mut f = String::with_capacity(alias.len());
                fold_into(alias, &mut f);
                let starts_word = alias.chars().next().is_some_and(is_word_char);
                let pattern = Pattern {
                    term: t as u32,
                    alias: a as u32,
                    exact: alias.as_str().into(),
                    case_sensitive: term.case_sensitive,
                    whole_word: term.whole_word,
                };
                if term.whole_word && starts_word {
                    at_word.push((f, pattern));
                } else {
                    anywhere.push((f, pattern));
                }
            }
        }
        let filter = PrefixFilter::new(at_word.iter().map(|(f, _)| f.as_bytes()));
        let max_anchored = at_word.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
        let make = |list: Vec<(String, Pattern)>, anchored: bool| {
            (!list.is_empty()).then(|| {
                let (folded, patterns): (Vec<String>, Vec<Pattern>) = list.into_iter().unzip();
                (build(&folded, anchored), patterns)
            })
        };
        Detector {
            anchored: make(at_word, true),
            anywhere: make(anywhere, false),
            filter,
            max_anchored,
        }
    }

    /// All occurrences in `text`, in order. `file_starts` are offsets no match may cross.
    pub fn find(&self, text: &str, file_starts: &[usize]) -> Vec<Occurrence> {
        let pieces = split_at_newlines(text, rayon::current_num_threads() * 4);
        if pieces.len() <= 1 {
            return self.find_in(text, 0, text.len(), file_starts);
        }
        let found: Vec<Vec<Occurrence>> = pieces
            .par_iter()
            .map(|&(s, e)| self.find_in(text, s, e, file_starts))
            .collect();
        let mut all = Vec::with_capacity(found.iter().map(Vec::len).sum());
        for f in found {
            all.extend(f);
        }
        all
    }

    /// Checks one raw match and keeps it when valid.
    #[inline]
    fn accept(
        &self,
        text: &str,
        p: &Pattern,
        s: usize,
        e: usize,
        file_starts: &[usize],
        out: &mut Vec<Occurrence>,
    ) {
        if p.case_sensitive && &text.as_bytes()[s..e] != p.exact.as_bytes() {
            return;
        }
        if p.whole_word && !whole_word(text, s, e) {
            return;
        }
        if crosses(file_starts, s, e) {
            return;
        }
        out.push(Occurrence {
            start: s,
            end: e,
            term: p.term,
            alias: p.alias,
        });
    }

    /// Occurrences inside `text[start..end]`, judged against the whole `text`.
    /// `start` and `end` must sit on line boundaries (or the ends of the text).
    pub(crate) fn find_in(
        &self,
        text: &str,
        start: usize,
        end: usize,
        file_starts: &[usize],
    ) -> Vec<Occurrence> {
        let mut candidates: Vec<Occurrence> = Vec::new();
        if let Some((ac, patterns)) = &self.anywhere {
            let mut folded = String::with_capacity(end - start);
            fold_into(&text[start..end], &mut folded);
            for m in ac.find_overlapping_iter(folded.as_bytes()) {
                self.accept(
                    text,
                    &patterns[m.pattern().as_usize()],
                    start + m.start(),
                    start + m.end(),
                    file_starts,
                    &mut candidates,
                );
            }
        }
        if let Some((ac, patterns)) = &self.anchored {
            // Scan the source itself, 64 bytes at a time as bitmasks where the bytes are
            // ASCII; only at a word start that passes the prefix filter is a window of at
            // most the longest alias folded and searched.
            let bytes = text.as_bytes();
            let mut window = String::with_capacity(self.max_anchored + 4);
            let mut at_word_start = |i: usize, candidates: &mut Vec<Occurrence>| {
                let head = &bytes[i..(i + 3).min(end)];
                if head.is_ascii() {
                    let mut low = [0u8; 3];
                    for (k, b) in head.iter().enumerate() {
                        low[k] = b.to_ascii_lowercase();
                    }
                    if !self.filter.may_match(&low[..head.len()]) {
                        return;
                    }
                }
                let mut we = (i + self.max_anchored).min(end);
                while !text.is_char_boundary(we) {
                    we += 1;
                }
                window.clear();
                fold_into(&text[i..we], &mut window);
                let input = Input::new(window.as_bytes()).anchored(Anchored::Yes);
                let mut state = OverlappingState::start();
                loop {
                    ac.find_overlapping(input.clone(), &mut state);
                    match state.get_match() {
                        Some(m) => self.accept(
                            text,
                            &patterns[m.pattern().as_usize()],
                            i + m.start(),
                            i + m.end(),
                            file_starts,
                            candidates,
                        ),
                        None => break,
                    }
                }
            };
            let mut prev_word = char_before(text, start).is_some_and(is_word_char);
            let mut i = start;
            while i < end {
                if i + 64 <= end {
                    let (word, high) = ascii_masks(bytes[i..i + 64].try_into().expect("64 bytes"));
                    if high == 0 {
                        let mut starts = word & !((word << 1) | u64::from(prev_word));
                        while starts != 0 {
                            at_word_start(i + starts.trailing_zeros() as usize, &mut candidates);
                            starts &= starts - 1;
                        }
                        prev_word = word >> 63 == 1;
                        i += 64;
                        continue;
                    }
                }
                // Scalar path (non-ASCII nearby, or the tail): one block's worth.
                let stop = (i + 64).min(end);
                while i < stop {
                    let word = match CLASS[bytes[i] as usize] {
                        0 => false,
                        1 => true,
                        3 => {
                            i += 1;
                            continue;
                        }
                        _ => is_word_char(char_at(text, i).expect("char boundary")),
                    };
                    if word && !prev_word {
                        at_word_start(i, &mut candidates);
                    }
                    prev_word = word;
                    i += 1;
                }
                // Finish a character cut by the block end before going back to blocks.
                while i < end && CLASS[bytes[i] as usize] == 3 {
                    i += 1;
                }
            }
        }
        leftmost_longest(candidates)
    }
}

/// Keeps the leftmost, then longest, non-overlapping occurrences.
fn leftmost_longest(mut candidates: Vec<Occurrence>) -> Vec<Occurrence> {
    candidates.sort_unstable_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a.term.cmp(&b.term))
    });
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
        Some(prev) => {
            !is_word_char(prev) || !is_word_char(char_at(text, s).expect("non-empty match"))
        }
    };
    left_ok
        && match char_at(text, e) {
            None => true,
            Some(next) => {
                !is_word_char(next) || !is_word_char(char_before(text, e).expect("non-empty match"))
            }
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
        Detector::new(&spec)
            .find(text, &[0])
            .iter()
            .map(|o| (text[o.start..o.end].to_string(), o.term))
            .collect()
    }

    #[test]
    fn longest_wins_and_rejected_long_match_reveals_shorter() {
        let spec = r#"[{"name": "Refund", "definition": "a"}, {"name": "Refund Window", "definition": "b"}]"#;
        assert_eq!(
            detect(spec, "the refund window opens"),
            vec![("refund window".into(), 1)]
        );
        // "Refund Windows" rejects the long alias at its right boundary; "Refund" stays valid.
        assert_eq!(detect(spec, "Refund Windows"), vec![("Refund".into(), 0)]);
    }

    #[test]
    fn boundaries_and_case() {
        let spec = r#"[{"name": "RP", "definition": "a", "case_sensitive": true}, {"name": "C++", "definition": "b"}]"#;
        assert_eq!(
            detect(spec, "RP rp RPX xRP (RP)"),
            vec![("RP".into(), 0), ("RP".into(), 0)]
        );
        // "C++" ends in a non-word character, so "C++x" still holds a whole-word match.
        assert_eq!(
            detect(spec, "c++, C++x xC++"),
            vec![("c++".into(), 1), ("C++".into(), 1)]
        );
        let spec = r#"[{"name": "cafe", "definition": "a"}, {"name": "退款", "definition": "b"}]"#;
        assert_eq!(
            detect(spec, "cafe\u{301} café CAFE 我的退款"),
            vec![("CAFE".into(), 0), ("退款".into(), 1)]
        );
    }

    #[test]
    fn parallel_pieces_agree() {
        let spec = Spec::from_json(
            r#"[{"name": "alpha beta", "definition": "a"}, {"name": "beta", "definition": "b"}]"#,
        )
        .unwrap();
        let d = Detector::new(&spec);
        let line = "x alpha beta y beta-z alphabeta\n";
        let text = line.repeat(40_000);
        let whole = d.find_in(&text, 0, text.len(), &[0]);
        assert_eq!(d.find(&text, &[0]), whole);
        assert_eq!(whole.len(), 80_000);
    }
}
