//! The table-driven cases in tests/data/cases/*.toml, run against the Rust core (pytest
//! runs the same files through the Python binding).

use std::path::Path;

use aotcc::{
    CompileOptions, Compiler, ErrorKind, Estimator, Placement, References, Source, TagStyle,
};

fn char_offset(text: &str, byte: usize) -> i64 {
    text[..byte].chars().count() as i64
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Input => "InputError",
        ErrorKind::Spec => "SpecError",
        ErrorKind::Plan => "PlanError",
        ErrorKind::Count => "CountError",
        ErrorKind::Artifact => "ArtifactError",
    }
}

fn run_case(path: &Path) -> Result<(), String> {
    let doc: toml::Table =
        toml::from_str(&std::fs::read_to_string(path).unwrap()).map_err(|e| e.to_string())?;
    let case = doc["case"].as_table().expect("[case] table");
    let spec = serde_json::to_string(&doc["spec"]).unwrap();
    let source = case["source"].as_str().expect("source");
    let mut options = CompileOptions::default();
    if let Some(b) = case.get("budget").and_then(|v| v.as_integer()) {
        options = options.budget(b as u32);
    }
    if let Some(p) = case.get("placement").and_then(|v| v.as_str()) {
        options = options.placement(Placement::parse(p).expect("placement"));
    }
    if let Some(r) = case.get("references").and_then(|v| v.as_str()) {
        options = options.references(References::parse(r).expect("references"));
    }
    if let Some(s) = case.get("tag_style").and_then(|v| v.as_str()) {
        options = options.tag_style(TagStyle::parse(s).expect("tag_style"));
    }
    let result = Compiler::new(&spec, "case", options).and_then(|c| {
        c.compile(
            &[Source::new("case", source.as_bytes().to_vec())],
            &Estimator,
            aotcc::ESTIMATOR_FINGERPRINT,
            None,
        )
    });
    if let Some(expected) = case.get("expect_error").and_then(|v| v.as_str()) {
        let err = match result {
            Ok(_) => {
                return Err(format!(
                    "expected an error containing {expected:?}, compiled fine"
                ))
            }
            Err(e) => e,
        };
        if !err.message().contains(expected) {
            return Err(format!(
                "error {:?} does not contain {expected:?}",
                err.message()
            ));
        }
        if let Some(kind) = case.get("expect_error_kind").and_then(|v| v.as_str()) {
            if kind_name(err.kind()) != kind {
                return Err(format!(
                    "error kind {} is not {kind}",
                    kind_name(err.kind())
                ));
            }
        }
        return Ok(());
    }
    let artifact = result.map_err(|e| format!("unexpected error: {e}"))?;
    if let Some(expected) = case.get("expect_compiled").and_then(|v| v.as_str()) {
        if artifact.text() != expected {
            return Err(format!(
                "compiled text differs:\n  got:      {:?}\n  expected: {expected:?}",
                artifact.text()
            ));
        }
    }
    if let Some(expected) = case.get("expect_occurrences").and_then(|v| v.as_array()) {
        let occ = artifact.occurrences();
        let names: Vec<&str> = artifact.terms().iter().map(|t| t.name.as_str()).collect();
        let got: Vec<(i64, i64, String)> = (0..occ.start.len())
            .map(|i| {
                (
                    char_offset(source, occ.start[i] as usize),
                    char_offset(source, occ.end[i] as usize),
                    names[occ.term[i] as usize].to_string(),
                )
            })
            .collect();
        let want: Vec<(i64, i64, String)> = expected
            .iter()
            .map(|row| {
                let r = row.as_array().expect("[start, end, term]");
                (
                    r[0].as_integer().unwrap(),
                    r[1].as_integer().unwrap(),
                    r[2].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if got != want {
            return Err(format!(
                "occurrences differ:\n  got:      {got:?}\n  expected: {want:?}"
            ));
        }
    }
    if let Some(expected) = case.get("expect_warnings").and_then(|v| v.as_array()) {
        let want: Vec<&str> = expected
            .iter()
            .map(|w| w.as_str().expect("a string"))
            .collect();
        if artifact.warnings() != want.as_slice() {
            return Err(format!(
                "warnings differ:\n  got:      {:?}\n  expected: {want:?}",
                artifact.warnings()
            ));
        }
    }
    if artifact.decompile().map_err(|e| e.to_string())? != source {
        return Err("decompile does not restore the source".into());
    }
    // Every artifact the compiler writes passes the reader's checks.
    let reloaded = aotcc::Artifact::from_bytes(&artifact.to_bytes(false))
        .map_err(|e| format!("the written artifact is refused: {e}"))?;
    if reloaded.text() != artifact.text() {
        return Err("the reloaded artifact differs".into());
    }
    Ok(())
}

#[test]
fn table_driven_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    paths.sort();
    assert!(
        paths.len() >= 20,
        "expected the shared case files in {}",
        dir.display()
    );
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            run_case(p)
                .err()
                .map(|e| format!("{}: {e}", p.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}
