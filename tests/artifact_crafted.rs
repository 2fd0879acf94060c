//! Crafted `.aotc` files: a valid artifact re-serialised with one field changed and
//! its BLAKE3 body hash recomputed, so only the reader's field checks stand between the
//! file and a panic, an abort or a huge allocation. Each must be refused with a
//! one-line `ErrorKind::Artifact` message naming the field, or, if accepted, read and
//! decompiled without a panic.

use aotcc::{Artifact, CompileOptions, Compiler, ErrorKind, Estimator, References, Source};
use rmpv::Value;

const SPEC: &str = r#"{"terms": [
    {"name": "Café Policy", "aliases": ["CP"], "definition": "Coffee is free.", "requires": ["Barista"]},
    {"name": "Barista", "definition": "Makes the café crème."},
    {"name": "Never Used", "definition": "Not in the text."}
]}"#;

/// A small compiled prompt with every row kind: two files, non-ASCII text, several
/// chunks, definitions, references (or annotations) and a term that never occurs.
fn example(references: References) -> Vec<u8> {
    let options = CompileOptions::default().budget(12).references(references);
    let compiler = Compiler::new(SPEC, "spec.json", options).unwrap();
    let a = "# Café\n\nThe Café Policy holds. Ask the barista.\n\nThe café policy, again: CP.\n";
    let b = "Später: café policy und Barista — CP. Ende.\n";
    let sources = [
        Source::new("a.md", a.as_bytes().to_vec()),
        Source::new("b.md", b.as_bytes().to_vec()),
    ];
    let artifact = compiler
        .compile(&sources, &Estimator, aotcc::ESTIMATOR_FINGERPRINT, None)
        .unwrap();
    assert!(artifact.chunks().src_start.len() > 2, "want several chunks");
    artifact.to_bytes(false)
}

fn entry<'a>(map: &'a mut Value, key: &str) -> &'a mut Value {
    match map {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no key {key:?}")),
        _ => panic!("not a map"),
    }
}

/// Re-serialises `data` with `edit` applied to its body, and a valid hash.
fn craft(data: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut layout = rmpv::decode::read_value(&mut &data[..]).unwrap();
    let body_bytes = match entry(&mut layout, "body") {
        Value::Binary(b) => b.clone(),
        _ => panic!("body is not bin"),
    };
    let mut body = rmpv::decode::read_value(&mut &body_bytes[..]).unwrap();
    edit(&mut body);
    let mut new_body = Vec::new();
    rmpv::encode::write_value(&mut new_body, &body).unwrap();
    *entry(&mut layout, "hash") = Value::from(aotcc::blake3_hex(&new_body));
    *entry(&mut layout, "body") = Value::Binary(new_body);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &layout).unwrap();
    out
}

/// The bytes of column `col` of table `table` (`chunks`, `source_map`, `occurrences`).
fn column<'a>(body: &'a mut Value, table: &str, col: &str) -> &'a mut Vec<u8> {
    let Value::Array(cols) = entry(body, table) else {
        panic!("{table} is not an array")
    };
    for pair in cols.iter_mut() {
        let Value::Array(kv) = pair else { panic!() };
        if kv[0].as_str() == Some(col) {
            let Value::Binary(b) = &mut kv[1] else {
                panic!()
            };
            return b;
        }
    }
    panic!("no column {table}.{col}")
}

fn width(col: &str) -> usize {
    match col {
        "tokens" | "out_tokens" | "term" | "chunk" => 4,
        "kind" => 1,
        _ => 8,
    }
}

fn get_cell(body: &mut Value, table: &str, col: &str, row: usize) -> u64 {
    let w = width(col);
    let b = column(body, table, col);
    let mut le = [0u8; 8];
    le[..w].copy_from_slice(&b[row * w..row * w + w]);
    u64::from_le_bytes(le)
}

fn set_cell(body: &mut Value, table: &str, col: &str, row: usize, v: u64) {
    let w = width(col);
    let b = column(body, table, col);
    b[row * w..row * w + w].copy_from_slice(&v.to_le_bytes()[..w]);
}

