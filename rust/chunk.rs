//! Chunking: whole units packed into chunks of at most `budget` tokens. A cut never
//! falls inside an occurrence or a code block; a unit over the budget is split at word
//! boundaries. Among the cuts that keep a chunk at least half full, the one before the
//! strongest unit (heading, then block, then sentence) wins, the latest on a tie.
//! Requested breaks (from analysis) close the open chunk at the first piece boundary
//! at or after each break offset; the budget still bounds every chunk.

use crate::count::Counter;
use crate::detect::Occurrence;
use crate::error::Error;
use crate::segment::{Unit, UnitKind};

/// A chunk: `[start, end)` of the source in bytes and its token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Byte offset of the chunk in the source.
    pub start: usize,
    /// Byte offset one past the chunk in the source.
    pub end: usize,
    /// Source tokens (the sum over its units).
    pub tokens: u32,
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    tokens: u32,
    level: u8,
    splittable: bool,
}

/// Packs `units` (with their token `counts`) into chunks. `counter` counts the word
/// pieces of units over the budget.
///
/// # Errors
/// A counting error from `counter`.
pub(crate) fn chunk(
    text: &str,
    units: &[Unit],
    counts: &[u32],
    occurrences: &[Occurrence],
    budget: u32,
    breaks: &[usize],
    counter: &dyn Counter,
) -> Result<Vec<Chunk>, Error> {
    let pieces = merge_across_occurrences(units, counts, occurrences);
    let pieces = split_oversize(text, pieces, occurrences, budget, counter)?;
    Ok(pack(&pieces, budget, breaks))
}

/// One piece per unit, with units joined where an occurrence spans their boundary.
fn merge_across_occurrences(
    units: &[Unit],
    counts: &[u32],
    occurrences: &[Occurrence],
) -> Vec<Piece> {
    let mut pieces: Vec<Piece> = Vec::with_capacity(units.len());
    let mut occ = 0;
    for (u, &tokens) in units.iter().zip(counts) {
        while occ < occurrences.len() && occurrences[occ].end <= u.start {
            occ += 1;
        }
        let inside = occ < occurrences.len() && occurrences[occ].start < u.start;
        let splittable = u.kind != UnitKind::Code;
        match pieces.last_mut() {
            Some(last) if inside => {
                last.end = u.end;
                last.tokens += tokens;
                last.splittable &= splittable;
            }
            _ => pieces.push(Piece {
                start: u.start,
                end: u.end,
                tokens,
                level: u.level(),
                splittable,
            }),
        }
    }
    pieces
}

/// Word pieces (each with its trailing white space) of `[start, end)`, never cutting an occurrence.
fn words(text: &str, start: usize, end: usize, occurrences: &[Occurrence]) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut occ = occurrences.partition_point(|o| o.end <= start);
    let mut out = Vec::new();
    let mut s = start;
    let mut i = start;
    while i < end {
        // Skip the word, then its white space.
        while i < end && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        while i < end && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        while occ < occurrences.len() && occurrences[occ].end <= i {
            occ += 1;
        }
        let inside =
            occ < occurrences.len() && occurrences[occ].start < i && i < occurrences[occ].end;
        if i < end && inside {
            continue;
        }
        out.push((s, i));
        s = i;
    }
    out
}

