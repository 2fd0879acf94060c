//! Planning: each term's first appearance (the chunk of its first occurrence, or earlier
//! when a term that depends on it appears first, or when analysis anchored it earlier),
//! the injection order (dependencies first), and deterministic, collision-free tag ids.

use std::collections::{HashMap, HashSet};

use crate::chunk::Chunk;
use crate::detect::{Detector, Occurrence};
use crate::error::{Error, ErrorKind};
use crate::spec::Spec;
use crate::tags::TagStyle;

/// The dependency graph of a spec, made acyclic.
#[derive(Debug, Clone)]
pub(crate) struct Dependencies {
    /// For each term, the terms whose definitions must come first, in order.
    pub deps: Vec<Vec<usize>>,
    /// Edges found in definitions that closed a cycle and were dropped.
    pub warnings: Vec<String>,
}

impl Dependencies {
    /// `requires` edges, then terms mentioned in each definition; a `requires`-only
    /// cycle is an error, a cycle closed by a mention edge is broken.
    pub(crate) fn build(spec: &Spec, detector: &Detector) -> Result<Dependencies, Error> {
        let n = spec.terms.len();
        let requires: Vec<Vec<usize>> = spec.terms.iter().map(|t| t.requires.clone()).collect();
        if let Some(cycle) = find_cycle(&requires) {
            let names: Vec<&str> = cycle.iter().map(|&i| spec.terms[i].name.as_str()).collect();
            // a long cycle is shown by its ends: the message stays one readable line
            let shown = if names.len() > 9 {
                format!(
                    "{} -> … {} more … -> {} ({} terms)",
                    names[..4].join(" -> "),
                    names.len() - 8,
                    names[names.len() - 4..].join(" -> "),
                    names.len() - 1
                )
            } else {
                names.join(" -> ")
            };
            return Err(Error::new(
                ErrorKind::Plan,
                format!("requires cycle: {shown}"),
            ));
        }
        let mut edges: Vec<Vec<(usize, bool)>> = Vec::with_capacity(n); // (target, is_requires)
        for (i, t) in spec.terms.iter().enumerate() {
            let mut e: Vec<(usize, bool)> = t.requires.iter().map(|&j| (j, true)).collect();
            for o in detector.find(&t.definition, &[0]) {
                let j = o.term as usize;
                if j != i && !e.iter().any(|&(k, _)| k == j) {
                    e.push((j, false));
                }
            }
            edges.push(e);
        }
        let original: Vec<Vec<usize>> = edges
            .iter()
            .map(|e| e.iter().map(|&(w, _)| w).collect())
            .collect();
        // Depth-first from each term in spec order; drop mention edges back onto the path.
        // A `requires` edge back onto the path closes a cycle that must hold a mention
        // edge (requires alone are acyclic): that mention edge is removed for good and
        // the search starts over, so an explicit `requires` is never the edge dropped.
        let mut removed: Vec<(usize, usize)> = Vec::new();
        let dropped = loop {
            match break_cycles(&edges) {
                Ok(dropped) => break dropped,
                Err((v, k)) => {
                    edges[v][k].0 = usize::MAX;
                    removed.push((v, k));
                }
            }
        };
        let mut warnings = Vec::new();
        let mut all: Vec<(usize, usize)> = removed;
        all.extend(dropped);
        for &(v, k) in &all {
            warnings.push(format!(
                "definition of {:?} mentions {:?}, which depends on it: that edge is ignored",
                spec.terms[v].name, spec.terms[original[v][k]].name
            ));
            edges[v][k].0 = usize::MAX;
        }
        let deps = edges
            .into_iter()
            .map(|e| {
                e.into_iter()
                    .filter(|&(w, _)| w != usize::MAX)
                    .map(|(w, _)| w)
                    .collect()
            })
            .collect();
        Ok(Dependencies { deps, warnings })
    }
}

