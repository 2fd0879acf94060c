//! Special-token partition: before a vocabulary's algorithm runs, llama.cpp cuts the
//! text at every user-defined token (control and unknown tokens are left as text when
//! special tokens are not parsed, which is how a prompt is counted). Tokens are tried
//! longest first, each over the text that earlier tokens left, leftmost occurrence
//! first; so a longer token wins over a shorter one that overlaps it even when the
//! shorter one starts earlier.
//!
//! Equal lengths are ordered by whatever `std::sort` (libstdc++'s introsort, not
//! stable) leaves them in; [`cxx_sort`] reproduces that order so two overlapping
//! user-defined tokens of equal length split the text the same way.
//!
//! Rather than one substring search per special token (thousands in Gemma's
//! vocabulary), one Aho-Corasick pass finds every occurrence of every special token and
//! the claims are then replayed in llama.cpp's order. Tokens that nest (`a`, `aa`, …
//! over `aaaa…`) give far more occurrences than bytes; past one per two bytes, only which
//! tokens occur is kept and each of those is searched for alone, so memory stays
//! linear in the text.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// A piece of a partitioned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// `[start, end)` of the text, to run through the vocabulary's algorithm.
    Text(usize, usize),
    /// A special token, emitted as is.
    Token(u32),
}

/// The user-defined tokens that cut text, in llama.cpp's order.
#[derive(Debug, Clone)]
pub(crate) struct Partitioner {
    automaton: Option<AhoCorasick>,
    /// Per pattern: (token id, rank in the claim order, strip whitespace left, right).
    patterns: Vec<(u32, u32, bool, bool)>,
    /// Per pattern: its text.
    texts: Vec<Box<[u8]>>,
}

/// One occurrence kept per this many bytes of text (and a few more) before the
/// partition switches to one search per token that occurs.
const BYTES_PER_OCCURRENCE: usize = 2;

/// The spans claimed so far, by where they start (whitespace stripped with a token
/// included): `lo → (hi, pattern)`.
struct Claims {
    len: usize,
    spans: BTreeMap<usize, (usize, usize)>,
}

impl Claims {
    /// Claims `[start, end)` for pattern `p` unless a claim overlaps it. Returns where
    /// the next occurrence of the same token may start: past this claim, or past the
    /// claim in the way.
    fn claim(
        &mut self,
        text: &[u8],
        start: usize,
        end: usize,
        p: usize,
        strip: (bool, bool),
    ) -> usize {
        let prev_end = self
            .spans
            .range(..start)
            .next_back()
            .map_or(0, |(_, c)| c.0);
        if start < prev_end {
            return prev_end;
        }
        let (next_start, next_end) = self
            .spans
            .range(start..)
            .next()
            .map_or((self.len, self.len), |(&lo, c)| (lo, c.0));
        if end > next_start {
            return next_end;
        }
        let mut lo = start;
        if strip.0 {
            while lo > prev_end && is_c_space(text[lo - 1]) {
                lo -= 1;
            }
        }
        let mut hi = end;
        if strip.1 {
            while hi < next_start && is_c_space(text[hi]) {
                hi += 1;
            }
        }
        self.spans.insert(lo, (hi, p));
        hi
    }
}

