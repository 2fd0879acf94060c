//! Detection: Aho-Corasick automata over every alias of every term, searched anchored
//! at each place a match may start, on the case-folded text (or the text as written,
//! for case-sensitive terms). At each start only the longest match that passes the
//! whole-word and file checks is taken, by asking again for a shorter one when a
//! longer one fails, so a longer match rejected by a boundary never hides a valid
//! shorter one; and a start inside the last occurrence taken is not searched at all.
//! Work and memory stay linear in the text however the aliases nest (collecting every
//! overlapping match first grew without bound: `aa`, `aa aa`, … over `aa aa …`).
//! Aliases hold no line break, so the text is searched in parallel, cut at newlines.

use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};
use rayon::prelude::*;

use crate::error::Error;
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
    whole_word: bool,
}

/// One automaton and the patterns it holds.
#[derive(Debug, Clone)]
struct Group {
    /// Leftmost-longest. Anchored: the longest pattern starting where the search does;
    /// unanchored (the `anywhere` groups): where the next match starts.
    ac: AhoCorasick,
    patterns: Vec<Pattern>,
    /// Byte length of the longest pattern: how far a search from one start may look.
    max_len: usize,
    /// Searched in the text as written (case-sensitive terms), not the folded text.
    exact: bool,
}

/// The detection automata for one spec.
///
/// Most aliases are whole-word and start with a word character, so a match can only
/// begin where a word begins: those are searched from each word start that passes a
/// small prefix filter. The rest (aliases that may start anywhere) are searched from
/// the start of each match an unanchored search finds.
#[derive(Debug, Clone)]
pub struct Detector {
    /// Whole-word aliases starting with a word character: case-folded, then exact.
    at_word: Vec<Group>,
    anywhere: Vec<Group>,
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

    /// `b`: the folded bytes at a start (up to three; fewer at the end of a piece).
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

fn build(patterns: &[String], start: StartKind) -> Result<AhoCorasick, aho_corasick::BuildError> {
    // A DFA is the fastest; its size grows with the patterns, so very large glossaries
    // fall back to the contiguous NFA.
    let total: usize = patterns.iter().map(String::len).sum();
    let kind = if total <= 400_000 {
        AhoCorasickKind::DFA
    } else {
        AhoCorasickKind::ContiguousNFA
    };
    let builder = |kind| {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .start_kind(start)
            .kind(kind)
            .build(patterns)
    };
    builder(Some(kind)).or_else(|_| builder(None))
}

/// A piece of the text being searched, with its case fold.
struct Piece<'a> {
    text: &'a str,
    start: usize,
    end: usize,
    /// `text[start..end]` case-folded (the same byte offsets).
    folded: &'a [u8],
    file_starts: &'a [usize],
}

