//! A GGUF metadata reader: the header and the key/value section of a `.gguf` file,
//! never the tensors. The file is memory-mapped, so a model of hundreds of megabytes
//! costs only the pages its metadata sits on. Every refusal names the file and the
//! byte offset where the metadata stopped making sense.
//!
//! Layout (little-endian): magic `GGUF`, version `u32` (2 or 3), tensor count `u64`,
//! key/value count `u64`, then per entry a string key, a `u32` type and the value.
//! A string is a `u64` length and UTF-8 bytes; an array is an element type `u32`, a
//! `u64` length and the elements.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use crate::error::{Error, ErrorKind};

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type (u8 … u64).
    Uint(u64),
    /// Any signed integer type (i8 … i64).
    Int(i64),
    /// `f32` or `f64`.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string (raw bytes: GGUF promises UTF-8 but vocabularies hold byte pieces).
    Str(Vec<u8>),
    /// An array of strings.
    StrArray(StrList),
    /// An array of `f32`.
    F32Array(Vec<f32>),
    /// An array of `i32`.
    I32Array(Vec<i32>),
    /// An array of any other element type, kept only as its length and element type.
    OtherArray {
        /// The GGUF element type code.
        elem_type: u32,
        /// The number of elements.
        len: u64,
    },
}

/// An array of strings, stored end to end in one buffer (a 262k-token vocabulary is
/// then two allocations, not 262k).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StrList {
    bytes: Vec<u8>,
    /// `ends[i]` is where string i ends in `bytes` (it starts where i - 1 ends)
    ends: Vec<usize>,
}

impl StrList {
    /// The number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `i` (panics when `i >= len()`).
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// The strings in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Appends a string.
    pub fn push(&mut self, s: &[u8]) {
        self.bytes.extend_from_slice(s);
        self.ends.push(self.bytes.len());
    }
}

impl<T: AsRef<[u8]>> FromIterator<T> for StrList {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> StrList {
        let mut out = StrList::default();
        for s in iter {
            out.push(s.as_ref());
        }
        out
    }
}

impl Value {
    /// The GGUF name of the value's type, for errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Uint(_) => "unsigned integer",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
            Value::StrArray(_) => "array of strings",
            Value::F32Array(_) => "array of f32",
            Value::I32Array(_) => "array of i32",
            Value::OtherArray { .. } => "array",
        }
    }
}

/// The metadata of a GGUF file.
#[derive(Debug, Clone)]
pub struct Gguf {
    /// The file's name as given, for errors.
    pub name: String,
    /// The format version (2 or 3).
    pub version: u32,
    /// The number of tensors the header announces.
    pub tensor_count: u64,
    /// Key/value pairs in file order.
    pub entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    /// BLAKE3 over the raw bytes of every `tokenizer.*` entry, in file order: what a
    /// token count depends on, and nothing else (requantizing keeps it).
    pub tokenizer_hash: String,
}

const GGUF_MAGIC: &[u8; 4] = b"GGUF";
/// More entries than this in a header is a corrupt count, not a model.
const MAX_ENTRIES: u64 = 1 << 24;
/// Arrays of arrays deeper than this are refused (llama.cpp reads none at all); the
/// reader recurses once per level.
const MAX_DEPTH: u32 = 8;
/// The fewest bytes a key/value entry takes: key length, an empty key, type, a byte.
const MIN_ENTRY: u64 = 8 + 4 + 1;

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    name: &'a str,
}

