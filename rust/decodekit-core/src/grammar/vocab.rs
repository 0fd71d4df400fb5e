//! A tokenizer vocabulary as constrained decoding sees it: the exact bytes every token id stands for,
//! which ids are special (never produced by a grammar), which of those end a sequence, and the width of
//! the model's logits.
//!
//! Grammars work on bytes, so each tokenizer format is reduced to bytes once, here: byte-level BPE
//! (GPT-2, Llama 3, Qwen, SmolLM2) through the GPT-2 byte<->unicode map, SentencePiece-style vocabularies
//! through `▁` -> space and `<0xNN>` byte fallback, and tiktoken rank files, which already store bytes.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::Value;

use super::slices::PlainText;
use super::trie::TokenTrie;
use crate::error::{CoreError, Result};

/// The largest vocabulary accepted; token ids are `i32` at the Python boundary.
pub const MAX_VOCAB_SIZE: usize = 1 << 30;

/// Special-token names that end a sequence in common tokenizers; used when the caller does not name the
/// EOS tokens. Every name found among the special tokens becomes an EOS id.
pub const KNOWN_EOS_NAMES: &[&str] = &[
    "</s>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<eos>",
    "<end_of_turn>",
];

/// What a token id is to a grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Text: a grammar may produce it when its bytes fit.
    Normal,
    /// A control token (BOS, chat markers, EOS): produced only as EOS, and only at an accepting state.
    Special,
    /// An id the tokenizer does not define (a gap in its ids): never allowed.
    Unused,
}

/// How the caller picks the EOS tokens of a vocabulary read from a tokenizer file.
#[derive(Clone, Debug)]
pub enum EosChoice {
    /// The special tokens whose names appear in [`KNOWN_EOS_NAMES`]; at least one must exist.
    Guess,
    /// Exactly these special-token names.
    Names(Vec<String>),
    /// Exactly these ids.
    Ids(Vec<u32>),
}

/// A frozen tokenizer vocabulary: token bytes, special and EOS ids, logits width and the token trie.
#[derive(Debug)]
pub struct Vocabulary {
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    kinds: Vec<TokenKind>,
    eos: Vec<u32>,
    size: usize,
    trie: TokenTrie,
    /// Built on first use by the masks of context-free grammars.
    plain: OnceLock<PlainText>,
}

impl Vocabulary {
    /// Build a vocabulary from the bytes of every id (`None` for an id the tokenizer leaves unused).
    ///
    /// `special` ids are never produced by a grammar; `eos` ids (made special if they are not) are
    /// allowed exactly at accepting states. `size` is the model's logits width when it exceeds the number
    /// of token ids; the padding ids above the tokenizer's are never allowed.
    pub fn new(
        tokens: &[Option<Vec<u8>>],
        special: &[u32],
        eos: &[u32],
        size: Option<usize>,
    ) -> Result<Self> {
        let n = tokens.len();
        if n == 0 {
            return Err(CoreError::Vocabulary("the vocabulary has no tokens".into()));
        }
        let size = size.unwrap_or(n);
        if size < n {
            return Err(CoreError::Vocabulary(format!(
                "size={size} is smaller than the tokenizer's {n} token ids; size is the model's logits width, \
                 which must cover every token id"
            )));
        }
        if size > MAX_VOCAB_SIZE {
            return Err(CoreError::Vocabulary(format!(
                "size={size} exceeds the limit of {MAX_VOCAB_SIZE}"
            )));
        }
        let mut kinds: Vec<TokenKind> = tokens
            .iter()
            .map(|t| {
                if t.is_some() {
                    TokenKind::Normal
                } else {
                    TokenKind::Unused
                }
            })
            .collect();
        for (what, ids) in [("special", special), ("eos", eos)] {
            for &id in ids {
                let Some(kind) = kinds.get_mut(id as usize) else {
                    return Err(CoreError::Vocabulary(format!(
                        "{what} token id {id} is out of range for a vocabulary of {n} tokens"
                    )));
                };
                if *kind == TokenKind::Unused {
                    return Err(CoreError::Vocabulary(format!(
                        "{what} token id {id} has no bytes (it is an unused id)"
                    )));
                }
                *kind = TokenKind::Special;
            }
        }
        let mut eos = eos.to_vec();
        eos.sort_unstable();
        eos.dedup();
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for token in tokens {
            if let Some(b) = token {
                bytes.extend_from_slice(b);
            }
            offsets.push(bytes.len());
        }
        let trie = TokenTrie::build(n, |id| {
            (kinds[id] == TokenKind::Normal).then(|| &bytes[offsets[id]..offsets[id + 1]])
        });
        Ok(Vocabulary {
            bytes,
            offsets,
            kinds,
            eos,
            size,
            trie,
            plain: OnceLock::new(),
        })
    }

