//! The `.aotc` artifact: one msgpack map `{format, version, hash, body, timings}`. The
//! body is itself msgpack (stored as bytes), so its BLAKE3 hash covers exactly the
//! bytes on disk; timings stay outside it, so the same inputs give the same hash.
//! Numeric tables are little-endian arrays in msgpack `bin` fields.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::Error;
use crate::hash::blake3_hex;

/// The artifact format version; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT: &str = "aotc";

/// What a source map row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SpanKind {
    /// Source text copied as is.
    Copy = 0,
    /// An injected definition block (no source).
    Definition = 1,
    /// A reference tag that replaced a mention.
    Reference = 2,
    /// A reference tag added after a mention kept as written.
    Annotation = 3,
}

impl SpanKind {
    fn from_u8(v: u8) -> Option<SpanKind> {
        Some(match v {
            0 => SpanKind::Copy,
            1 => SpanKind::Definition,
            2 => SpanKind::Reference,
            3 => SpanKind::Annotation,
            _ => return None,
        })
    }
}

fn u64s(v: &[u64]) -> ByteBuf {
    let mut b = Vec::with_capacity(v.len() * 8);
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    ByteBuf::from(b)
}

fn u32s(v: &[u32]) -> ByteBuf {
    let mut b = Vec::with_capacity(v.len() * 4);
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    ByteBuf::from(b)
}

fn i32s(v: &[i32]) -> ByteBuf {
    let mut b = Vec::with_capacity(v.len() * 4);
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    ByteBuf::from(b)
}

fn read_u64s(b: &[u8], what: &str) -> Result<Vec<u64>, Error> {
    if b.len() % 8 != 0 {
        return Err(Error::artifact(format!(
            "table {what} has {} bytes, not a multiple of 8",
            b.len()
        )));
    }
    Ok(b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

fn read_u32s(b: &[u8], what: &str) -> Result<Vec<u32>, Error> {
    if b.len() % 4 != 0 {
        return Err(Error::artifact(format!(
            "table {what} has {} bytes, not a multiple of 4",
            b.len()
        )));
    }
    Ok(b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

/// The chunk table: per chunk, its source span, compiled span and token counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkTable {
    /// Source span start (bytes).
    pub src_start: Vec<u64>,
    /// Source span end (bytes).
    pub src_end: Vec<u64>,
    /// Compiled span start (bytes).
    pub out_start: Vec<u64>,
    /// Compiled span end (bytes).
    pub out_end: Vec<u64>,
    /// Source tokens.
    pub tokens: Vec<u32>,
    /// Compiled tokens (definition blocks and tags included).
    pub out_tokens: Vec<u32>,
}

/// The source map: compiled spans and what they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMap {
    /// Compiled span start (bytes).
    pub out_start: Vec<u64>,
    /// Compiled span end (bytes).
    pub out_end: Vec<u64>,
    /// Source span start (bytes).
    pub src_start: Vec<u64>,
    /// Source span end (bytes); equal to the start for inserted text.
    pub src_end: Vec<u64>,
    /// [`SpanKind`] of each row.
    pub kind: Vec<u8>,
    /// Term index, or -1.
    pub term: Vec<i32>,
}

/// Every occurrence in the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OccurrenceTable {
    /// Source start (bytes).
    pub start: Vec<u64>,
    /// Source end (bytes).
    pub end: Vec<u64>,
    /// Term index.
    pub term: Vec<u32>,
    /// Chunk index.
    pub chunk: Vec<u32>,
}

/// What the artifact records of one term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermRecord {
    /// The term's name.
    pub name: String,
    /// Its tag id, when injected.
    pub id: Option<String>,
    /// Its full tag, when injected (`__SYS_STATE_A__`).
    pub tag: Option<String>,
    /// The chunk of its first appearance, when injected.
    pub first_chunk: Option<u32>,
    /// Byte offset of its first occurrence in the source.
    pub first_offset: Option<u64>,
    /// How often it occurs in the source.
    pub occurrences: u32,
    /// How many later mentions point back to it.
    pub references: u32,
    /// Its definition block's span in the compiled text (bytes).
    pub definition_span: Option<(u64, u64)>,
    /// Tokens of its definition block.
    pub definition_tokens: u32,
    /// Tokens of its reference tag.
    pub tag_tokens: u32,
    /// Terms whose definitions come first (names).
    pub depends_on: Vec<String>,
    /// Injected only because a term that depends on it appears first.
    pub pulled_in: bool,
}

