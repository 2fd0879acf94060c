//! Detection: every alias of every term found whole-word and leftmost-longest.
//!
//! Most aliases are whole-word and start with a word character, so a match can only
//! begin where a word run of the text begins, and the run must be exactly the alias's
//! leading word run (the alias either goes on with a character that is not a word
//! character, or ends where the text's right boundary has to be). So the text is
//! scanned once for word runs, 64 bytes at a time as bitmasks, and each run is looked
//! up by a hash of its case-folded bytes (ASCII runs fold on the fly, so the text is
//! never copied); the few aliases that share the run are checked against the text as
//! written, longest first, with the boundary and file checks. A longer alias rejected
//! by a check never hides a shorter valid one, and a start inside the last occurrence
//! taken is not looked at.
//!
//! A run that many aliases share (`refund` in `refund policy`, `refund window`, …) is
//! split: the aliases that go on past it are looked up again by their first two runs
//! and what separates them, in a second table. A key still shared by many aliases
//! (`aa`, `aa aa`, …) goes to anchored Aho-Corasick automata over a folded window,
//! asked again for a shorter match while a longer one fails, so the work stays
//! linear however the aliases nest. Aliases that may start anywhere (not
//! whole-word, or starting with punctuation or an unspaced script) are found by
//! unanchored automata over the case-folded text, folded lazily, only when needed.
//! Aliases hold no line break, so the text is searched in parallel, cut at newlines.

use std::cell::OnceCell;
use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};
use rayon::prelude::*;

use crate::error::Error;
use crate::spec::Spec;
use crate::text::{char_at, char_before, fold_char, fold_into, fold_may_change_word, is_word_char};

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

/// The detection index for one spec.
#[derive(Debug, Clone)]
pub struct Detector {
    /// Whole-word aliases starting with a word character, by their leading word run.
    words: WordIndex,
    /// The aliases of split runs (shared by many aliases) that go on past the run, by
    /// their first two word runs and what separates them.
    pairs: WordIndex,
    /// Byte lengths of the longest separator and the longest pair key of `pairs`.
    max_sep: usize,
    max_pair: usize,
    /// Anchored automata over the aliases of crowded runs: case-folded, then exact.
    crowded: Vec<Group>,
    /// Unanchored automata over the aliases that may start anywhere.
    anywhere: Vec<Group>,
}

/// A run shared by more aliases than this is searched with the crowded automata.
const CROWDED: usize = 8;
/// Bits of the run filter (a bitset indexed by the top bits of a run's hash).
const FILTER_BITS: u32 = 16;
/// `Slot::len` of a crowded run.
const CROWDED_SLOT: u32 = u32::MAX;

/// Whole-word aliases that start with a word character, by the hash of their leading
/// word run (case-folded). An open-addressing table, with a bitset in front that turns
/// away most runs of the text after one probe.
#[derive(Debug, Clone)]
struct WordIndex {
    filter: Vec<u64>,
    slots: Vec<Slot>,
    candidates: Vec<Candidate>,
    /// The candidates' bytes: case-folded, or as written for case-sensitive terms.
    bytes: Vec<u8>,
    /// Byte length of the longest leading run (0: no such alias).
    max_run: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    hash: u64,
    first: u32,
    /// Candidates in `candidates[first..first + len]`; 0: empty; `CROWDED_SLOT`: crowded.
    len: u32,
    /// The run's longer aliases are in `Detector::pairs` (only the aliases that end
    /// within the run and its separator are listed here, maybe none).
    split: bool,
}

/// One alias for [`WordIndex::build`]: the hash of its leading run (folded), the run's
/// length, the candidate, its bytes, and the hash of its first two runs and what
/// separates them (folded) when it goes on past its leading run.
struct Keyed {
    hash: u64,
    run: usize,
    candidate: Candidate,
    bytes: Vec<u8>,
    pair: Option<u64>,
}

/// What a table slot holds before the table is laid out.
enum Entry {
    List(Vec<(Candidate, Vec<u8>)>, bool),
    Crowded,
}

/// An alias to check at a word start whose run hashes to its slot.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    at: u32,
    len: u32,
    term: u32,
    alias: u32,
    /// Compared with the text as written (a case-sensitive term), else folded.
    exact: bool,
    ascii: bool,
    /// Its last character is a word character: the text must not go on with one.
    ends_word: bool,
}