fn split_oversize(
    text: &str,
    pieces: Vec<Piece>,
    occurrences: &[Occurrence],
    budget: u32,
    counter: &dyn Counter,
) -> Result<Vec<Piece>, Error> {
    if !pieces.iter().any(|p| p.splittable && p.tokens > budget) {
        return Ok(pieces);
    }
    let mut spans: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        if p.splittable && p.tokens > budget {
            spans.push((i, words(text, p.start, p.end, occurrences)));
        }
    }
    let strs: Vec<&str> = spans
        .iter()
        .flat_map(|(_, w)| w.iter().map(|&(s, e)| &text[s..e]))
        .collect();
    let counts = counter.count(&strs)?;
    if counts.len() != strs.len() {
        return Err(Error::new(
            crate::ErrorKind::Count,
            format!(
                "token counter returned {} counts for {} pieces",
                counts.len(),
                strs.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(pieces.len() + counts.len());
    let mut counts = counts.into_iter();
    let mut next = spans.into_iter().peekable();
    for (i, p) in pieces.into_iter().enumerate() {
        match next.peek() {
            Some((j, _)) if *j == i => {
                let (_, ws) = next.next().expect("peeked");
                for (k, (s, e)) in ws.into_iter().enumerate() {
                    let level = if k == 0 { p.level } else { 0 };
                    out.push(Piece {
                        start: s,
                        end: e,
                        tokens: counts.next().expect("counted"),
                        level,
                        splittable: false,
                    });
                }
            }
            _ => out.push(p),
        }
    }
    Ok(out)
}

/// `breaks` must be sorted.
fn pack(pieces: &[Piece], budget: u32, breaks: &[usize]) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut first = 0; // first piece of the open chunk
    let mut tokens: u64 = 0; // tokens of pieces[first..i]
    let budget64 = u64::from(budget);
    let mut next_break = 0; // breaks[..next_break] are at or before pieces[i].start
    let mut i = 0;
    while i < pieces.len() {
        let t = u64::from(pieces[i].tokens);
        let mut requested = false;
        while next_break < breaks.len() && breaks[next_break] <= pieces[i].start {
            requested |= breaks[next_break] > pieces[first].start;
            next_break += 1;
        }
        if i > first && requested {
            chunks.push(Chunk {
                start: pieces[first].start,
                end: pieces[i - 1].end,
                tokens: tokens.min(u64::from(u32::MAX)) as u32,
            });
            tokens = 0;
            first = i;
        }
        if i > first && tokens + t > budget64 {
            let cut = best_cut(pieces, first, i, budget64);
            let chunk_tokens: u64 = pieces[first..cut].iter().map(|p| u64::from(p.tokens)).sum();
            chunks.push(Chunk {
                start: pieces[first].start,
                end: pieces[cut - 1].end,
                tokens: chunk_tokens.min(u64::from(u32::MAX)) as u32,
            });
            tokens -= chunk_tokens;
            first = cut;
            continue; // re-check piece i against the shorter open chunk
        }
        tokens += t;
        i += 1;
    }
    if first < pieces.len() {
        chunks.push(Chunk {
            start: pieces[first].start,
            end: pieces[pieces.len() - 1].end,
            tokens: tokens.min(u64::from(u32::MAX)) as u32,
        });
    }
    chunks
}

/// Where to cut the open chunk `pieces[first..end]` (a cut before piece `j`).
fn best_cut(pieces: &[Piece], first: usize, end: usize, budget: u64) -> usize {
    let mut prefix: u64 = pieces[first..end].iter().map(|p| u64::from(p.tokens)).sum();
    let (mut best, mut best_level) = (end, pieces.get(end).map_or(0, |p| p.level));
    let mut j = end;
    while j > first + 1 {
        prefix -= u64::from(pieces[j - 1].tokens);
        j -= 1;
        if prefix * 2 < budget {
            break;
        }
        if pieces[j].level > best_level {
            best = j;
            best_level = pieces[j].level;
        }
    }
    // A heading opens the chunk after it rather than closing this one.
    while best > first + 1 && pieces[best - 1].level == 3 {
        best -= 1;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::count::Estimator;
    use crate::segment::segment;

    fn run(text: &str, budget: u32) -> Vec<Chunk> {
        let units = segment(text, &[0]);
        let strs: Vec<&str> = units.iter().map(|u| &text[u.start..u.end]).collect();
        let counts = Estimator.count(&strs).unwrap();
        chunk(text, &units, &counts, &[], budget, &[], &Estimator).unwrap()
    }

    #[test]
    fn chunks_tile_and_respect_budget() {
        let text = "# A\nOne two three. Four five six.\n\n# B\nSeven eight nine ten eleven twelve thirteen.\n";
        for budget in [1, 3, 5, 8, 100] {
            let chunks = run(text, budget);
            assert_eq!(chunks[0].start, 0);
            assert_eq!(chunks.last().unwrap().end, text.len());
            for w in chunks.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            for c in &chunks {
                let single_word = !text[c.start..c.end].trim().contains(char::is_whitespace);
                assert!(
                    c.tokens <= budget || single_word,
                    "budget {budget}: {:?}",
                    &text[c.start..c.end]
                );
            }
        }
    }

    #[test]
    fn prefers_heading_cuts() {
        let text = "# A\nOne two.\n# B\nFive six. Seven eight nine ten eleven twelve.\n";
        let chunks = run(text, 14);
        assert_eq!(&text[chunks[1].start..chunks[1].start + 3], "# B");
    }

    #[test]
    fn requested_breaks_close_chunks() {
        let text = "One two three. Four five six. Seven eight nine. Ten eleven twelve.";
        let units = segment(text, &[0]);
        let strs: Vec<&str> = units.iter().map(|u| &text[u.start..u.end]).collect();
        let counts = Estimator.count(&strs).unwrap();
        let at = text.find("Seven").unwrap();
        // a break inside a sentence closes the chunk at the next unit boundary
        let chunks = chunk(text, &units, &counts, &[], 1000, &[at - 3], &Estimator).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].start, at);
        // breaks at 0 and at the end change nothing
        let whole = chunk(
            text,
            &units,
            &counts,
            &[],
            1000,
            &[0, text.len()],
            &Estimator,
        )
        .unwrap();
        assert_eq!(whole.len(), 1);
    }

    #[test]
    fn never_cuts_an_occurrence() {
        let text = "alpha beta gamma delta";
        let units = segment(text, &[0]);
        let occ = [Occurrence {
            start: 6,
            end: 16,
            term: 0,
            alias: 0,
        }];
        let chunks = chunk(text, &units, &[8], &occ, 1, &[], &Estimator).unwrap();
        assert!(chunks.iter().all(|c| c.start <= 6 || c.start >= 16));
        assert!(chunks.iter().any(|c| c.start == 6 && c.end == 17));
    }
}
