//! Pre-tokenizers of the byte-level BPE vocabularies: the word splits llama.cpp makes
//! before merging, per `tokenizer.ggml.pre`. Each split is a hand-written matcher of
//! the regex llama.cpp uses for that family, with llama.cpp's Unicode categories
//! (see `unicode_flags.rs`) and its quirks (a `\s+(?!\S)` that looks only inside the
//! current piece, ASCII-only case folding of contractions).
//!
//! A split runs over code points and refines a list of pieces: every stage of a
//! multi-regex pre-tokenizer splits each piece of the previous stage, and the text
//! between two matches is a piece of its own.

use std::sync::OnceLock;

use super::unicode_flags::{RANGES, WHITESPACE};

/// Category flags of a code point, as llama.cpp's `unicode_cpt_flags` (low byte), plus
/// a whitespace bit. 0 means "outside the piece".
pub(crate) type Flags = u16;
pub(crate) const NUMBER: Flags = 0x02;
pub(crate) const LETTER: Flags = 0x04;
pub(crate) const PUNCTUATION: Flags = 0x20;
pub(crate) const WHITESPACE_BIT: Flags = 0x100;

fn table() -> &'static [u8] {
    static TABLE: OnceLock<Box<[u8]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![1u8; 0x110000];
        for (i, &(start, flags)) in RANGES.iter().enumerate() {
            let end = RANGES.get(i + 1).map_or(0x110000, |r| r.0);
            t[start as usize..end as usize].fill(flags);
        }
        t.into_boxed_slice()
    })
}

/// The flags of code point `c`.
pub(crate) fn flags(c: u32) -> Flags {
    let cat = Flags::from(table().get(c as usize).copied().unwrap_or(1));
    if WHITESPACE.binary_search(&c).is_ok() {
        cat | WHITESPACE_BIT
    } else {
        cat
    }
}

/// A pre-tokenizer family (the regexes llama.cpp runs for a `tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreTokenizer {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
    Gpt2,
    /// Llama 3: case-insensitive contractions, `\p{N}{1,3}`, newline-aware whitespace.
    Llama3,
    /// Qwen 2: as Llama 3 with single digits.
    Qwen2,
    /// StarCoder, SmolLM, Command-R, …: single digits first, then GPT-2.
    DigitsThenGpt2,
    /// llama.cpp's default: punctuation runs, GPT-2, digit runs, digit triples.
    Default,
}

/// A text as code points, with the byte offset of each (and one past the end).
pub(crate) struct Cpts {
    pub(crate) cpts: Vec<u32>,
    pub(crate) offsets: Vec<usize>,
}

impl Cpts {
    pub(crate) fn new(text: &str) -> Cpts {
        let mut cpts = Vec::with_capacity(text.len());
        let mut offsets = Vec::with_capacity(text.len() + 1);
        for (i, c) in text.char_indices() {
            cpts.push(c as u32);
            offsets.push(i);
        }
        offsets.push(text.len());
        Cpts { cpts, offsets }
    }
}

/// A view of one piece: code points and their flags, 0 / out-of-range outside it.
struct Piece<'a> {
    cpts: &'a [u32],
    flags: &'a [Flags],
    ini: usize,
    end: usize,
}

const OUT: u32 = u32::MAX;

impl Piece<'_> {
    #[inline]
    fn cpt(&self, pos: usize) -> u32 {
        if pos >= self.ini && pos < self.end {
            self.cpts[pos]
        } else {
            OUT
        }
    }
    #[inline]
    fn f(&self, pos: usize) -> Flags {
        if pos >= self.ini && pos < self.end {
            self.flags[pos]
        } else {
            0
        }
    }
}

fn ascii_lower(c: u32) -> u32 {
    if (u32::from(b'A')..=u32::from(b'Z')).contains(&c) {
        c + 32
    } else {
        c
    }
}

/// Length in code points of a contraction at `pos` (`'s`, `'ll`, …), or 0.
fn contraction(p: &Piece<'_>, pos: usize, fold: bool) -> usize {
    if p.cpt(pos) != u32::from(b'\'') || pos + 1 >= p.end {
        return 0;
    }
    let low = |c: u32| if fold { ascii_lower(c) } else { c };
    let n = low(p.cpt(pos + 1));
    if [b's', b't', b'm', b'd'].iter().any(|&c| n == u32::from(c)) {
        return 2;
    }
    if pos + 2 < p.end {
        let nn = low(p.cpt(pos + 2));
        let pair = |a: u8, b: u8| n == u32::from(a) && nn == u32::from(b);
        if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
            return 3;
        }
    }
    0
}

const LNW: Flags = LETTER | NUMBER | WHITESPACE_BIT;

