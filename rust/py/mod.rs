//! The PyO3 binding, `aotcc._core`: thin wrappers that take inputs while holding the
//! GIL, run the core without it, and hand back numpy arrays with character offsets.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use numpy::{IntoPyArray, PyArray1};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

mod tokenizer;

use crate::{
    Artifact as CoreArtifact, CompileOptions, Compiler as CoreCompiler, Counter, Error, ErrorKind,
    Estimator, Hints, Placement, Progress as CoreProgress, References, Source, TagIds, TagStyle,
};

create_exception!(
    _core,
    AotccError,
    PyException,
    "Base of every error the core raises."
);
create_exception!(
    _core,
    InputError,
    AotccError,
    "A source is not valid UTF-8, or an input is unusable."
);
create_exception!(_core, SpecError, AotccError, "The term spec is malformed.");
create_exception!(
    _core,
    PlanError,
    AotccError,
    "Planning failed: a requires cycle, a colliding tag id."
);
create_exception!(_core, CountError, AotccError, "The token counter failed.");
create_exception!(
    _core,
    ArtifactError,
    AotccError,
    "A .aotc file is truncated, corrupt or of another version."
);

create_exception!(
    _core,
    InternalError,
    AotccError,
    "A bug in aotcc's core (a Rust panic), reported in one line instead of crashing."
);

/// Where the last panic happened (`file:line`), recorded by the panic hook: a panic in
/// a rayon worker reaches the caller as a payload without its location.
static LAST_PANIC_AT: Mutex<Option<String>> = Mutex::new(None);

/// Panic messages longer than this are cut: a message can quote a whole input.
const PANIC_MESSAGE_MAX: usize = 200;

/// Replaces the default panic hook (which prints the whole message and a note to
/// stderr) with one that records the location; `AOTCC_DEBUG=1` keeps the default too.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(loc) = info.location() {
                let at = format!("{}:{}", loc.file(), loc.line());
                if let Ok(mut last) = LAST_PANIC_AT.lock() {
                    *last = Some(at);
                }
            }
            if std::env::var_os("AOTCC_DEBUG").is_some_and(|v| !v.is_empty()) {
                default(info);
            }
        }));
    });
}

/// A panic payload as a one-line `InternalError`.
fn internal_error(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    };
    let line = text.lines().next().unwrap_or_default();
    let mut msg: String = line.chars().take(PANIC_MESSAGE_MAX).collect();
    if msg.len() < text.len() {
        msg.push('…');
    }
    let at = LAST_PANIC_AT
        .lock()
        .ok()
        .and_then(|mut last| last.take())
        .map(|at| format!(" at {at}"))
        .unwrap_or_default();
    InternalError::new_err(format!(
        "internal error: {msg}{at} (a bug in aotcc; please report it)"
    ))
}

/// Runs a binding entry point so that no panic escapes as pyo3's `PanicException` (a
/// `BaseException`, which `except Exception` misses): it becomes an `InternalError`.
pub(crate) fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    // Unwind safety: the shared state is frozen (`Arc` of immutable data), and the
    // locks it holds recover from poisoning.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(internal_error(payload)))
}

fn to_py(e: Error) -> PyErr {
    let msg = e.message().to_string();
    match e.kind() {
        ErrorKind::Input => InputError::new_err(msg),
        ErrorKind::Spec => SpecError::new_err(msg),
        ErrorKind::Plan => PlanError::new_err(msg),
        ErrorKind::Count => CountError::new_err(msg),
        ErrorKind::Artifact => ArtifactError::new_err(msg),
    }
}

/// Byte offsets → character offsets in `text`, for offsets in any order.
fn char_offsets(text: &str, offsets: &[u64]) -> Vec<i64> {
    if text.is_ascii() {
        return offsets.iter().map(|&o| o as i64).collect();
    }
    let mut order: Vec<usize> = (0..offsets.len()).collect();
    order.sort_unstable_by_key(|&i| offsets[i]);
    let bytes = text.as_bytes();
    let mut out = vec![0i64; offsets.len()];
    let (mut pos, mut chars) = (0usize, 0i64);
    for i in order {
        let target = (offsets[i] as usize).min(bytes.len());
        if target > pos {
            chars += count_chars(&bytes[pos..target]) as i64;
            pos = target;
        }
        out[i] = chars;
    }
    out
}