/// One input file's span in the concatenated source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The name given on the command line (or `-`).
    pub name: String,
    /// Byte offset of its first byte.
    pub start: u64,
    /// Byte offset one past its last byte.
    pub end: u64,
    /// BLAKE3 of its bytes.
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Body {
    pub format: String,
    pub version: u32,
    pub aotcc_version: String,
    pub hashes: Hashes,
    pub tokenizer: String,
    pub options: OptionsRecord,
    pub files: Vec<FileRecord>,
    pub text: String,
    pub originals: String,
    pub source_len: u64,
    pub source_tokens: u64,
    pub out_tokens: u64,
    pub chunks: Tables,
    pub source_map: Tables,
    pub occurrences: Tables,
    pub terms: Vec<TermRecord>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Hashes {
    pub source: String,
    pub spec: String,
    pub options: String,
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OptionsRecord {
    pub budget: u32,
    pub placement: String,
    pub references: String,
    pub case_sensitive: bool,
    pub whole_word: bool,
    pub id_prefix: String,
    /// `cheap` when tag ids were chosen by token cost; absent for the default labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_ids: Option<String>,
    /// `short` for the short tag style; absent for the seed's spelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_style: Option<String>,
}

/// Named binary columns, in a fixed order.
pub(crate) type Tables = Vec<(String, ByteBuf)>;

/// The file layout as written, borrowing the body so it is not copied.
#[derive(Serialize)]
struct FileLayoutRef<'a> {
    format: &'a str,
    version: u32,
    hash: &'a str,
    body: &'a serde_bytes::Bytes,
    timings: &'a [(String, f64)],
}

#[derive(Deserialize)]
struct FileLayout {
    format: String,
    version: u32,
    hash: String,
    body: ByteBuf,
    timings: Vec<(String, f64)>,
}

/// A compiled prompt, as held in memory and written to `.aotc`.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub(crate) body: Body,
    pub(crate) body_bytes: Vec<u8>,
    pub(crate) hash: String,
    pub(crate) timings: Vec<(String, f64)>,
    pub(crate) chunks: ChunkTable,
    pub(crate) source_map: SourceMap,
    pub(crate) occurrences: OccurrenceTable,
}

fn column<'a>(tables: &'a Tables, name: &str, table: &str) -> Result<&'a [u8], Error> {
    tables
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.as_slice())
        .ok_or_else(|| Error::artifact(format!("table {table} has no column {name:?}")))
}

impl Artifact {
    pub(crate) fn new(
        mut body: Body,
        chunks: ChunkTable,
        source_map: SourceMap,
        occurrences: OccurrenceTable,
    ) -> Artifact {
        body.chunks = vec![
            ("src_start".into(), u64s(&chunks.src_start)),
            ("src_end".into(), u64s(&chunks.src_end)),
            ("out_start".into(), u64s(&chunks.out_start)),
            ("out_end".into(), u64s(&chunks.out_end)),
            ("tokens".into(), u32s(&chunks.tokens)),
            ("out_tokens".into(), u32s(&chunks.out_tokens)),
        ];
        body.source_map = vec![
            ("out_start".into(), u64s(&source_map.out_start)),
            ("out_end".into(), u64s(&source_map.out_end)),
            ("src_start".into(), u64s(&source_map.src_start)),
            ("src_end".into(), u64s(&source_map.src_end)),
            ("kind".into(), ByteBuf::from(source_map.kind.clone())),
            ("term".into(), i32s(&source_map.term)),
        ];
        body.occurrences = vec![
            ("start".into(), u64s(&occurrences.start)),
            ("end".into(), u64s(&occurrences.end)),
            ("term".into(), u32s(&occurrences.term)),
            ("chunk".into(), u32s(&occurrences.chunk)),
        ];
        let body_bytes = rmp_serde::to_vec_named(&body).expect("the body serializes");
        let hash = blake3_hex(&body_bytes);
        Artifact {
            body,
            body_bytes,
            hash,
            timings: Vec::new(),
            chunks,
            source_map,
            occurrences,
        }
    }

    /// The `.aotc` bytes. Timings are left out unless asked for, so the same inputs
    /// give byte-identical files.
    pub fn to_bytes(&self, include_timings: bool) -> Vec<u8> {
        let layout = FileLayoutRef {
            format: FORMAT,
            version: FORMAT_VERSION,
            hash: &self.hash,
            body: serde_bytes::Bytes::new(&self.body_bytes),
            timings: if include_timings { &self.timings } else { &[] },
        };
        rmp_serde::to_vec_named(&layout).expect("the artifact serializes")
    }

