//! Every input a fuzz target crashed on, kept under tests/data/fuzz/TARGET/ once fixed,
//! replayed through the target's own checks (fuzz/harness.rs): `make fuzz` finds them,
//! `cargo test` keeps them fixed.

use std::path::Path;

#[path = "../fuzz/harness.rs"]
mod harness;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    paths.sort();
    for path in &paths {
        let data = std::fs::read(path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{target}: {} crashes again", path.display());
    }
    paths.len()
}

#[test]
fn regression_fuzz_spec() {
    replay("spec", harness::spec);
}

#[test]
fn regression_fuzz_artifact() {
    replay("artifact", harness::artifact);
}

#[test]
fn regression_fuzz_gguf() {
    replay("gguf", harness::gguf);
}