/// The characters in UTF-8 `bytes` (its bytes that are not continuation bytes),
/// counted in byte lanes, 255 bytes at a time, so the count vectorizes.
fn count_chars(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|c| usize::from(c.iter().fold(0u8, |n, &b| n + u8::from((b as i8) >= -0x40))))
        .sum::<usize>()
}

/// The start and end of each occurrence in characters, through the count of UTF-8
/// continuation bytes before each 64-byte block of the text: in a block without any
/// (all of an ASCII text) an offset converts in constant time.
fn occurrence_chars(text: &str, occ: &[crate::Occurrence]) -> (Vec<i64>, Vec<i64>) {
    let bytes = text.as_bytes();
    let is_cont = |b: u8| (b as i8) < -0x40;
    let mut before = Vec::with_capacity(bytes.len() / 64 + 2);
    let mut total = 0u64;
    before.push(0);
    for block in bytes.chunks(64) {
        total += u64::from(block.iter().fold(0u8, |n, &b| n + u8::from(is_cont(b))));
        before.push(total);
    }
    let chars = |at: usize| -> i64 {
        let at = at.min(bytes.len());
        let b = at / 64;
        let base = before[b];
        let within = match before.get(b + 1) {
            Some(&next) if next != base => {
                bytes[b * 64..at].iter().filter(|&&x| is_cont(x)).count()
            }
            _ => 0,
        };
        (at as u64 - base) as i64 - within as i64
    };
    (
        occ.iter().map(|o| chars(o.start)).collect(),
        occ.iter().map(|o| chars(o.end)).collect(),
    )
}

/// Character offsets → byte offsets (sorted or not).
fn byte_offset(text: &str, char_offset: usize) -> Option<usize> {
    if text.is_ascii() {
        return (char_offset <= text.len()).then_some(char_offset);
    }
    text.char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(text.len()))
        .nth(char_offset)
}

struct PyCounter(Py<PyAny>);

impl Counter for PyCounter {
    fn count(&self, pieces: &[&str]) -> Result<Vec<u32>, Error> {
        Python::attach(|py| {
            let list = PyList::new(py, pieces).map_err(|e| count_error(py, e))?;
            let result = self.0.call1(py, (list,)).map_err(|e| count_error(py, e))?;
            result
                .extract::<Vec<u32>>(py)
                .map_err(|e| count_error(py, e))
        })
    }
}

fn count_error(py: Python<'_>, e: PyErr) -> Error {
    let value = e.value(py);
    let kind = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "error".into());
    Error::new(
        ErrorKind::Count,
        format!("token counter failed: {kind}: {value}"),
    )
}

/// Shared progress counters, updated by the core while it runs without the GIL.
#[pyclass(frozen, module = "aotcc._core")]
struct Progress(Arc<CoreProgress>);

#[pymethods]
impl Progress {
    #[new]
    fn new() -> Self {
        Progress(Arc::new(CoreProgress::default()))
    }
    #[getter]
    fn stage(&self) -> &'static str {
        self.0.stage().name()
    }
    #[getter]
    fn done(&self) -> u64 {
        self.0.done()
    }
    #[getter]
    fn total(&self) -> u64 {
        self.0.total()
    }
}

/// A validated term spec and options, with the detection automaton built once.
#[pyclass(frozen, module = "aotcc._core")]
struct Compiler(Arc<CoreCompiler>);

#[pymethods]
impl Compiler {
    #[new]
    #[pyo3(signature = (spec_json, spec_name = "<spec>", *, budget = 512, placement = "chunk", references = "tag", tag_ids = "alpha", tag_style = "seed"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        spec_json: &str,
        spec_name: &str,
        budget: i64,
        placement: &str,
        references: &str,
        tag_ids: &str,
        tag_style: &str,
    ) -> PyResult<Self> {
        guard(|| {
            Self::build(
                py, spec_json, spec_name, budget, placement, references, tag_ids, tag_style,
            )
        })
    }

    #[getter]
    fn term_names(&self) -> Vec<String> {
        self.0.spec().terms.iter().map(|t| t.name.clone()).collect()
    }

    #[getter]
    fn spec_hash(&self) -> &str {
        self.0.spec_hash()
    }

    /// `breaks` (byte offsets) and `anchors` (`(term name, byte offset)`) are analysis
    /// hints in the joined source; see `Hints`.
    #[pyo3(signature = (sources, *, counter = None, tokenizer = crate::ESTIMATOR_FINGERPRINT, progress = None, breaks = None, anchors = None))]
    #[allow(clippy::too_many_arguments)]
    fn compile(
        &self,
        py: Python<'_>,
        sources: Vec<(String, Vec<u8>)>,
        counter: Option<Py<PyAny>>,
        tokenizer: &str,
        progress: Option<PyRef<'_, Progress>>,
        breaks: Option<Vec<usize>>,
        anchors: Option<Vec<(String, usize)>>,
    ) -> PyResult<Artifact> {
        guard(|| self.compile_guarded(py, sources, counter, tokenizer, progress, breaks, anchors))
    }

    /// Occurrences in `text`: arrays `start`, `end` (characters), `term`, `alias`.
    fn detect<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyDict>> {
        guard(|| self.detect_guarded(py, text))
    }
}

