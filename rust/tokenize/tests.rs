//! Unit tests on small vocabularies written as GGUF bytes here; parity with llama.cpp
//! on real vocabularies is tested from Python (tests/test_gguf_tokenizer.py).

use super::*;

enum V<'a> {
    S(&'a str),
    Strs(Vec<&'a str>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
    B(bool),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn gguf(kvs: &[(&str, V<'_>)]) -> Vec<u8> {
    let mut d = b"GGUF".to_vec();
    d.extend(3u32.to_le_bytes());
    d.extend(0u64.to_le_bytes());
    d.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        put_str(&mut d, k);
        match v {
            V::S(s) => {
                d.extend(8u32.to_le_bytes());
                put_str(&mut d, s);
            }
            V::B(b) => {
                d.extend(7u32.to_le_bytes());
                d.push(u8::from(*b));
            }
            V::Strs(xs) => {
                d.extend(9u32.to_le_bytes());
                d.extend(8u32.to_le_bytes());
                d.extend((xs.len() as u64).to_le_bytes());
                for x in xs {
                    put_str(&mut d, x);
                }
            }
            V::F32s(xs) => {
                d.extend(9u32.to_le_bytes());
                d.extend(6u32.to_le_bytes());
                d.extend((xs.len() as u64).to_le_bytes());
                for x in xs {
                    d.extend(x.to_le_bytes());
                }
            }
            V::I32s(xs) => {
                d.extend(9u32.to_le_bytes());
                d.extend(5u32.to_le_bytes());
                d.extend((xs.len() as u64).to_le_bytes());
                for x in xs {
                    d.extend(x.to_le_bytes());
                }
            }
        }
    }
    d
}

/// An SPM vocabulary: byte tokens, a few pieces with scores, one user-defined token.
fn spm_tokenizer(add_space_prefix: bool) -> GgufTokenizer {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    tokens.extend((0..256).map(|b| format!("<0x{b:02X}>")));
    let pieces = [
        ("▁", -1.0),
        ("a", -2.0),
        ("b", -2.0),
        ("c", -2.0),
        ("ab", -3.0),
        ("▁ab", -1.5),
        ("bc", -2.5),
        ("abc", -4.0),
        ("<hr>", 0.0),
    ];
    tokens.extend(pieces.iter().map(|p| p.0.to_string()));
    let mut scores = vec![0.0f32; 3 + 256];
    scores.extend(pieces.iter().map(|p| p.1));
    let mut types = vec![2, 3, 3];
    types.extend(std::iter::repeat_n(6, 256));
    types.extend(std::iter::repeat_n(1, pieces.len() - 1));
    types.push(4);
    let data = gguf(&[
        ("general.architecture", V::S("llama")),
        ("tokenizer.ggml.model", V::S("llama")),
        (
            "tokenizer.ggml.tokens",
            V::Strs(tokens.iter().map(String::as_str).collect()),
        ),
        ("tokenizer.ggml.scores", V::F32s(scores)),
        ("tokenizer.ggml.token_type", V::I32s(types)),
        ("tokenizer.ggml.add_space_prefix", V::B(add_space_prefix)),
    ]);
    GgufTokenizer::from_gguf(&Gguf::parse(&data, "spm.gguf").unwrap()).unwrap()
}

fn texts(t: &GgufTokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| String::from_utf8_lossy(t.token_text(i).unwrap()).into_owned())
        .collect()
}

#[test]
fn spm_merges_by_score_with_byte_fallback() {
    let t = spm_tokenizer(false);
    // "bc" outscores "ab", and then "abc" is a token.
    assert_eq!(texts(&t, &t.tokenize("abc ab").unwrap()), ["abc", "▁ab"]);
    // "é" is not a piece: its two UTF-8 bytes become byte tokens.
    assert_eq!(texts(&t, &t.tokenize("é").unwrap()), ["<0xC3>", "<0xA9>"]);
    // A user-defined token cuts the text; the space prefix follows it.
    let p = spm_tokenizer(true);
    assert_eq!(
        texts(&p, &p.tokenize("ab<hr>ab").unwrap()),
        ["▁ab", "<hr>", "▁ab"]
    );
    // Control tokens are text when special tokens are not parsed.
    assert_eq!(
        texts(&t, &t.tokenize("</s>").unwrap()),
        ["<0x3C>", "<0x2F>", "<0x73>", "<0x3E>"]
    );
    assert_eq!(t.count_batch(&["abc ab", "", "é"]).unwrap(), vec![2, 0, 2]);
    assert_eq!(t.cached_counts(), 3);
}

fn bpe_tokenizer(pre: &str, model: &str) -> Result<GgufTokenizer, Error> {
    let chars = bpe::byte_chars();
    let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    let merges = ["Ġ t", "h e", "Ġt he", "1 2", "12 3"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    tokens.push("<|endoftext|>".into());
    tokens.push("<sep>".into());
    let mut types = vec![1; tokens.len() - 2];
    types.extend([3, 4]);
    let data = gguf(&[
        ("general.architecture", V::S("llama")),
        ("tokenizer.ggml.model", V::S(model)),
        ("tokenizer.ggml.pre", V::S(pre)),
        (
            "tokenizer.ggml.tokens",
            V::Strs(tokens.iter().map(String::as_str).collect()),
        ),
        ("tokenizer.ggml.token_type", V::I32s(types)),
        ("tokenizer.ggml.merges", V::Strs(merges.to_vec())),
    ]);
    GgufTokenizer::from_gguf(&Gguf::parse(&data, "bpe.gguf").unwrap())
}

#[test]
fn bpe_merges_by_rank() {
    let t = bpe_tokenizer("llama-bpe", "gpt2").unwrap();
    assert_eq!(
        texts(&t, &t.tokenize("the the<sep>12345").unwrap()),
        ["t", "he", "Ġthe", "<sep>", "123", "4", "5"]
    );
    let q = bpe_tokenizer("qwen2", "gpt2").unwrap();
    assert_eq!(texts(&q, &q.tokenize("123").unwrap()), ["1", "2", "3"]);
    // The control token stays text.
    assert_eq!(t.tokenize("<|endoftext|>").unwrap().len(), 13);
}

#[test]
fn unsupported_vocabularies_are_refused() {
    let e = bpe_tokenizer("deepseek-coder", "gpt2").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Input);
    assert!(e
        .message()
        .starts_with("bpe.gguf: tokenizer.ggml.pre = \"deepseek-coder\""));
    let e = bpe_tokenizer("default", "bert").unwrap_err();
    assert!(e
        .message()
        .contains("tokenizer.ggml.model = \"bert\" is not supported"));
}

#[test]
fn count_cache_round_trips() {
    let t = spm_tokenizer(false);
    t.count_batch(&["abc", "ab ab"]).unwrap();
    let dir = std::env::temp_dir().join(format!("aotcc-counts-{}", std::process::id()));
    let path = dir.join("c.bin");
    assert_eq!(t.save_counts(&path).unwrap(), 2);
    let fresh = spm_tokenizer(false);
    assert_eq!(fresh.load_counts(&path).unwrap(), 2);
    let other = spm_tokenizer(true);
    assert_ne!(other.fingerprint(), t.fingerprint());
    assert_eq!(other.load_counts(&path).unwrap(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}