const OR20: u64 = 0x2020_2020_2020_2020;

/// Eight bytes at `at`, little-endian, zero past the end of `b`.
#[inline]
fn load8(b: &[u8], at: usize) -> u64 {
    match b.get(at..at + 8) {
        Some(s) => u64::from_le_bytes(s.try_into().expect("8 bytes")),
        None => {
            let mut t = [0u8; 8];
            let n = b.len().saturating_sub(at);
            t[..n].copy_from_slice(&b[at..at + n]);
            u64::from_le_bytes(t)
        }
    }
}

/// The hash of the word run `b[i..j]`, already case-folded or ASCII. Each byte is
/// or-ed with 0x20 first: on ASCII word bytes that is the fold itself, so an ASCII run
/// of the text hashes like its fold without being copied.
#[inline(always)]
fn run_hash(b: &[u8], i: usize, j: usize) -> u64 {
    let len = j - i;
    let (a, c) = if len <= 8 {
        let mask = if len == 8 {
            !0
        } else {
            (1u64 << (8 * len)) - 1
        };
        ((load8(b, i) | OR20) & mask, 0)
    } else {
        let mut c = load8(b, j - 8) | OR20;
        if len > 16 {
            c ^= (load8(b, i + 8) | OR20).rotate_left(23);
        }
        (load8(b, i) | OR20, c)
    };
    let x = u128::from(a ^ 0x243F_6A88_85A3_08D3)
        * u128::from(c ^ (len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x1319_8A2E_0370_7344);
    (x as u64) ^ ((x >> 64) as u64)
}

impl WordIndex {
    /// The table of leading runs and the table of pairs of runs; and the aliases left
    /// to the crowded automata (more than [`CROWDED`] share a key that cannot be split).
    fn build(keyed: Vec<Keyed>) -> (WordIndex, WordIndex, Vec<Candidate>) {
        let mut by_hash: BTreeMap<u64, Vec<Keyed>> = BTreeMap::new();
        let mut max_run = 0;
        for k in keyed {
            max_run = max_run.max(k.run);
            by_hash.entry(k.hash).or_default().push(k);
        }
        let mut crowded = Vec::new();
        let mut firsts = Vec::new();
        let mut by_pair: BTreeMap<u64, Vec<(Candidate, Vec<u8>)>> = BTreeMap::new();
        for (h, list) in by_hash {
            if list.len() <= CROWDED {
                let list = list.into_iter().map(|k| (k.candidate, k.bytes)).collect();
                firsts.push((h, Entry::List(list, false)));
                continue;
            }
            let short = list.iter().filter(|k| k.pair.is_none()).count();
            if short > CROWDED || short == list.len() {
                crowded.extend(list.into_iter().map(|k| k.candidate));
                firsts.push((h, Entry::Crowded));
                continue;
            }
            let mut here = Vec::new();
            for k in list {
                match k.pair {
                    Some(p) => by_pair.entry(p).or_default().push((k.candidate, k.bytes)),
                    None => here.push((k.candidate, k.bytes)),
                }
            }
            firsts.push((h, Entry::List(here, true)));
        }
        let mut seconds = Vec::new();
        for (h, list) in by_pair {
            if list.len() > CROWDED {
                crowded.extend(list.into_iter().map(|(c, _)| c));
                seconds.push((h, Entry::Crowded));
            } else {
                seconds.push((h, Entry::List(list, false)));
            }
        }
        let mut first = WordIndex::lay_out(firsts);
        first.max_run = max_run;
        (first, WordIndex::lay_out(seconds), crowded)
    }

    fn lay_out(entries: Vec<(u64, Entry)>) -> WordIndex {
        let size = (entries.len() * 2).next_power_of_two().max(16);
        let mut index = WordIndex {
            filter: vec![0; (1 << FILTER_BITS) / 64],
            slots: vec![Slot::default(); size],
            candidates: Vec::new(),
            bytes: Vec::new(),
            max_run: 0,
        };
        for (h, entry) in entries {
            let f = (h >> (64 - FILTER_BITS)) as usize;
            index.filter[f >> 6] |= 1 << (f & 63);
            let mut s = h as usize & (size - 1);
            while index.slots[s].len != 0 || index.slots[s].split {
                s = (s + 1) & (size - 1);
            }
            let (mut list, split) = match entry {
                Entry::Crowded => {
                    index.slots[s] = Slot {
                        hash: h,
                        first: 0,
                        len: CROWDED_SLOT,
                        split: false,
                    };
                    continue;
                }
                Entry::List(list, split) => (list, split),
            };
            // Longest first; among equals, the first term (and alias) of the spec.
            list.sort_by_key(|(c, _)| (std::cmp::Reverse(c.len), c.term, c.alias));
            index.slots[s] = Slot {
                hash: h,
                first: index.candidates.len() as u32,
                len: list.len() as u32,
                split,
            };
            for (mut c, b) in list {
                c.at = index.bytes.len() as u32;
                index.bytes.extend_from_slice(&b);
                index.candidates.push(c);
            }
        }
        index
    }

    #[inline]
    fn slot(&self, h: u64) -> Option<Slot> {
        let f = (h >> (64 - FILTER_BITS)) as usize;
        if self.filter[f >> 6] >> (f & 63) & 1 == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut s = h as usize & mask;
        loop {
            let slot = self.slots[s];
            if slot.len == 0 && !slot.split {
                return None;
            }
            if slot.hash == h {
                return Some(slot);
            }
            s = (s + 1) & mask;
        }
    }

    /// True when candidate `c` matches at word start `i` and passes the checks.
    #[inline]
    fn matches(&self, c: &Candidate, p: &Piece<'_>, i: usize) -> bool {
        let e = i + c.len as usize;
        if e > p.end {
            return false;
        }
        let text = p.text.as_bytes();
        let alias = &self.bytes[c.at as usize..c.at as usize + c.len as usize];
        let same = if c.exact {
            &text[i..e] == alias
        } else if c.ascii {
            ascii_folded_eq(&text[i..e], alias)
        } else {
            folded_eq(p.text, i, alias)
        };
        same && !(c.ends_word && word_at(p.text, e)) && !crosses(p.file_starts, i, e)
    }
}

/// True when the ASCII-folded `text` equals `folded` (lowercase ASCII, same length),
/// eight bytes at a time: a byte may differ from the alias's only by 0x20, and only
/// where the alias has a lowercase letter (then the text has its capital).
#[inline]
fn ascii_folded_eq(text: &[u8], folded: &[u8]) -> bool {
    let n = folded.len();
    let mut k = 0;
    while k < n {
        let (t, a) = (load8(text, k), load8(folded, k));
        let live = if n - k >= 8 {
            !0
        } else {
            (1u64 << (8 * (n - k))) - 1
        };
        // 0x20 where a byte of the alias is in `a`..=`z`: add 0x1F to bytes from 0x61 up
        // (no carry: 0x7A + 0x1F < 0x100 and bytes are ASCII), compare with 0x7A.
        let low7 = a & 0x7F7F_7F7F_7F7F_7F7F;
        let ge_a = (low7 + 0x1F1F_1F1F_1F1F_1F1F) & 0x8080_8080_8080_8080; // byte >= 0x61
        let gt_z = (low7 + 0x0505_0505_0505_0505) & 0x8080_8080_8080_8080; // byte >= 0x7B
        let letters = (ge_a & !gt_z) >> 2; // 0x20 per letter byte
        if (t ^ a) & !letters & live != 0 {
            return false;
        }
        k += 8;
    }
    true
}

/// True when the text folded from `at` on starts with `folded`.
fn folded_eq(text: &str, at: usize, folded: &[u8]) -> bool {
    let bytes = text.as_bytes();
    if at + folded.len() > bytes.len() {
        return false;
    }
    let mut k = 0;
    while k < folded.len() {
        let b = bytes[at + k];
        if b < 0x80 {
            if b.to_ascii_lowercase() != folded[k] {
                return false;
            }
            k += 1;
        } else {
            let c = char_at(text, at + k).expect("a character boundary");
            let mut buf = [0u8; 4];
            let f = fold_char(c).encode_utf8(&mut buf).as_bytes();
            if !folded[k..].starts_with(f) {
                return false;
            }
            k += f.len();
        }
    }
    true
}

/// The byte length of the UTF-8 character that starts with byte `b`.
#[inline]
fn utf8_len(b: u8) -> usize {
    match b {
        0..=0x7F => 1,
        0x80..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// True when a word character starts at `at`.
#[inline]
fn word_at(text: &str, at: usize) -> bool {
    match text.as_bytes().get(at) {
        None => false,
        Some(&b) if b < 0x80 => CLASS[b as usize] == 1,
        Some(_) => is_word_char(char_at(text, at).expect("a character boundary")),
    }
}

/// Pieces smaller than this are not worth a thread.
const MIN_PIECE: usize = 256 * 1024;

/// Byte classes: ASCII non-word, ASCII word, UTF-8 lead, continuation.
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
#[cfg(target_arch = "x86_64")]
#[inline]
fn ascii_masks(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let (mut word, mut high) = (0u64, 0u64);
    for q in 0..4 {
        // SAFETY: SSE2 is part of x86_64; the load reads 16 of the block's 64 bytes.
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * q).cast::<__m128i>());
            let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
            // Signed compares: bytes from 0x80 up are negative, so never in a range.
            let alpha = _mm_and_si128(
                _mm_cmpgt_epi8(lower, _mm_set1_epi8(0x60)),
                _mm_cmplt_epi8(lower, _mm_set1_epi8(0x7B)),
            );
            let digit = _mm_and_si128(
                _mm_cmpgt_epi8(v, _mm_set1_epi8(0x2F)),
                _mm_cmplt_epi8(v, _mm_set1_epi8(0x3A)),
            );
            let under = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x5F));
            let w = _mm_or_si128(_mm_or_si128(alpha, digit), under);
            word |= u64::from(_mm_movemask_epi8(w) as u16) << (16 * q);
            high |= u64::from(_mm_movemask_epi8(v) as u16) << (16 * q);
        }
    }
    (word, high)
}

