//! llama.cpp's byte-level BPE (`tokenizer.ggml.model = "gpt2"`, as in Llama 3, Qwen
//! and SmolLM): each pre-tokenized word is spelled in GPT-2's byte alphabet, one
//! symbol per byte, and the adjacent pair with the lowest merge rank is merged until
//! none is left (the leftmost pair on a tie). A final symbol that is not a token falls
//! back to single-byte tokens, and is dropped where none exists, as llama.cpp does.
//!
//! Strings are interned once at load: a symbol is an interned id, a merge maps a pair
//! of ids to its rank and the id of the merged string.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// GPT-2's byte → character map: printable Latin-1 bytes map to themselves, the
/// others to U+0100 onwards in byte order.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        out[b as usize] = if printable {
            char::from_u32(b).expect("latin-1")
        } else {
            n += 1;
            char::from_u32(255 + n).expect("latin extended")
        };
    }
    out
}

/// The merge table and interned strings of a BPE vocabulary.
#[derive(Debug, Clone)]
pub(crate) struct Merges {
    /// Interned string → id.
    intern: FxHashMap<Box<[u8]>, u32>,
    /// Per interned id: its token id, if it is a vocabulary token.
    token_of: Vec<Option<u32>>,
    /// Per interned id: its text.
    text_of: Vec<Box<[u8]>>,
    /// (left, right) → (rank, merged).
    ranks: FxHashMap<(u32, u32), (u32, u32)>,
    /// Per byte: the interned id of its GPT-2 character.
    byte_symbol: [Option<u32>; 256],
    /// Per byte: the GPT-2 character's UTF-8.
    byte_utf8: Vec<Vec<u8>>,
}

impl Merges {
    fn intern(&mut self, s: &[u8]) -> u32 {
        if let Some(&id) = self.intern.get(s) {
            return id;
        }
        let id = self.text_of.len() as u32;
        self.intern.insert(s.into(), id);
        self.text_of.push(s.into());
        self.token_of.push(None);
        id
    }

    /// Builds the table from the vocabulary and the `tokenizer.ggml.merges` strings
    /// (`"left right"`, split at the first space after the first byte; the first
    /// entry of a pair wins).
    pub(crate) fn new(vocab: &super::Vocab, merges: &crate::gguf::StrList) -> Merges {
        let mut m = Merges {
            intern: FxHashMap::default(),
            token_of: Vec::new(),
            text_of: Vec::new(),
            ranks: FxHashMap::default(),
            byte_symbol: [None; 256],
            byte_utf8: Vec::new(),
        };
        for id in 0..vocab.len() as u32 {
            let i = m.intern(vocab.text(id));
            m.token_of[i as usize] = Some(id);
        }
        for (rank, line) in merges.iter().enumerate() {
            let (left, right): (&[u8], &[u8]) = match line.iter().skip(1).position(|&b| b == b' ') {
                Some(p) => (&line[..p + 1], &line[p + 2..]),
                None => (b"", b""),
            };
            let (l, r) = (m.intern(left), m.intern(right));
            let joined = [left, right].concat();
            let j = m.intern(&joined);
            m.ranks.entry((l, r)).or_insert((rank as u32, j));
        }
        let chars = byte_chars();
        for (b, c) in chars.iter().enumerate() {
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf).as_bytes().to_vec();
            m.byte_symbol[b] = m.intern.get(s.as_slice()).copied();
            m.byte_utf8.push(s);
        }
        m
    }

    /// The token id of `text` spelled in GPT-2 characters, if it is one.
    pub(crate) fn token_of_encoded(&self, encoded: &[u8]) -> Option<u32> {
        self.intern
            .get(encoded)
            .and_then(|&i| self.token_of[i as usize])
    }

    /// `word` spelled in GPT-2 characters.
    pub(crate) fn encode(&self, word: &[u8], out: &mut Vec<u8>) {
        out.clear();
        for &b in word {
            out.extend_from_slice(&self.byte_utf8[b as usize]);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    /// Interned id of the symbol's string, or `u32::MAX` when it is in no table.
    sym: u32,
    /// Byte span of the raw word.
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: i32,
    right: i32,
    size: u32,
    merged: u32,
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Lowest rank first, then the leftmost pair (the max-heap pops the greatest).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Reusable buffers of one worker.
#[derive(Default)]
pub(crate) struct BpeScratch {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Bigram>,
    encoded: Vec<u8>,
}

const NONE: u32 = u32::MAX;

/// Tokenizes one pre-tokenized `word` (raw bytes) into `out`.
pub(crate) fn tokenize_word(
    m: &Merges,
    ignore_merges: bool,
    word: &[u8],
    scratch: &mut BpeScratch,
    out: &mut Vec<u32>,
) {
    if word.is_empty() {
        return;
    }
    if ignore_merges {
        m.encode(word, &mut scratch.encoded);
        if let Some(id) = m.token_of_encoded(&scratch.encoded) {
            out.push(id);
            return;
        }
    }
    let symbols = &mut scratch.symbols;
    symbols.clear();
    for (i, &b) in word.iter().enumerate() {
        symbols.push(Symbol {
            sym: m.byte_symbol[b as usize].unwrap_or(NONE),
            start: i as u32,
            len: 1,
            prev: i as i32 - 1,
            next: if i + 1 == word.len() {
                -1
            } else {
                i as i32 + 1
            },
        });
    }
    let heap = &mut scratch.heap;
    heap.clear();
    let add = |symbols: &[Symbol], heap: &mut BinaryHeap<Bigram>, left: i32, right: i32| {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        if l.sym == NONE || r.sym == NONE {
            return;
        }
        if let Some(&(rank, merged)) = m.ranks.get(&(l.sym, r.sym)) {
            heap.push(Bigram {
                rank,
                left,
                right,
                size: l.len + r.len,
                merged,
            });
        }
    };
    for i in 1..symbols.len() as i32 {
        add(symbols, heap, i - 1, i);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (symbols[b.left as usize], symbols[b.right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        let left = &mut symbols[b.left as usize];
        left.len += r.len;
        left.sym = b.merged;
        left.next = r.next;
        let prev = left.prev;
        symbols[b.right as usize].len = 0;
        if r.next >= 0 {
            symbols[r.next as usize].prev = b.left;
        }
        add(symbols, heap, prev, b.left);
        add(symbols, heap, b.left, r.next);
    }
    let mut i = 0i32;
    while i != -1 {
        let s = symbols[i as usize];
        let token = if s.sym == NONE {
            None
        } else {
            m.token_of[s.sym as usize]
        };
        match token {
            Some(id) => out.push(id),
            None => {
                // Not a token: each byte of its GPT-2 spelling, where that is a token.
                let raw = &word[s.start as usize..(s.start + s.len) as usize];
                m.encode(raw, &mut scratch.encoded);
                for &b in &scratch.encoded {
                    if let Some(id) = m.token_of_encoded(&[b]) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