/// `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl Partitioner {
    /// `ordered`: `(id, text, lstrip, rstrip)` of the tokens that cut text, in claim
    /// order (already filtered to the ones that are not control or unknown).
    ///
    /// # Errors
    /// When the tokens are too many or too long for one automaton.
    pub(crate) fn new(
        ordered: &[(u32, &[u8], bool, bool)],
    ) -> Result<Partitioner, aho_corasick::BuildError> {
        // A token text that is not UTF-8 (only a crafted vocabulary has one) could match
        // inside a character of the text, and the text's pieces must stay `str`: such a
        // token never cuts. A UTF-8 text matches only on character boundaries.
        let usable: Vec<&(u32, &[u8], bool, bool)> = ordered
            .iter()
            .filter(|t| !t.1.is_empty() && std::str::from_utf8(t.1).is_ok())
            .collect();
        if usable.is_empty() {
            return Ok(Partitioner {
                automaton: None,
                patterns: Vec::new(),
                texts: Vec::new(),
            });
        }
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(usable.iter().map(|t| t.1))?;
        let patterns = usable
            .iter()
            .enumerate()
            .map(|(rank, t)| (t.0, rank as u32, t.2, t.3))
            .collect();
        Ok(Partitioner {
            automaton: Some(automaton),
            patterns,
            texts: usable.iter().map(|t| t.1.into()).collect(),
        })
    }

    /// Cuts `text` into text and token fragments (empty text fragments dropped).
    pub(crate) fn partition(&self, text: &[u8], out: &mut Vec<Fragment>) {
        self.partition_keeping(text, out, text.len() / BYTES_PER_OCCURRENCE + 64);
    }

    /// [`Partitioner::partition`], keeping at most `limit` occurrences at a time.
    fn partition_keeping(&self, text: &[u8], out: &mut Vec<Fragment>, limit: usize) {
        out.clear();
        let Some(ac) = &self.automaton else {
            if !text.is_empty() {
                out.push(Fragment::Text(0, text.len()));
            }
            return;
        };
        // (rank, start, end, pattern), at most `limit`
        let mut found: Vec<(u32, usize, usize, usize)> = Vec::new();
        let mut nested = false;
        for m in ac.find_overlapping_iter(text) {
            if found.len() >= limit {
                nested = true;
                break;
            }
            let p = m.pattern().as_usize();
            found.push((self.patterns[p].1, m.start(), m.end(), p));
        }
        if found.is_empty() && !nested {
            if !text.is_empty() {
                out.push(Fragment::Text(0, text.len()));
            }
            return;
        }
        let mut claims = Claims {
            len: text.len(),
            spans: BTreeMap::new(),
        };
        if nested {
            // Which tokens occur, then each of them alone, in claim order (patterns are
            // numbered by rank), every occurrence left to right.
            drop(found);
            let mut occurs = vec![false; self.patterns.len()];
            for m in ac.find_overlapping_iter(text) {
                occurs[m.pattern().as_usize()] = true;
            }
            for (p, _) in occurs.iter().enumerate().filter(|o| *o.1) {
                let needle = &self.texts[p];
                let finder = memchr::memmem::Finder::new(needle);
                let strip = (self.patterns[p].2, self.patterns[p].3);
                let mut pos = 0;
                while let Some(at) = finder.find(&text[pos..]) {
                    let start = pos + at;
                    pos = claims.claim(text, start, start + needle.len(), p, strip);
                }
            }
        } else {
            found.sort_unstable();
            for &(_, start, end, p) in &found {
                let strip = (self.patterns[p].2, self.patterns[p].3);
                claims.claim(text, start, end, p, strip);
            }
        }
        let mut pos = 0;
        for (&lo, &(hi, p)) in &claims.spans {
            if lo > pos {
                out.push(Fragment::Text(pos, lo));
            }
            out.push(Fragment::Token(self.patterns[p].0));
            pos = hi;
        }
        if pos < text.len() {
            out.push(Fragment::Text(pos, text.len()));
        }
    }
}

/// Sorts `v` exactly as libstdc++'s `std::sort` does with the strict weak order
/// `less` (introsort: median-of-three quicksort down to 16 elements, heapsort past the
/// depth limit, then insertion sort), so elements that compare equal end up in the
/// same relative order as in llama.cpp.
pub(crate) fn cxx_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let depth = 2 * (usize::BITS - 1 - n.leading_zeros()) as usize;
    introsort_loop(v, 0, n, depth, less);
    final_insertion_sort(v, 0, n, less);
}

const THRESHOLD: usize = 16;