/// One depth-first pass over `edges` (`(target, is_requires)`, `usize::MAX` = removed)
/// from each term in order. Mention edges that point back onto the path are collected
/// as `(term, edge index)`. A `requires` edge back onto the path is answered with
/// `Err` naming the last mention edge on that cycle, which the caller removes.
fn break_cycles(edges: &[Vec<(usize, bool)>]) -> Result<Vec<(usize, usize)>, (usize, usize)> {
    let n = edges.len();
    let mut state = vec![0u8; n]; // 0 new, 1 on path, 2 done
    let mut dropped = Vec::new();
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = 1;
        while let Some(&mut (v, ref mut k)) = stack.last_mut() {
            if *k >= edges[v].len() {
                state[v] = 2;
                stack.pop();
                continue;
            }
            let (w, is_req) = edges[v][*k];
            *k += 1;
            if w == usize::MAX {
                continue;
            }
            match state[w] {
                0 => {
                    state[w] = 1;
                    stack.push((w, 0));
                }
                1 if !is_req => dropped.push((v, *k - 1)),
                1 => {
                    // the cycle is the path from w to v, then v -> w; each path edge is
                    // (node, index of the edge taken) = (u, k_u - 1)
                    let from = stack.iter().position(|&(u, _)| u == w).expect("on path");
                    let mention = stack[from..]
                        .iter()
                        .rev()
                        .map(|&(u, ku)| (u, ku - 1))
                        .find(|&(u, e)| !edges[u][e].1)
                        .expect("a cycle through a requires edge holds a mention edge");
                    return Err(mention);
                }
                _ => {}
            }
        }
    }
    Ok(dropped)
}

/// A cycle in `graph` as a closed path (first node repeated at the end), if any.
fn find_cycle(graph: &[Vec<usize>]) -> Option<Vec<usize>> {
    let n = graph.len();
    let mut state = vec![0u8; n];
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = 1;
        while let Some(&mut (v, ref mut k)) = stack.last_mut() {
            if *k < graph[v].len() {
                let w = graph[v][*k];
                *k += 1;
                match state[w] {
                    0 => {
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(u, _)| u == w).expect("on path");
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|&(u, _)| u).collect();
                        cycle.push(w);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                state[v] = 2;
                stack.pop();
            }
        }
    }
    None
}

/// The plan of one compile.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Injected terms in injection order.
    pub order: Vec<usize>,
    /// Per term: the chunk of its first appearance, if injected.
    pub first_chunk: Vec<Option<u32>>,
    /// Per term: its tag id (`A`, `REFUND`, …), if injected.
    pub ids: Vec<Option<String>>,
    /// Per term: index of its first occurrence, if it occurs.
    pub first_occurrence: Vec<Option<usize>>,
    /// Per occurrence: its chunk.
    pub occurrence_chunk: Vec<u32>,
    /// Per term: how many times it occurs.
    pub occurrence_count: Vec<u32>,
}

