//! The term spec: the glossary of terms with aliases, definitions, options and
//! `requires`. The core receives it as JSON (`{"options": {...}, "terms": [...]}`, or a
//! bare list of terms) and validates it here, naming the term and field at fault.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::text::fold_case;

/// Options of the whole spec; terms may override `case_sensitive` and `whole_word`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecOptions {
    /// Match aliases with case (default false).
    pub case_sensitive: bool,
    /// Only match aliases that are whole words (default true).
    pub whole_word: bool,
    /// The tag prefix: tags read `__{id_prefix}_{id}__` (default `SYS_STATE`).
    pub id_prefix: String,
}

impl Default for SpecOptions {
    fn default() -> Self {
        SpecOptions {
            case_sensitive: false,
            whole_word: true,
            id_prefix: "SYS_STATE".into(),
        }
    }
}

/// One validated term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Term {
    /// The unique name (also an alias).
    pub name: String,
    /// All aliases, the name first, without repeats.
    pub aliases: Vec<String>,
    /// The definition injected at first appearance.
    pub definition: String,
    /// A fixed tag id, if the spec gives one.
    pub id: Option<String>,
    /// Indices of the terms named in `requires`, in order.
    pub requires: Vec<usize>,
    /// Resolved case sensitivity.
    pub case_sensitive: bool,
    /// Resolved whole-word matching.
    pub whole_word: bool,
}

/// A validated term spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spec {
    /// Global options.
    pub options: SpecOptions,
    /// Terms in spec order.
    pub terms: Vec<Term>,
}

fn label(index: usize, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("term {n:?}"),
        None => format!("term #{}", index + 1),
    }
}

fn get_bool(obj: &Map<String, Value>, key: &str, whose: &str) -> Result<Option<bool>, Error> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(Error::spec(format!(
            "{whose}: \"{key}\" must be true or false, not {v}"
        ))),
    }
}

fn get_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    whose: &str,
) -> Result<Option<&'a str>, Error> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(Error::spec(format!(
            "{whose}: \"{key}\" must be a string, not {v}"
        ))),
    }
}

fn get_str_list(obj: &Map<String, Value>, key: &str, whose: &str) -> Result<Vec<String>, Error> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                v => Err(Error::spec(format!(
                    "{whose}: \"{key}\" item #{} must be a string, not {v}",
                    i + 1
                ))),
            })
            .collect(),
        Some(v) => Err(Error::spec(format!(
            "{whose}: \"{key}\" must be a list of strings, not {v}"
        ))),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !id.contains("__")
        && !id.starts_with('_')
        && !id.ends_with('_')
}

const TERM_KEYS: [&str; 7] = [
    "name",
    "aliases",
    "definition",
    "id",
    "requires",
    "case_sensitive",
    "whole_word",
];
const OPTION_KEYS: [&str; 3] = ["case_sensitive", "whole_word", "id_prefix"];