    /// Read a Hugging Face `tokenizer.json` (byte-level BPE, or SentencePiece-style BPE/Unigram with `▁`
    /// and `<0xNN>` byte fallback). Added tokens marked `special` become special tokens.
    pub fn from_tokenizer_json(text: &str, eos: &EosChoice, size: Option<usize>) -> Result<Self> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| CoreError::Vocabulary(format!("tokenizer.json is not valid JSON: {e}")))?;
        let model = root
            .get("model")
            .filter(|m| m.is_object())
            .ok_or_else(|| CoreError::Vocabulary("tokenizer.json has no \"model\" object".into()))?;
        let model_type = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
        let byte_fallback = model
            .get("byte_fallback")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let style = TextStyle::detect(&root, byte_fallback)?;

        let mut pieces: Vec<(u32, String)> = Vec::new();
        match model_type {
            "BPE" | "WordLevel" => {
                let vocab = model.get("vocab").and_then(Value::as_object).ok_or_else(|| {
                    CoreError::Vocabulary(format!(
                        "tokenizer.json: model.vocab of a {model_type} model must be an object"
                    ))
                })?;
                for (piece, id) in vocab {
                    let id = id
                        .as_u64()
                        .filter(|&i| (i as usize) < MAX_VOCAB_SIZE)
                        .ok_or_else(|| {
                            CoreError::Vocabulary(format!(
                                "tokenizer.json: token {piece:?} has an invalid id {id}"
                            ))
                        })?;
                    pieces.push((id as u32, piece.clone()));
                }
            }
            "Unigram" => {
                let vocab = model.get("vocab").and_then(Value::as_array).ok_or_else(|| {
                    CoreError::Vocabulary(
                        "tokenizer.json: model.vocab of a Unigram model must be a list".into(),
                    )
                })?;
                if vocab.len() > MAX_VOCAB_SIZE {
                    return Err(CoreError::Vocabulary(
                        "tokenizer.json: the vocabulary is too large".into(),
                    ));
                }
                for (id, entry) in vocab.iter().enumerate() {
                    let piece = entry.get(0).and_then(Value::as_str).ok_or_else(|| {
                        CoreError::Vocabulary(format!(
                            "tokenizer.json: Unigram entry {id} is not [piece, score]"
                        ))
                    })?;
                    pieces.push((id as u32, piece.to_string()));
                }
            }
            other => {
                return Err(CoreError::Vocabulary(format!(
                    "tokenizer.json: model type {other:?} is not supported (BPE, Unigram and WordLevel are)"
                )))
            }
        }
        // Added tokens decode to their literal content, whatever the model's byte mapping.
        let mut added: Vec<(u32, String, bool)> = Vec::new();
        if let Some(list) = root.get("added_tokens") {
            let list = list.as_array().ok_or_else(|| {
                CoreError::Vocabulary("tokenizer.json: \"added_tokens\" must be a list".into())
            })?;
            for entry in list {
                let id = entry
                    .get("id")
                    .and_then(Value::as_u64)
                    .filter(|&i| (i as usize) < MAX_VOCAB_SIZE);
                let content = entry.get("content").and_then(Value::as_str);
                let (Some(id), Some(content)) = (id, content) else {
                    return Err(CoreError::Vocabulary(format!(
                        "tokenizer.json: added token {entry} needs an integer \"id\" and a string \"content\""
                    )));
                };
                let special = entry.get("special").and_then(Value::as_bool).unwrap_or(false);
                added.push((id as u32, content.to_string(), special));
            }
        }
        let n = pieces
            .iter()
            .map(|p| p.0)
            .chain(added.iter().map(|a| a.0))
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; n];
        for (id, piece) in &pieces {
            tokens[*id as usize] = Some(style.piece_bytes(piece)?);
        }
        let mut special = Vec::new();
        let mut names = HashMap::new();
        for (id, content, is_special) in &added {
            tokens[*id as usize] = Some(content.as_bytes().to_vec());
            if *is_special {
                special.push(*id);
                names.insert(content.clone(), *id);
            }
        }
        let eos = resolve_eos(eos, &names, "tokenizer.json")?;
        Vocabulary::new(&tokens, &special, &eos, size)
    }

    /// Read a tiktoken rank file (`<base64 token> <rank>` per line; the rank is the token id) and add the
    /// named special tokens.
    pub fn from_tiktoken(
        text: &[u8],
        special_tokens: &[(String, u32)],
        eos: &EosChoice,
        size: Option<usize>,
    ) -> Result<Self> {
        let mut entries: Vec<(u32, Vec<u8>)> = Vec::new();
        for (line_no, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let bad =
                |why: &str| CoreError::Vocabulary(format!("tiktoken file, line {}: {why}", line_no + 1));
            let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
            let (Some(token), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad("expected \"<base64 token> <rank>\""));
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(token)
                .map_err(|e| bad(&format!("the token is not valid base64 ({e})")))?;
            let rank = std::str::from_utf8(rank)
                .ok()
                .and_then(|r| r.parse::<u32>().ok())
                .filter(|&r| (r as usize) < MAX_VOCAB_SIZE)
                .ok_or_else(|| bad("the rank is not a non-negative integer below 2**30"))?;
            entries.push((rank, bytes));
        }
        if entries.is_empty() {
            return Err(CoreError::Vocabulary("the tiktoken file has no tokens".into()));
        }
        let n = entries
            .iter()
            .map(|e| e.0)
            .chain(special_tokens.iter().map(|s| s.1))
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; n];
        for (rank, bytes) in entries {
            let slot = &mut tokens[rank as usize];
            if slot.is_some() {
                return Err(CoreError::Vocabulary(format!(
                    "tiktoken file: rank {rank} appears twice"
                )));
            }
            *slot = Some(bytes);
        }
        let mut names = HashMap::new();
        let mut special = Vec::with_capacity(special_tokens.len());
        for (name, id) in special_tokens {
            let slot = &mut tokens[*id as usize];
            if slot.is_some() {
                return Err(CoreError::Vocabulary(format!(
                    "special token {name:?} has id {id}, which the rank file already uses"
                )));
            }
            *slot = Some(name.as_bytes().to_vec());
            special.push(*id);
            names.insert(name.clone(), *id);
        }
        let eos = resolve_eos(eos, &names, "the special tokens")?;
        Vocabulary::new(&tokens, &special, &eos, size)
    }

    /// Number of token ids the tokenizer defines (ids `>= num_tokens()` and `< size()` are padding).
    #[must_use]
    pub fn num_tokens(&self) -> usize {
        self.kinds.len()
    }

    /// The model's logits width: the number of bits of a bitmask row that mean something.
    #[must_use]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Words of one bitmask row: `ceil(size / 32)`.
    #[must_use]
    pub fn mask_words(&self) -> usize {
        self.size.div_ceil(32)
    }

    /// The bytes of token `id` (empty for unused and padding ids).
    #[must_use]
    pub fn token_bytes(&self, id: usize) -> &[u8] {
        if id < self.kinds.len() {
            &self.bytes[self.offsets[id]..self.offsets[id + 1]]
        } else {
            &[]
        }
    }

    /// What token `id` is to a grammar; padding ids are [`TokenKind::Unused`].
    #[must_use]
    pub fn kind(&self, id: usize) -> TokenKind {
        self.kinds.get(id).copied().unwrap_or(TokenKind::Unused)
    }

    /// The EOS ids, sorted.
    #[must_use]
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// Whether `id` is one of the EOS ids.
    #[must_use]
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos.binary_search(&id).is_ok()
    }

    /// The special ids (EOS included), ascending.
    #[must_use]
    pub fn special_ids(&self) -> Vec<u32> {
        (0..self.kinds.len() as u32)
            .filter(|&i| self.kinds[i as usize] == TokenKind::Special)
            .collect()
    }

    /// The token trie over the normal tokens.
    #[must_use]
    pub fn trie(&self) -> &TokenTrie {
        &self.trie
    }

    /// The plain-text slice (see [`slices`](super::slices)), built on first use.
    #[must_use]
    pub fn plain_text(&self) -> &PlainText {
        self.plain.get_or_init(|| PlainText::build(self))
    }

    /// The bytes of a token sequence, concatenated (special tokens contribute their text).
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for &id in ids {
            if id as usize >= self.size {
                return crate::invalid!(
                    "token id {id} is out of range for a vocabulary of size {}",
                    self.size
                );
            }
            out.extend_from_slice(self.token_bytes(id as usize));
        }
        Ok(out)
    }
}

