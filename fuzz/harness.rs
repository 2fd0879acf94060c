//! What each fuzz target does with one input: feed it to a reader of untrusted bytes and
//! check that the reader either refuses it with a one-line error or gives a value whose
//! every accessor works. A panic, an abort, an allocation past libFuzzer's limit or a
//! timeout is a crash. tests/fuzz_regressions.rs replays every crash kept under
//! tests/data/fuzz/ through these same functions.
#![allow(dead_code)] // each target uses one function

use aotcc::{
    Artifact, CompileOptions, Compiler, Error, Estimator, Gguf, GgufTokenizer, Placement,
    References, Source, TagIds, TagStyle,
};

/// Budgets a spec input can pick (low four bits of its first byte).
const BUDGETS: [u32; 16] = [
    512, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 4096,
];

fn one_line(e: &Error) {
    let m = e.message();
    assert!(!m.is_empty(), "empty error message");
    assert!(!m.contains('\n'), "error message of several lines: {m:?}");
}

/// The spec loader, then a compile of the prompt with it, then the artifact read back.
///
/// Input: one byte of options (budget, placement, tag style, references), the spec
/// JSON, a 0 byte, the prompt; a 1 byte in the prompt starts a second file.
pub fn spec(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (spec, prompt) = match rest.iter().position(|&b| b == 0) {
        Some(p) => (&rest[..p], &rest[p + 1..]),
        None => (rest, &b""[..]),
    };
    let Ok(spec) = std::str::from_utf8(spec) else {
        return;
    };
    let options = CompileOptions::default()
        .budget(BUDGETS[usize::from(flags & 0x0f)])
        .placement(if flags & 0x10 != 0 {
            Placement::Top
        } else {
            Placement::Chunk
        })
        .tag_style(if flags & 0x20 != 0 {
            TagStyle::Short
        } else {
            TagStyle::Seed
        })
        .references(match flags >> 6 {
            1 => References::Annotate,
            2 => References::Keep,
            _ => References::Tag,
        })
        .tag_ids(if flags >> 6 == 3 {
            TagIds::Cheap
        } else {
            TagIds::Alpha
        });
    let compiler = match Compiler::new(spec, "fuzz.json", options) {
        Ok(c) => c,
        Err(e) => return one_line(&e),
    };
    let sources: Vec<Source> = prompt
        .split(|&b| b == 1)
        .enumerate()
        .map(|(i, part)| Source::new(format!("p{i}.md"), part.to_vec()))
        .collect();
    let artifact = match compiler.compile(&sources, &Estimator, aotcc::ESTIMATOR_FINGERPRINT, None)
    {
        Ok(a) => a,
        Err(e) => return one_line(&e),
    };
    let joined: Vec<u8> = sources.iter().flat_map(|s| s.bytes.clone()).collect();
    assert_eq!(
        artifact
            .decompile()
            .expect("a compiled artifact decompiles")
            .as_bytes(),
        &joined[..],
        "decompile does not restore the source"
    );
    let bytes = artifact.to_bytes(false);
    let back = Artifact::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("the reader refuses what the compiler wrote: {e}"));
    assert_eq!(back.hash(), artifact.hash());
    use_artifact(&back);
}

/// The `.aotc` reader: the input as a file, then as a body under a valid hash (the
/// body hash is an integrity check, not a signature, so only the field checks stand
/// between a crafted body and the code that uses it).
pub fn artifact(data: &[u8]) {
    read_artifact(data);
    read_artifact(&wrap_body(data));
}

fn read_artifact(file: &[u8]) {
    match Artifact::from_bytes(file) {
        Ok(a) => {
            use_artifact(&a);
            let again = Artifact::from_bytes(&a.to_bytes(true))
                .unwrap_or_else(|e| panic!("an accepted artifact, written again, is refused: {e}"));
            assert_eq!(again.hash(), a.hash());
        }
        Err(e) => one_line(&e),
    }
}