/// Bijective base-26 labels: 0 → A, 25 → Z, 26 → AA.
pub(crate) fn label(mut n: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    spec: &Spec,
    deps: &Dependencies,
    occurrences: &[Occurrence],
    chunks: &[Chunk],
    source: &str,
    anchors: &[(usize, usize)],
    labels: Option<&[String]>,
    style: TagStyle,
) -> Result<Plan, Error> {
    let n = spec.terms.len();
    let mut first_occurrence: Vec<Option<usize>> = vec![None; n];
    let mut occurrence_count = vec![0u32; n];
    let mut occurrence_chunk = Vec::with_capacity(occurrences.len());
    let mut c = 0;
    for (k, o) in occurrences.iter().enumerate() {
        while c + 1 < chunks.len() && chunks[c].end <= o.start {
            c += 1;
        }
        occurrence_chunk.push(c as u32);
        let t = o.term as usize;
        occurrence_count[t] += 1;
        first_occurrence[t].get_or_insert(k);
    }

    // Walk first appearances in source order: first occurrences, and anchors (a byte
    // offset where analysis found a term needed before its literal first mention). Each
    // emits its dependencies (post-order) and then the term, into its chunk.
    let chunk_at = |at: usize| {
        chunks
            .partition_point(|c| c.end <= at)
            .min(chunks.len().saturating_sub(1)) as u32
    };
    // (offset, rank, term, chunk): anchors rank before occurrences at the same offset,
    // occurrences keep their detection order
    let mut events: Vec<(usize, usize, usize, u32)> = Vec::with_capacity(n + anchors.len());
    for &(t, at) in anchors {
        if t < n && !chunks.is_empty() {
            events.push((at, 0, t, chunk_at(at)));
        }
    }
    for (t, first) in first_occurrence.iter().enumerate() {
        if let Some(k) = *first {
            events.push((occurrences[k].start, k + 1, t, occurrence_chunk[k]));
        }
    }
    events.sort_unstable();
    let mut first_chunk: Vec<Option<u32>> = vec![None; n];
    let mut order = Vec::new();
    for (_, _, t, chunk) in events {
        if first_chunk[t].is_none() {
            emit(t, chunk, &deps.deps, &mut first_chunk, &mut order);
        }
    }

    // Tag ids: explicit, else the next free label.
    let prefix = &spec.options.id_prefix;
    let mut taken: HashMap<String, usize> = HashMap::new();
    style.ids_in(source, prefix, &mut taken);
    let mut in_definitions: HashMap<String, usize> = HashMap::new();
    for t in &spec.terms {
        style.ids_in(&t.definition, prefix, &mut in_definitions);
    }
    let explicit: HashSet<&str> = spec.terms.iter().filter_map(|t| t.id.as_deref()).collect();
    let mut ids: Vec<Option<String>> = vec![None; n];
    let mut next_label = 0;
    for &t in &order {
        let term = &spec.terms[t];
        if let Some(id) = &term.id {
            if !style.accepts(id) {
                return Err(Error::new(
                    ErrorKind::Plan,
                    format!(
                        "term {:?}: id {id:?} cannot name an element in the {} tag style (start it with a letter)",
                        term.name,
                        style.as_str()
                    ),
                ));
            }
            if let Some(at) = taken.get(id) {
                return Err(Error::new(
                    ErrorKind::Plan,
                    format!(
                        "term {:?}: tag {} already occurs in the source at byte {at}",
                        term.name,
                        style.element(prefix, id)
                    ),
                ));
            }
            if in_definitions.contains_key(id) {
                return Err(Error::new(
                    ErrorKind::Plan,
                    format!(
                        "term {:?}: tag {} already occurs in a definition",
                        term.name,
                        style.element(prefix, id)
                    ),
                ));
            }
            ids[t] = Some(id.clone());
            continue;
        }
        loop {
            // the given label order first (cheap ids), then plain labels past its end
            let l = match labels.and_then(|ls| ls.get(next_label)) {
                Some(l) => l.clone(),
                None => label(next_label),
            };
            next_label += 1;
            if !explicit.contains(l.as_str())
                && !taken.contains_key(&l)
                && !in_definitions.contains_key(&l)
            {
                ids[t] = Some(l);
                break;
            }
        }
    }
    Ok(Plan {
        order,
        first_chunk,
        ids,
        first_occurrence,
        occurrence_chunk,
        occurrence_count,
    })
}

fn emit(
    t: usize,
    chunk: u32,
    deps: &[Vec<usize>],
    first_chunk: &mut [Option<u32>],
    order: &mut Vec<usize>,
) {
    // Iterative post-order; the graph is acyclic and `first_chunk` marks visited terms.
    first_chunk[t] = Some(chunk);
    let mut stack: Vec<(usize, usize)> = vec![(t, 0)];
    while let Some(&mut (v, ref mut k)) = stack.last_mut() {
        if *k < deps[v].len() {
            let w = deps[v][*k];
            *k += 1;
            if first_chunk[w].is_none() {
                first_chunk[w] = Some(chunk);
                stack.push((w, 0));
            }
        } else {
            order.push(v);
            stack.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(label(0), "A");
        assert_eq!(label(25), "Z");
        assert_eq!(label(26), "AA");
        assert_eq!(label(27), "AB");
        assert_eq!(label(26 + 26 * 26), "AAA");
    }

    #[test]
    fn cycles() {
        assert_eq!(
            find_cycle(&[vec![1], vec![2], vec![0]]),
            Some(vec![0, 1, 2, 0])
        );
        assert_eq!(find_cycle(&[vec![1], vec![], vec![0, 1]]), None);
    }
}