impl Compiler {
    #[allow(clippy::too_many_arguments)]
    fn build(
        py: Python<'_>,
        spec_json: &str,
        spec_name: &str,
        budget: i64,
        placement: &str,
        references: &str,
        tag_ids: &str,
        tag_style: &str,
    ) -> PyResult<Self> {
        let tag_style = TagStyle::parse(tag_style).ok_or_else(|| {
            InputError::new_err(format!(
                "tag_style must be \"seed\" or \"short\", not {tag_style:?}"
            ))
        })?;
        let tag_ids = TagIds::parse(tag_ids).ok_or_else(|| {
            InputError::new_err(format!(
                "tag_ids must be \"alpha\" or \"cheap\", not {tag_ids:?}"
            ))
        })?;
        let placement = Placement::parse(placement).ok_or_else(|| {
            InputError::new_err(format!(
                "placement must be \"chunk\" or \"top\", not {placement:?}"
            ))
        })?;
        let references = References::parse(references).ok_or_else(|| {
            InputError::new_err(format!(
                "references must be \"tag\", \"annotate\" or \"keep\", not {references:?}"
            ))
        })?;
        if !(1..=u32::MAX as i64).contains(&budget) {
            return Err(InputError::new_err(format!(
                "budget must be a positive number of tokens, not {budget}"
            )));
        }
        let options = CompileOptions::default()
            .budget(budget as u32)
            .placement(placement)
            .references(references)
            .tag_ids(tag_ids)
            .tag_style(tag_style);
        let (json, name) = (spec_json.to_string(), spec_name.to_string());
        let compiler = py
            .detach(move || CoreCompiler::new(&json, &name, options))
            .map_err(to_py)?;
        Ok(Compiler(Arc::new(compiler)))
    }

    #[allow(clippy::too_many_arguments)]
    fn compile_guarded(
        &self,
        py: Python<'_>,
        sources: Vec<(String, Vec<u8>)>,
        counter: Option<Py<PyAny>>,
        tokenizer: &str,
        progress: Option<PyRef<'_, Progress>>,
        breaks: Option<Vec<usize>>,
        anchors: Option<Vec<(String, usize)>>,
    ) -> PyResult<Artifact> {
        if sources.is_empty() {
            return Err(InputError::new_err("no prompt given"));
        }
        let mut hints = Hints {
            breaks: breaks.unwrap_or_default(),
            anchors: Vec::new(),
        };
        for (name, at) in anchors.unwrap_or_default() {
            let t = self
                .0
                .spec()
                .terms
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| InputError::new_err(format!("anchor for unknown term {name:?}")))?;
            hints.anchors.push((t, at));
        }
        let sources: Vec<Source> = sources
            .into_iter()
            .map(|(n, b)| Source::new(n, b))
            .collect();
        let progress = progress.map(|p| p.0.clone());
        let compiler = self.0.clone();
        let tokenizer = tokenizer.to_string();
        let native = tokenizer::native_counter(py, counter.as_ref());
        let artifact = py
            .detach(move || {
                let py_counter = counter.map(PyCounter);
                let counter: &dyn Counter = match (&native, &py_counter) {
                    (Some(t), _) => &**t,
                    (None, Some(c)) => c,
                    (None, None) => &Estimator,
                };
                compiler.compile_hinted(&sources, counter, &tokenizer, progress.as_deref(), &hints)
            })
            .map_err(to_py)?;
        Ok(Artifact::new(artifact))
    }

    fn detect_guarded<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyDict>> {
        let compiler = self.0.clone();
        // `text` borrows the argument's UTF-8, which the caller keeps alive (and a str
        // never changes) while the lock is released: no copy.
        let [starts, ends, terms, aliases] = py.detach(move || {
            let occ = compiler.detector().find(text, &[0]);
            let (starts, ends) = occurrence_chars(text, &occ);
            let terms = occ.iter().map(|o| i64::from(o.term)).collect();
            let aliases = occ.iter().map(|o| i64::from(o.alias)).collect();
            [starts, ends, terms, aliases]
        });
        let d = PyDict::new(py);
        d.set_item("start", starts.into_pyarray(py))?;
        d.set_item("end", ends.into_pyarray(py))?;
        d.set_item("term", terms.into_pyarray(py))?;
        d.set_item("alias", aliases.into_pyarray(py))?;
        Ok(d)
    }
}