fn resolve_eos(choice: &EosChoice, names: &HashMap<String, u32>, source: &str) -> Result<Vec<u32>> {
    match choice {
        EosChoice::Ids(ids) => Ok(ids.clone()),
        EosChoice::Names(wanted) => wanted
            .iter()
            .map(|name| {
                names
                    .get(name)
                    .copied()
                    .ok_or_else(|| CoreError::Vocabulary(format!("EOS token {name:?} is not among {source}")))
            })
            .collect(),
        EosChoice::Guess => {
            let found: Vec<u32> = KNOWN_EOS_NAMES
                .iter()
                .filter_map(|n| names.get(*n).copied())
                .collect();
            if found.is_empty() {
                return Err(CoreError::Vocabulary(format!(
                    "no EOS token found among {source} (looked for {KNOWN_EOS_NAMES:?}); name them with eos_tokens="
                )));
            }
            Ok(found)
        }
    }
}

/// How the pieces of a `tokenizer.json` model spell bytes.
#[derive(Clone, Copy, Debug)]
enum TextStyle {
    /// GPT-2 byte-level: every byte is one printable unicode character.
    ByteLevel,
    /// SentencePiece: `▁` is a space, `<0xNN>` is a raw byte (when byte fallback is on), the rest UTF-8.
    Metaspace { byte_fallback: bool },
}