fn split_gpt2(p: &Piece<'_>, out: &mut Vec<usize>) {
    let mut pos = p.ini;
    let space = u32::from(b' ');
    while pos < p.end {
        let cpt = p.cpt(pos);
        let f = p.f(pos);
        let n = contraction(p, pos, false);
        if n > 0 {
            pos += n;
            out.push(pos);
            continue;
        }
        let mut f2 = if cpt == space { p.f(pos + 1) } else { f };
        let mut matched = false;
        for class in [LETTER, NUMBER] {
            if f2 & class != 0 {
                pos += usize::from(cpt == space);
                while f2 & class != 0 {
                    pos += 1;
                    f2 = p.f(pos);
                }
                matched = true;
                break;
            }
        }
        if matched {
            out.push(pos);
            continue;
        }
        if f2 & LNW == 0 && f2 != 0 {
            pos += usize::from(cpt == space);
            while f2 & LNW == 0 && f2 != 0 {
                pos += 1;
                f2 = p.f(pos);
            }
            out.push(pos);
            continue;
        }
        let mut ws = 0;
        while p.f(pos + ws) & WHITESPACE_BIT != 0 {
            ws += 1;
        }
        if ws > 1 && p.cpt(pos + ws) != OUT {
            pos += ws - 1;
        } else if ws > 0 {
            pos += ws;
        } else {
            pos += 1;
        }
        out.push(pos);
    }
}