/// A compiled prompt: the `.aotc` contents, immutable.
#[pyclass(frozen, module = "aotcc._core")]
struct Artifact {
    inner: Arc<CoreArtifact>,
    source: OnceLock<String>,
}

impl Artifact {
    fn new(a: CoreArtifact) -> Self {
        Artifact {
            inner: Arc::new(a),
            source: OnceLock::new(),
        }
    }
    /// The restored source, computed once.
    fn source_text(&self) -> PyResult<&str> {
        if let Some(s) = self.source.get() {
            return Ok(s);
        }
        let source = self
            .inner
            .decompile()
            .map_err(|e| ArtifactError::new_err(e.message().to_string()))?;
        Ok(self.source.get_or_init(|| source))
    }
}

fn arrays<'py>(py: Python<'py>, cols: &[(&str, Vec<i64>)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, v) in cols {
        d.set_item(*name, PyArray1::from_slice(py, v))?;
    }
    Ok(d)
}

fn json_to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let s = serde_json::to_string(value).expect("json serializes");
    py.import("json")?.call_method1("loads", (s,))
}

#[pymethods]
impl Artifact {
    #[staticmethod]
    #[pyo3(signature = (data, name = "<artifact>"))]
    fn from_bytes(py: Python<'_>, data: Vec<u8>, name: &str) -> PyResult<Self> {
        guard(|| {
            let a = py.detach(move || CoreArtifact::from_bytes(&data));
            a.map(Artifact::new)
                .map_err(|e| ArtifactError::new_err(format!("{name}: {}", e.message())))
        })
    }

    #[pyo3(signature = (timings = false))]
    fn to_bytes<'py>(&self, py: Python<'py>, timings: bool) -> PyResult<Bound<'py, PyBytes>> {
        guard(|| {
            let inner = self.inner.clone();
            let bytes = py.detach(move || inner.to_bytes(timings));
            Ok(PyBytes::new(py, &bytes))
        })
    }

    #[getter]
    fn hash(&self) -> &str {
        self.inner.hash()
    }

    #[getter]
    fn text(&self) -> &str {
        self.inner.text()
    }

    fn source<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        guard(|| Ok(PyBytes::new(py, self.source_text()?.as_bytes())))
    }

    fn chunks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| self.chunks_guarded(py))
    }

    fn source_map<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| self.source_map_guarded(py))
    }

    fn occurrences<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| self.occurrences_guarded(py))
    }

    fn terms<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        guard(|| self.terms_guarded(py))
    }

    fn manifest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        guard(|| self.manifest_guarded(py))
    }

    fn timings(&self) -> Vec<(String, f64)> {
        self.inner.timings().to_vec()
    }

    /// The byte offset of a character offset in the compiled text (for slicing bytes).
    fn compiled_byte_offset(&self, char_offset: usize) -> PyResult<Option<usize>> {
        guard(|| Ok(byte_offset(self.inner.text(), char_offset)))
    }
}