fn rows(body: &mut Value, table: &str, col: &str) -> usize {
    column(body, table, col).len() / width(col)
}

fn term<'a>(body: &'a mut Value, i: usize, key: &str) -> &'a mut Value {
    let Value::Array(terms) = entry(body, "terms") else {
        panic!()
    };
    entry(&mut terms[i], key)
}

/// Reads `data`; when it is accepted, uses every accessor. Returns the error, if any.
fn read(data: &[u8]) -> Option<aotcc::Error> {
    match Artifact::from_bytes(data) {
        Ok(a) => {
            let source = a.decompile().expect("an accepted artifact decompiles");
            let _ = (a.text().len(), a.chunks(), a.source_map(), a.occurrences());
            let _ = (a.terms(), a.files(), a.warnings(), a.timings(), a.hash());
            let _ = a.manifest_json().to_string();
            assert!(source.len() <= data.len() * 4);
            None
        }
        Err(e) => Some(e),
    }
}

/// `edit` must make the reader refuse the file with a message containing `want`.
fn refused(data: &[u8], edit: impl FnOnce(&mut Value), want: &str) {
    let crafted = craft(data, edit);
    let e = read(&crafted).unwrap_or_else(|| panic!("accepted; expected {want:?}"));
    assert_eq!(e.kind(), ErrorKind::Artifact);
    let msg = e.message();
    assert!(msg.contains(want), "{msg:?} does not contain {want:?}");
    assert!(
        !msg.contains('\n') && msg.len() < 300,
        "not one short line: {msg:?}"
    );
}

#[test]
fn the_helper_reproduces_a_valid_artifact() {
    let data = example(References::Tag);
    let same = craft(&data, |_| {});
    let a = Artifact::from_bytes(&same).unwrap();
    assert_eq!(a.hash(), Artifact::from_bytes(&data).unwrap().hash());
}

#[test]
fn regression_source_len_that_cannot_be_allocated() {
    let data = example(References::Tag);
    // 2^62 aborted the process (allocation failure); u64::MAX panicked (capacity overflow).
    for v in [1u64 << 62, u64::MAX, 1 << 40] {
        refused(
            &data,
            |b| *entry(b, "source_len") = Value::from(v),
            &format!("source_len says {v}"),
        );
    }
    refused(
        &data,
        |b| *entry(b, "source_len") = Value::from(0),
        "is past the 0-byte source",
    );
}

#[test]
fn regression_originals_that_split_a_character() {
    let data = example(References::Tag);
    let mut body = Value::Nil;
    craft(&data, |b| body = b.clone());
    let originals = entry(&mut body, "originals").as_str().unwrap().to_string();
    // Same byte length, but made of two-byte characters, so some reference ends
    // inside one (the binding used to panic with "sources are UTF-8").
    let mut split = "é".repeat(originals.len() / 2);
    if originals.len() % 2 == 1 {
        split.push('x');
    }
    assert_eq!(split.len(), originals.len());
    refused(
        &data,
        |b| *entry(b, "originals") = Value::from(split.as_str()),
        "inside a character of originals",
    );
    // Same length, plain ASCII: every span fits, but the source is not the one hashed.
    let other = "x".repeat(originals.len());
    refused(
        &data,
        |b| *entry(b, "originals") = Value::from(other.as_str()),
        "hashes.source is",
    );
    refused(
        &data,
        |b| *entry(b, "originals") = Value::from(format!("{originals}!")),
        "source_map uses",
    );
}