impl Detector {
    /// Builds the automata over all aliases of all terms of `spec`.
    ///
    /// # Errors
    /// A [`crate::ErrorKind::Spec`] error when the aliases are too many or too long
    /// for an automaton.
    pub fn new(spec: &Spec) -> Result<Detector, Error> {
        // [at word, anywhere] x [folded, exact]: (search strings, patterns).
        let mut lists: [[(Vec<String>, Vec<Pattern>); 2]; 2] = Default::default();
        let mut word_prefixes: Vec<String> = Vec::new();
        for (t, term) in spec.terms.iter().enumerate() {
            for (a, alias) in term.aliases.iter().enumerate() {
                let mut folded = String::with_capacity(alias.len());
                fold_into(alias, &mut folded);
                let at_word = term.whole_word && alias.chars().next().is_some_and(is_word_char);
                if at_word {
                    word_prefixes.push(folded.clone());
                }
                let list = &mut lists[usize::from(!at_word)][usize::from(term.case_sensitive)];
                list.0.push(if term.case_sensitive {
                    alias.clone()
                } else {
                    folded
                });
                list.1.push(Pattern {
                    term: t as u32,
                    alias: a as u32,
                    whole_word: term.whole_word,
                });
            }
        }
        let filter = PrefixFilter::new(word_prefixes.iter().map(String::as_bytes));
        let mut groups: [Vec<Group>; 2] = Default::default();
        for (kind, pair) in lists.into_iter().enumerate() {
            for (exact, (strings, patterns)) in pair.into_iter().enumerate() {
                if strings.is_empty() {
                    continue;
                }
                let start = if kind == 0 {
                    StartKind::Anchored
                } else {
                    StartKind::Both
                };
                let ac = build(&strings, start).map_err(|e| {
                    Error::spec(format!(
                        "the {} aliases do not fit one automaton: {e}",
                        strings.len()
                    ))
                })?;
                groups[kind].push(Group {
                    ac,
                    max_len: strings.iter().map(String::len).max().unwrap_or(0),
                    patterns,
                    exact: exact == 1,
                });
            }
        }
        let [at_word, anywhere] = groups;
        Ok(Detector {
            at_word,
            anywhere,
            filter,
        })
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

    /// Occurrences inside `text[start..end]`, judged against the whole `text`.
    /// `start` and `end` must sit on line boundaries (or the ends of the text).
    pub(crate) fn find_in(
        &self,
        text: &str,
        start: usize,
        end: usize,
        file_starts: &[usize],
    ) -> Vec<Occurrence> {
        if self.at_word.is_empty() && self.anywhere.is_empty() {
            return Vec::new();
        }
        let mut folded = String::with_capacity(end - start);
        fold_into(&text[start..end], &mut folded);
        let piece = Piece {
            text,
            start,
            end,
            folded: folded.as_bytes(),
            file_starts,
        };
        let mut scan = Scan {
            detector: self,
            piece: &piece,
            out: Vec::new(),
            taken_to: start,
            cursor: start,
            next: vec![None; self.anywhere.len()],
        };
        if !self.at_word.is_empty() {
            word_starts(text, start, end, |i| {
                scan.anywhere_before(i);
                scan.word_start(i);
            });
        }
        scan.anywhere_before(end);
        scan.out
    }

    /// Improves `best` with the longest valid whole-word match at word start `i`.
    #[inline]
    fn longest_at_word(&self, p: &Piece<'_>, i: usize, best: &mut Option<Occurrence>) {
        let head = &p.folded[i - p.start..];
        if self.filter.may_match(&head[..head.len().min(3)]) {
            for g in &self.at_word {
                self.longest_in(g, p, i, best);
            }
        }
    }

    /// Improves `best` with the longest valid match of `g` starting at `i`: the
    /// longest match first, then shorter ones while the checks reject them.
    fn longest_in(&self, g: &Group, p: &Piece<'_>, i: usize, best: &mut Option<Occurrence>) {
        let hay = g.haystack(p);
        let rel = i - p.start;
        // A match ending before the best one's end cannot win.
        let min_end = best.map_or(rel + 1, |b: Occurrence| b.end - p.start);
        let mut limit = (rel + g.max_len).min(hay.len());
        while limit >= min_end {
            let input = Input::new(hay).span(rel..limit).anchored(Anchored::Yes);
            let Some(m) = g.ac.find(input) else {
                return;
            };
            if m.end() < min_end {
                return;
            }
            let pattern = &g.patterns[m.pattern().as_usize()];
            let (s, e) = (p.start + m.start(), p.start + m.end());
            if (!pattern.whole_word || whole_word(p.text, s, e)) && !crosses(p.file_starts, s, e) {
                let found = Occurrence {
                    start: s,
                    end: e,
                    term: pattern.term,
                    alias: pattern.alias,
                };
                let better = best.is_none_or(|b| {
                    (e, std::cmp::Reverse((found.term, found.alias)))
                        > (b.end, std::cmp::Reverse((b.term, b.alias)))
                });
                if better {
                    *best = Some(found);
                }
                return;
            }
            limit = m.end() - 1;
        }
    }
}

/// One piece's search in progress: leftmost-longest, online, so a start before the end
/// of the last occurrence taken is never searched.
struct Scan<'a> {
    detector: &'a Detector,
    piece: &'a Piece<'a>,
    out: Vec<Occurrence>,
    /// The end of the last occurrence taken.
    taken_to: usize,
    /// `anywhere` matches starting before this have been looked at.
    cursor: usize,
    /// Per `anywhere` group: where its next match starts, from an unanchored search
    /// (`usize::MAX`: none), or `None` before the first search.
    next: Vec<Option<usize>>,
}

