//! Token counting: a [`Counter`] maps a batch of strings to their token counts. The
//! binding implements it with a HuggingFace `tokenizers` tokenizer (and later the target
//! model's own vocabulary); [`Estimator`] is the fast built-in fallback.

use rayon::prelude::*;

use crate::error::Error;
use crate::text::is_word_char;

/// Counts tokens of many strings at once.
pub trait Counter: Sync {
    /// The token count of each piece, in order.
    ///
    /// # Errors
    /// A [`crate::ErrorKind::Count`] error when the backend fails.
    fn count(&self, pieces: &[&str]) -> Result<Vec<u32>, Error>;
}

/// A fast, tokenizer-free estimate of BPE token counts (about 4 bytes of English a
/// token): a word is one token per 6 letters, punctuation and symbols one each, every
/// CJK character one, a line break one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Estimator;

/// The tokenizer fingerprint an artifact records when the [`Estimator`] counted it.
pub const ESTIMATOR_FINGERPRINT: &str = "estimator:v1";

impl Estimator {
    /// The estimate for one string.
    pub fn estimate(text: &str) -> u32 {
        let bytes = text.as_bytes();
        let mut tokens: u32 = 0;
        let mut word: u32 = 0; // weighted length of the current word run
        let mut i = 0;
        let flush = |word: &mut u32, tokens: &mut u32| {
            if *word > 0 {
                *tokens += 1 + (*word - 1) / 6;
                *word = 0;
            }
        };
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii() {
                if b.is_ascii_alphanumeric() || b == b'_' {
                    word += 1;
                } else {
                    flush(&mut word, &mut tokens);
                    if b == b'\n' {
                        if i == 0 || bytes[i - 1] != b'\n' {
                            tokens += 1;
                        }
                    } else if !b.is_ascii_whitespace() {
                        tokens += 1;
                    }
                }
                i += 1;
            } else {
                let c = text[i..].chars().next().expect("char boundary");
                if is_word_char(c) {
                    word += 2;
                } else {
                    flush(&mut word, &mut tokens);
                    tokens += if c.is_alphanumeric() { 1 } else { 2 };
                }
                i += c.len_utf8();
            }
        }
        flush(&mut word, &mut tokens);
        tokens
    }
}

impl Counter for Estimator {
    fn count(&self, pieces: &[&str]) -> Result<Vec<u32>, Error> {
        if pieces.len() < 4096 {
            return Ok(pieces.iter().map(|p| Estimator::estimate(p)).collect());
        }
        Ok(pieces
            .par_iter()
            .with_min_len(1024)
            .map(|p| Estimator::estimate(p))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_plausible() {
        assert_eq!(Estimator::estimate(""), 0);
        assert_eq!(Estimator::estimate("Refund policy."), 3);
        assert_eq!(Estimator::estimate("internationalization"), 4);
        assert_eq!(Estimator::estimate("退款政策"), 4);
        assert!(Estimator::estimate("<__SYS_STATE_A__ />") >= 3);
    }
}