#[test]
fn source_map_fields() {
    let data = example(References::Tag);
    let mut body = Value::Nil;
    craft(&data, |b| body = b.clone());
    let n = rows(&mut body, "source_map", "out_start");
    let last = n - 1;
    let src_len = entry(&mut body, "source_len").as_u64().unwrap();
    let reference = (0..n)
        .find(|&i| get_cell(&mut body, "source_map", "kind", i) == 2)
        .unwrap();
    let copy = (0..n)
        .find(|&i| get_cell(&mut body, "source_map", "kind", i) == 0)
        .unwrap();
    refused(
        &data,
        |b| set_cell(b, "source_map", "src_end", last, 9000),
        &format!("source_map row {last}: src_end 9000 is past the {src_len}-byte source"),
    );
    refused(
        &data,
        |b| set_cell(b, "source_map", "out_end", last, u64::MAX),
        &format!("source_map row {last}: out_end {} is past", u64::MAX),
    );
    refused(
        &data,
        |b| set_cell(b, "source_map", "out_start", 1, 0),
        "source_map row 1: out_start 0 does not follow",
    );
    refused(
        &data,
        |b| set_cell(b, "source_map", "src_start", 1, 1 << 62),
        "source_map row 1: src_start 4611686018427387904 does not follow",
    );
    refused(
        &data,
        |b| set_cell(b, "source_map", "kind", 0, 7),
        "source_map row 0: kind 7 is not",
    );
    refused(
        &data,
        |b| set_cell(b, "source_map", "term", reference, 99),
        &format!("source_map row {reference}: term 99 is not one of the 3 terms"),
    );
    refused(
        &data,
        |b| set_cell(b, "source_map", "term", reference, u64::from(u32::MAX)),
        &format!("source_map row {reference}: term -1 is not"),
    );
    refused(
        &data,
        |b| set_cell(b, "source_map", "term", copy, 0),
        &format!("source_map row {copy}: a copied span names term 0"),
    );
    refused(
        &data,
        |b| set_cell(b, "source_map", "kind", reference, 0),
        &format!("source_map row {reference}: a copied span names term"),
    );
    refused(
        &data,
        |b| {
            column(b, "source_map", "kind").pop();
        },
        &format!(
            "source_map column kind has {} rows, out_start has {n}",
            n - 1
        ),
    );
    refused(
        &data,
        |b| {
            column(b, "source_map", "src_end").pop();
        },
        "table source_map.src_end has",
    );
}

#[test]
fn a_reference_span_must_hold_the_reference_tag() {
    let data = example(References::Tag);
    let mut body = Value::Nil;
    craft(&data, |b| body = b.clone());
    let n = rows(&mut body, "source_map", "out_start");
    let reference = (0..n)
        .find(|&i| get_cell(&mut body, "source_map", "kind", i) == 2)
        .unwrap();
    let t = get_cell(&mut body, "source_map", "term", reference);
    let other = if t == 0 { 1 } else { 0 };
    refused(
        &data,
        |b| set_cell(b, "source_map", "term", reference, other),
        "is not the reference tag of term",
    );
}

#[test]
fn chunk_fields() {
    let data = example(References::Tag);
    let mut body = Value::Nil;
    craft(&data, |b| body = b.clone());
    let k = rows(&mut body, "chunks", "src_start");
    refused(
        &data,
        |b| set_cell(b, "chunks", "src_end", k - 1, u64::MAX),
        &format!("chunks row {}: end {} is past the", k - 1, u64::MAX),
    );
    refused(
        &data,
        |b| set_cell(b, "chunks", "src_start", 1, 3),
        "chunks row 1: span 3..",
    );
    refused(
        &data,
        |b| {
            // Move the boundary between chunk 0 and 1 into the `é` of "# Café" (bytes 5..7).
            set_cell(b, "chunks", "src_end", 0, 6);
            set_cell(b, "chunks", "src_start", 1, 6);
        },
        "chunks row 0: offset 6 is inside a character of the source",
    );
    refused(
        &data,
        |b| {
            let e = get_cell(b, "chunks", "out_end", 0);
            set_cell(b, "chunks", "out_end", 0, e + 1);
        },
        "does not follow the previous chunk",
    );
    refused(
        &data,
        |b| {
            column(b, "chunks", "tokens").truncate(4);
        },
        &format!("chunks column tokens has 1 rows, src_start has {k}"),
    );
    refused(
        &data,
        |b| {
            column(b, "chunks", "out_end").push(0);
        },
        "not a multiple of 8",
    );
    refused(
        &data,
        |b| {
            let Value::Array(cols) = entry(b, "chunks") else {
                panic!()
            };
            cols.remove(0);
        },
        "table chunks has no column \"src_start\"",
    );
    refused(
        &data,
        |b| *entry(b, "out_tokens") = Value::from(1u64 << 63),
        "out_tokens is 9223372036854775808, the chunks add up to",
    );
}