impl Artifact {
    fn chunks_guarded<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.chunks();
        let (src, out) = (self.source_text()?, self.inner.text());
        let cols = py.detach(|| {
            vec![
                ("src_start", char_offsets(src, &c.src_start)),
                ("src_end", char_offsets(src, &c.src_end)),
                ("out_start", char_offsets(out, &c.out_start)),
                ("out_end", char_offsets(out, &c.out_end)),
                ("tokens", c.tokens.iter().map(|&t| i64::from(t)).collect()),
                (
                    "out_tokens",
                    c.out_tokens.iter().map(|&t| i64::from(t)).collect(),
                ),
            ]
        });
        arrays(py, &cols)
    }

    fn source_map_guarded<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.inner.source_map();
        let (src, out) = (self.source_text()?, self.inner.text());
        let cols = py.detach(|| {
            vec![
                ("out_start", char_offsets(out, &m.out_start)),
                ("out_end", char_offsets(out, &m.out_end)),
                ("src_start", char_offsets(src, &m.src_start)),
                ("src_end", char_offsets(src, &m.src_end)),
                ("kind", m.kind.iter().map(|&k| i64::from(k)).collect()),
                ("term", m.term.iter().map(|&t| i64::from(t)).collect()),
            ]
        });
        arrays(py, &cols)
    }

    fn occurrences_guarded<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let o = self.inner.occurrences();
        let src = self.source_text()?;
        let terms = self.inner.terms();
        let cols = py.detach(|| {
            // role: 0 for a term's first mention (kept readable), 1 for a later mention.
            let mut seen = vec![false; terms.len()];
            let role: Vec<i64> = o
                .term
                .iter()
                .map(|&t| i64::from(std::mem::replace(&mut seen[t as usize], true)))
                .collect();
            vec![
                ("start", char_offsets(src, &o.start)),
                ("end", char_offsets(src, &o.end)),
                ("term", o.term.iter().map(|&t| i64::from(t)).collect()),
                ("chunk", o.chunk.iter().map(|&t| i64::from(t)).collect()),
                ("role", role),
            ]
        });
        arrays(py, &cols)
    }

    fn terms_guarded<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (src, out) = (self.source_text()?, self.inner.text());
        let terms = self.inner.terms();
        let firsts: Vec<u64> = terms.iter().map(|t| t.first_offset.unwrap_or(0)).collect();
        let spans: Vec<u64> = terms
            .iter()
            .flat_map(|t| {
                let (s, e) = t.definition_span.unwrap_or((0, 0));
                [s, e]
            })
            .collect();
        let (firsts, spans) = (char_offsets(src, &firsts), char_offsets(out, &spans));
        let list: Vec<serde_json::Value> = terms
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({
                    "index": i, "name": t.name, "id": t.id, "tag": t.tag,
                    "reference": t.tag.as_deref().map(|el| self.inner.reference_tag(el)),
                    "first_chunk": t.first_chunk,
                    "first_offset": t.first_offset.map(|_| firsts[i]),
                    "occurrences": t.occurrences, "references": t.references,
                    "definition_span": t.definition_span.map(|_| [spans[2 * i], spans[2 * i + 1]]),
                    "definition_tokens": t.definition_tokens, "tag_tokens": t.tag_tokens,
                    "depends_on": t.depends_on, "pulled_in": t.pulled_in,
                })
            })
            .collect();
        json_to_py(py, &serde_json::Value::Array(list))
    }

    fn manifest_guarded<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut m = self.inner.manifest_json();
        let src = self.source_text()?;
        let files = self.inner.files();
        let offs: Vec<u64> = files.iter().flat_map(|f| [f.start, f.end]).collect();
        let offs = char_offsets(src, &offs);
        if let Some(list) = m.get_mut("files").and_then(|f| f.as_array_mut()) {
            for (i, f) in list.iter_mut().enumerate() {
                f["start"] = offs[2 * i].into();
                f["end"] = offs[2 * i + 1].into();
            }
        }
        m["source_chars"] = (src.chars().count() as u64).into();
        m["compiled_chars"] = (self.inner.text().chars().count() as u64).into();
        json_to_py(py, &m)
    }
}

/// The bytes behind any contiguous buffer (bytes, bytearray, memoryview), without a copy.
fn with_buffer<T: Send>(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    f: impl FnOnce(&[u8]) -> T + Send,
) -> PyResult<T> {
    let buf = pyo3::buffer::PyBuffer::<u8>::get(data)?;
    if !buf.is_c_contiguous() {
        return Err(InputError::new_err("expected a contiguous buffer of bytes"));
    }
    let (ptr, len) = (buf.buf_ptr() as usize, buf.len_bytes());
    // SAFETY: `buf` keeps the exporter's memory alive and unmoved until it is dropped,
    // after the closure returns; the data is only read.
    let out = py.detach(move || f(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) }));
    drop(buf);
    Ok(out)
}