fn introsort_loop<T: Copy>(
    v: &mut [T],
    first: usize,
    mut last: usize,
    mut depth: usize,
    less: &impl Fn(&T, &T) -> bool,
) {
    while last - first > THRESHOLD {
        if depth == 0 {
            heap_sort(&mut v[first..last], less);
            return;
        }
        depth -= 1;
        let cut = partition_pivot(v, first, last, less);
        introsort_loop(v, cut, last, depth, less);
        last = cut;
    }
}

fn partition_pivot<T: Copy>(
    v: &mut [T],
    first: usize,
    last: usize,
    less: &impl Fn(&T, &T) -> bool,
) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1, less);
    // Unguarded partition of [first + 1, last) around v[first].
    let (mut lo, mut hi) = (first + 1, last);
    loop {
        while less(&v[lo], &v[first]) {
            lo += 1;
        }
        hi -= 1;
        while less(&v[first], &v[hi]) {
            hi -= 1;
        }
        if lo >= hi {
            return lo;
        }
        v.swap(lo, hi);
        lo += 1;
    }
}

fn move_median_to_first<T: Copy>(
    v: &mut [T],
    result: usize,
    a: usize,
    b: usize,
    c: usize,
    less: &impl Fn(&T, &T) -> bool,
) {
    let pick = if less(&v[a], &v[b]) {
        if less(&v[b], &v[c]) {
            b
        } else if less(&v[a], &v[c]) {
            c
        } else {
            a
        }
    } else if less(&v[a], &v[c]) {
        a
    } else if less(&v[b], &v[c]) {
        c
    } else {
        b
    };
    v.swap(result, pick);
}

fn final_insertion_sort<T: Copy>(
    v: &mut [T],
    first: usize,
    last: usize,
    less: &impl Fn(&T, &T) -> bool,
) {
    if last - first > THRESHOLD {
        insertion_sort(v, first, first + THRESHOLD, less);
        for i in first + THRESHOLD..last {
            unguarded_linear_insert(v, i, less);
        }
    } else {
        insertion_sort(v, first, last, less);
    }
}

fn insertion_sort<T: Copy>(v: &mut [T], first: usize, last: usize, less: &impl Fn(&T, &T) -> bool) {
    if first == last {
        return;
    }
    for i in first + 1..last {
        if less(&v[i], &v[first]) {
            let val = v[i];
            v.copy_within(first..i, first + 1);
            v[first] = val;
        } else {
            unguarded_linear_insert(v, i, less);
        }
    }
}

fn unguarded_linear_insert<T: Copy>(v: &mut [T], mut last: usize, less: &impl Fn(&T, &T) -> bool) {
    let val = v[last];
    let mut next = last - 1;
    while less(&val, &v[next]) {
        v[last] = v[next];
        last = next;
        next -= 1;
    }
    v[last] = val;
}

fn heap_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let len = v.len();
    // make_heap
    if len >= 2 {
        let mut parent = (len - 2) / 2;
        loop {
            let value = v[parent];
            adjust_heap(v, parent, len, value, less);
            if parent == 0 {
                break;
            }
            parent -= 1;
        }
    }
    // sort_heap
    let mut last = len;
    while last > 1 {
        last -= 1;
        let value = v[last];
        v[last] = v[0];
        adjust_heap(v, 0, last, value, less);
    }
}