/// Every accessor, and what the binding computes from them.
fn use_artifact(a: &Artifact) {
    let source = a.decompile().expect("an accepted artifact decompiles");
    let text = a.text();
    let in_text = |s: u64, e: u64| text.get(s as usize..e as usize).is_some();
    let in_source = |s: u64, e: u64| source.get(s as usize..e as usize).is_some();
    let c = a.chunks();
    for i in 0..c.src_start.len() {
        assert!(
            in_source(c.src_start[i], c.src_end[i]),
            "chunk {i} source span"
        );
        assert!(
            in_text(c.out_start[i], c.out_end[i]),
            "chunk {i} compiled span"
        );
    }
    let m = a.source_map();
    for i in 0..m.kind.len() {
        assert!(in_text(m.out_start[i], m.out_end[i]), "source map row {i}");
    }
    let o = a.occurrences();
    for i in 0..o.start.len() {
        assert!(in_source(o.start[i], o.end[i]), "occurrence {i}");
        assert!(
            (o.term[i] as usize) < a.terms().len(),
            "occurrence {i} term"
        );
    }
    for t in a.terms() {
        if let Some((s, e)) = t.definition_span {
            assert!(in_text(s, e), "definition span of {:?}", t.name);
        }
        if let Some(at) = t.first_offset {
            assert!(in_source(at, at), "first offset of {:?}", t.name);
        }
        if let Some(tag) = &t.tag {
            let _ = a.reference_tag(tag);
        }
    }
    for f in a.files() {
        assert!(in_source(f.start, f.end), "file {:?}", f.name);
    }
    let _ = (a.warnings(), a.timings(), a.hash(), a.tag_style());
    let _ = a.manifest_json().to_string();
}

/// An `.aotc` file whose body is `body` and whose hash is right: the map
/// `{format, version, hash, body, timings}` in msgpack, written out by hand.
fn wrap_body(body: &[u8]) -> Vec<u8> {
    fn key(out: &mut Vec<u8>, s: &str) {
        out.push(0xa0 | s.len() as u8); // fixstr
        out.extend_from_slice(s.as_bytes());
    }
    let hash = aotcc::blake3_hex(body);
    let mut out = vec![0x85]; // fixmap of 5
    key(&mut out, "format");
    key(&mut out, "aotc");
    key(&mut out, "version");
    out.push(aotcc::FORMAT_VERSION as u8); // positive fixint
    key(&mut out, "hash");
    out.push(0xd9); // str8
    out.push(hash.len() as u8);
    out.extend_from_slice(hash.as_bytes());
    key(&mut out, "body");
    out.push(0xc6); // bin32
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    key(&mut out, "timings");
    out.push(0x90); // empty fixarray
    out
}

/// The GGUF metadata reader and the tokenizer built from it, then tokenizing.
pub fn gguf(data: &[u8]) {
    let g = match Gguf::parse(data, "fuzz.gguf") {
        Ok(g) => g,
        Err(e) => return one_line(&e),
    };
    for (key, _) in &g.entries {
        let _ = (g.get_str(key), g.get_bool(key), g.get_uint(key));
    }
    let t = match GgufTokenizer::from_gguf(&g) {
        Ok(t) => t,
        Err(e) => return one_line(&e),
    };
    let _ = (t.name(), t.model(), t.pre(), t.fingerprint());
    let tail = String::from_utf8_lossy(&data[data.len().saturating_sub(64)..]).into_owned();
    let texts = [
        "",
        " ",
        "Hello, world!  It's 2024.\n\tTabs & <b>tags</b>",
        "<start_of_turn>user\nhi<end_of_turn>",
        "日本語のテキスト, ünïcödé, emoji 🙂🚀, ▁already▁escaped",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        tail.as_str(),
    ];
    let vocab = t.vocab_size();
    let mut counts = Vec::new();
    for text in texts {
        match t.tokenize(text) {
            Ok(ids) => {
                assert!(
                    ids.iter().all(|&id| (id as usize) < vocab),
                    "token id past the vocabulary"
                );
                for &id in &ids {
                    assert!(t.token_text(id).is_some());
                }
                counts.push(Some(ids.len() as u32));
            }
            Err(e) => {
                one_line(&e);
                counts.push(None);
            }
        }
    }
    if let Ok(batch) = t.count_batch(&texts) {
        for (got, want) in batch.iter().zip(&counts) {
            if let Some(want) = want {
                assert_eq!(got, want, "count and tokenize disagree");
            }
        }
    }
}