impl<'a> Cursor<'a> {
    fn fail(&self, at: usize, what: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Input,
            format!("{}: corrupt GGUF metadata at byte {at}: {what}", self.name),
        )
    }
    fn left(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], Error> {
        let left = self.left();
        if n > left {
            return Err(self.fail(
                self.pos,
                format!("{what} needs {n} bytes, the file has {left} left (truncated?)"),
            ));
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn string(&mut self, what: &str) -> Result<&'a [u8], Error> {
        let n = self.u64(what)?;
        self.take(n, what)
    }
    fn scalar(&mut self, ty: u32, at: usize) -> Result<Value, Error> {
        let b = |s: &mut Self, n| s.take(n, "value");
        Ok(match ty {
            0 => Value::Uint(u64::from(b(self, 1)?[0])),
            1 => Value::Int(i64::from(b(self, 1)?[0] as i8)),
            2 => Value::Uint(u64::from(u16::from_le_bytes(
                b(self, 2)?.try_into().unwrap(),
            ))),
            3 => Value::Int(i64::from(i16::from_le_bytes(
                b(self, 2)?.try_into().unwrap(),
            ))),
            4 => Value::Uint(u64::from(self.u32("value")?)),
            5 => Value::Int(i64::from(i32::from_le_bytes(
                b(self, 4)?.try_into().unwrap(),
            ))),
            6 => Value::Float(f64::from(f32::from_le_bytes(
                b(self, 4)?.try_into().unwrap(),
            ))),
            7 => {
                let v = b(self, 1)?[0];
                if v > 1 {
                    return Err(self.fail(at, format!("bool value {v} is neither 0 nor 1")));
                }
                Value::Bool(v == 1)
            }
            8 => Value::Str(self.string("string value")?.to_vec()),
            10 => Value::Uint(self.u64("value")?),
            11 => Value::Int(i64::from_le_bytes(b(self, 8)?.try_into().unwrap())),
            12 => Value::Float(f64::from_le_bytes(b(self, 8)?.try_into().unwrap())),
            _ => return Err(self.fail(at, format!("unknown value type {ty}"))),
        })
    }
    /// A value of type `ty` at nesting `depth` (0 for a key's own value).
    fn value(&mut self, ty: u32, at: usize, depth: u32) -> Result<Value, Error> {
        if ty != 9 {
            return self.scalar(ty, at);
        }
        if depth >= MAX_DEPTH {
            return Err(self.fail(at, format!("arrays nested more than {MAX_DEPTH} deep")));
        }
        let elem_at = self.pos;
        let elem = self.u32("array element type")?;
        let len_at = self.pos;
        let len = self.u64("array length")?;
        // The fewest bytes one element takes, so a count is bounded by the bytes left
        // before anything is allocated for it.
        let min_size: u64 = match elem {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            _ => return Err(self.fail(elem_at, format!("unknown array element type {elem}"))),
        };
        let left = self.left();
        if len > left / min_size {
            return Err(self.fail(
                len_at,
                format!(
                    "array of {len} elements of at least {min_size} bytes, the file has {left} bytes left"
                ),
            ));
        }
        Ok(match elem {
            8 => {
                let mut v = StrList {
                    bytes: Vec::new(),
                    ends: Vec::with_capacity(len as usize),
                };
                for _ in 0..len {
                    v.push(self.string("array string")?);
                }
                Value::StrArray(v)
            }
            6 => {
                let raw = self.take(len * 4, "f32 array")?;
                Value::F32Array(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                )
            }
            5 => {
                let raw = self.take(len * 4, "i32 array")?;
                Value::I32Array(
                    raw.chunks_exact(4)
                        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                )
            }
            0..=7 | 10..=12 => {
                let size = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    _ => 8,
                };
                self.take(len * size, "array")?;
                Value::OtherArray {
                    elem_type: elem,
                    len,
                }
            }
            9 => {
                // Nested arrays: skip element by element.
                for _ in 0..len {
                    let inner = self.pos;
                    self.value(9, inner, depth + 1)?;
                }
                Value::OtherArray {
                    elem_type: elem,
                    len,
                }
            }
            _ => return Err(self.fail(elem_at, format!("unknown array element type {elem}"))),
        })
    }
}