impl Spec {
    /// Parses and validates a spec given as JSON.
    ///
    /// # Errors
    /// A [`crate::ErrorKind::Spec`] error naming the term and field: a missing name or
    /// definition, a duplicate name or id, an empty, blank or multi-line alias, one
    /// alias claimed by two terms, `requires` naming an unknown term, an unknown key.
    pub fn from_json(json: &str) -> Result<Spec, Error> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| Error::spec(format!("spec is not valid JSON: {e}")))?;
        Spec::from_value(&value)
    }

    /// Validates a spec already parsed into a JSON value (see [`Spec::from_json`]).
    ///
    /// # Errors
    /// As [`Spec::from_json`].
    pub fn from_value(value: &Value) -> Result<Spec, Error> {
        let (options_value, terms_value) = match value {
            Value::Array(_) => (None, value),
            Value::Object(obj) => {
                for key in obj.keys() {
                    if !matches!(key.as_str(), "options" | "terms" | "term") {
                        return Err(Error::spec(format!(
                            "spec: unknown key {key:?} (expected \"options\" and \"terms\")"
                        )));
                    }
                }
                let terms = obj.get("terms").or_else(|| obj.get("term"));
                (obj.get("options"), terms.unwrap_or(&Value::Null))
            }
            _ => {
                return Err(Error::spec(
                    "spec must be a table with [[term]] entries or a list of terms",
                ))
            }
        };
        let mut options = SpecOptions::default();
        if let Some(opts) = options_value {
            let obj = opts
                .as_object()
                .ok_or_else(|| Error::spec("spec: \"options\" must be a table"))?;
            for key in obj.keys() {
                if !OPTION_KEYS.contains(&key.as_str()) {
                    return Err(Error::spec(format!("options: unknown key {key:?}")));
                }
            }
            if let Some(b) = get_bool(obj, "case_sensitive", "options")? {
                options.case_sensitive = b;
            }
            if let Some(b) = get_bool(obj, "whole_word", "options")? {
                options.whole_word = b;
            }
            if let Some(p) = get_str(obj, "id_prefix", "options")? {
                let ok = p.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                    && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !p.contains("__")
                    && !p.ends_with('_');
                if !ok {
                    return Err(Error::spec(format!(
                        "options: id_prefix {p:?} must start with a letter and hold only ASCII letters, digits and single underscores"
                    )));
                }
                options.id_prefix = p.to_string();
            }
        }
        let items = match terms_value {
            Value::Array(items) => items,
            Value::Null => return Err(Error::spec("spec has no terms")),
            v => {
                return Err(Error::spec(format!(
                    "spec: \"terms\" must be a list, not {v}"
                )))
            }
        };
        if items.is_empty() {
            return Err(Error::spec("spec has no terms"));
        }

        let mut terms = Vec::with_capacity(items.len());
        let mut requires_names: Vec<Vec<String>> = Vec::with_capacity(items.len());
        let mut by_name: HashMap<String, usize> = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let obj = item.as_object().ok_or_else(|| {
                Error::spec(format!("term #{}: must be a table, not {item}", i + 1))
            })?;
            let name = get_str(obj, "name", &label(i, None))?
                .ok_or_else(|| Error::spec(format!("term #{}: missing \"name\"", i + 1)))?;
            if name.trim().is_empty() {
                return Err(Error::spec(format!("term #{}: \"name\" is empty", i + 1)));
            }
            let whose = label(i, Some(name));
            for key in obj.keys() {
                if !TERM_KEYS.contains(&key.as_str()) {
                    return Err(Error::spec(format!("{whose}: unknown key {key:?}")));
                }
            }
            if let Some(&first) = by_name.get(name) {
                return Err(Error::spec(format!(
                    "duplicate term name {name:?} (terms #{} and #{})",
                    first + 1,
                    i + 1
                )));
            }
            by_name.insert(name.to_string(), i);
            let definition = get_str(obj, "definition", &whose)?
                .ok_or_else(|| Error::spec(format!("{whose}: missing \"definition\"")))?;
            if definition.trim().is_empty() {
                return Err(Error::spec(format!("{whose}: \"definition\" is empty")));
            }
            let case_sensitive =
                get_bool(obj, "case_sensitive", &whose)?.unwrap_or(options.case_sensitive);
            let whole_word = get_bool(obj, "whole_word", &whose)?.unwrap_or(options.whole_word);
            let id = get_str(obj, "id", &whose)?.map(str::to_string);
            if let Some(id) = &id {
                if !valid_id(id) {
                    return Err(Error::spec(format!(
                        "{whose}: id {id:?} must be ASCII uppercase letters, digits and single underscores"
                    )));
                }
            }
            let mut aliases = vec![name.to_string()];
            aliases.extend(get_str_list(obj, "aliases", &whose)?);
            let mut seen: Vec<String> = Vec::with_capacity(aliases.len());
            let mut unique = Vec::with_capacity(aliases.len());
            for (k, alias) in aliases.into_iter().enumerate() {
                if alias.trim().is_empty() {
                    return Err(Error::spec(if k == 0 {
                        format!("term #{}: \"name\" is empty", i + 1)
                    } else {
                        format!("{whose}: alias #{k} is empty")
                    }));
                }
                if alias.contains(['\n', '\r']) {
                    return Err(Error::spec(format!(
                        "{whose}: alias {alias:?} contains a line break"
                    )));
                }
                if alias.trim() != alias {
                    return Err(Error::spec(format!(
                        "{whose}: alias {alias:?} has leading or trailing white space"
                    )));
                }
                let key = if case_sensitive {
                    alias.clone()
                } else {
                    fold_case(&alias)
                };
                if !seen.contains(&key) {
                    seen.push(key);
                    unique.push(alias);
                }
            }
            requires_names.push(get_str_list(obj, "requires", &whose)?);
            terms.push(Term {
                name: name.to_string(),
                aliases: unique,
                definition: definition.to_string(),
                id,
                requires: Vec::new(),
                case_sensitive,
                whole_word,
            });
        }
        for (i, names) in requires_names.into_iter().enumerate() {
            for req in names {
                let j = *by_name.get(&req).ok_or_else(|| {
                    Error::spec(format!(
                        "term {:?}: requires unknown term {req:?}",
                        terms[i].name
                    ))
                })?;
                if j != i && !terms[i].requires.contains(&j) {
                    terms[i].requires.push(j);
                }
            }
        }
        check_ids(&terms)?;
        check_aliases(&terms)?;
        Ok(Spec { options, terms })
    }

    /// Canonical JSON of the validated spec: what the spec hash covers.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("spec serializes")
    }
}

