//! aotcc's core: the pure algorithms of the ahead-of-time context compiler.
//!
//! A master prompt and a term spec go through
//! `segment → count → detect → chunk → plan → rewrite → emit` and come out as an
//! [`Artifact`]: the compiled text (each term's definition block injected where the
//! term first appears, later mentions rewritten into reference tags), its chunk table,
//! term table and a source map that restores the source byte for byte.
//!
//! Offsets are UTF-8 byte offsets everywhere in this crate. The PyO3 binding lives in
//! `rust/py/` behind the `python` feature, so `cargo test` needs no interpreter.
//!
//! ```
//! use aotcc::{Compiler, CompileOptions, Estimator, Source};
//! let spec = r#"{"terms": [{"name": "Refund Policy", "definition": "Refunds within 30 days."}]}"#;
//! let compiler = Compiler::new(spec, "spec.json", CompileOptions::default()).unwrap();
//! let source = Source::new("prompt.md", b"Follow the Refund Policy. The refund policy wins.".to_vec());
//! let artifact = compiler.compile(&[source], &Estimator, aotcc::ESTIMATOR_FINGERPRINT, None).unwrap();
//! assert!(artifact.text().starts_with("<__SYS_STATE_A__ term=\"Refund Policy\">"));
//! assert!(artifact.text().ends_with("The <__SYS_STATE_A__ /> wins."));
//! assert_eq!(artifact.decompile().unwrap(), "Follow the Refund Policy. The refund policy wins.");
//! ```
#![deny(missing_docs)]

mod artifact;
mod chunk;
mod compile;
mod count;
mod detect;
mod error;
mod gguf;
mod hash;
mod plan;
mod rewrite;
mod segment;
mod spec;
mod tags;
mod text;
mod tokenize;

#[cfg(feature = "python")]
mod py;

pub use artifact::{
    Artifact, ChunkTable, OccurrenceTable, SourceMap, SpanKind, TermRecord, FORMAT_VERSION,
};
pub use chunk::Chunk;
pub use compile::{
    CompileOptions, Compiler, Hints, Placement, Progress, References, Source, Stage, TagIds,
};
pub use count::{Counter, Estimator, ESTIMATOR_FINGERPRINT};
pub use detect::{Detector, Occurrence};
pub use error::{Error, ErrorKind};
pub use gguf::{Gguf, StrList as GgufStrList, Value as GgufValue};
pub use hash::{blake3_hex, hash_file};
pub use segment::{segment, Unit, UnitKind};
pub use spec::{Spec, SpecOptions, Term};
pub use tags::TagStyle;
pub use text::{fold_case, is_word_char};
pub use tokenize::{supported_bpe_pre, GgufTokenizer};

/// The version of this crate, recorded in every artifact.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