fn adjust_heap<T: Copy>(
    v: &mut [T],
    mut hole: usize,
    len: usize,
    value: T,
    less: &impl Fn(&T, &T) -> bool,
) {
    let top = hole;
    let mut child = hole;
    while len >= 2 && child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if less(&v[child], &v[child - 1]) {
            child -= 1;
        }
        v[hole] = v[child];
        hole = child;
    }
    if len >= 2 && len % 2 == 0 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        v[hole] = v[child - 1];
        hole = child - 1;
    }
    // push_heap
    let mut parent = hole.wrapping_sub(1) / 2;
    while hole > top && less(&v[parent], &value) {
        v[hole] = v[parent];
        hole = parent;
        parent = hole.wrapping_sub(1) / 2;
    }
    v[hole] = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_orders_like_a_sort() {
        // Keys with many ties: the result is sorted whatever the tie order.
        let mut v: Vec<(u32, u32)> = (0..500u32).map(|i| ((i * 7919) % 13, i)).collect();
        cxx_sort(&mut v, &|a, b| a.0 > b.0);
        assert!(v.windows(2).all(|w| w[0].0 >= w[1].0));
        let mut ids: Vec<u32> = v.iter().map(|p| p.1).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..500).collect::<Vec<_>>());
        // Small inputs are insertion-sorted, which is stable.
        let mut w: Vec<(u32, u32)> = (0..16u32).map(|i| (i % 3, i)).collect();
        cxx_sort(&mut w, &|a, b| a.0 > b.0);
        assert_eq!(w[0], (2, 2));
        assert_eq!(w[1], (2, 5));
        // The heap fallback sorts too.
        let mut h: Vec<u32> = (0..100u32).rev().collect();
        heap_sort(&mut h, &|a, b| a < b);
        assert_eq!(h, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn longer_token_claims_first() {
        let toks: Vec<(u32, &[u8], bool, bool)> =
            vec![(7, b"bcd", false, false), (5, b"ab", false, false)];
        let p = Partitioner::new(&toks).unwrap();
        let mut out = Vec::new();
        p.partition(b"abcd ab", &mut out);
        assert_eq!(
            out,
            vec![
                Fragment::Text(0, 1),
                Fragment::Token(7),
                Fragment::Text(4, 5),
                Fragment::Token(5)
            ]
        );
        let strip: Vec<(u32, &[u8], bool, bool)> = vec![(1, b"<x>", true, true)];
        Partitioner::new(&strip)
            .unwrap()
            .partition(b"a  <x>  b<x>", &mut out);
        assert_eq!(
            out,
            vec![
                Fragment::Text(0, 1),
                Fragment::Token(1),
                Fragment::Text(8, 9),
                Fragment::Token(1)
            ]
        );
    }

    #[test]
    fn nested_tokens_partition_alike_in_bounded_memory() {
        // Both ways of claiming agree: every occurrence kept, or one search per token.
        let toks: Vec<(u32, &[u8], bool, bool)> = vec![
            (1, b"aaa", false, true),
            (2, b"a a", true, false),
            (3, b"aa", false, false),
            (4, b" a", true, true),
            (5, b"a", false, false),
            (6, b"b", false, false),
        ];
        let p = Partitioner::new(&toks).unwrap();
        let mut seed = 7u32;
        for n in 0..400 {
            let text: Vec<u8> = (0..n % 40)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    [b'a', b'a', b'a', b' ', b'b', b'\t'][(seed >> 16) as usize % 6]
                })
                .collect();
            let (mut all, mut alone) = (Vec::new(), Vec::new());
            p.partition_keeping(&text, &mut all, usize::MAX);
            p.partition_keeping(&text, &mut alone, 0);
            assert_eq!(all, alone, "{:?}", String::from_utf8_lossy(&text));
        }
        // 100 nested tokens over 100 KB: the default limit switches over.
        let texts: Vec<Vec<u8>> = (1..=100).map(|k| vec![b'a'; k]).collect();
        let toks: Vec<(u32, &[u8], bool, bool)> = texts
            .iter()
            .rev()
            .enumerate()
            .map(|(i, t)| (i as u32, &t[..], false, false))
            .collect();
        let p = Partitioner::new(&toks).unwrap();
        let mut out = Vec::new();
        p.partition(&vec![b'a'; 100_000], &mut out);
        assert_eq!(out.len(), 1000);
        assert!(out.iter().all(|f| *f == Fragment::Token(0)));
    }
}