    /// Reads `.aotc` bytes, checking the format, version and hash.
    ///
    /// # Errors
    /// A [`crate::ErrorKind::Artifact`] error naming what is wrong: not an artifact,
    /// another format version, a hash mismatch (corruption), a malformed table.
    pub fn from_bytes(data: &[u8]) -> Result<Artifact, Error> {
        let layout: FileLayout = rmp_serde::from_slice(data).map_err(|e| {
            Error::artifact(format!("not an aotcc artifact (.aotc), or truncated: {e}"))
        })?;
        if layout.format != FORMAT {
            return Err(Error::artifact(format!(
                "format is {:?}, expected {FORMAT:?}",
                layout.format
            )));
        }
        if layout.version != FORMAT_VERSION {
            return Err(Error::artifact(format!(
                "format version {} is not supported (this aotcc reads version {FORMAT_VERSION}); recompile the prompt",
                layout.version
            )));
        }
        let hash = blake3_hex(&layout.body);
        if hash != layout.hash {
            return Err(Error::artifact(format!(
                "corrupt artifact: body hash is {hash}, header says {}",
                layout.hash
            )));
        }
        let body: Body = rmp_serde::from_slice(&layout.body)
            .map_err(|e| Error::artifact(format!("malformed artifact body: {e}")))?;
        let c = &body.chunks;
        let chunks = ChunkTable {
            src_start: read_u64s(column(c, "src_start", "chunks")?, "chunks.src_start")?,
            src_end: read_u64s(column(c, "src_end", "chunks")?, "chunks.src_end")?,
            out_start: read_u64s(column(c, "out_start", "chunks")?, "chunks.out_start")?,
            out_end: read_u64s(column(c, "out_end", "chunks")?, "chunks.out_end")?,
            tokens: read_u32s(column(c, "tokens", "chunks")?, "chunks.tokens")?,
            out_tokens: read_u32s(column(c, "out_tokens", "chunks")?, "chunks.out_tokens")?,
        };
        let m = &body.source_map;
        let source_map = SourceMap {
            out_start: read_u64s(
                column(m, "out_start", "source_map")?,
                "source_map.out_start",
            )?,
            out_end: read_u64s(column(m, "out_end", "source_map")?, "source_map.out_end")?,
            src_start: read_u64s(
                column(m, "src_start", "source_map")?,
                "source_map.src_start",
            )?,
            src_end: read_u64s(column(m, "src_end", "source_map")?, "source_map.src_end")?,
            kind: column(m, "kind", "source_map")?.to_vec(),
            term: read_u32s(column(m, "term", "source_map")?, "source_map.term")?
                .into_iter()
                .map(|x| x as i32)
                .collect(),
        };
        let o = &body.occurrences;
        let occurrences = OccurrenceTable {
            start: read_u64s(column(o, "start", "occurrences")?, "occurrences.start")?,
            end: read_u64s(column(o, "end", "occurrences")?, "occurrences.end")?,
            term: read_u32s(column(o, "term", "occurrences")?, "occurrences.term")?,
            chunk: read_u32s(column(o, "chunk", "occurrences")?, "occurrences.chunk")?,
        };
        let artifact = Artifact {
            body,
            body_bytes: layout.body.into_vec(),
            hash,
            timings: layout.timings,
            chunks,
            source_map,
            occurrences,
        };
        artifact.check()?;
        Ok(artifact)
    }

    /// Structural checks so that a decoded artifact can be used without panics.
    fn check(&self) -> Result<(), Error> {
        let text_len = self.body.text.len() as u64;
        let m = &self.source_map;
        let n = m.out_start.len();
        if [
            m.out_end.len(),
            m.src_start.len(),
            m.src_end.len(),
            m.kind.len(),
            m.term.len(),
        ]
        .iter()
        .any(|&l| l != n)
        {
            return Err(Error::artifact("source map columns differ in length"));
        }
        let mut originals = 0u64;
        let mut prev_out = 0u64;
        for i in 0..n {
            let (os, oe) = (m.out_start[i], m.out_end[i]);
            if os != prev_out
                || oe < os
                || oe > text_len
                || !self.body.text.is_char_boundary(os as usize)
                || !self.body.text.is_char_boundary(oe as usize)
            {
                return Err(Error::artifact(format!(
                    "source map row {i} has a bad compiled span {os}..{oe}"
                )));
            }
            prev_out = oe;
            let kind = SpanKind::from_u8(m.kind[i]).ok_or_else(|| {
                Error::artifact(format!("source map row {i} has kind {}", m.kind[i]))
            })?;
            if m.src_end[i] < m.src_start[i] || m.src_end[i] > self.body.source_len {
                return Err(Error::artifact(format!(
                    "source map row {i} has a bad source span"
                )));
            }
            if kind == SpanKind::Reference {
                originals += m.src_end[i] - m.src_start[i];
            }
        }
        if prev_out != text_len {
            return Err(Error::artifact(
                "source map does not cover the compiled text",
            ));
        }
        if originals != self.body.originals.len() as u64 {
            return Err(Error::artifact(
                "source map and replaced text differ in length",
            ));
        }
        let c = &self.chunks;
        let k = c.src_start.len();
        if [
            c.src_end.len(),
            c.out_start.len(),
            c.out_end.len(),
            c.tokens.len(),
            c.out_tokens.len(),
        ]
        .iter()
        .any(|&l| l != k)
        {
            return Err(Error::artifact("chunk columns differ in length"));
        }
        let o = &self.occurrences;
        let j = o.start.len();
        if [o.end.len(), o.term.len(), o.chunk.len()]
            .iter()
            .any(|&l| l != j)
        {
            return Err(Error::artifact("occurrence columns differ in length"));
        }
        if o.term.iter().any(|&t| t as usize >= self.body.terms.len()) {
            return Err(Error::artifact("an occurrence names an unknown term"));
        }
        Ok(())
    }