/// Bit k of `word` is set when byte k is an ASCII word byte; of `high` when it is not ASCII.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn ascii_masks(block: &[u8; 64]) -> (u64, u64) {
    let (mut word, mut high) = (0u64, 0u64);
    for (k, &b) in block.iter().enumerate() {
        word |= u64::from(CLASS[b as usize] == 1) << k;
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

/// A piece of the text being searched, with its case fold made when first needed.
struct Piece<'a> {
    text: &'a str,
    start: usize,
    end: usize,
    /// `text[start..end]` case-folded (the same byte offsets).
    folded: OnceCell<String>,
    file_starts: &'a [usize],
}

impl Piece<'_> {
    fn folded(&self) -> &[u8] {
        self.folded
            .get_or_init(|| {
                let mut folded = String::with_capacity(self.end - self.start);
                fold_into(&self.text[self.start..self.end], &mut folded);
                folded
            })
            .as_bytes()
    }
}

/// The leading word run of `s`: its bytes up to the first character that is not a word character.
fn leading_run(s: &str) -> &str {
    s.find(|c: char| !is_word_char(c)).map_or(s, |k| &s[..k])
}

impl Detector {
    /// Builds the index over all aliases of all terms of `spec`.
    ///
    /// # Errors
    /// A [`crate::ErrorKind::Spec`] error when the aliases are too many or too long
    /// for an automaton.
    pub fn new(spec: &Spec) -> Result<Detector, Error> {
        // [crowded, anywhere] x [folded, exact]: (search strings, patterns).
        let mut lists: [[(Vec<String>, Vec<Pattern>); 2]; 2] = Default::default();
        let mut keyed = Vec::new();
        let (mut max_sep, mut max_pair) = (0, 0);
        let push =
            |lists: &mut [[(Vec<String>, Vec<Pattern>); 2]; 2], kind: usize, t: usize, a: usize| {
                let term = &spec.terms[t];
                let alias = &term.aliases[a];
                let list = &mut lists[kind][usize::from(term.case_sensitive)];
                list.0.push(if term.case_sensitive {
                    alias.clone()
                } else {
                    crate::text::fold_case(alias)
                });
                list.1.push(Pattern {
                    term: t as u32,
                    alias: a as u32,
                    whole_word: term.whole_word,
                });
            };
        for (t, term) in spec.terms.iter().enumerate() {
            for (a, alias) in term.aliases.iter().enumerate() {
                let folded = crate::text::fold_case(alias);
                // Where folding may turn a word character into another kind, the text's
                // runs may not line up with the alias's: search it anywhere.
                let stable = term.case_sensitive || !folded.chars().any(fold_may_change_word);
                let at_word =
                    term.whole_word && stable && alias.chars().next().is_some_and(is_word_char);
                if !at_word {
                    push(&mut lists, 1, t, a);
                    continue;
                }
                let written: &str = if term.case_sensitive { alias } else { &folded };
                let run = leading_run(written);
                let key = crate::text::fold_case(run);
                let candidate = Candidate {
                    at: 0,
                    len: written.len() as u32,
                    term: t as u32,
                    alias: a as u32,
                    exact: term.case_sensitive,
                    ascii: written.is_ascii(),
                    ends_word: written.chars().next_back().is_some_and(is_word_char),
                };
                let h = run_hash(key.as_bytes(), 0, key.len());
                // The second run, after the characters that are not word characters.
                let rest = &written[run.len()..];
                let pair = rest.find(is_word_char).map(|sep| {
                    let end = run.len() + sep + leading_run(&rest[sep..]).len();
                    let key = crate::text::fold_case(&written[..end]);
                    max_sep = max_sep.max(sep);
                    max_pair = max_pair.max(end);
                    run_hash(key.as_bytes(), 0, end)
                });
                keyed.push(Keyed {
                    hash: h,
                    run: key.len(),
                    candidate,
                    bytes: written.as_bytes().to_vec(),
                    pair,
                });
            }
        }
        let (words, pairs, crowded) = WordIndex::build(keyed);
        for c in crowded {
            push(&mut lists, 0, c.term as usize, c.alias as usize);
        }
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
        let [crowded, anywhere] = groups;
        Ok(Detector {
            words,
            pairs,
            max_sep,
            max_pair,
            crowded,
            anywhere,
        })
    }