/// The units of `text` (see `crate::segment`): arrays `start`, `end` (characters) and
/// `kind` (0 heading, 1 paragraph, 2 list item, 3 code, 4 later sentence). `file_starts`
/// are character offsets where a new file begins; no unit spans one.
#[pyfunction]
#[pyo3(signature = (text, file_starts = Vec::new()))]
fn segment<'py>(
    py: Python<'py>,
    text: &str,
    file_starts: Vec<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    guard(|| segment_guarded(py, text, file_starts))
}

fn segment_guarded<'py>(
    py: Python<'py>,
    text: &str,
    file_starts: Vec<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    // In order and once each, converted in one pass over the text.
    let mut file_starts = file_starts;
    file_starts.sort_unstable();
    file_starts.dedup();
    let mut starts = Vec::with_capacity(file_starts.len());
    let mut wanted = file_starts.iter().copied().peekable();
    let boundaries = text.char_indices().map(|(b, _)| b).chain([text.len()]);
    for (c, b) in boundaries.enumerate() {
        while wanted.next_if_eq(&c).is_some() {
            starts.push(b);
        }
    }
    if let Some(c) = wanted.next() {
        return Err(InputError::new_err(format!(
            "file start {c} is past the end of the text ({} characters)",
            text.chars().count()
        )));
    }
    let cols = py.detach(|| {
        let units = crate::segment(text, &starts);
        let s: Vec<u64> = units.iter().map(|u| u.start as u64).collect();
        let e: Vec<u64> = units.iter().map(|u| u.end as u64).collect();
        let kind: Vec<i64> = units
            .iter()
            .map(|u| match u.kind {
                crate::UnitKind::Heading => 0,
                crate::UnitKind::Paragraph => 1,
                crate::UnitKind::ListItem => 2,
                crate::UnitKind::Code => 3,
                crate::UnitKind::Sentence => 4,
            })
            .collect();
        vec![
            ("start", char_offsets(text, &s)),
            ("end", char_offsets(text, &e)),
            ("kind", kind),
        ]
    });
    arrays(py, &cols)
}

/// BLAKE3 of a buffer, hex (no copy; the GIL is released).
#[pyfunction]
fn blake3_hex(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
    guard(|| with_buffer(py, data, crate::blake3_hex))
}

/// CRC-32 (IEEE, the same values as `zlib.crc32`) of a buffer, hardware-accelerated.
#[pyfunction]
fn crc32(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u32> {
    guard(|| with_buffer(py, data, crc32fast::hash))
}

/// BLAKE3 of a file's contents (memory-mapped, multithreaded), hex.
#[pyfunction]
fn hash_file(py: Python<'_>, path: std::path::PathBuf) -> PyResult<String> {
    guard(|| {
        let shown = path.display().to_string();
        py.detach(move || crate::hash_file(&path))
            .map_err(|e| InputError::new_err(format!("{shown}: cannot hash: {e}")))
    })
}

/// Panics with `message`: the tests' way to check that a panic in the core reaches
/// Python as a one-line `InternalError`, not a `PanicException`.
#[pyfunction]
fn _test_panic(py: Python<'_>, message: String, in_worker: bool) -> PyResult<()> {
    guard(|| {
        py.detach(move || {
            if in_worker {
                rayon::join(|| panic!("{message}"), || ());
            }
            panic!("{message}")
        })
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    install_panic_hook();
    m.add("__version__", crate::VERSION)?;
    m.add("FORMAT_VERSION", crate::FORMAT_VERSION)?;
    m.add("ESTIMATOR_FINGERPRINT", crate::ESTIMATOR_FINGERPRINT)?;
    m.add("AotccError", py.get_type::<AotccError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("SpecError", py.get_type::<SpecError>())?;
    m.add("PlanError", py.get_type::<PlanError>())?;
    m.add("CountError", py.get_type::<CountError>())?;
    m.add("ArtifactError", py.get_type::<ArtifactError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add_class::<Progress>()?;
    m.add_class::<Compiler>()?;
    m.add_class::<Artifact>()?;
    m.add_class::<tokenizer::GgufTokenizer>()?;
    m.add_function(wrap_pyfunction!(blake3_hex, m)?)?;
    m.add_function(wrap_pyfunction!(hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(crc32, m)?)?;
    m.add_function(wrap_pyfunction!(segment, m)?)?;
    m.add_function(wrap_pyfunction!(_test_panic, m)?)?;
    Ok(())
}