impl Scan<'_> {
    /// Where the next match of `anywhere` group `g` at or after `i` starts.
    fn next_at(&mut self, g: usize, i: usize) -> usize {
        if self.next[g].is_none_or(|n| n < i) {
            self.next[g] = Some(self.detector.anywhere[g].next_start(self.piece, i));
        }
        self.next[g].unwrap_or(usize::MAX)
    }

    /// Adds to `best` the `anywhere` groups' longest valid match at `i`.
    fn anywhere_at(&mut self, i: usize, best: &mut Option<Occurrence>) {
        for g in 0..self.next.len() {
            if self.next_at(g, i) == i {
                let group = &self.detector.anywhere[g];
                self.detector.longest_in(group, self.piece, i, best);
            }
        }
    }

    fn take(&mut self, best: Option<Occurrence>) {
        if let Some(o) = best {
            self.taken_to = o.end;
            self.out.push(o);
        }
    }

    /// Looks at word start `i`, for both kinds of aliases.
    fn word_start(&mut self, i: usize) {
        if i < self.taken_to {
            return;
        }
        let mut best = None;
        self.detector.longest_at_word(self.piece, i, &mut best);
        self.anywhere_at(i, &mut best);
        self.take(best);
        self.cursor = i + 1;
    }

    /// Looks at every start of an `anywhere` match before `upto` not looked at yet (no
    /// word start among them: those are visited by [`Scan::word_start`]).
    fn anywhere_before(&mut self, upto: usize) {
        while !self.next.is_empty() {
            let from = self.cursor.max(self.taken_to);
            if from >= upto {
                return;
            }
            let at = (0..self.next.len())
                .map(|g| self.next_at(g, from))
                .min()
                .unwrap_or(usize::MAX);
            if at >= upto {
                return;
            }
            let mut best = None;
            self.anywhere_at(at, &mut best);
            self.take(best);
            // Matches start on character boundaries, so a byte further is enough.
            self.cursor = at + 1;
        }
    }
}

impl Group {
    /// The haystack this group searches: the piece as written, or folded.
    #[inline]
    fn haystack<'a>(&self, p: &Piece<'a>) -> &'a [u8] {
        if self.exact {
            &p.text.as_bytes()[p.start..p.end]
        } else {
            p.folded
        }
    }

    /// Where the first match at or after `i` starts (`usize::MAX` when none does).
    fn next_start(&self, p: &Piece<'_>, i: usize) -> usize {
        let hay = self.haystack(p);
        let input = Input::new(hay).span(i - p.start..hay.len());
        self.ac
            .find(input)
            .map_or(usize::MAX, |m| p.start + m.start())
    }
}

/// Calls `visit` at each word start in `text[start..end]`, in order: 64 bytes at a
/// time as bitmasks where the bytes are ASCII, one character at a time elsewhere.
fn word_starts(text: &str, start: usize, end: usize, mut visit: impl FnMut(usize)) {
    let bytes = text.as_bytes();
    let mut prev_word = char_before(text, start).is_some_and(is_word_char);
    let mut i = start;
    while i < end {
        if i + 64 <= end {
            let (word, high) = ascii_masks(bytes[i..i + 64].try_into().expect("64 bytes"));
            if high == 0 {
                let mut starts = word & !((word << 1) | u64::from(prev_word));
                while starts != 0 {
                    visit(i + starts.trailing_zeros() as usize);
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
                visit(i);
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
            .unwrap()
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
        let d = Detector::new(&spec).unwrap();
        let line = "x alpha beta y beta-z alphabeta\n";
        let text = line.repeat(40_000);
        let whole = d.find_in(&text, 0, text.len(), &[0]);
        assert_eq!(d.find(&text, &[0]), whole);
        assert_eq!(whole.len(), 80_000);
    }
}