impl Gguf {
    /// Reads the metadata of the GGUF file at `path`.
    ///
    /// # Errors
    /// An [`ErrorKind::Input`] error naming the file: it cannot be opened, it is not a
    /// GGUF file, or its metadata is truncated or corrupt (with the byte offset).
    pub fn open(path: &Path) -> Result<Gguf, Error> {
        let name = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| Error::new(ErrorKind::Input, format!("{name}: cannot open: {e}")))?;
        // SAFETY: the map is read-only and dropped before returning; a file truncated
        // underneath us is the caller's race, as with any reader.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::new(ErrorKind::Input, format!("{name}: cannot read: {e}")))?;
        Gguf::parse(&map, &name)
    }

    /// Parses GGUF metadata from the bytes of a file (only the header and key/value
    /// section are read; the tensor data may be absent).
    ///
    /// # Errors
    /// As [`Gguf::open`].
    pub fn parse(data: &[u8], name: &str) -> Result<Gguf, Error> {
        let mut c = Cursor { data, pos: 0, name };
        if data.len() < 4 || &data[..4] != GGUF_MAGIC {
            return Err(Error::new(
                ErrorKind::Input,
                format!(
                    "{name}: not a GGUF file (the first bytes are {:?}, not \"GGUF\")",
                    String::from_utf8_lossy(&data[..data.len().min(4)])
                ),
            ));
        }
        c.pos = 4;
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(c.fail(
                4,
                format!("GGUF version {version} is not supported (2 or 3)"),
            ));
        }
        let tensor_count = c.u64("tensor count")?;
        let kv_at = c.pos;
        let n_kv = c.u64("key/value count")?;
        if n_kv > MAX_ENTRIES || n_kv > c.left() / MIN_ENTRY {
            return Err(c.fail(
                kv_at,
                format!(
                    "key/value count {n_kv} is implausible for the {} bytes left",
                    c.left()
                ),
            ));
        }
        let mut entries = Vec::with_capacity(n_kv as usize);
        let mut index = HashMap::with_capacity(n_kv as usize);
        let mut tok_hash = blake3::Hasher::new();
        for _ in 0..n_kv {
            let at = c.pos;
            let key = c.string("key")?;
            let key = std::str::from_utf8(key)
                .map_err(|_| c.fail(at, "key is not UTF-8"))?
                .to_string();
            let ty_at = c.pos;
            let ty = c.u32("value type")?;
            let value = c.value(ty, ty_at, 0)?;
            if key.starts_with("tokenizer.") {
                tok_hash.update(&data[at..c.pos]);
            }
            if index.insert(key.clone(), entries.len()).is_some() {
                return Err(c.fail(at, format!("duplicate key {key:?}")));
            }
            entries.push((key, value));
        }
        Ok(Gguf {
            name: name.to_string(),
            version,
            tensor_count,
            entries,
            index,
            tokenizer_hash: tok_hash.finalize().to_hex().to_string(),
        })
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    fn wrong_type(&self, key: &str, want: &str, got: &Value) -> Error {
        Error::new(
            ErrorKind::Input,
            format!(
                "{}: metadata {key:?} is a {}, expected {want}",
                self.name,
                got.type_name()
            ),
        )
    }

    /// A string value; `Ok(None)` when absent, an error when of another type.
    ///
    /// # Errors
    /// [`ErrorKind::Input`] naming the key when the value is not a string.
    pub fn get_str(&self, key: &str) -> Result<Option<String>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(String::from_utf8_lossy(s).into_owned())),
            Some(v) => Err(self.wrong_type(key, "a string", v)),
        }
    }

    /// A boolean value; `Ok(None)` when absent.
    ///
    /// # Errors
    /// [`ErrorKind::Input`] naming the key when the value is not a bool.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(key, "a bool", v)),
        }
    }

    /// An unsigned integer value (any width); `Ok(None)` when absent.
    ///
    /// # Errors
    /// [`ErrorKind::Input`] naming the key when the value is not a non-negative integer.
    pub fn get_uint(&self, key: &str) -> Result<Option<u64>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Uint(u)) => Ok(Some(*u)),
            Some(Value::Int(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(v) => Err(self.wrong_type(key, "an unsigned integer", v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn sample() -> Vec<u8> {
        let mut d = b"GGUF".to_vec();
        d.extend(3u32.to_le_bytes());
        d.extend(0u64.to_le_bytes());
        d.extend(3u64.to_le_bytes());
        string(&mut d, "general.architecture");
        d.extend(8u32.to_le_bytes());
        string(&mut d, "llama");
        string(&mut d, "tokenizer.ggml.tokens");
        d.extend(9u32.to_le_bytes());
        d.extend(8u32.to_le_bytes());
        d.extend(2u64.to_le_bytes());
        string(&mut d, "a");
        string(&mut d, "b");
        string(&mut d, "tokenizer.ggml.scores");
        d.extend(9u32.to_le_bytes());
        d.extend(6u32.to_le_bytes());
        d.extend(2u64.to_le_bytes());
        d.extend(1.5f32.to_le_bytes());
        d.extend((-2.0f32).to_le_bytes());
        d
    }

    #[test]
    fn reads_metadata() {
        let g = Gguf::parse(&sample(), "t.gguf").unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.get_str("general.architecture").unwrap().unwrap(), "llama");
        assert_eq!(
            g.get("tokenizer.ggml.tokens"),
            Some(&Value::StrArray(["a", "b"].into_iter().collect()))
        );
        assert_eq!(
            g.get("tokenizer.ggml.scores"),
            Some(&Value::F32Array(vec![1.5, -2.0]))
        );
        assert!(g.get_bool("general.architecture").is_err());
    }

    #[test]
    fn refuses_truncated_and_foreign_files() {
        let d = sample();
        for cut in [10, 30, d.len() - 3] {
            let e = Gguf::parse(&d[..cut], "t.gguf").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Input);
            assert!(e
                .message()
                .starts_with("t.gguf: corrupt GGUF metadata at byte "));
        }
        let e = Gguf::parse(b"PK\x03\x04rest", "x.gguf").unwrap_err();
        assert!(e.message().contains("not a GGUF file"), "{}", e.message());
        let mut bad = sample();
        bad[4] = 9;
        assert!(Gguf::parse(&bad, "v.gguf")
            .unwrap_err()
            .message()
            .contains("version 9"));
    }
}