#[test]
fn occurrence_fields() {
    let data = example(References::Tag);
    let mut body = Value::Nil;
    craft(&data, |b| body = b.clone());
    let j = rows(&mut body, "occurrences", "start");
    assert!(j >= 4);
    refused(
        &data,
        |b| set_cell(b, "occurrences", "term", 0, 3),
        "occurrences row 0: term 3 is not one of the 3 terms",
    );
    refused(
        &data,
        |b| set_cell(b, "occurrences", "chunk", 1, 1000),
        "occurrences row 1: start",
    );
    refused(
        &data,
        |b| set_cell(b, "occurrences", "end", j - 1, 1 << 62),
        &format!("occurrences row {}: end 4611686018427387904 is past", j - 1),
    );
    refused(
        &data,
        |b| {
            let s = get_cell(b, "occurrences", "start", 0);
            set_cell(b, "occurrences", "start", 1, s);
        },
        "occurrences row 1: start",
    );
    refused(
        &data,
        |b| {
            let s = get_cell(b, "occurrences", "start", 0);
            set_cell(b, "occurrences", "end", 0, s);
        },
        "occurrences row 0: empty span",
    );
    refused(
        &data,
        |b| {
            column(b, "occurrences", "chunk").extend([0, 0, 0, 0]);
        },
        "occurrences column chunk has",
    );
}

#[test]
fn term_fields() {
    let data = example(References::Tag);
    refused(
        &data,
        |b| *term(b, 0, "first_chunk") = Value::from(77u32),
        "terms[0] \"Café Policy\": first_chunk 77 is past the",
    );
    refused(
        &data,
        |b| *term(b, 2, "first_chunk") = Value::from(0u32),
        "terms[2] \"Never Used\": first_chunk and id are not both set",
    );
    refused(
        &data,
        |b| *term(b, 0, "first_offset") = Value::from(u64::MAX),
        "terms[0] \"Café Policy\": first_offset: end",
    );
    refused(
        &data,
        |b| {
            *term(b, 0, "definition_span") =
                Value::Array(vec![Value::from(5u64), Value::from(1u64 << 62)])
        },
        "terms[0] \"Café Policy\": definition_span: end 4611686018427387904 is past",
    );
    refused(
        &data,
        |b| *term(b, 1, "occurrences") = Value::from(u32::MAX),
        "terms[1] \"Barista\": occurrences is 4294967295, the occurrence table has",
    );
    refused(
        &data,
        |b| *term(b, 0, "depends_on") = Value::Array(vec![Value::from("Nobody")]),
        "depends_on names unknown term \"Nobody\"",
    );
    refused(
        &data,
        |b| *term(b, 0, "tag") = Value::Nil,
        "has an id without a tag",
    );
    refused(
        &data,
        |b| *term(b, 0, "tag") = Value::from("__OTHER_A__"),
        "is not the element name of id",
    );
    refused(
        &data,
        |b| *term(b, 0, "name") = Value::from(7),
        "malformed artifact body",
    );
    refused(
        &data,
        |b| {
            let Value::Array(terms) = entry(b, "terms") else {
                panic!()
            };
            terms.truncate(1);
        },
        "is not one of the 1 terms",
    );
}

#[test]
fn file_fields() {
    let data = example(References::Tag);
    refused(
        &data,
        |b| {
            let Value::Array(files) = entry(b, "files") else {
                panic!()
            };
            *entry(&mut files[1], "start") = Value::from(3u64);
        },
        "files[1] \"b.md\": start 3 does not follow the previous file",
    );
    refused(
        &data,
        |b| {
            let Value::Array(files) = entry(b, "files") else {
                panic!()
            };
            *entry(&mut files[1], "end") = Value::from(u64::MAX);
        },
        "files[1] \"b.md\": end 18446744073709551615 is past",
    );
    refused(
        &data,
        |b| {
            let Value::Array(files) = entry(b, "files") else {
                panic!()
            };
            *entry(&mut files[0], "blake3") = Value::from("00");
        },
        "files[0] \"a.md\": blake3 is 00, its bytes hash to",
    );
    refused(
        &data,
        |b| {
            let Value::Array(files) = entry(b, "files") else {
                panic!()
            };
            files.pop();
        },
        "files cover",
    );
}

