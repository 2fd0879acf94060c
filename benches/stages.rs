//! Criterion benches of the compile stages, in bytes of source per second.
//!
//! The corpus is the one the pytest benches use: a ~4 MB Markdown master prompt with
//! 1000 terms of 3 aliases each, written by `benches/corpus.py` (the project's one
//! corpus generator) into `build/bench/corpus/1k-terms`. When that directory is
//! missing it is generated first (with `.venv/bin/python` when there is one).
//! `AOTCC_BENCH_CORPUS=DIR` benches another directory holding `corpus.md` and
//! `terms.json`.
//!
//! Benches: `segment`, `detect` (`Detector::find`), `compile_estimator` (the whole
//! `Compiler::compile` with the `Estimator`) and `detect_plan_rewrite` (the sum of those
//! three stage timings reported by the same compile: the hot path without counting,
//! chunking and emitting).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aotcc::{segment, CompileOptions, Compiler, Estimator, Source};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// The corpus directory: `AOTCC_BENCH_CORPUS`, else the default one, generated when absent.
fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AOTCC_BENCH_CORPUS") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("build/bench/corpus/1k-terms");
    if !dir.join("terms.json").is_file() {
        let venv = root.join(".venv/bin/python");
        let python = if venv.is_file() {
            venv
        } else {
            PathBuf::from("python3")
        };
        let status = Command::new(&python)
            .arg(root.join("benches/corpus.py"))
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(status.success(), "benches/corpus.py failed ({status})");
    }
    dir
}

fn corpus() -> (String, String, String) {
    let dir = corpus_dir();
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
    };
    (
        read("corpus.md"),
        read("terms.json"),
        dir.display().to_string(),
    )
}

fn stages(c: &mut Criterion) {
    let (text, spec, origin) = corpus();
    let compiler = Compiler::new(&spec, "terms.json", CompileOptions::default())
        .expect("the bench spec is valid");
    let occurrences = compiler.detector().find(&text, &[0]).len();
    eprintln!(
        "corpus: {origin}: {} bytes, {} terms, {} occurrences",
        text.len(),
        compiler.spec().terms.len(),
        occurrences
    );
    let bytes = text.as_bytes().to_vec();
    let source = || vec![Source::new("corpus.md", bytes.clone())];

    let mut g = c.benchmark_group("stages");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(text.len() as u64));

    g.bench_function("segment", |b| b.iter(|| segment(black_box(&text), &[0])));
    g.bench_function("detect", |b| {
        b.iter(|| compiler.detector().find(black_box(&text), &[0]))
    });
    g.bench_function("compile_estimator", |b| {
        b.iter_batched(
            source,
            |sources| {
                compiler
                    .compile(&sources, &Estimator, aotcc::ESTIMATOR_FINGERPRINT, None)
                    .expect("compiles")
            },
            BatchSize::LargeInput,
        )
    });
    // The compile's own timings of detect, plan and rewrite, summed per run.
    g.bench_function("detect_plan_rewrite", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let artifact = compiler
                    .compile(&source(), &Estimator, aotcc::ESTIMATOR_FINGERPRINT, None)
                    .expect("compiles");
                let secs: f64 = artifact
                    .timings()
                    .iter()
                    .filter(|(stage, _)| matches!(stage.as_str(), "detect" | "plan" | "rewrite"))
                    .map(|(_, s)| s)
                    .sum();
                total += Duration::from_secs_f64(secs);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
