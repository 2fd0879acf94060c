//! Detection stays linear in memory however the aliases nest. `aa`, `aa aa`, …,
//! 300 words over 6 MB of `aa aa …` reached 23.7 GB when every overlapping match was
//! collected before choosing; the peak heap is measured here by a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use aotcc::{CompileOptions, Compiler, Estimator, Source};

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
