//! Segmentation: the source becomes units — ATX headings, blank-line paragraphs, list
//! items, fenced code blocks (kept whole) and the sentences inside paragraphs. Units
//! are byte spans that tile the source; each carries its trailing white space.

/// What a unit is. The chunker prefers to cut before stronger units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitKind {
    /// An ATX heading line (`# Title`).
    Heading,
    /// The first sentence of a paragraph.
    Paragraph,
    /// The first sentence of a list item.
    ListItem,
    /// A fenced code block, never split.
    Code,
    /// A later sentence of a paragraph or list item.
    Sentence,
}

/// A structural piece of the source: `[start, end)` in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte (trailing white space included).
    pub end: usize,
    /// What the unit is.
    pub kind: UnitKind,
}

impl Unit {
    /// How strong the boundary before this unit is: 3 section, 2 block, 1 sentence.
    pub fn level(&self) -> u8 {
        match self.kind {
            UnitKind::Heading => 3,
            UnitKind::Paragraph | UnitKind::ListItem | UnitKind::Code => 2,
            UnitKind::Sentence => 1,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Heading,
    Paragraph,
    ListItem,
    Code,
}

fn leading_spaces(line: &[u8]) -> usize {
    line.iter().take_while(|&&b| b == b' ').count()
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

fn is_heading(line: &[u8]) -> bool {
    let ind = leading_spaces(line);
    if ind > 3 {
        return false;
    }
    let rest = &line[ind..];
    let hashes = rest.iter().take_while(|&&b| b == b'#').count();
    (1..=6).contains(&hashes) && rest.get(hashes).is_none_or(|b| b.is_ascii_whitespace())
}

/// The fence marker (byte, length) when `line` opens or closes a fenced code block.
fn fence(line: &[u8]) -> Option<(u8, usize)> {
    let ind = leading_spaces(line);
    if ind > 3 {
        return None;
    }
    let rest = &line[ind..];
    let c = *rest.first()?;
    if c != b'`' && c != b'~' {
        return None;
    }
    let n = rest.iter().take_while(|&&b| b == c).count();
    (n >= 3).then_some((c, n))
}

fn is_list_item(line: &[u8]) -> bool {
    let ind = line
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let rest = &line[ind..];
    match rest.first() {
        Some(b'-' | b'*' | b'+') => rest.get(1).is_some_and(|b| *b == b' ' || *b == b'\t'),
        Some(b'0'..=b'9') => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            digits <= 9
                && matches!(rest.get(digits), Some(b'.' | b')'))
                && rest.get(digits + 1).is_none_or(|b| b.is_ascii_whitespace())
        }
        _ => false,
    }
}

/// Splits `text` into units. `file_starts` are byte offsets where a new file begins
/// (several prompt files are concatenated); a unit never spans one.
pub fn segment(text: &str, file_starts: &[usize]) -> Vec<Unit> {
    let bytes = text.as_bytes();
    let mut units = Vec::with_capacity(text.len() / 64 + 1);
    let mut blocks: Vec<(usize, usize, Block)> = Vec::with_capacity(text.len() / 200 + 1);
    let mut current: Option<(usize, Block)> = None; // open block: start, kind
    let mut after_blank = false;
    let mut open_fence: Option<(u8, usize)> = None;
    let mut next_file = file_starts.iter().copied().filter(|&s| s > 0).peekable();
    let mut pos = 0;
    while pos < bytes.len() {
        let line_end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i + 1);
        let line = &bytes[pos..line_end];
        let file_break = next_file.peek().is_some_and(|&s| s <= pos);
        if file_break {
            while next_file.peek().is_some_and(|&s| s <= pos) {
                next_file.next();
            }
            open_fence = None;
        }
        // A file start inside this line (a file without a final newline): cut the line there.
        let line_end = match next_file.peek() {
            Some(&s) if s < line_end => s,
            _ => line_end,
        };
        let line = &line[..line_end - pos];
        let starts_block = if let Some((c, n)) = open_fence {
            if fence(line).is_some_and(|(c2, n2)| {
                c2 == c && n2 >= n && is_blank(&line[leading_spaces(line) + n2..])
            }) {
                open_fence = None;
            }
            None
        } else if is_blank(line) && !file_break {
            after_blank = true;
            None
        } else if let Some(f) = fence(line) {
            open_fence = Some(f);
            Some(Block::Code)
        } else if is_heading(line) {
            Some(Block::Heading)
        } else if is_list_item(line) {
            Some(Block::ListItem)
        } else if file_break
            || after_blank
            || matches!(current, None | Some((_, Block::Heading | Block::Code)))
        {
            Some(Block::Paragraph)
        } else {
            None
        };
        if let Some(kind) = starts_block {
            let start = match current.take() {
                Some((start, k)) => {
                    blocks.push((start, pos, k));
                    pos
                }
                None => 0, // leading blank lines belong to the first block
            };
            current = Some((start, kind));
            after_blank = false;
        }
        pos = line_end;
    }
    match current {
        Some((start, k)) => blocks.push((start, bytes.len(), k)),
        None if !bytes.is_empty() => blocks.push((0, bytes.len(), Block::Paragraph)), // all blank
        None => {}
    }
    for (start, end, kind) in blocks {
        match kind {
            Block::Heading => units.push(Unit {
                start,
                end,
                kind: UnitKind::Heading,
            }),
            Block::Code => units.push(Unit {
                start,
                end,
                kind: UnitKind::Code,
            }),
            Block::Paragraph | Block::ListItem => {
                let first = if kind == Block::Paragraph {
                    UnitKind::Paragraph
                } else {
                    UnitKind::ListItem
                };
                let mut s = start;
                for cut in sentence_ends(text, start, end) {
                    units.push(Unit {
                        start: s,
                        end: cut,
                        kind: if s == start {
                            first
                        } else {
                            UnitKind::Sentence
                        },
                    });
                    s = cut;
                }
                if s < end {
                    units.push(Unit {
                        start: s,
                        end,
                        kind: if s == start {
                            first
                        } else {
                            UnitKind::Sentence
                        },
                    });
                }
            }
        }
    }
    units
}

/// Byte offsets inside `[start, end)` where a sentence ends (after its trailing white
/// space): `.`, `!` or `?` (and closing quotes or brackets) followed by white space and
/// a character that is not lowercase (so "e.g. this" stays whole), or a CJK full stop.
fn sentence_ends(text: &str, start: usize, end: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut cuts = Vec::new();
    let mut i = start;
    while i < end {
        let b = bytes[i];
        let mut after = None;
        if b == b'.' || b == b'!' || b == b'?' {
            let mut j = i + 1;
            while j < end && matches!(bytes[j], b'"' | b'\'' | b')' | b']' | b'*' | b'_') {
                j += 1;
            }
            if j < end && bytes[j].is_ascii_whitespace() {
                after = Some(j);
            }
        } else if b == 0xE3 && i + 2 < end && bytes[i + 1] == 0x80 && bytes[i + 2] == 0x82 {
            after = Some(i + 3); // U+3002 IDEOGRAPHIC FULL STOP
        } else if b == 0xEF
            && i + 2 < end
            && bytes[i + 1] == 0xBC
            && (bytes[i + 2] == 0x81 || bytes[i + 2] == 0x9F)
        {
            after = Some(i + 3); // U+FF01, U+FF1F fullwidth ! ?
        }
        if let Some(mut j) = after {
            while j < end && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < end {
                let next = text[j..].chars().next().expect("in range");
                if !next.is_lowercase() {
                    cuts.push(j);
                }
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(&str, UnitKind)> {
        segment(text, &[])
            .iter()
            .map(|u| (&text[u.start..u.end], u.kind))
            .collect()
    }

    #[test]
    fn units_tile_and_classify() {
        let text = "\n# Title\nFirst one. Second one.\nstill second\n\n- item a\n  more\n- item b\n```js\nx. Y\n\n```\nafter\n";
        let got = kinds(text);
        let joined: String = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(joined, text);
        assert_eq!(got[0], ("\n# Title\n", UnitKind::Heading));
        assert_eq!(got[1], ("First one. ", UnitKind::Paragraph));
        assert_eq!(
            got[2],
            ("Second one.\nstill second\n\n", UnitKind::Sentence)
        );
        assert_eq!(got[3], ("- item a\n  more\n", UnitKind::ListItem));
        assert_eq!(got[4], ("- item b\n", UnitKind::ListItem));
        assert_eq!(got[5], ("```js\nx. Y\n\n```\n", UnitKind::Code));
        assert_eq!(got[6], ("after\n", UnitKind::Paragraph));
    }

    #[test]
    fn abbreviations_do_not_split() {
        let got = kinds("Use e.g. this. Then that");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "Use e.g. this. ");
    }

    #[test]
    fn file_starts_cut_units() {
        let text = "para one\npara two";
        let units = segment(text, &[0, 9]);
        assert_eq!(units.len(), 2);
        assert_eq!(units[1].start, 9);
        let units = segment("abc def", &[0, 4]);
        assert_eq!(
            units.iter().map(|u| (u.start, u.end)).collect::<Vec<_>>(),
            vec![(0, 4), (4, 7)]
        );
    }

    #[test]
    fn empty_and_blank() {
        assert!(segment("", &[]).is_empty());
        let u = segment("\n\n \n", &[]);
        assert_eq!(u.len(), 1);
        assert_eq!((u[0].start, u[0].end), (0, 4));
    }
}
