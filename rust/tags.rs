//! How definition blocks and reference tags are spelled, per tag style, and which ids a
//! text already uses in that spelling (so the ids planned are collision-free).
//!
//! Both styles give a definition block and its reference tags the same element name,
//! so the tokens that open a reference also open the definition it points back to.

use std::collections::HashMap;

use crate::spec::Spec;

/// The spelling of definition blocks and reference tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagStyle {
    /// The seed's spelling: `<__SYS_STATE_A__ />` and
    /// `<__SYS_STATE_A__ term="…">…</__SYS_STATE_A__>` (the spec's `id_prefix`). About 9
    /// tokens per tag in Gemma 3's vocabulary.
    #[default]
    Seed,
    /// The id alone as the element name: `<A/>` and `<A term="…">…</A>`. Three tokens per
    /// tag in Gemma 3's vocabulary, about what the mention it replaces costs.
    Short,
}

impl TagStyle {
    /// Parses `seed` or `short`.
    pub fn parse(s: &str) -> Option<TagStyle> {
        match s {
            "seed" => Some(TagStyle::Seed),
            "short" => Some(TagStyle::Short),
            _ => None,
        }
    }

    /// The option's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TagStyle::Seed => "seed",
            TagStyle::Short => "short",
        }
    }

    /// The element name of an id: `__{prefix}_{id}__` (seed) or `{id}` (short).
    pub fn element(self, prefix: &str, id: &str) -> String {
        match self {
            TagStyle::Seed => format!("__{prefix}_{id}__"),
            TagStyle::Short => id.to_string(),
        }
    }

    /// The reference tag of an element name: `<NAME />` (seed) or `<NAME/>` (short).
    pub fn reference(self, element: &str) -> String {
        match self {
            TagStyle::Seed => format!("<{element} />"),
            TagStyle::Short => format!("<{element}/>"),
        }
    }

    /// Whether `id` can be spelled in this style (a short element name must start
    /// with a letter to be an XML name).
    pub(crate) fn accepts(self, id: &str) -> bool {
        match self {
            TagStyle::Seed => true,
            TagStyle::Short => id.as_bytes().first().is_some_and(u8::is_ascii_alphabetic),
        }
    }

    /// Adds to `found` every id that `text` already spells as an element in this style,
    /// with the byte offset of one occurrence.
    pub(crate) fn ids_in(self, text: &str, prefix: &str, found: &mut HashMap<String, usize>) {
        match self {
            TagStyle::Seed => seed_ids_in(text, prefix, found),
            TagStyle::Short => element_names_in(text, found),
        }
    }
}

/// The definition block of term `t`: `<EL term="NAME">DEFINITION</EL>\n`.
pub(crate) fn definition_block(spec: &Spec, style: TagStyle, t: usize, id: &str) -> String {
    let term = &spec.terms[t];
    let el = style.element(&spec.options.id_prefix, id);
    let mut s = String::with_capacity(term.definition.len() + 2 * el.len() + term.name.len() + 16);
    s.push('<');
    s.push_str(&el);
    s.push_str(" term=\"");
    escape_attr(&term.name, &mut s);
    s.push_str("\">");
    s.push_str(&term.definition);
    s.push_str("</");
    s.push_str(&el);
    s.push_str(">\n");
    s
}

fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// Ids `X` for which `__{prefix}_X__` occurs in `text`, with the byte offset of one occurrence.
fn seed_ids_in(text: &str, prefix: &str, found: &mut HashMap<String, usize>) {
    let needle = format!("__{prefix}_");
    let bytes = text.as_bytes();
    for at in memchr::memmem::find_iter(bytes, needle.as_bytes()) {
        let rest = &bytes[at + needle.len()..];
        let run = rest
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        for p in 1..run {
            if rest[p] == b'_' && rest.get(p + 1) == Some(&b'_') {
                let id = String::from_utf8_lossy(&rest[..p]).into_owned();
                found.entry(id).or_insert(at);
            }
        }
    }
}

/// Element names that open or close a tag in `text` (`<NAME` or `</NAME`, the name ending
/// where XML name characters end), with the byte offset of one occurrence.
fn element_names_in(text: &str, found: &mut HashMap<String, usize>) {
    let bytes = text.as_bytes();
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':');
    for at in memchr::memchr_iter(b'<', bytes) {
        let mut s = at + 1;
        if bytes.get(s) == Some(&b'/') {
            s += 1;
        }
        let mut e = s;
        while e < bytes.len() && name_byte(bytes[e]) {
            e += 1;
        }
        if e > s && (e == bytes.len() || bytes[e].is_ascii()) {
            found
                .entry(String::from_utf8_lossy(&bytes[s..e]).into_owned())
                .or_insert(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ids_found_in_text() {
        let mut m = HashMap::new();
        TagStyle::Seed.ids_in(
            "x __SYS_STATE_A__ y __SYS_STATE_B_C__ __SYS_STATE_",
            "SYS_STATE",
            &mut m,
        );
        assert!(m.contains_key("A") && m.contains_key("B_C") && !m.contains_key("B"));
    }

    #[test]
    fn element_names_found_in_text() {
        let mut m = HashMap::new();
        TagStyle::Short.ids_in(
            "<A/> </B> <C-1> <D.x> <E\u{e9}> a<b> <> < F> 1<2",
            "",
            &mut m,
        );
        for k in ["A", "B", "C-1", "D.x", "b"] {
            assert!(m.contains_key(k), "{k}");
        }
        for k in ["C", "D", "E", "F"] {
            assert!(!m.contains_key(k), "{k}");
        }
        assert_eq!(m["A"], 0);
    }

    #[test]
    fn spellings() {
        assert_eq!(
            TagStyle::Seed.reference(&TagStyle::Seed.element("P", "A")),
            "<__P_A__ />"
        );
        assert_eq!(
            TagStyle::Short.reference(&TagStyle::Short.element("P", "A")),
            "<A/>"
        );
        assert!(!TagStyle::Short.accepts("7") && TagStyle::Short.accepts("X7"));
    }
}
