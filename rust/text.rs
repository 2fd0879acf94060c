//! Character classes shared by detection and segmentation: what a word character is,
//! and the length-preserving case folding that lets a match in folded text be a match
//! at the same bytes of the source.

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// Scripts written without spaces: every character there is a word of its own.
fn is_unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0E7F | 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xF900..=0xFAFF | 0x20000..=0x3FFFF)
}

/// True for letters, marks, numbers and connector punctuation, outside unspaced scripts.
#[inline]
pub fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    if is_unspaced(c) {
        return false;
    }
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
            | G::NonspacingMark
            | G::SpacingMark
            | G::EnclosingMark
            | G::DecimalNumber
            | G::LetterNumber
            | G::OtherNumber
            | G::ConnectorPunctuation
    )
}

/// The case fold of one character: its lowercase when that is a single character of
/// the same UTF-8 length, else the character itself.
#[inline]
pub fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) if l.len_utf8() == c.len_utf8() => l,
        _ => c,
    }
}

/// True for the characters that are the fold of a character whose word-ness differs
/// (U+A7D2 folds to U+A7D3, U+A7D4 to U+A7D5: Rust's case tables know the capitals,
/// the category tables do not). Everywhere else folding keeps a word a word, which
/// detection relies on to compare word runs of the text with those of an alias.
#[inline]
pub(crate) fn fold_may_change_word(c: char) -> bool {
    matches!(c, '\u{A7D3}' | '\u{A7D5}')
}

/// Case-folds `text` without changing any byte offset (see [`fold_char`]).
pub fn fold_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    fold_into(text, &mut out);
    out
}

/// Appends the fold of `text` to `out`; ASCII runs take a fast path.
pub(crate) fn fold_into(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Fast path: a run of ASCII bytes.
        let run = bytes[i..]
            .iter()
            .position(|b| !b.is_ascii())
            .unwrap_or(bytes.len() - i);
        if run > 0 {
            let start = out.len();
            out.push_str(&text[i..i + run]);
            // SAFETY-free: ASCII lowercase keeps UTF-8 valid.
            out[start..].make_ascii_lowercase();
            i += run;
            continue;
        }
        let c = text[i..].chars().next().expect("non-empty");
        out.push(fold_char(c));
        i += c.len_utf8();
    }
}

/// The character ending just before byte `at`, if any.
#[inline]
pub(crate) fn char_before(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

/// The character starting at byte `at`, if any.
#[inline]
pub(crate) fn char_at(text: &str, at: usize) -> Option<char> {
    text[at..].chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_keeps_lengths() {
        for s in [
            "Refund POLICY",
            "ÀÉÎ",
            "İstanbul",
            "ΣΑΣ",
            "Straße",
            "K",
            "日本",
        ] {
            assert_eq!(fold_case(s).len(), s.len(), "{s}");
        }
        assert_eq!(fold_case("ÀB"), "àb");
        assert_eq!(fold_case("İ"), "İ"); // lowercase is two chars: kept
    }

    #[test]
    fn folding_keeps_word_chars_but_for_the_listed_ones() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let f = fold_char(c);
            if is_word_char(c) != is_word_char(f) {
                assert!(
                    fold_may_change_word(f),
                    "U+{:04X} -> U+{:04X}",
                    c as u32,
                    f as u32
                );
            }
        }
    }

    #[test]
    fn word_chars() {
        assert!(is_word_char('a') && is_word_char('é') && is_word_char('\u{301}'));
        assert!(is_word_char('_') && is_word_char('٣'));
        assert!(!is_word_char('-') && !is_word_char(' ') && !is_word_char('😀'));
        assert!(!is_word_char('日') && !is_word_char('の'));
    }
}
