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

/// A field value quoted in a message, cut short so that one line stays one line.
fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn term_label(i: usize, t: &TermRecord) -> String {
    format!("terms[{i}] {:?}", shorten(&t.name))
}

/// Every column of `table` has as many rows as the first.
fn same_length(table: &str, columns: &[(&str, usize)]) -> Result<(), Error> {
    let (first, n) = columns[0];
    match columns.iter().find(|c| c.1 != n) {
        Some((name, len)) => Err(Error::artifact(format!(
            "{table} column {name} has {len} rows, {first} has {n}"
        ))),
        None => Ok(()),
    }
}

/// `start..end` is an ordered span of `text` whose ends sit on character boundaries.
fn check_span(text: &str, start: u64, end: u64, what: &str) -> Result<(), String> {
    let len = text.len() as u64;
    if end < start {
        return Err(format!("end {end} is before start {start}"));
    }
    if end > len {
        return Err(format!("end {end} is past the {len}-byte {what}"));
    }
    for at in [start, end] {
        if !text.is_char_boundary(at as usize) {
            return Err(format!("offset {at} is inside a character of the {what}"));
        }
    }
    Ok(())
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

    /// Every field checked before use. The body hash only proves the bytes were not
    /// damaged, not that a writer made them, so each size, offset, span, kind and term
    /// index is bounded by what the file holds before anything is allocated from it.
    fn check(&self) -> Result<(), Error> {
        let b = &self.body;
        if b.format != FORMAT {
            return Err(Error::artifact(format!(
                "body format is {:?}, expected {FORMAT:?}",
                b.format
            )));
        }
        if b.version != FORMAT_VERSION {
            return Err(Error::artifact(format!(
                "body version is {}, the header says {FORMAT_VERSION}",
                b.version
            )));
        }
        self.check_options()?;
        self.check_terms_shape()?;
        self.check_source_map()?;
        // The source map now bounds source_len by the bytes the file holds, so the
        // source can be restored and every source offset checked against it.
        let source = self.decompile()?;
        let got = blake3_hex(source.as_bytes());
        if got != b.hashes.source {
            return Err(Error::artifact(format!(
                "hashes.source is {}, the restored source hashes to {got}",
                b.hashes.source
            )));
        }
        let got = blake3_hex(b.text.as_bytes());
        if got != b.hashes.output {
            return Err(Error::artifact(format!(
                "hashes.output is {}, the compiled text hashes to {got}",
                b.hashes.output
            )));
        }
        self.check_files(&source)?;
        self.check_chunks(&source)?;
        self.check_occurrences(&source)?;
        self.check_terms(&source)?;
        Ok(())
    }

    fn check_options(&self) -> Result<(), Error> {
        let o = &self.body.options;
        if o.budget == 0 {
            return Err(Error::artifact("options.budget is 0"));
        }
        if crate::Placement::parse(&o.placement).is_none() {
            return Err(Error::artifact(format!(
                "options.placement {:?} is not \"chunk\" or \"top\"",
                shorten(&o.placement)
            )));
        }
        if crate::References::parse(&o.references).is_none() {
            return Err(Error::artifact(format!(
                "options.references {:?} is not \"tag\", \"annotate\" or \"keep\"",
                shorten(&o.references)
            )));
        }
        if let Some(t) = o
            .tag_ids
            .as_deref()
            .filter(|t| crate::TagIds::parse(t).is_none())
        {
            return Err(Error::artifact(format!(
                "options.tag_ids {:?} is not \"alpha\" or \"cheap\"",
                shorten(t)
            )));
        }
        if let Some(t) = o
            .tag_style
            .as_deref()
            .filter(|t| crate::TagStyle::parse(t).is_none())
        {
            return Err(Error::artifact(format!(
                "options.tag_style {:?} is not \"seed\" or \"short\"",
                shorten(t)
            )));
        }
        Ok(())
    }

    /// What the source map needs of the term records: which terms have a tag, and
    /// that each tag is spelled from its id.
    fn check_terms_shape(&self) -> Result<(), Error> {
        let style = self.tag_style();
        let prefix = &self.body.options.id_prefix;
        for (i, t) in self.body.terms.iter().enumerate() {
            let fail = |msg: String| Error::artifact(format!("{}: {msg}", term_label(i, t)));
            match (&t.id, &t.tag) {
                (None, None) => {}
                (Some(id), Some(tag)) if *tag == style.element(prefix, id) => {}
                (Some(id), Some(tag)) => {
                    return Err(fail(format!(
                        "tag {:?} is not the element name of id {:?}",
                        shorten(tag),
                        shorten(id)
                    )))
                }
                _ => {
                    return Err(fail(
                        "has an id without a tag, or a tag without an id".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    fn check_source_map(&self) -> Result<(), Error> {
        let b = &self.body;
        let text = b.text.as_str();
        let text_len = text.len() as u64;
        let m = &self.source_map;
        let n = m.out_start.len();
        same_length(
            "source_map",
            &[
                ("out_start", n),
                ("out_end", m.out_end.len()),
                ("src_start", m.src_start.len()),
                ("src_end", m.src_end.len()),
                ("kind", m.kind.len()),
                ("term", m.term.len()),
            ],
        )?;
        let originals = b.originals.as_str();
        let style = self.tag_style();
        let (mut out_pos, mut src_pos, mut orig_pos) = (0u64, 0u64, 0u64);
        for i in 0..n {
            let fail = |msg: String| Error::artifact(format!("source_map row {i}: {msg}"));
            let (os, oe, ss, se) = (m.out_start[i], m.out_end[i], m.src_start[i], m.src_end[i]);
            let term = m.term[i];
            if os != out_pos {
                return Err(fail(format!(
                    "out_start {os} does not follow the previous row, which ends at {out_pos}"
                )));
            }
            if oe < os {
                return Err(fail(format!("out_end {oe} is before out_start {os}")));
            }
            if oe > text_len {
                return Err(fail(format!(
                    "out_end {oe} is past the {text_len}-byte compiled text"
                )));
            }
            if !text.is_char_boundary(oe as usize) {
                return Err(fail(format!(
                    "out_end {oe} is inside a character of the compiled text"
                )));
            }
            let kind = SpanKind::from_u8(m.kind[i])
                .ok_or_else(|| fail(format!("kind {} is not 0, 1, 2 or 3", m.kind[i])))?;
            if ss != src_pos {
                return Err(fail(format!(
                    "src_start {ss} does not follow the source restored so far ({src_pos} bytes)"
                )));
            }
            if se < ss {
                return Err(fail(format!("src_end {se} is before src_start {ss}")));
            }
            if se > b.source_len {
                return Err(fail(format!(
                    "src_end {se} is past the {}-byte source",
                    b.source_len
                )));
            }
            if kind == SpanKind::Copy {
                if term != -1 {
                    return Err(fail(format!("a copied span names term {term}")));
                }
                if se - ss != oe - os {
                    return Err(fail(format!(
                        "a copied span is {} bytes in the compiled text and {} in the source",
                        oe - os,
                        se - ss
                    )));
                }
            } else {
                let tag = usize::try_from(term)
                    .ok()
                    .and_then(|t| b.terms.get(t))
                    .and_then(|t| t.tag.as_deref())
                    .ok_or_else(|| {
                        fail(format!(
                            "term {term} is not one of the {} terms with a tag",
                            b.terms.len()
                        ))
                    })?;
                if kind != SpanKind::Definition
                    && text[os as usize..oe as usize] != style.reference(tag)
                {
                    return Err(fail(format!(
                        "compiled text {os}..{oe} is not the reference tag of term {term}"
                    )));
                }
            }
            match kind {
                SpanKind::Definition | SpanKind::Annotation if se != ss => {
                    return Err(fail(format!(
                        "inserted text has a source span {ss}..{se}, not an empty one"
                    )));
                }
                SpanKind::Reference => {
                    let end = orig_pos + (se - ss);
                    if end > originals.len() as u64 {
                        return Err(fail(format!(
                            "a reference needs replaced text up to byte {end}, originals has {} bytes",
                            originals.len()
                        )));
                    }
                    if !originals.is_char_boundary(end as usize) {
                        return Err(fail(format!(
                            "a reference ends inside a character of originals, at byte {end}"
                        )));
                    }
                    orig_pos = end;
                }
                _ => {}
            }
            out_pos = oe;
            src_pos = se;
        }
        if out_pos != text_len {
            return Err(Error::artifact(format!(
                "source_map covers {out_pos} bytes of the {text_len}-byte compiled text"
            )));
        }
        if src_pos != b.source_len {
            return Err(Error::artifact(format!(
                "source_map restores {src_pos} bytes, source_len says {}",
                b.source_len
            )));
        }
        if orig_pos != originals.len() as u64 {
            return Err(Error::artifact(format!(
                "source_map uses {orig_pos} bytes of originals, which has {}",
                originals.len()
            )));
        }
        Ok(())
    }

    fn check_files(&self, source: &str) -> Result<(), Error> {
        let mut pos = 0u64;
        for (i, f) in self.body.files.iter().enumerate() {
            let fail =
                |msg: String| Error::artifact(format!("files[{i}] {:?}: {msg}", shorten(&f.name)));
            if f.start != pos {
                return Err(fail(format!(
                    "start {} does not follow the previous file, which ends at {pos}",
                    f.start
                )));
            }
            check_span(source, f.start, f.end, "source").map_err(fail)?;
            let got = blake3_hex(&source.as_bytes()[f.start as usize..f.end as usize]);
            if got != f.blake3 {
                return Err(fail(format!(
                    "blake3 is {}, its bytes hash to {got}",
                    shorten(&f.blake3)
                )));
            }
            pos = f.end;
        }
        if pos != source.len() as u64 {
            return Err(Error::artifact(format!(
                "files cover {pos} bytes of the {}-byte source",
                source.len()
            )));
        }
        Ok(())
    }

    fn check_chunks(&self, source: &str) -> Result<(), Error> {
        let c = &self.chunks;
        let k = c.src_start.len();
        same_length(
            "chunks",
            &[
                ("src_start", k),
                ("src_end", c.src_end.len()),
                ("out_start", c.out_start.len()),
                ("out_end", c.out_end.len()),
                ("tokens", c.tokens.len()),
                ("out_tokens", c.out_tokens.len()),
            ],
        )?;
        let text = self.body.text.as_str();
        let (mut src_pos, mut out_pos) = (0u64, 0u64);
        let mut out_tokens = 0u64;
        for i in 0..k {
            let fail = |msg: String| Error::artifact(format!("chunks row {i}: {msg}"));
            if c.src_start[i] != src_pos || c.out_start[i] != out_pos {
                return Err(fail(format!(
                    "span {}..{} (compiled {}..{}) does not follow the previous chunk, which ends at {src_pos} (compiled {out_pos})",
                    c.src_start[i], c.src_end[i], c.out_start[i], c.out_end[i]
                )));
            }
            check_span(source, c.src_start[i], c.src_end[i], "source").map_err(fail)?;
            check_span(text, c.out_start[i], c.out_end[i], "compiled text").map_err(fail)?;
            src_pos = c.src_end[i];
            out_pos = c.out_end[i];
            out_tokens += u64::from(c.out_tokens[i]);
        }
        if src_pos != source.len() as u64 || out_pos != text.len() as u64 {
            return Err(Error::artifact(format!(
                "chunks cover {src_pos} bytes of the {}-byte source and {out_pos} of the {}-byte compiled text",
                source.len(),
                text.len()
            )));
        }
        if out_tokens != self.body.out_tokens {
            return Err(Error::artifact(format!(
                "out_tokens is {}, the chunks add up to {out_tokens}",
                self.body.out_tokens
            )));
        }
        Ok(())
    }

    fn check_occurrences(&self, source: &str) -> Result<(), Error> {
        let o = &self.occurrences;
        let j = o.start.len();
        same_length(
            "occurrences",
            &[
                ("start", j),
                ("end", o.end.len()),
                ("term", o.term.len()),
                ("chunk", o.chunk.len()),
            ],
        )?;
        let terms = &self.body.terms;
        let c = &self.chunks;
        let mut per_term = vec![0u64; terms.len()];
        let mut prev_end = 0u64;
        for i in 0..j {
            let fail = |msg: String| Error::artifact(format!("occurrences row {i}: {msg}"));
            let (s, e) = (o.start[i], o.end[i]);
            if s < prev_end {
                return Err(fail(format!(
                    "start {s} is before the end of the previous occurrence, {prev_end}"
                )));
            }
            check_span(source, s, e, "source").map_err(fail)?;
            if s == e {
                return Err(fail(format!("empty span {s}..{e}")));
            }
            let t = o.term[i] as usize;
            *per_term.get_mut(t).ok_or_else(|| {
                fail(format!("term {t} is not one of the {} terms", terms.len()))
            })? += 1;
            let ch = o.chunk[i] as usize;
            if ch >= c.src_start.len() || s < c.src_start[ch] || s >= c.src_end[ch] {
                return Err(fail(format!("start {s} is not in chunk {ch}")));
            }
            prev_end = e;
        }
        for (i, t) in terms.iter().enumerate() {
            if u64::from(t.occurrences) != per_term[i] {
                return Err(Error::artifact(format!(
                    "{}: occurrences is {}, the occurrence table has {}",
                    term_label(i, t),
                    t.occurrences,
                    per_term[i]
                )));
            }
        }
        Ok(())
    }

    fn check_terms(&self, source: &str) -> Result<(), Error> {
        let b = &self.body;
        let names: std::collections::HashSet<&str> =
            b.terms.iter().map(|t| t.name.as_str()).collect();
        let chunks = self.chunks.src_start.len();
        for (i, t) in b.terms.iter().enumerate() {
            let fail = |msg: String| Error::artifact(format!("{}: {msg}", term_label(i, t)));
            if let Some(c) = t.first_chunk {
                if c as usize >= chunks {
                    return Err(fail(format!("first_chunk {c} is past the {chunks} chunks")));
                }
            }
            if t.first_chunk.is_some() != t.id.is_some() {
                return Err(fail(
                    "first_chunk and id are not both set or both absent".into(),
                ));
            }
            if let Some(at) = t.first_offset {
                check_span(source, at, at, "source")
                    .map_err(|m| fail(format!("first_offset: {m}")))?;
            }
            if let Some((s, e)) = t.definition_span {
                if t.id.is_none() {
                    return Err(fail("has a definition_span but no id".into()));
                }
                check_span(&b.text, s, e, "compiled text")
                    .map_err(|m| fail(format!("definition_span: {m}")))?;
            }
            if let Some(d) = t.depends_on.iter().find(|d| !names.contains(d.as_str())) {
                return Err(fail(format!(
                    "depends_on names unknown term {:?}",
                    shorten(d)
                )));
            }
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
    ///
    /// # Errors
    /// A [`crate::ErrorKind::Artifact`] error when the source map does not fit the
    /// compiled text (not for an artifact that [`Artifact::from_bytes`] accepted).
    pub fn decompile(&self) -> Result<String, Error> {
        let b = &self.body;
        let (text, originals) = (b.text.as_bytes(), b.originals.as_bytes());
        let m = &self.source_map;
        // source_len is what the file claims; never allocate more than it can hold.
        let limit = (text.len() + originals.len()) as u64;
        let mut out = Vec::with_capacity(b.source_len.min(limit) as usize);
        let mut orig = 0usize;
        let rows = m.kind.len().min(m.out_start.len()).min(m.out_end.len());
        let rows = rows.min(m.src_start.len()).min(m.src_end.len());
        for i in 0..rows {
            let piece = match SpanKind::from_u8(m.kind[i]) {
                Some(SpanKind::Copy) => usize::try_from(m.out_start[i])
                    .ok()
                    .zip(usize::try_from(m.out_end[i]).ok())
                    .and_then(|(s, e)| text.get(s..e)),
                Some(SpanKind::Reference) => m.src_end[i]
                    .checked_sub(m.src_start[i])
                    .and_then(|len| usize::try_from(len).ok())
                    .and_then(|len| originals.get(orig..orig.checked_add(len)?))
                    .inspect(|p| orig += p.len()),
                _ => Some(&[][..]),
            };
            let piece = piece.ok_or_else(|| {
                Error::artifact(format!(
                    "source_map row {i}: span is outside the compiled text or originals"
                ))
            })?;
            out.extend_from_slice(piece);
        }
        String::from_utf8(out).map_err(|e| {
            Error::artifact(format!(
                "the restored source is not UTF-8 at byte {}",
                e.utf8_error().valid_up_to()
            ))
        })
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