fn split_llama3(p: &Piece<'_>, out: &mut Vec<usize>, digits3: bool) {
    let mut pos = p.ini;
    let (space, cr, lf) = (u32::from(b' '), u32::from(b'\r'), u32::from(b'\n'));
    while pos < p.end {
        let cpt = p.cpt(pos);
        let f = p.f(pos);
        let n = contraction(p, pos, true);
        if n > 0 {
            pos += n;
            out.push(pos);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(cpt == cr || cpt == lf || f & NUMBER != 0)
            && (f & LETTER != 0 || p.f(pos + 1) & LETTER != 0)
        {
            pos += 1;
            while p.f(pos) & LETTER != 0 {
                pos += 1;
            }
            out.push(pos);
            continue;
        }
        // \p{N}{1,3} or \p{N}
        if f & NUMBER != 0 {
            if digits3 {
                let mut ini = pos;
                while p.f(pos) & NUMBER != 0 {
                    pos += 1;
                    if pos - ini >= 3 {
                        out.push(pos);
                        ini = pos;
                    }
                }
                if pos > ini {
                    out.push(pos);
                }
            } else {
                pos += 1;
                out.push(pos);
            }
            continue;
        }
        // <space>?[^\s\p{L}\p{N}]+[\r\n]*
        let mut f2 = if cpt == space { p.f(pos + 1) } else { f };
        if f2 & LNW == 0 && f != 0 {
            pos += usize::from(cpt == space);
            while f2 & LNW == 0 && f2 != 0 {
                pos += 1;
                f2 = p.f(pos);
            }
            let mut c2 = p.cpt(pos);
            while c2 == cr || c2 == lf {
                pos += 1;
                c2 = p.cpt(pos);
            }
            out.push(pos);
            continue;
        }
        let mut ws = 0;
        let mut last_newline = 0;
        while p.f(pos + ws) & WHITESPACE_BIT != 0 {
            let c2 = p.cpt(pos + ws);
            if c2 == cr || c2 == lf {
                last_newline = pos + ws + 1;
            }
            ws += 1;
        }
        if last_newline > 0 {
            pos = last_newline;
        } else if ws > 1 && p.cpt(pos + ws) != OUT {
            pos += ws - 1;
        } else if ws > 0 {
            pos += ws;
        } else {
            pos += 1;
        }
        out.push(pos);
    }
}

/// Splits each piece at runs of code points in a class (`[class]+`), or isolates
/// each one (`[class]`): matches and the text between them become pieces.
fn split_class(
    p: &Piece<'_>,
    out: &mut Vec<usize>,
    in_class: impl Fn(u32, Flags) -> bool,
    runs: bool,
) {
    let mut pos = p.ini;
    while pos < p.end {
        let inside = in_class(p.cpts[pos], p.flags[pos]);
        if inside && !runs {
            pos += 1;
        } else {
            while pos < p.end && in_class(p.cpts[pos], p.flags[pos]) == inside {
                pos += 1;
            }
        }
        out.push(pos);
    }
}

/// `[0-9][0-9][0-9]`: leftmost triples of ASCII digits; the rest stays in pieces.
fn split_triples(p: &Piece<'_>, out: &mut Vec<usize>) {
    let digit = |c: u32| (u32::from(b'0')..=u32::from(b'9')).contains(&c);
    let mut pos = p.ini;
    let mut last = p.ini;
    while pos + 3 <= p.end {
        if digit(p.cpts[pos]) && digit(p.cpts[pos + 1]) && digit(p.cpts[pos + 2]) {
            if pos > last {
                out.push(pos);
            }
            pos += 3;
            out.push(pos);
            last = pos;
        } else {
            pos += 1;
        }
    }
    if p.end > last {
        out.push(p.end);
    }
}

/// llama.cpp's collapsed `\p{N}`: ASCII digits and non-ASCII, non-space numbers.
fn is_number_collapsed(c: u32, f: Flags) -> bool {
    if c < 128 {
        (u32::from(b'0')..=u32::from(b'9')).contains(&c)
    } else {
        f & WHITESPACE_BIT == 0 && f & 0xFF == NUMBER
    }
}

/// llama.cpp's collapsed `[\p{P}\$\+<=>\^~\|]`.
fn is_punct_collapsed(c: u32, f: Flags) -> bool {
    if c < 128 {
        matches!(c as u8, b'!'..=b'#' | b'%'..=b'*' | b','..=b'/' | b':' | b';' | b'?' | b'@'
            | b'['..=b']' | b'_' | b'{' | b'}' | b'$' | b'+' | b'<'..=b'>' | b'^' | b'~' | b'|')
    } else {
        f & WHITESPACE_BIT == 0 && f & 0xFF == PUNCTUATION
    }
}

impl PreTokenizer {
    /// The word boundaries of `text` as code point ends (each word ends at one).
    pub(crate) fn split(self, text: &Cpts) -> Vec<usize> {
        let cpts = &text.cpts;
        let fl: Vec<Flags> = cpts.iter().map(|&c| flags(c)).collect();
        let mut ends = vec![cpts.len()];
        let stage = |ends: &mut Vec<usize>, f: &dyn Fn(&Piece<'_>, &mut Vec<usize>)| {
            let mut next = Vec::with_capacity(ends.len() * 2);
            let mut ini = 0;
            for &end in ends.iter() {
                if end > ini {
                    f(
                        &Piece {
                            cpts,
                            flags: &fl,
                            ini,
                            end,
                        },
                        &mut next,
                    );
                }
                ini = end;
            }
            *ends = next;
        };
        let number =
            |p: &Piece<'_>, out: &mut Vec<usize>| split_class(p, out, is_number_collapsed, false);
        match self {
            PreTokenizer::Gpt2 => stage(&mut ends, &split_gpt2),
            PreTokenizer::Llama3 => stage(&mut ends, &|p, o| split_llama3(p, o, true)),
            PreTokenizer::Qwen2 => stage(&mut ends, &|p, o| split_llama3(p, o, false)),
            PreTokenizer::DigitsThenGpt2 => {
                stage(&mut ends, &number);
                stage(&mut ends, &split_gpt2);
            }
            PreTokenizer::Default => {
                stage(&mut ends, &|p, o| {
                    split_class(p, o, is_punct_collapsed, true)
                });
                stage(&mut ends, &split_gpt2);
                stage(&mut ends, &|p, o| {
                    split_class(p, o, is_number_collapsed, true)
                });
                stage(&mut ends, &split_triples);
            }
        }
        ends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: PreTokenizer, text: &str) -> Vec<String> {
        let c = Cpts::new(text);
        let mut start = 0;
        pre.split(&c)
            .into_iter()
            .map(|end| {
                let w = text[c.offsets[start]..c.offsets[end]].to_string();
                start = end;
                w
            })
            .collect()
    }

    #[test]
    fn gpt2_words() {
        assert_eq!(
            words(PreTokenizer::Gpt2, "Hello world's  12 !!\n"),
            ["Hello", " world", "'s", " ", " 12", " !!", "\n"]
        );
    }

    #[test]
    fn llama3_words() {
        assert_eq!(
            words(PreTokenizer::Llama3, "I'LL pay 12345 now.\n\n  x"),
            ["I", "'LL", " pay", " ", "123", "45", " now", ".\n\n", " ", " x"]
        );
        assert_eq!(words(PreTokenizer::Qwen2, "a 12"), ["a", " ", "1", "2"]);
    }

    #[test]
    fn default_words() {
        assert_eq!(
            words(PreTokenizer::Default, "a+b=1234"),
            ["a", "+", "b", "=", "123", "4"]
        );
    }

    #[test]
    fn categories_come_from_llama_cpp() {
        assert_eq!(flags(u32::from('a')), LETTER);
        assert_eq!(flags(u32::from('7')), NUMBER);
        assert_eq!(flags(0x3000) & WHITESPACE_BIT, WHITESPACE_BIT);
        assert_eq!(flags(0x2FFC), 0x40); // a symbol since Unicode 15.1
    }
}
