//! Detection stays linear in memory however the aliases nest. `aa`, `aa aa`, …,
//! 300 words over 6 MB of `aa aa …` reached 23.7 GB when every overlapping match was
//! collected before choosing; the peak heap is measured here by a counting allocator.
//! So does the GGUF tokenizer's special-token partition, where a model's user-defined
//! tokens nest the same way.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use aotcc::{CompileOptions, Compiler, Estimator, Gguf, GgufTokenizer, Source};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn nested_spec(terms: usize) -> String {
    let list: Vec<serde_json::Value> = (1..=terms)
        .map(
            |k| serde_json::json!({"name": vec!["aa"; k].join(" "), "definition": format!("d{k}")}),
        )
        .collect();
    serde_json::to_string(&list).unwrap()
}

/// The tests of this file run one at a time: the counters are process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The peak heap above what was live before `f` ran.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - before)
}

#[test]
fn regression_nested_aliases_detect_in_linear_memory() {
    let _alone = alone();
    let compiler = Compiler::new(&nested_spec(300), "nested.json", CompileOptions::default())
        .expect("the spec is valid");
    let text = "aa ".repeat(2_000_000);
    let clock = Instant::now();
    let (found, peak) = peak_during(|| compiler.detector().find(&text, &[0]));
    let secs = clock.elapsed().as_secs_f64();
    // Leftmost-longest: 300-word occurrences back to back, then the 2,000,000 % 300 left.
    assert_eq!(found.len(), 2_000_000 / 300 + 1);
    assert!(found[..found.len() - 1].iter().all(|o| o.term == 299));
    assert_eq!(found.last().unwrap().term as usize, 2_000_000 % 300 - 1);
    assert!(
        peak < 3 * text.len(),
        "detection took {peak} bytes over a {}-byte text",
        text.len()
    );
    assert!(secs < 20.0, "detection took {secs:.1} s");
}

#[test]
fn nested_aliases_compile_in_linear_memory() {
    let _alone = alone();
    let compiler = Compiler::new(&nested_spec(300), "nested.json", CompileOptions::default())
        .expect("the spec is valid");
    let text = "aa ".repeat(300_000);
    let sources = [Source::new("nested.md", text.clone().into_bytes())];
    let (artifact, peak) = peak_during(|| {
        compiler
            .compile(&sources, &Estimator, aotcc::ESTIMATOR_FINGERPRINT, None)
            .expect("compiles")
    });
    assert_eq!(artifact.decompile().unwrap(), text);
    assert!(
        peak < 40 * text.len(),
        "the compile took {peak} bytes over a {}-byte text",
        text.len()
    );
}

#[test]
fn a_rejected_longest_match_still_reveals_the_shorter_ones() {
    let _alone = alone();
    // Every alias but the shortest ends inside a word, at every start.
    let terms: Vec<serde_json::Value> = (1..=40)
        .map(|k| serde_json::json!({"name": "ab".repeat(k), "definition": format!("d{k}")}))
        .collect();
    let spec = serde_json::to_string(&terms).unwrap();
    let compiler = Compiler::new(&spec, "s.json", CompileOptions::default()).unwrap();
    let word = format!("{}x", "ab".repeat(40));
    let text = format!("{word} ab ").repeat(2_000);
    let found = compiler.detector().find(&text, &[0]);
    // Only the lone `ab` words are whole words.
    assert_eq!(found.len(), 2_000);
    assert!(found.iter().all(|o| o.term == 0 && o.end - o.start == 2));
}

#[test]
fn nested_aliases_that_match_anywhere_stay_linear() {
    let _alone = alone();
    // Not whole-word, case-sensitive, and starting with punctuation: the other automata.
    for (options, unit) in [
        (r#""whole_word": false"#, "aa "),
        (r#""case_sensitive": true"#, "Aa "),
        (r#""whole_word": true"#, "-a "),
    ] {
        let terms: Vec<String> = (1..=300)
            .map(|k| {
                let name = vec![unit.trim_end(); k].join(" ");
                format!(r#"{{"name": {name:?}, "definition": "d{k}"}}"#)
            })
            .collect();
        let spec = format!(
            r#"{{"options": {{{options}}}, "terms": [{}]}}"#,
            terms.join(",")
        );
        let compiler = Compiler::new(&spec, "s.json", CompileOptions::default()).unwrap();
        let text = unit.repeat(1_000_000);
        let clock = Instant::now();
        let (found, peak) = peak_during(|| compiler.detector().find(&text, &[0]));
        assert_eq!(found.len(), 1_000_000 / 300 + 1, "{options}");
        assert!(peak < 3 * text.len(), "{options}: {peak} bytes");
        assert!(clock.elapsed().as_secs_f64() < 20.0, "{options}");
    }
}

/// A SentencePiece-style vocabulary: `<unk>`, the byte tokens, `a`, and the user-defined
/// tokens `aa`, `aaa`, … up to `n` letters.
fn nested_vocab(n: usize) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, s: &[u8]) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s);
    }
    let mut tokens: Vec<Vec<u8>> = vec![b"<unk>".to_vec()];
    tokens.extend((0..256).map(|b| format!("<0x{b:02X}>").into_bytes()));
    tokens.extend((1..=n).map(|k| vec![b'a'; k]));
    let types: Vec<i32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| match i {
            0 => 2,
            1..=256 => 6,
            _ if t.len() > 1 => 4,
            _ => 1,
        })
        .collect();
    let mut d = b"GGUF".to_vec();
    d.extend(3u32.to_le_bytes());
    d.extend(0u64.to_le_bytes());
    d.extend(3u64.to_le_bytes());
    put(&mut d, b"tokenizer.ggml.model");
    d.extend(8u32.to_le_bytes());
    put(&mut d, b"llama");
    put(&mut d, b"tokenizer.ggml.tokens");
    d.extend(9u32.to_le_bytes());
    d.extend(8u32.to_le_bytes());
    d.extend((tokens.len() as u64).to_le_bytes());
    for t in &tokens {
        put(&mut d, t);
    }
    put(&mut d, b"tokenizer.ggml.token_type");
    d.extend(9u32.to_le_bytes());
    d.extend(5u32.to_le_bytes());
    d.extend((types.len() as u64).to_le_bytes());
    for t in types {
        d.extend(t.to_le_bytes());
    }
    d
}

#[test]
fn regression_nested_special_tokens_tokenize_in_linear_memory() {
    let _alone = alone();
    // Every user-defined token ends at every byte of `aaaa…`: 300 occurrences a byte
    // were collected (9.6 GB over 1 MB) before any was claimed.
    let g = Gguf::parse(&nested_vocab(300), "nested.gguf").unwrap();
    let t = GgufTokenizer::from_gguf(&g).unwrap();
    let text = "a".repeat(1_000_000);
    let clock = Instant::now();
    let (ids, peak) = peak_during(|| t.tokenize(&text).unwrap());
    // The longest token claims first, left to right: 3,333 of 300 letters, then 100.
    assert_eq!(ids.len(), 1_000_000 / 300 + 1);
    assert_eq!(t.token_text(ids[0]).unwrap().len(), 300);
    assert_eq!(t.token_text(*ids.last().unwrap()).unwrap().len(), 100);
    assert!(
        peak < 40 * text.len(),
        "tokenizing took {peak} bytes over a {}-byte text",
        text.len()
    );
    assert!(clock.elapsed().as_secs_f64() < 30.0);
}