impl TextStyle {
    fn detect(root: &Value, byte_fallback: bool) -> Result<Self> {
        fn mentions(v: &Value, kind: &str) -> bool {
            match v {
                Value::Object(map) => {
                    map.get("type").and_then(Value::as_str) == Some(kind)
                        || map.values().any(|x| mentions(x, kind))
                }
                Value::Array(list) => list.iter().any(|x| mentions(x, kind)),
                _ => false,
            }
        }
        let decoder = root.get("decoder").unwrap_or(&Value::Null);
        let pre = root.get("pre_tokenizer").unwrap_or(&Value::Null);
        if mentions(decoder, "ByteLevel") || (decoder.is_null() && mentions(pre, "ByteLevel")) {
            return Ok(TextStyle::ByteLevel);
        }
        let byte_fallback = byte_fallback || mentions(decoder, "ByteFallback");
        if mentions(decoder, "Metaspace") || mentions(decoder, "Replace") || mentions(pre, "Metaspace") {
            return Ok(TextStyle::Metaspace { byte_fallback });
        }
        if mentions(decoder, "WordPiece") {
            return Err(CoreError::Vocabulary(
                "tokenizer.json: WordPiece decoders are not supported (tokens do not map to bytes)".into(),
            ));
        }
        // No decoder at all: pieces are their own UTF-8 text.
        Ok(TextStyle::Metaspace { byte_fallback })
    }

