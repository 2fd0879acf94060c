//! llama.cpp's SentencePiece-style algorithm (`tokenizer.ggml.model = "llama"`, as in
//! Gemma and Llama 2): start from single UTF-8 characters, repeatedly merge the
//! adjacent pair whose concatenation is the vocabulary token with the highest score
//! (the leftmost pair on a tie), and spell what never became a token as byte tokens
//! `<0xXX>`. Any vocabulary entry can be formed, whatever its type.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Vocab;

#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
}

#[derive(Debug, Clone, Copy)]
struct Bigram {
    score: f32,
    left: i32,
    right: i32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Higher score first, then the leftmost pair (the max-heap pops the greatest).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Reusable buffers of one worker.
#[derive(Default)]
pub(crate) struct SpmScratch {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Bigram>,
}

/// Tokenizes `text` (spaces already escaped as `▁`) into `out`.
///
/// # Errors
/// The byte that has no byte token, when a character is not in the vocabulary and
/// neither `<0xXX>` nor the raw byte is.
pub(crate) fn tokenize(
    vocab: &Vocab,
    byte_tokens: &[Option<u32>; 256],
    text: &[u8],
    scratch: &mut SpmScratch,
    out: &mut Vec<u32>,
) -> Result<(), u8> {
    if text.is_empty() {
        return Ok(());
    }
    let symbols = &mut scratch.symbols;
    symbols.clear();
    let mut offs = 0usize;
    while offs < text.len() {
        let len = utf8_len(text[offs]).min(text.len() - offs);
        let index = symbols.len() as i32;
        symbols.push(Symbol {
            start: offs as u32,
            len: len as u32,
            prev: index - 1,
            next: if offs + len == text.len() {
                -1
            } else {
                index + 1
            },
        });
        offs += len;
    }
    let heap = &mut scratch.heap;
    heap.clear();
    let try_add = |symbols: &[Symbol], heap: &mut BinaryHeap<Bigram>, left: i32, right: i32| {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        let size = l.len + r.len;
        let piece = &text[l.start as usize..(l.start + size) as usize];
        if let Some(id) = vocab.lookup(piece) {
            heap.push(Bigram {
                score: vocab.scores[id as usize],
                left,
                right,
                size,
            });
        }
    };
    for i in 1..symbols.len() as i32 {
        try_add(symbols, heap, i - 1, i);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (symbols[b.left as usize], symbols[b.right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        symbols[b.left as usize].len += r.len;
        symbols[b.right as usize].len = 0;
        symbols[b.left as usize].next = r.next;
        if r.next >= 0 {
            symbols[r.next as usize].prev = b.left;
        }
        let prev = symbols[b.left as usize].prev;
        try_add(symbols, heap, prev, b.left);
        try_add(symbols, heap, b.left, r.next);
    }
    let mut i = 0i32;
    while i != -1 {
        let s = symbols[i as usize];
        let piece = &text[s.start as usize..(s.start + s.len) as usize];
        match vocab.lookup(piece) {
            Some(id) => out.push(id),
            None => {
                for &byte in piece {
                    out.push(byte_tokens[byte as usize].ok_or(byte)?);
                }
            }
        }
        i = s.next;
    }
    Ok(())
}

/// The length of the UTF-8 sequence a lead byte starts (llama.cpp's lookup: a stray
/// continuation byte counts as one).
pub(crate) fn utf8_len(b: u8) -> usize {
    const LOOKUP: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[(b >> 4) as usize]
}
