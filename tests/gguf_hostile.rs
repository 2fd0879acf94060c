//! Hostile GGUF metadata: nesting without end, counts and lengths far past the bytes
//! in the file. Each must be refused with an error naming the file and a byte offset,
//! without a stack overflow or an allocation sized by the claim.

use aotcc::{ErrorKind, Gguf, GgufTokenizer};

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s);
}

fn header(n_kv: u64) -> Vec<u8> {
    let mut d = b"GGUF".to_vec();
    d.extend(3u32.to_le_bytes());
    d.extend(0u64.to_le_bytes());
    d.extend(n_kv.to_le_bytes());
    d
}

fn refused(data: &[u8], want: &str) -> String {
    let e = Gguf::parse(data, "m.gguf").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Input);
    let msg = e.message().to_string();
    assert!(
        msg.starts_with("m.gguf: corrupt GGUF metadata at byte "),
        "{msg}"
    );
    assert!(msg.contains(want), "{msg:?} does not contain {want:?}");
    assert!(!msg.contains('\n') && msg.len() < 300, "{msg}");
    msg
}

/// One key whose value is `levels` arrays, each holding the next (600 KB at 50,000).
fn nested(levels: usize) -> Vec<u8> {
    let mut d = header(1);
    put_str(&mut d, b"tokenizer.ggml.tokens");
    d.extend(9u32.to_le_bytes());
    for _ in 0..levels {
        d.extend(9u32.to_le_bytes());
        d.extend(1u64.to_le_bytes());
    }
    d.extend(8u32.to_le_bytes());
    d.extend(0u64.to_le_bytes());
    d
}

#[test]
fn regression_nested_arrays_do_not_overflow_the_stack() {
    // The reader recursed once per level: 50,000 levels segfaulted `compile --tokenizer`.
    let data = nested(50_000);
    assert!(data.len() > 600_000);
    refused(&data, "arrays nested more than 8 deep");
    // Through the file path, as `GgufTokenizer(path)` and `compile --tokenizer` read it.
    let dir = std::env::temp_dir().join(format!("aotcc-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nested.gguf");
    std::fs::write(&path, &data).unwrap();
    let e = GgufTokenizer::open(&path).unwrap_err();
    assert!(e.message().contains("arrays nested more than 8 deep"));
    assert!(e.message().starts_with(&path.display().to_string()));
    std::fs::remove_dir_all(&dir).unwrap();
    // A few levels are fine (skipped as an array of arrays).
    let g = Gguf::parse(&nested(3), "m.gguf").unwrap();
    assert_eq!(g.entries.len(), 1);
}

#[test]
fn counts_are_bounded_by_the_bytes_left() {
    // 2^24 entries announced in a 24-byte file: refused before any allocation.
    refused(&header(1 << 24), "key/value count 16777216 is implausible");
    refused(&header(u64::MAX), "key/value count 18446744073709551615");
    // Arrays whose length claims more elements than the bytes left can hold.
    for (elem, len) in [
        (8u32, 1u64 << 40),
        (6, u64::MAX),
        (5, u64::MAX / 4 + 1),
        (0, 1 << 62),
        (12, 1 << 61),
        (9, 1 << 60),
    ] {
        let mut d = header(1);
        put_str(&mut d, b"k");
        d.extend(9u32.to_le_bytes());
        d.extend(elem.to_le_bytes());
        d.extend(len.to_le_bytes());
        d.extend([0u8; 64]);
        refused(&d, &format!("array of {len} elements"));
    }
    // A string longer than the file.
    let mut d = header(1);
    put_str(&mut d, b"k");
    d.extend(8u32.to_le_bytes());
    d.extend(u64::MAX.to_le_bytes());
    refused(&d, "string value needs 18446744073709551615 bytes");
    // A key longer than the file.
    let mut d = header(1);
    d.extend((1u64 << 63).to_le_bytes());
    d.extend([0u8; 32]);
    refused(&d, "key needs 9223372036854775808 bytes");
    // Unknown types, as values and as array elements.
    let mut d = header(1);
    put_str(&mut d, b"k");
    d.extend(13u32.to_le_bytes());
    refused(&d, "unknown value type 13");
    let mut d = header(1);
    put_str(&mut d, b"k");
    d.extend(9u32.to_le_bytes());
    d.extend(u32::MAX.to_le_bytes());
    d.extend(1u64.to_le_bytes());
    refused(&d, "unknown array element type 4294967295");
}

#[test]
fn wrong_types_for_tokenizer_keys_are_errors() {
    // Every tokenizer key the reader looks at, given a value of another type.
    let keys = [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.add_space_prefix",
        "tokenizer.ggml.eos_token_id",
        "general.name",
        "general.architecture",
    ];
    for bad in keys {
        let mut d = header(4);
        for (k, v) in [
            ("tokenizer.ggml.model", "gpt2"),
            ("tokenizer.ggml.pre", "qwen2"),
        ] {
            put_str(&mut d, k.as_bytes());
            if k == bad {
                d.extend(4u32.to_le_bytes());
                d.extend(7u32.to_le_bytes());
            } else {
                d.extend(8u32.to_le_bytes());
                put_str(&mut d, v.as_bytes());
            }
        }
        put_str(&mut d, b"tokenizer.ggml.tokens");
        if bad == "tokenizer.ggml.tokens" {
            d.extend(7u32.to_le_bytes());
            d.push(1);
        } else {
            d.extend(9u32.to_le_bytes());
            d.extend(8u32.to_le_bytes());
            d.extend(2u64.to_le_bytes());
            put_str(&mut d, b"a");
            put_str(&mut d, b"b");
        }
        put_str(&mut d, bad.as_bytes());
        d.extend(7u32.to_le_bytes());
        d.push(1);
        match Gguf::parse(&d, "m.gguf") {
            Ok(g) => {
                if let Err(e) = GgufTokenizer::from_gguf(&g) {
                    assert!(e.message().starts_with("m.gguf: "), "{}", e.message());
                }
            }
            Err(e) => assert!(e.message().contains("duplicate key"), "{}", e.message()),
        }
    }
}