    /// The BLAKE3 hash (hex) of the artifact's body: what a KV bundle records.
    pub fn hash(&self) -> &str {
        &self.hash
    }
    /// The compiled prompt.
    pub fn text(&self) -> &str {
        &self.body.text
    }
    /// The chunk table.
    pub fn chunks(&self) -> &ChunkTable {
        &self.chunks
    }
    /// The source map.
    pub fn source_map(&self) -> &SourceMap {
        &self.source_map
    }
    /// The occurrence table.
    pub fn occurrences(&self) -> &OccurrenceTable {
        &self.occurrences
    }
    /// Per-term records, in spec order.
    pub fn terms(&self) -> &[TermRecord] {
        &self.body.terms
    }
    /// The input files.
    pub fn files(&self) -> &[FileRecord] {
        &self.body.files
    }
    /// Warnings raised while planning (dropped dependency edges).
    pub fn warnings(&self) -> &[String] {
        &self.body.warnings
    }
    /// Seconds spent per stage (not part of the hash).
    pub fn timings(&self) -> &[(String, f64)] {
        &self.timings
    }
    /// Restores the source, byte for byte, from the compiled text and the source map.
    pub fn decompile(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.source_len as usize);
        let text = self.body.text.as_bytes();
        let originals = self.body.originals.as_bytes();
        let mut orig = 0usize;
        let m = &self.source_map;
        for i in 0..m.kind.len() {
            match SpanKind::from_u8(m.kind[i]) {
                Some(SpanKind::Copy) => {
                    out.extend_from_slice(&text[m.out_start[i] as usize..m.out_end[i] as usize])
                }
                Some(SpanKind::Reference) => {
                    let len = (m.src_end[i] - m.src_start[i]) as usize;
                    out.extend_from_slice(&originals[orig..orig + len]);
                    orig += len;
                }
                _ => {}
            }
        }
        out
    }
    /// How the artifact's tags are spelled.
    pub fn tag_style(&self) -> crate::TagStyle {
        self.body
            .options
            .tag_style
            .as_deref()
            .and_then(crate::TagStyle::parse)
            .unwrap_or_default()
    }
    /// The reference tag of a term's element name (`TermRecord::tag`) in this artifact.
    pub fn reference_tag(&self, element: &str) -> String {
        self.tag_style().reference(element)
    }
    /// The manifest as JSON: versions, hashes, options, files, totals, warnings.
    pub fn manifest_json(&self) -> serde_json::Value {
        let b = &self.body;
        let options = serde_json::to_value(&b.options).expect("the options serialize");
        serde_json::json!({
            "format": b.format, "version": b.version, "aotcc_version": b.aotcc_version,
            "hash": self.hash,
            "hashes": {"source": b.hashes.source, "spec": b.hashes.spec, "options": b.hashes.options, "output": b.hashes.output},
            "tokenizer": b.tokenizer,
            "options": options,
            "files": b.files.iter().map(|f| serde_json::json!({"name": f.name, "start": f.start, "end": f.end, "blake3": f.blake3})).collect::<Vec<_>>(),
            "source_bytes": b.source_len, "compiled_bytes": b.text.len(),
            "source_tokens": b.source_tokens, "compiled_tokens": b.out_tokens,
            "chunks": self.chunks.src_start.len(), "occurrences": self.occurrences.start.len(),
            "terms": b.terms.len(), "injected": b.terms.iter().filter(|t| t.id.is_some()).count(),
            "warnings": b.warnings,
        })
    }
}