#[test]
fn header_and_option_fields() {
    let data = example(References::Tag);
    refused(
        &data,
        |b| *entry(b, "format") = Value::from("zip"),
        "body format is \"zip\"",
    );
    refused(
        &data,
        |b| *entry(b, "version") = Value::from(2),
        "body version is 2",
    );
    refused(
        &data,
        |b| *entry(entry(b, "options"), "placement") = Value::from("x".repeat(5000)),
        "options.placement \"xxxx",
    );
    refused(
        &data,
        |b| *entry(entry(b, "options"), "budget") = Value::from(0),
        "options.budget is 0",
    );
    refused(
        &data,
        |b| *entry(entry(b, "options"), "references") = Value::from("all"),
        "options.references \"all\"",
    );
    refused(
        &data,
        |b| {
            let Value::Map(m) = entry(b, "options") else {
                panic!()
            };
            m.push((Value::from("tag_style"), Value::from("fancy")));
        },
        "options.tag_style \"fancy\"",
    );
    refused(
        &data,
        |b| *entry(b, "source_len") = Value::from("many"),
        "malformed artifact body",
    );
    refused(
        &data,
        |b| {
            let t = entry(b, "text")
                .as_str()
                .unwrap()
                .replacen("Coffee", "Koffee", 1);
            *entry(b, "text") = Value::from(t);
        },
        "hashes.output is",
    );
}

/// Every cell of every table, and every number of the body, set to values around the
/// edges: the reader refuses or reads, never panics.
#[test]
fn every_number_at_its_edges() {
    for references in [References::Tag, References::Annotate] {
        let data = example(references);
        let mut body = Value::Nil;
        craft(&data, |b| body = b.clone());
        let src_len = entry(&mut body, "source_len").as_u64().unwrap();
        let text_len = entry(&mut body, "text").as_str().unwrap().len() as u64;
        let values = [
            0,
            1,
            2,
            3,
            4,
            src_len - 1,
            src_len,
            src_len + 1,
            text_len - 1,
            text_len,
            text_len + 1,
            u64::from(u32::MAX),
            1 << 62,
            u64::MAX,
        ];
        let tables: [(&str, &[&str]); 3] = [
            (
                "chunks",
                &[
                    "src_start",
                    "src_end",
                    "out_start",
                    "out_end",
                    "tokens",
                    "out_tokens",
                ],
            ),
            (
                "source_map",
                &[
                    "out_start",
                    "out_end",
                    "src_start",
                    "src_end",
                    "kind",
                    "term",
                ],
            ),
            ("occurrences", &["start", "end", "term", "chunk"]),
        ];
        let mut cases = 0;
        for (table, cols) in tables {
            for col in cols {
                for row in 0..rows(&mut body, table, col) {
                    for v in values {
                        read(&craft(&data, |b| set_cell(b, table, col, row, v)));
                        cases += 1;
                    }
                }
            }
        }
        for key in ["source_len", "source_tokens", "out_tokens"] {
            for v in values {
                read(&craft(&data, |b| *entry(b, key) = Value::from(v)));
            }
        }
        for t in 0..3 {
            for key in ["first_chunk", "first_offset", "occurrences", "references"] {
                for v in values {
                    read(&craft(&data, |b| *term(b, t, key) = Value::from(v)));
                }
            }
            for (s, e) in [(0, 0), (0, text_len), (text_len, 0), (1, 2), (0, u64::MAX)] {
                let span = Value::Array(vec![Value::from(s), Value::from(e)]);
                read(&craft(&data, |b| *term(b, t, "definition_span") = span));
            }
        }
        assert!(cases > 500);
    }
}