    /// All occurrences in `text`, in order. `file_starts` are offsets no match may cross.
    /// The text is cut into pieces searched in parallel on the current rayon pool.
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
        let has_words = self.words.max_run > 0;
        if !has_words && self.anywhere.is_empty() {
            return Vec::new();
        }
        let piece = Piece {
            text,
            start,
            end,
            folded: OnceCell::new(),
            file_starts,
        };
        let mut scan = Scan {
            detector: self,
            piece: &piece,
            out: Vec::new(),
            taken_to: start,
            cursor: start,
            next: vec![None; self.anywhere.len()],
            scratch: String::new(),
            window: String::new(),
        };
        if has_words {
            let max_run = self.words.max_run;
            word_runs(text, start, end, |i, j, ascii| {
                scan.anywhere_before(i);
                if j - i <= max_run {
                    scan.word_start(i, j, ascii);
                }
            });
        }
        scan.anywhere_before(end);
        scan.out
    }

    /// Improves `best` with the longest valid match of `g` starting at `i`: the
    /// longest match first, then shorter ones while the checks reject them. `hay` is
    /// what `g` searches (the text as written or folded) from byte `base` of the text
    /// on, up to the piece's end or `g.max_len` bytes past `i` at least.
    fn longest_in(
        &self,
        g: &Group,
        hay: &[u8],
        base: usize,
        p: &Piece<'_>,
        i: usize,
        best: &mut Option<Occurrence>,
    ) {
        let rel = i - base;
        // A match ending before the best one's end cannot win.
        let min_end = best.map_or(rel + 1, |b: Occurrence| b.end - base);
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
            let (s, e) = (base + m.start(), base + m.end());
            if (!pattern.whole_word || whole_word(p.text, s, e)) && !crosses(p.file_starts, s, e) {
                offer(
                    best,
                    Occurrence {
                        start: s,
                        end: e,
                        term: pattern.term,
                        alias: pattern.alias,
                    },
                );
                return;
            }
            limit = m.end() - 1;
        }
    }
}