    fn piece_bytes(self, piece: &str) -> Result<Vec<u8>> {
        match self {
            TextStyle::ByteLevel => {
                let mut out = Vec::with_capacity(piece.len());
                for ch in piece.chars() {
                    out.push(byte_level_decode(ch).ok_or_else(|| {
                        CoreError::Vocabulary(format!(
                            "tokenizer.json: byte-level token {piece:?} contains {ch:?}, which is not in the \
                             GPT-2 byte map"
                        ))
                    })?);
                }
                Ok(out)
            }
            TextStyle::Metaspace { byte_fallback } => {
                if byte_fallback {
                    if let Some(b) = parse_byte_fallback(piece) {
                        return Ok(vec![b]);
                    }
                }
                Ok(piece.replace('\u{2581}', " ").into_bytes())
            }
        }
    }
}

/// `<0xNN>` -> the byte `NN`.
fn parse_byte_fallback(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The inverse of GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves and the other
/// 68 bytes are shifted, in order, to U+0100..U+0143.
#[must_use]
pub fn byte_level_decode(ch: char) -> Option<u8> {
    let c = ch as u32;
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    if c < 256 {
        return printable(c).then_some(c as u8);
    }
    // The k-th byte, in ascending order, that is not printable: 0..=32, then 127..=160, then 173.
    match c - 256 {
        k @ 0..=32 => Some(k as u8),
        k @ 33..=66 => Some((127 + k - 33) as u8),
        67 => Some(173),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_map_is_a_bijection() {
        let mut seen = [false; 256];
        for c in (0u32..0x200).filter_map(char::from_u32) {
            if let Some(b) = byte_level_decode(c) {
                assert!(!seen[b as usize], "byte {b} decoded twice");
                seen[b as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(byte_level_decode('\u{120}'), Some(b' '));
        assert_eq!(byte_level_decode('\u{10a}'), Some(b'\n'));
        assert_eq!(byte_level_decode('A'), Some(b'A'));
    }

    #[test]
    fn tiktoken_and_specials() {
        let text = b"YQ== 0\nYg== 1\nYWI= 2\n";
        let v =
            Vocabulary::from_tiktoken(text, &[("<|end|>".into(), 3)], &EosChoice::Guess, Some(40)).unwrap();
        assert_eq!(v.num_tokens(), 4);
        assert_eq!(v.size(), 40);
        assert_eq!(v.mask_words(), 2);
        assert_eq!(v.token_bytes(2), b"ab");
        assert_eq!(v.eos_ids(), &[3]);
        assert_eq!(v.kind(3), TokenKind::Special);
        assert_eq!(v.kind(39), TokenKind::Unused);
        assert!(Vocabulary::from_tiktoken(b"!!! 0\n", &[], &EosChoice::Ids(vec![]), None).is_err());
        assert!(Vocabulary::from_tiktoken(text, &[], &EosChoice::Guess, None).is_err());
    }

    #[test]
    fn tokenizer_json_metaspace_with_byte_fallback() {
        let json = r#"{"model": {"type": "BPE", "byte_fallback": true,
            "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "\u2581hi": 4, "x": 6}},
            "added_tokens": [{"id": 2, "content": "</s>", "special": true},
                             {"id": 1, "content": "<s>", "special": true}],
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]}}"#;
        let v = Vocabulary::from_tokenizer_json(json, &EosChoice::Guess, None).unwrap();
        assert_eq!(v.token_bytes(3), b"\n");
        assert_eq!(v.token_bytes(4), b" hi");
        assert_eq!(v.kind(5), TokenKind::Unused);
        assert_eq!(v.eos_ids(), &[2]);
        assert_eq!(v.special_ids(), vec![1, 2]);
    }
}