fn check_ids(terms: &[Term]) -> Result<(), Error> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, t) in terms.iter().enumerate() {
        if let Some(id) = &t.id {
            if let Some(&j) = ids.get(id.as_str()) {
                return Err(Error::spec(format!(
                    "duplicate id {id:?} (terms {:?} and {:?})",
                    terms[j].name, t.name
                )));
            }
            ids.insert(id, i);
        }
    }
    Ok(())
}

/// One alias may not belong to two terms: compared after folding when either term is
/// case-insensitive, exactly when both are case-sensitive.
fn check_aliases(terms: &[Term]) -> Result<(), Error> {
    let mut by_fold: HashMap<String, Vec<(usize, &str)>> = HashMap::new();
    for (i, t) in terms.iter().enumerate() {
        for alias in &t.aliases {
            let entry = by_fold.entry(fold_case(alias)).or_default();
            for &(j, other) in entry.iter() {
                if j == i {
                    continue;
                }
                let clash =
                    !t.case_sensitive || !terms[j].case_sensitive || other == alias.as_str();
                if clash {
                    let shown = if other == alias.as_str() {
                        format!("{alias:?}")
                    } else {
                        format!("{other:?} / {alias:?}")
                    };
                    return Err(Error::spec(format!(
                        "alias {shown} is claimed by two terms: {:?} and {:?}",
                        terms[j].name, t.name
                    )));
                }
            }
            entry.push((i, alias));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Spec::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn shapes() {
        let a = Spec::from_json(r#"[{"name": "X", "definition": "d"}]"#).unwrap();
        let b = Spec::from_json(r#"{"terms": [{"name": "X", "definition": "d"}]}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.terms[0].aliases, vec!["X"]);
    }

    #[test]
    fn errors_name_the_input() {
        assert_eq!(err(r#"[{"definition": "d"}]"#), "term #1: missing \"name\"");
        assert_eq!(
            err(r#"[{"name": "X"}]"#),
            "term \"X\": missing \"definition\""
        );
        assert!(
            err(r#"[{"name": "X", "definition": "d"}, {"name": "X", "definition": "e"}]"#)
                .contains("duplicate term name \"X\"")
        );
        assert_eq!(
            err(r#"[{"name": "X", "definition": "d", "aliases": [""]}]"#),
            "term \"X\": alias #1 is empty"
        );
        assert_eq!(
            err(
                r#"[{"name": "X", "definition": "d", "aliases": ["rp"]}, {"name": "Y", "definition": "e", "aliases": ["RP"]}]"#
            ),
            "alias \"rp\" / \"RP\" is claimed by two terms: \"X\" and \"Y\""
        );
        assert_eq!(
            err(r#"[{"name": "X", "definition": "d", "requires": ["Z"]}]"#),
            "term \"X\": requires unknown term \"Z\""
        );
        assert_eq!(
            err(r#"[{"name": "X", "definition": "d", "alias": ["Z"]}]"#),
            "term \"X\": unknown key \"alias\""
        );
    }

    #[test]
    fn case_sensitive_terms_may_share_folded_aliases() {
        let s = r#"{"options": {"case_sensitive": true}, "terms": [{"name": "RP", "definition": "d"}, {"name": "rp", "definition": "e"}]}"#;
        assert!(Spec::from_json(s).is_ok());
    }
}
