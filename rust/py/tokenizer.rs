//! `aotcc._core.GgufTokenizer`: a GGUF model's own tokenizer for exact counts. Token
//! ids come back as numpy arrays; counting runs in parallel without the GIL, and the
//! compiler uses the Rust object directly (no Python callback per batch).

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{PyArray1, ToPyArray};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::{guard, to_py, InputError};
use crate::GgufTokenizer as CoreTokenizer;

/// A GGUF model's vocabulary, tokenizing as llama.cpp does (no BOS, special tokens as
/// text).
#[pyclass(frozen, module = "aotcc._core", name = "GgufTokenizer")]
pub(super) struct GgufTokenizer(pub(super) Arc<CoreTokenizer>);

#[pymethods]
impl GgufTokenizer {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        guard(|| {
            let t = py
                .detach(move || CoreTokenizer::open(&path))
                .map_err(to_py)?;
            Ok(GgufTokenizer(Arc::new(t)))
        })
    }

    /// The `.gguf` path it was read from.
    #[getter]
    fn path(&self) -> &str {
        self.0.name()
    }
    /// `tokenizer.ggml.model`: `llama` (SentencePiece-style) or `gpt2` (byte-level BPE).
    #[getter]
    fn model(&self) -> &str {
        self.0.model()
    }
    /// `tokenizer.ggml.pre`, if the file has one.
    #[getter]
    fn pre(&self) -> Option<&str> {
        self.0.pre()
    }
    #[getter]
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    /// Model type, pre-tokenizer and a hash of the `tokenizer.*` metadata.
    #[getter]
    fn fingerprint(&self) -> &str {
        self.0.fingerprint()
    }
    /// Unit counts held by the in-memory count cache.
    #[getter]
    fn cached_counts(&self) -> usize {
        self.0.cached_counts()
    }

    /// Token ids of `text` (uint32).
    fn tokenize<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyArray1<u32>>> {
        guard(|| {
            let t = self.0.clone();
            let ids = py.detach(|| t.tokenize(text)).map_err(to_py)?;
            Ok(ids.to_pyarray(py))
        })
    }

    /// Token ids of each text (a list of uint32 arrays), in parallel.
    fn tokenize_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        guard(|| {
            let t = self.0.clone();
            let ids = py
                .detach(move || {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    t.tokenize_batch(&refs)
                })
                .map_err(to_py)?;
            PyList::new(py, ids.iter().map(|v| v.to_pyarray(py)))
        })
    }

    /// Token counts of each text (int64 array), in parallel, through the count cache.
    fn count<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        guard(|| {
            let t = self.0.clone();
            let counts = py
                .detach(move || {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    t.count_batch(&refs)
                })
                .map_err(to_py)?;
            let counts: Vec<i64> = counts.into_iter().map(i64::from).collect();
            Ok(counts.to_pyarray(py))
        })
    }

    /// The counter protocol: counts of a batch of strings, as a list.
    fn __call__(&self, py: Python<'_>, pieces: Vec<String>) -> PyResult<Vec<u32>> {
        guard(|| {
            let t = self.0.clone();
            py.detach(move || {
                let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
                t.count_batch(&refs)
            })
            .map_err(to_py)
        })
    }

    /// The raw text of token `id` (`▁` marks a space in SentencePiece vocabularies).
    fn token_text<'py>(&self, py: Python<'py>, id: u32) -> PyResult<Bound<'py, PyBytes>> {
        let text = self.0.token_text(id).ok_or_else(|| {
            InputError::new_err(format!(
                "token id {id} is out of the vocabulary (size {})",
                self.0.vocab_size()
            ))
        })?;
        Ok(PyBytes::new(py, text))
    }

    /// Adds the counts cached in `path` by an earlier run (nothing when the file is
    /// absent or was written for another tokenizer). Returns how many were added.
    fn load_counts(&self, py: Python<'_>, path: PathBuf) -> PyResult<usize> {
        guard(|| {
            let t = self.0.clone();
            py.detach(move || t.load_counts(&path)).map_err(to_py)
        })
    }

    /// Writes the cached counts to `path` atomically. Returns how many were written.
    fn save_counts(&self, py: Python<'_>, path: PathBuf) -> PyResult<usize> {
        guard(|| {
            let t = self.0.clone();
            py.detach(move || t.save_counts(&path)).map_err(to_py)
        })
    }

    /// The `tokenizer.ggml.pre` values supported for byte-level BPE vocabularies.
    #[staticmethod]
    fn supported_pre() -> Vec<&'static str> {
        crate::supported_bpe_pre()
    }

    fn __repr__(&self) -> String {
        let pre = self
            .0
            .pre()
            .map_or("None".to_string(), |p| format!("{p:?}"));
        format!(
            "GgufTokenizer({:?}, model={:?}, pre={pre}, vocab_size={})",
            self.0.name(),
            self.0.model(),
            self.0.vocab_size()
        )
    }
}

/// The Rust-side counter behind a Python counter argument, when it is a
/// [`GgufTokenizer`].
pub(super) fn native_counter(
    py: Python<'_>,
    counter: Option<&Py<PyAny>>,
) -> Option<Arc<CoreTokenizer>> {
    let c = counter?.bind(py);
    c.cast::<GgufTokenizer>().ok().map(|t| t.get().0.clone())
}
