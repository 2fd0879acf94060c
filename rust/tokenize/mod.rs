//! Exact target-model token counts: a GGUF model's own vocabulary, tokenized the way
//! llama.cpp tokenizes a prompt (`llama_tokenize(…, add_special = false,
//! parse_special = false)`), at corpus speed.
//!
//! - [`GgufTokenizer::open`] reads the vocabulary, scores or merges, token types and
//!   pre-tokenizer settings from the GGUF metadata (never the tensors), and refuses any
//!   vocabulary type or pre-tokenizer it does not reproduce exactly, naming the value.
//! - Text is first cut at user-defined tokens (`special.rs`), then each text fragment
//!   goes through SentencePiece-style merging by score (`spm.rs`, Gemma, Llama 2) or
//!   a pre-tokenizer and byte-level BPE merging by rank (`pretokenize.rs`, `bpe.rs`,
//!   Llama 3, Qwen 2, SmolLM, GPT-2).
//! - Words repeat, so each worker memoizes word → ids; units repeat across compiles,
//!   so counts are cached by BLAKE3 of the unit text, in memory and optionally on disk
//!   ([`GgufTokenizer::load_counts`], [`GgufTokenizer::save_counts`]).

mod bpe;
mod pretokenize;
mod special;
mod spm;
mod unicode_flags;

use std::io::Write;
use std::path::Path;
use std::sync::RwLock;

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::count::Counter;
use crate::error::{Error, ErrorKind};
use crate::gguf::{Gguf, StrList, Value};

use bpe::{BpeScratch, Merges};
use pretokenize::{Cpts, PreTokenizer};
use special::{cxx_sort, Fragment, Partitioner};
use spm::SpmScratch;

/// The vocabulary: token texts, scores and the text → id map.
///
/// The texts live in one buffer and the map is an open-addressing table of ids into it:
/// a 262k vocabulary is then a handful of allocations instead of half a million, which
/// took most of the time of opening a GGUF tokenizer (Gemma 3: 70 ms of 110).
#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    bytes: Vec<u8>,
    /// `starts[i]..starts[i + 1]` is token i's text in `bytes`
    starts: Vec<usize>,
    scores: Vec<f32>,
    /// id + 1 of the token hashed to each slot (0: empty); a power of two ≥ 2 × n
    slots: Box<[u32]>,
}

#[inline]
fn vocab_hash(text: &[u8]) -> usize {
    let mut h = rustc_hash::FxHasher::default();
    std::hash::Hasher::write(&mut h, text);
    std::hash::Hasher::finish(&h) as usize
}