/// Keeps the better of `best` and `found` (both starting at the same place): the
/// longer, or on a tie the first term and alias of the spec.
#[inline]
fn offer(best: &mut Option<Occurrence>, found: Occurrence) {
    let better = best.is_none_or(|b| {
        (found.end, std::cmp::Reverse((found.term, found.alias)))
            > (b.end, std::cmp::Reverse((b.term, b.alias)))
    });
    if better {
        *best = Some(found);
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
    /// A non-ASCII run, case-folded.
    scratch: String,
    /// The text a crowded run's aliases may cover, case-folded.
    window: String,
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
                let hay = group.haystack(self.piece);
                let p = self.piece;
                self.detector.longest_in(group, hay, p.start, p, i, best);
            }
        }
    }

    fn take(&mut self, best: Option<Occurrence>) {
        if let Some(o) = best {
            self.taken_to = o.end;
            self.out.push(o);
        }
    }

    /// Looks at the word run `[i, j)`, for both kinds of aliases.
    #[inline]
    fn word_start(&mut self, i: usize, j: usize, ascii: bool) {
        if i < self.taken_to {
            return;
        }
        let d = self.detector;
        let p = self.piece;
        let h = if ascii {
            run_hash(p.text.as_bytes(), i, j)
        } else {
            self.scratch.clear();
            fold_into(&p.text[i..j], &mut self.scratch);
            run_hash(self.scratch.as_bytes(), 0, j - i)
        };
        let slot = d.words.slot(h);
        if slot.is_none() && self.next.is_empty() {
            return;
        }
        let mut best = None;
        if let Some(s) = slot {
            self.in_slot(&d.words, s, i, &mut best);
            if s.split {
                if let Some(s) = self.pair_hash(i, j, ascii).and_then(|h| d.pairs.slot(h)) {
                    self.in_slot(&d.pairs, s, i, &mut best);
                }
            }
        }
        self.anywhere_at(i, &mut best);
        self.take(best);
        self.cursor = i + 1;
    }

    /// Improves `best` with the longest valid alias of slot `s` of `table` at `i`.
    #[inline]
    fn in_slot(&mut self, table: &WordIndex, s: Slot, i: usize, best: &mut Option<Occurrence>) {
        let d = self.detector;
        let p = self.piece;
        if s.len == CROWDED_SLOT {
            for g in &d.crowded {
                if g.exact {
                    let hay = &p.text.as_bytes()[p.start..p.end];
                    d.longest_in(g, hay, p.start, p, i, best);
                } else {
                    // Only the bytes a match may cover are folded, not the piece.
                    let bytes = p.text.as_bytes();
                    let mut stop = (i + g.max_len).min(p.end);
                    while stop < p.end && CLASS[bytes[stop] as usize] == 3 {
                        stop += 1;
                    }
                    self.window.clear();
                    fold_into(&p.text[i..stop], &mut self.window);
                    d.longest_in(g, self.window.as_bytes(), i, p, i, best);
                }
            }
            return;
        }
        let first = s.first as usize;
        for c in &table.candidates[first..first + s.len as usize] {
            if table.matches(c, p, i) {
                offer(
                    best,
                    Occurrence {
                        start: i,
                        end: i + c.len as usize,
                        term: c.term,
                        alias: c.alias,
                    },
                );
                return;
            }
        }
    }

    /// The hash of the text from word start `i` (its run ends at `j`) to the end of the
    /// next word run, as [`Detector::pairs`] is keyed; `None` when that is longer than
    /// any key (or there is no next run in the piece).
    #[inline]
    fn pair_hash(&mut self, i: usize, j: usize, ascii: bool) -> Option<u64> {
        let d = self.detector;
        let p = self.piece;
        let bytes = p.text.as_bytes();
        let mut all_ascii = ascii;
        let mut k = j;
        while !word_at(p.text, k) {
            if k >= p.end || k - j >= d.max_sep {
                return None;
            }
            all_ascii &= bytes[k] < 0x80;
            k += utf8_len(bytes[k]);
        }
        if k >= p.end {
            return None;
        }
        let mut e = k;
        while e < p.end && word_at(p.text, e) {
            all_ascii &= bytes[e] < 0x80;
            e += utf8_len(bytes[e]);
            if e - i > d.max_pair {
                return None;
            }
        }
        Some(if all_ascii {
            run_hash(bytes, i, e)
        } else {
            self.scratch.clear();
            fold_into(&p.text[i..e], &mut self.scratch);
            run_hash(self.scratch.as_bytes(), 0, e - i)
        })
    }

    /// Looks at every start of an `anywhere` match before `upto` not looked at yet (no
    /// word start among them: those are visited by [`Scan::word_start`]).
    #[inline]
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
    fn haystack<'a>(&self, p: &'a Piece<'a>) -> &'a [u8] {
        if self.exact {
            &p.text.as_bytes()[p.start..p.end]
        } else {
            p.folded()
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

/// The word and non-ASCII masks of the 64 bytes at `pos` (fewer at `end`: the rest
/// count as neither). Non-ASCII word characters set the bits of all their bytes;
/// `carry` takes the bits of one cut by the block's end, and gives them to the next.
#[inline]
fn block_masks(text: &str, pos: usize, end: usize, carry: &mut u64) -> (u64, u64) {
    let bytes = text.as_bytes();
    let (mut word, high) = match bytes.get(pos..pos + 64) {
        Some(b) if pos + 64 <= end => ascii_masks(b.try_into().expect("64 bytes")),
        _ => {
            let mut b = [b' '; 64];
            b[..end - pos].copy_from_slice(&bytes[pos..end]);
            ascii_masks(&b)
        }
    };
    word |= std::mem::take(carry);
    let mut leads = high;
    while leads != 0 {
        let k = leads.trailing_zeros() as usize;
        leads &= leads - 1;
        if CLASS[bytes[pos + k] as usize] != 2 {
            continue;
        }
        let c = char_at(text, pos + k).expect("a character boundary");
        if is_word_char(c) {
            let bits = ((1u128 << c.len_utf8()) - 1) << k;
            word |= bits as u64;
            *carry |= (bits >> 64) as u64;
        }
    }
    (word, high)
}

/// Calls `visit(i, j, ascii)` for each word run `[i, j)` (a maximal run of word
/// characters) starting in `text[start..end]`, in order; `ascii` when the run is.
/// `start` and `end` sit on line boundaries, so no run crosses them.
fn word_runs(text: &str, start: usize, end: usize, mut visit: impl FnMut(usize, usize, bool)) {
    let mut prev = u64::from(char_before(text, start).is_some_and(is_word_char));
    let mut carry = 0;
    let mut pos = start;
    if pos >= end {
        return;
    }
    let mut cur = block_masks(text, pos, end, &mut carry);
    while pos < end {
        let next_pos = pos + 64;
        let next = if next_pos < end {
            block_masks(text, next_pos, end, &mut carry)
        } else {
            (0, 0)
        };
        let (word, high) = cur;
        let mut starts = word & !((word << 1) | prev);
        while starts != 0 {
            let k = starts.trailing_zeros() as usize;
            starts &= starts - 1;
            let rest = !word >> k;
            let (j, ascii) = if rest != 0 {
                let n = rest.trailing_zeros() as usize;
                (pos + k + n, (high >> k) & ((1u64 << n) - 1) == 0)
            } else if !next.0 != 0 {
                let n = (!next.0).trailing_zeros() as usize;
                let tail = if n == 0 {
                    0
                } else {
                    next.1 & (u64::MAX >> (64 - n))
                };
                (next_pos + n, high >> k == 0 && tail == 0)
            } else {
                // A run longer than the block after it: walk it, from the end of the
                // character the block cuts, if it cuts one.
                let mut j = next_pos + 64;
                while j < end && CLASS[text.as_bytes()[j] as usize] == 3 {
                    j += 1;
                }
                let mut ascii = high >> k == 0 && next.1 == 0;
                while let Some(c) = char_at(text, j).filter(|_| j < end) {
                    if !is_word_char(c) {
                        break;
                    }
                    ascii &= c.is_ascii();
                    j += c.len_utf8();
                }
                (j, ascii)
            };
            visit(pos + k, j.min(end), ascii);
        }
        prev = word >> 63;
        cur = next;
        pos = next_pos;
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
    fn long_non_ascii_runs() {
        // Runs longer than two blocks, cut by a block end inside a character.
        let long = "é".repeat(150);
        let spec = format!(
            r#"[{{"name": "refund", "definition": "a"}}, {{"name": "{long}", "definition": "b"}}]"#
        );
        for pad in 0..4 {
            let text = format!("{} {long} refund {long}x refund", "a".repeat(pad));
            assert_eq!(
                detect(&spec, &text),
                vec![
                    (long.clone(), 1),
                    ("refund".into(), 0),
                    ("refund".into(), 0)
                ],
                "pad {pad}"
            );
        }
    }

    /// Leftmost-longest by trying every alias at every character, the slow way.
    fn naive(spec: &Spec, text: &str) -> Vec<(usize, usize, u32)> {
        let fold = crate::text::fold_case;
        let mut out = Vec::new();
        let mut i = 0;
        while i < text.len() {
            let mut best: Option<(usize, u32, u32)> = None;
            for (t, term) in spec.terms.iter().enumerate() {
                for (a, alias) in term.aliases.iter().enumerate() {
                    let e = i + alias.len();
                    let Some(slice) = text.get(i..e) else {
                        continue;
                    };
                    let same = if term.case_sensitive {
                        slice == alias
                    } else {
                        fold(slice) == fold(alias)
                    };
                    if !same || (term.whole_word && !whole_word(text, i, e)) {
                        continue;
                    }
                    if best.is_none_or(|(be, _, _)| e > be) {
                        best = Some((e, t as u32, a as u32));
                    }
                }
            }
            match best {
                Some((e, t, _)) => {
                    out.push((i, e, t));
                    i = e;
                }
                None => i += char_at(text, i).map_or(1, char::len_utf8),
            }
        }
        out
    }

    #[test]
    fn runs_shared_by_many_aliases_agree_with_the_naive_search() {
        // More than CROWDED aliases share the run "refund": split by their second run,
        // with "refund policy" itself shared by more than CROWDED (left to automata).
        let mut names: Vec<String> = [
            "refund",
            "refund!",
            "refund pol",
            "refund-policy",
            "refund  policy",
            "refund ä",
            "refund Äb",
            "refund b",
            "refund b c",
            "refund 1",
            "refund_x y",
            "refund (a)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        names.extend((0..10).map(|k| format!("refund policy w{k}")));
        names.push("refund policy".into());
        let mut terms: Vec<String> = names
            .iter()
            .map(|n| format!(r#"{{"name": "{n}", "definition": "d"}}"#))
            .collect();
        terms.push(r#"{"name": "Refund Bz", "definition": "d", "case_sensitive": true}"#.into());
        let spec = Spec::from_json(&format!("[{}]", terms.join(","))).unwrap();
        let d = Detector::new(&spec).unwrap();
        let words = [
            "refund", "refund", "refund", "Refund", "REFUND", "policy", "policy", "pol", "w1",
            "W3", "w12", "b", "B", "c", "ä", "Äb", "Bz", "bz", "1", "x", "y", "(a)", "!", "-", " ",
            "  ", "\n", "_", "é",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut long = 0;
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..12 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(words[(seed % words.len() as u64) as usize]);
                if seed >> 60 < 9 {
                    text.push(' ');
                }
            }
            let found: Vec<(usize, usize, u32)> = d
                .find(&text, &[0])
                .iter()
                .map(|o| (o.start, o.end, o.term))
                .collect();
            assert_eq!(found, naive(&spec, &text), "{text:?}");
            long += found.iter().filter(|f| f.1 - f.0 > 8).count();
        }
        assert!(long > 300, "{long} matches longer than 8 bytes");
    }

    #[test]
    fn ascii_folded_eq_is_eq_ignore_ascii_case() {
        for a in (0u8..128).map(|a| a.to_ascii_lowercase()) {
            for t in 0u8..=255 {
                for at in [0, 5, 8, 13] {
                    let mut alias = b"xyz_09-ab ok.xy".to_vec();
                    let mut text = b"XyZ_09-aB OK.xY".to_vec();
                    alias[at] = a;
                    text[at] = t;
                    for n in at + 1..=alias.len() {
                        assert_eq!(
                            ascii_folded_eq(&text[..n], &alias[..n]),
                            text[..n].eq_ignore_ascii_case(&alias[..n]),
                            "{t:#x} vs {a:#x} at {at} of {n}"
                        );
                    }
                }
            }
        }
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