impl Vocab {
    /// The vocabulary of `texts` (token i is `texts[i]`); `Err(i)` when token i's text
    /// repeats an earlier one.
    pub(crate) fn new<T: AsRef<[u8]>>(
        texts: impl ExactSizeIterator<Item = T>,
        scores: Vec<f32>,
    ) -> Result<Vocab, usize> {
        let n = texts.len();
        let mut bytes = Vec::new();
        let mut starts = Vec::with_capacity(n + 1);
        starts.push(0);
        for t in texts {
            bytes.extend_from_slice(t.as_ref());
            starts.push(bytes.len());
        }
        let mut slots = vec![0u32; (2 * n).next_power_of_two().max(2)].into_boxed_slice();
        let mask = slots.len() - 1;
        for i in 0..n {
            let t = &bytes[starts[i]..starts[i + 1]];
            let mut s = vocab_hash(t) & mask;
            loop {
                match slots[s] {
                    0 => {
                        slots[s] = i as u32 + 1;
                        break;
                    }
                    j if &bytes[starts[j as usize - 1]..starts[j as usize]] == t => return Err(i),
                    _ => s = (s + 1) & mask,
                }
            }
        }
        Ok(Vocab {
            bytes,
            starts,
            scores,
            slots,
        })
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Token `id`'s text (`id` < `len()`).
    #[inline]
    pub(crate) fn text(&self, id: u32) -> &[u8] {
        &self.bytes[self.starts[id as usize]..self.starts[id as usize + 1]]
    }

    #[inline]
    pub(crate) fn lookup(&self, text: &[u8]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut s = vocab_hash(text) & mask;
        loop {
            match self.slots[s] {
                0 => return None,
                j if self.text(j - 1) == text => return Some(j - 1),
                _ => s = (s + 1) & mask,
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Algorithm {
    Spm {
        add_space_prefix: bool,
        byte_tokens: Box<[Option<u32>; 256]>,
        /// The characters that some token holds right before a `▁` (Gemma: `>`, for
        /// `>▁</`). Text is cut before every other `▁` that follows a character: no
        /// merge can cross such a cut, so the words are tokenized (and memoized) alone.
        glue: FxHashSet<char>,
    },
    Bpe {
        merges: Box<Merges>,
        pre: PreTokenizer,
        ignore_merges: bool,
    },
}

/// The `tokenizer.ggml.pre` values whose pre-tokenizer is reproduced, and how.
const BPE_PRE: &[(&str, PreTokenizer, bool)] = &[
    ("default", PreTokenizer::Default, false),
    ("llama3", PreTokenizer::Llama3, true),
    ("llama-v3", PreTokenizer::Llama3, true),
    ("llama-bpe", PreTokenizer::Llama3, true),
    ("falcon3", PreTokenizer::Llama3, true),
    ("falcon-h1", PreTokenizer::Llama3, true),
    ("pixtral", PreTokenizer::Llama3, true),
    ("midm-2.0", PreTokenizer::Llama3, true),
    ("lfm2", PreTokenizer::Llama3, true),
    ("dbrx", PreTokenizer::Llama3, false),
    ("smaug-bpe", PreTokenizer::Llama3, false),
    ("qwen2", PreTokenizer::Qwen2, false),
    ("deepseek-r1-qwen", PreTokenizer::Qwen2, false),
    ("kormo", PreTokenizer::Qwen2, false),
    ("f2llmv2", PreTokenizer::Qwen2, false),
    ("megrez", PreTokenizer::Qwen2, false),
    ("stablelm2", PreTokenizer::Qwen2, false),
    ("hunyuan", PreTokenizer::Qwen2, false),
    ("solar-open", PreTokenizer::Qwen2, false),
    ("gpt-2", PreTokenizer::Gpt2, false),
    ("phi-2", PreTokenizer::Gpt2, false),
    ("gigachat", PreTokenizer::Gpt2, false),
    ("a.x-4.0", PreTokenizer::Gpt2, false),
    ("mellum", PreTokenizer::Gpt2, false),
    ("exaone4", PreTokenizer::Gpt2, false),
    ("roberta-bpe", PreTokenizer::Gpt2, false),
    ("mpt", PreTokenizer::Gpt2, false),
    ("olmo", PreTokenizer::Gpt2, false),
    ("jais", PreTokenizer::Gpt2, false),
    ("trillion", PreTokenizer::Gpt2, false),
    ("granite-docling", PreTokenizer::Gpt2, false),
    ("starcoder", PreTokenizer::DigitsThenGpt2, false),
    ("refact", PreTokenizer::DigitsThenGpt2, false),
    ("command-r", PreTokenizer::DigitsThenGpt2, false),
    ("smollm", PreTokenizer::DigitsThenGpt2, false),
    ("codeshell", PreTokenizer::DigitsThenGpt2, false),
    ("exaone", PreTokenizer::DigitsThenGpt2, false),
    ("minerva-7b", PreTokenizer::DigitsThenGpt2, false),
    ("mellum2", PreTokenizer::DigitsThenGpt2, false),
];

/// The supported `tokenizer.ggml.pre` values of byte-level BPE vocabularies.
pub fn supported_bpe_pre() -> Vec<&'static str> {
    BPE_PRE.iter().map(|p| p.0).collect()
}

// Token attributes (llama.cpp's, from `tokenizer.ggml.token_type`).
const UNKNOWN: u8 = 1;
const CONTROL: u8 = 2;
const USER_DEFINED: u8 = 4;

/// Texts llama.cpp forces to control tokens (end-of-generation markers).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle markers llama.cpp forces to control tokens when the metadata
/// does not name the token: (metadata keys, texts).
const FIM_TEXTS: &[(&[&str], &[&str])] = &[
    (
        &[
            "tokenizer.ggml.fim_pre_token_id",
            "tokenizer.ggml.prefix_token_id",
        ],
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        &[
            "tokenizer.ggml.fim_suf_token_id",
            "tokenizer.ggml.suffix_token_id",
        ],
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        &[
            "tokenizer.ggml.fim_mid_token_id",
            "tokenizer.ggml.middle_token_id",
        ],
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (
        &["tokenizer.ggml.fim_pad_token_id"],
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        &["tokenizer.ggml.fim_rep_token_id"],
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    (&["tokenizer.ggml.fim_sep_token_id"], &["<|file_sep|>"]),
];

/// A GGUF model's tokenizer, as llama.cpp runs it on a prompt.
#[derive(Debug)]
pub struct GgufTokenizer {
    name: String,
    model: String,
    pre: Option<String>,
    vocab: Vocab,
    partition: Partitioner,
    algorithm: Algorithm,
    fingerprint: String,
    counts: RwLock<FxHashMap<[u8; 16], u32>>,
}

/// Per-worker buffers and the word memo.
#[derive(Default)]
struct Scratch {
    fragments: Vec<Fragment>,
    escaped: String,
    ids: Vec<u32>,
    spm: SpmScratch,
    bpe: BpeScratch,
    words: FxHashMap<Box<[u8]>, (u32, u32)>,
    arena: Vec<u32>,
}

/// The memo is dropped when it holds this many ids (bounds memory on huge corpora).
const MEMO_LIMIT: usize = 1 << 22;

fn input_error(msg: String) -> Error {
    Error::new(ErrorKind::Input, msg)
}

fn str_array<'a>(g: &'a Gguf, key: &str) -> Result<Option<&'a StrList>, Error> {
    match g.get(key) {
        None => Ok(None),
        Some(Value::StrArray(v)) => Ok(Some(v)),
        Some(v) => Err(input_error(format!(
            "{}: metadata {key:?} is a {}, expected an array of strings",
            g.name,
            v.type_name()
        ))),
    }
}

impl GgufTokenizer {
    /// Reads the tokenizer of the GGUF model at `path`.
    ///
    /// # Errors
    /// [`ErrorKind::Input`] naming the file: unreadable or corrupt metadata, no
    /// vocabulary, or a `tokenizer.ggml.model` / `tokenizer.ggml.pre` this crate does
    /// not reproduce exactly (named, with the supported values).
    pub fn open(path: &Path) -> Result<GgufTokenizer, Error> {
        GgufTokenizer::from_gguf(&Gguf::open(path)?)
    }

    /// Builds the tokenizer from parsed metadata.
    ///
    /// # Errors
    /// As [`GgufTokenizer::open`].
    pub fn from_gguf(g: &Gguf) -> Result<GgufTokenizer, Error> {
        let name = g.name.clone();
        let model = g.get_str("tokenizer.ggml.model")?.ok_or_else(|| {
            input_error(format!(
                "{name}: no tokenizer.ggml.model in the GGUF metadata (a model without a vocabulary?)"
            ))
        })?;
        let pre = g.get_str("tokenizer.ggml.pre")?;
        let general_name = g
            .get_str("general.name")?
            .unwrap_or_default()
            .to_lowercase();
        let arch = g.get_str("general.architecture")?.unwrap_or_default();
        if model != "llama" && model != "gpt2" {
            return Err(input_error(format!(
                "{name}: tokenizer.ggml.model = {model:?} is not supported; aotcc counts \
                 \"llama\" (SentencePiece-style, e.g. Gemma, Llama 2) and \"gpt2\" (byte-level \
                 BPE, e.g. Llama 3, Qwen 2, SmolLM) vocabularies"
            )));
        }
        let pre_entry = if model == "gpt2" {
            let p = pre.as_deref().unwrap_or("default");
            let entry = BPE_PRE.iter().find(|e| e.0 == p).ok_or_else(|| {
                input_error(format!(
                    "{name}: tokenizer.ggml.pre = {p:?} is not supported for byte-level BPE; \
                     supported: {}",
                    supported_bpe_pre().join(", ")
                ))
            })?;
            Some(entry)
        } else {
            None
        };
        if ["nomic-bert-moe", "jina-bert-v3"].contains(&arch.as_str())
            || general_name.contains("modern-bert")
        {
            return Err(input_error(format!(
                "{name}: {arch:?} / {general_name:?} vocabularies strip spaces around their mask \
                 token; not supported"
            )));
        }

        // Tokens, scores, types.
        let texts = str_array(g, "tokenizer.ggml.tokens")?.ok_or_else(|| {
            input_error(format!(
                "{name}: no tokenizer.ggml.tokens in the GGUF metadata"
            ))
        })?;
        let n = texts.len();
        if n == 0 || n > u32::MAX as usize / 2 {
            return Err(input_error(format!("{name}: vocabulary of {n} tokens")));
        }
        let scores: Vec<f32> = match g.get("tokenizer.ggml.scores") {
            None => vec![0.0; n],
            Some(Value::F32Array(s)) if s.len() >= n => s[..n].to_vec(),
            Some(Value::I32Array(s)) if s.len() >= n => s[..n].iter().map(|&x| x as f32).collect(),
            Some(v) => {
                return Err(input_error(format!(
                "{name}: tokenizer.ggml.scores is a {} (of another length than the {n} tokens?)",
                v.type_name()
            )))
            }
        };
        let types: Vec<i32> = match g.get("tokenizer.ggml.token_type") {
            None => vec![1; n],
            Some(Value::I32Array(t)) if t.len() >= n => t[..n].to_vec(),
            Some(v) => {
                return Err(input_error(format!(
                    "{name}: tokenizer.ggml.token_type is a {} (of another length than the {n} tokens?)",
                    v.type_name()
                )))
            }
        };
        // an empty token text gets a name of its own, as llama.cpp gives it
        let text_of = |i: usize| match texts.get(i) {
            b"" => std::borrow::Cow::Owned(format!("[EMPTY_{i}]").into_bytes()),
            t => std::borrow::Cow::Borrowed(t),
        };
        let vocab = Vocab::new((0..n).map(text_of), scores).map_err(|i| {
            input_error(format!(
                "{name}: token {i} ({:?}) appears twice in the vocabulary",
                String::from_utf8_lossy(&text_of(i))
            ))
        })?;
        let mut attrs: Vec<u8> = types
            .iter()
            .map(|t| match t {
                2 => UNKNOWN,
                3 => CONTROL,
                4 => USER_DEFINED,
                _ => 0,
            })
            .collect();
        let has = |s: &str| vocab.lookup(s.as_bytes());
        // llama.cpp's overrides by text, in its order.
        for (keys, list) in FIM_TEXTS {
            if keys.iter().all(|k| g.get(k).is_none()) {
                for t in list.iter().filter_map(|t| has(t)) {
                    attrs[t as usize] |= CONTROL;
                }
            }
        }
        for t in EOG_TEXTS.iter().filter_map(|t| has(t)) {
            attrs[t as usize] |= CONTROL;
        }
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]
            .iter()
            .filter_map(|t| has(t))
        {
            attrs[t as usize] = USER_DEFINED;
        }
        let call = has("<|call|>").is_some() || has("<|calls|>").is_some();
        if let Some(end) = has("<|end|>") {
            if call && (has("<|return|>").is_some() || has("<|flush|>").is_some()) {
                attrs[end as usize] = USER_DEFINED;
            }
        }
        let eos_text = g
            .get_uint("tokenizer.ggml.eos_token_id")?
            .filter(|&i| i < n as u64)
            .map(|i| vocab.text(i as u32));
        if let Some(s) = has("</s>") {
            if has("<|tool_response>").is_some() || eos_text.is_some_and(|t| t == b"<|plamo:eos|>")
            {
                attrs[s as usize] = 0;
            }
        }

        // The special-token order: longest first, ties as libstdc++'s std::sort leaves them.
        let mut special: Vec<u32> = (0..n as u32)
            .filter(|&i| attrs[i as usize] & (CONTROL | USER_DEFINED | UNKNOWN) != 0)
            .collect();
        cxx_sort(&mut special, &|a: &u32, b: &u32| {
            vocab.text(*a).len() > vocab.text(*b).len()
        });
        let phi3 = general_name.contains("phi-3") || general_name.contains("phi3");
        let mut rstrip = vec![false; n];
        if phi3 {
            for &i in &special {
                rstrip[i as usize] = true;
            }
            if let Some(s) = has("</s>") {
                rstrip[s as usize] = true;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(i) = has(t) {
                    rstrip[i as usize] = false;
                }
            }
        }
        let cutting: Vec<(u32, &[u8], bool, bool)> = special
            .iter()
            .filter(|&&i| attrs[i as usize] & (CONTROL | UNKNOWN) == 0)
            .map(|&i| (i, vocab.text(i), false, rstrip[i as usize]))
            .collect();
        let partition = Partitioner::new(&cutting).map_err(|e| {
            input_error(format!(
                "{name}: the {} user-defined tokens do not fit one automaton: {e}",
                cutting.len()
            ))
        })?;

        let algorithm = if let Some(&(pre_name, pre_tok, ignore_merges)) = pre_entry {
            let merges = str_array(g, "tokenizer.ggml.merges")?.ok_or_else(|| {
                input_error(format!(
                    "{name}: byte-level BPE vocabulary ({pre_name}) without tokenizer.ggml.merges"
                ))
            })?;
            Algorithm::Bpe {
                merges: Box::new(Merges::new(&vocab, merges)),
                pre: pre_tok,
                ignore_merges,
            }
        } else {
            let add_space_prefix = g
                .get_bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true);
            let mut byte_tokens = Box::new([None; 256]);
            for (b, slot) in byte_tokens.iter_mut().enumerate() {
                *slot = has(&format!("<0x{b:02X}>")).or_else(|| vocab.lookup(&[b as u8]));
            }
            let mut glue = FxHashSet::default();
            let space = memchr::memmem::Finder::new("\u{2581}".as_bytes());
            for id in 0..n as u32 {
                let t = vocab.text(id);
                match std::str::from_utf8(t) {
                    // the character before each `▁` that follows one
                    Ok(s) => {
                        for p in space.find_iter(t).filter(|&p| p > 0) {
                            match s[..p].chars().next_back() {
                                Some(c) if c != '\u{2581}' => {
                                    glue.insert(c);
                                }
                                _ => {}
                            }
                        }
                    }
                    Err(_) => {
                        let t = String::from_utf8_lossy(t);
                        let mut prev: Option<char> = None;
                        for c in t.chars() {
                            if c == '\u{2581}' {
                                if let Some(p) = prev.filter(|&p| p != '\u{2581}') {
                                    glue.insert(p);
                                }
                            }
                            prev = Some(c);
                        }
                    }
                }
            }
            Algorithm::Spm {
                add_space_prefix,
                byte_tokens,
                glue,
            }
        };
        let fingerprint = format!(
            "gguf:{model}:{}:{}",
            pre.as_deref().unwrap_or("-"),
            &g.tokenizer_hash[..16]
        );
        Ok(GgufTokenizer {
            name,
            model,
            pre,
            vocab,
            partition,
            algorithm,
            fingerprint,
            counts: RwLock::new(FxHashMap::default()),
        })
    }

    /// The file the tokenizer was read from.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// `tokenizer.ggml.model` (`llama` or `gpt2`).
    pub fn model(&self) -> &str {
        &self.model
    }
    /// `tokenizer.ggml.pre`, if present.
    pub fn pre(&self) -> Option<&str> {
        self.pre.as_deref()
    }
    /// The number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }
    /// The text of token `id` (raw bytes; `▁` for spaces in SentencePiece vocabularies).
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        (id < self.vocab.len() as u32).then(|| self.vocab.text(id))
    }
    /// What a count depends on: the model type, pre-tokenizer and a hash of every
    /// `tokenizer.*` metadata entry (recorded in artifacts; keys the count cache).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    /// The number of unit counts cached in memory.
    pub fn cached_counts(&self) -> usize {
        self.counts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Token ids of `text`, as llama.cpp's `llama_tokenize(text, add_special = false,
    /// parse_special = false)`.
    ///
    /// # Errors
    /// [`ErrorKind::Count`] when a byte has no byte token in the vocabulary.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, Error> {
        let mut scratch = Scratch::default();
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        self.tokenize_into(text, &mut scratch, &mut out)?;
        Ok(out)
    }

    /// Token ids of many texts, in parallel.
    ///
    /// # Errors
    /// As [`GgufTokenizer::tokenize`].
    pub fn tokenize_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, Error> {
        texts
            .par_iter()
            .with_min_len(16)
            .map_init(Scratch::default, |s, t| {
                let mut out = Vec::with_capacity(t.len() / 3 + 1);
                self.tokenize_into(t, s, &mut out).map(|_| out)
            })
            .collect()
    }

    fn byte_error(&self, byte: u8) -> Error {
        Error::new(
            ErrorKind::Count,
            format!(
                "{}: the vocabulary has no token for byte 0x{byte:02X} (neither <0x{byte:02X}> nor the raw byte)",
                self.name
            ),
        )
    }

    fn tokenize_into(&self, text: &str, s: &mut Scratch, out: &mut Vec<u32>) -> Result<(), Error> {
        let bytes = text.as_bytes();
        let mut fragments = std::mem::take(&mut s.fragments);
        self.partition.partition(bytes, &mut fragments);
        let mut result = Ok(());
        let mut prev_special = true;
        for &f in &fragments {
            match f {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(a, b) => {
                    result = self.tokenize_fragment(&text[a..b], prev_special, s, out);
                    if result.is_err() {
                        break;
                    }
                    prev_special = false;
                }
            }
        }
        s.fragments = fragments;
        result
    }

    fn tokenize_fragment(
        &self,
        text: &str,
        prev_special: bool,
        s: &mut Scratch,
        out: &mut Vec<u32>,
    ) -> Result<(), Error> {
        match &self.algorithm {
            Algorithm::Spm {
                add_space_prefix,
                byte_tokens,
                glue,
            } => {
                let mut escaped = std::mem::take(&mut s.escaped);
                escaped.clear();
                if *add_space_prefix && prev_special {
                    escaped.push('\u{2581}');
                }
                for c in text.chars() {
                    escaped.push(if c == ' ' { '\u{2581}' } else { c });
                }
                // Cut before each `▁` whose previous character cannot glue to it.
                let mut result = Ok(());
                let mut start = 0;
                let mut prev: Option<char> = None;
                for (i, c) in escaped.char_indices() {
                    if c == '\u{2581}'
                        && i > start
                        && prev.is_some_and(|p| p != '\u{2581}' && !glue.contains(&p))
                    {
                        let word = &escaped.as_bytes()[start..i];
                        result = self.memo_spm(word, byte_tokens, s, out);
                        start = i;
                        if result.is_err() {
                            break;
                        }
                    }
                    prev = Some(c);
                }
                if result.is_ok() && start < escaped.len() {
                    result = self.memo_spm(&escaped.as_bytes()[start..], byte_tokens, s, out);
                }
                s.escaped = escaped;
                result
            }
            Algorithm::Bpe {
                merges,
                pre,
                ignore_merges,
            } => {
                let cpts = Cpts::new(text);
                let bytes = text.as_bytes();
                let mut start = 0;
                for end in pre.split(&cpts) {
                    let word = &bytes[cpts.offsets[start]..cpts.offsets[end]];
                    start = end;
                    if let Some(&(a, b)) = s.words.get(word) {
                        out.extend_from_slice(&s.arena[a as usize..b as usize]);
                        continue;
                    }
                    let mut ids = std::mem::take(&mut s.ids);
                    ids.clear();
                    bpe::tokenize_word(merges, *ignore_merges, word, &mut s.bpe, &mut ids);
                    out.extend_from_slice(&ids);
                    self.remember(s, word, &ids);
                    s.ids = ids;
                }
                Ok(())
            }
        }
    }

    fn remember(&self, s: &mut Scratch, word: &[u8], ids: &[u32]) {
        if s.arena.len() + ids.len() > MEMO_LIMIT {
            s.arena.clear();
            s.words.clear();
        }
        let a = s.arena.len() as u32;
        s.arena.extend_from_slice(ids);
        s.words.insert(word.into(), (a, s.arena.len() as u32));
    }

    fn memo_spm(
        &self,
        word: &[u8],
        byte_tokens: &[Option<u32>; 256],
        s: &mut Scratch,
        out: &mut Vec<u32>,
    ) -> Result<(), Error> {
        if let Some(&(a, b)) = s.words.get(word) {
            out.extend_from_slice(&s.arena[a as usize..b as usize]);
            return Ok(());
        }
        let mut ids = std::mem::take(&mut s.ids);
        ids.clear();
        let r = spm::tokenize(&self.vocab, byte_tokens, word, &mut s.spm, &mut ids)
            .map_err(|b| self.byte_error(b));
        if r.is_ok() {
            out.extend_from_slice(&ids);
            self.remember(s, word, &ids);
        }
        s.ids = ids;
        r
    }

    /// Token counts of many texts, in parallel, through the count cache.
    ///
    /// # Errors
    /// As [`GgufTokenizer::tokenize`].
    pub fn count_batch(&self, texts: &[&str]) -> Result<Vec<u32>, Error> {
        let keys: Vec<[u8; 16]> = texts
            .par_iter()
            .with_min_len(256)
            .map(|t| {
                let h = blake3::hash(t.as_bytes());
                h.as_bytes()[..16].try_into().expect("16 bytes")
            })
            .collect();
        let mut counts = vec![0u32; texts.len()];
        let mut missing: Vec<usize> = Vec::new();
        {
            let cache = self
                .counts
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (i, k) in keys.iter().enumerate() {
                match cache.get(k) {
                    Some(&c) => counts[i] = c,
                    None => missing.push(i),
                }
            }
        }
        if missing.is_empty() {
            return Ok(counts);
        }
        // Longest first, so the big units do not end up last on one thread.
        missing.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let got: Vec<u32> = missing
            .par_iter()
            .with_min_len(8)
            .map_init(Scratch::default, |s, &i| {
                let mut out = std::mem::take(&mut s.ids);
                out.clear();
                let r = self.tokenize_into(texts[i], s, &mut out);
                let n = out.len() as u32;
                s.ids = out;
                r.map(|_| n)
            })
            .collect::<Result<_, _>>()?;
        let mut cache = self
            .counts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (&i, &c) in missing.iter().zip(&got) {
            counts[i] = c;
            cache.insert(keys[i], c);
        }
        Ok(counts)
    }

    /// Merges counts cached on disk by an earlier run (a missing file, or one written
    /// for another tokenizer, adds nothing). Returns how many were added.
    ///
    /// # Errors
    /// [`ErrorKind::Input`] when the file exists but cannot be read.
    pub fn load_counts(&self, path: &Path) -> Result<usize, Error> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(input_error(format!(
                    "{}: cannot read the count cache: {e}",
                    path.display()
                )))
            }
        };
        let header = self.cache_header();
        if !data.starts_with(&header) || (data.len() - header.len()) % 20 != 0 {
            return Ok(0);
        }
        let mut cache = self
            .counts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = cache.len();
        for rec in data[header.len()..].chunks_exact(20) {
            let key: [u8; 16] = rec[..16].try_into().expect("16 bytes");
            let count = u32::from_le_bytes(rec[16..].try_into().expect("4 bytes"));
            cache.entry(key).or_insert(count);
        }
        Ok(cache.len() - before)
    }

    /// Writes the cached counts to `path` atomically (a temporary file renamed over
    /// it), so a later process counts only the units it has not seen.
    ///
    /// # Errors
    /// [`ErrorKind::Input`] naming the path when it cannot be written.
    pub fn save_counts(&self, path: &Path) -> Result<usize, Error> {
        let fail = |e: std::io::Error| {
            input_error(format!(
                "{}: cannot write the count cache: {e}",
                path.display()
            ))
        };
        let cache = self
            .counts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut data = self.cache_header();
        data.reserve(cache.len() * 20);
        let mut entries: Vec<(&[u8; 16], &u32)> = cache.iter().collect();
        entries.sort_unstable();
        for (k, c) in entries {
            data.extend_from_slice(k);
            data.extend_from_slice(&c.to_le_bytes());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(&data).map_err(fail)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(fail)?;
        Ok(cache.len())
    }

    fn cache_header(&self) -> Vec<u8> {
        let mut h = b"AOTCC-COUNTS-1\n".to_vec();
        h.extend_from_slice(self.fingerprint.as_bytes());
        h.push(b'\n');
        h
    }
}

impl Counter for GgufTokenizer {
    fn count(&self, pieces: &[&str]) -> Result<Vec<u32>, Error> {
        self.count_batch(pieces)
    }
}

#[cfg(test)]
mod tests;
