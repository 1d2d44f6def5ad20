//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) as llama.cpp runs it:
//! pre-tokenizer regexes chosen by `tokenizer.ggml.pre`, the GPT-2 byte to
//! character mapping, and merges applied lowest rank first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::OnceLock;

use fancy_regex::Regex;

use super::TokenizerError;
use super::vocab::Vocab;
use crate::gguf::GgufHeader;

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizers implemented: `tokenizer.ggml.pre` names, the regexes
/// applied in sequence (as in llama.cpp's llama-vocab.cpp), and whether a
/// piece found whole in the vocabulary skips the merges.
const PRE_TOKENIZERS: &[(&[&str], &[&str], bool)] = &[
    (&["default"], &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"], false),
    (&["gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion"], &[GPT2], false),
    (&["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"], &[LLAMA3], true),
    (&["qwen2", "deepseek-r1-qwen", "megrez"], &[QWEN2], false),
    (&["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"], &[r"\p{N}", GPT2], false),
];

/// Names of all known pre-tokenizers, for error messages.
pub fn known_pre_tokenizers() -> String {
    PRE_TOKENIZERS.iter().flat_map(|(names, _, _)| names.iter().copied()).collect::<Vec<_>>().join(", ")
}

/// GPT-2's byte to printable character mapping and its inverse.
#[derive(Clone, Debug)]
pub struct ByteMap {
    to_char: [char; 256],
    to_byte: HashMap<char, u8>,
}

impl ByteMap {
    /// The standard mapping: printable Latin-1 bytes map to themselves, the
    /// rest to U+0100 upwards in order.
    pub fn new() -> ByteMap {
        let mut to_char = ['\0'; 256];
        let mut next = 256u32;
        for b in 0..=255u8 {
            let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
            to_char[b as usize] = if printable {
                char::from(b)
            } else {
                let c = char::from_u32(next).unwrap_or('\u{FFFD}');
                next += 1;
                c
            };
        }
        let to_byte = to_char.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        ByteMap { to_char, to_byte }
    }

    /// Encodes bytes as mapped characters.
    pub fn encode(&self, bytes: &[u8]) -> String {
        bytes.iter().map(|&b| self.to_char[b as usize]).collect()
    }

    /// Decodes mapped characters to bytes; a character outside the mapping
    /// is kept as its own UTF-8 bytes.
    pub fn decode_into(&self, text: &str, out: &mut Vec<u8>) {
        for c in text.chars() {
            match self.to_byte.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
}

impl Default for ByteMap {
    fn default() -> Self {
        ByteMap::new()
    }
}

/// The byte-level BPE model of a GGUF vocabulary.
#[derive(Debug)]
pub struct BpeModel {
    regexes: Vec<Regex>,
    ignore_merges: bool,
    /// Rank of the merge of (left id, right id).
    ranks: HashMap<(u32, u32), u32>,
    /// The byte map.
    pub byte_map: ByteMap,
}

impl BpeModel {
    /// Reads the merges and picks the pre-tokenizer named by `vocab.pre`.
    pub fn from_gguf(header: &GgufHeader, vocab: &Vocab) -> Result<BpeModel, TokenizerError> {
        let Some(index) = PRE_TOKENIZERS.iter().position(|(names, _, _)| names.contains(&vocab.pre.as_str())) else {
            return Err(TokenizerError::UnknownPreTokenizer(vocab.pre.clone(), known_pre_tokenizers()));
        };
        let (_, patterns, ignore_merges) = PRE_TOKENIZERS[index];
        // compiling the Unicode-class regexes costs milliseconds: once per process
        static COMPILED: [OnceLock<Result<Vec<Regex>, String>>; PRE_TOKENIZERS.len()] =
            [const { OnceLock::new() }; PRE_TOKENIZERS.len()];
        let regexes = COMPILED[index]
            .get_or_init(|| {
                patterns
                    .iter()
                    .map(|p| Regex::new(p).map_err(|e| format!("pre-tokenizer regex {p}: {e}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .clone()
            .map_err(TokenizerError::Vocab)?;
        let merges = header
            .get_str_array("tokenizer.ggml.merges")?
            .ok_or_else(|| TokenizerError::Vocab("tokenizer.ggml.merges is missing".into()))?;
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first character
            let first = merge.chars().next().map_or(0, char::len_utf8);
            let split = merge[first..].find(' ').map(|p| p + first);
            let Some(split) = split else {
                return Err(TokenizerError::Vocab(format!("merge {rank} {merge:?} has no space")));
            };
            let (left, right) = (&merge[..split], &merge[split + 1..]);
            // a merge whose parts are not tokens can never apply
            if let (Some(&l), Some(&r)) = (vocab.text_to_id.get(left), vocab.text_to_id.get(right)) {
                ranks.entry((l, r)).or_insert(rank as u32);
            }
        }
        Ok(BpeModel { regexes, ignore_merges, ranks, byte_map: ByteMap::new() })
    }

    /// Splits `text` into pre-tokenizer pieces: each regex in turn splits
    /// every piece into its matches and the text between them.
    pub fn pre_tokenize<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for regex in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len());
            for piece in pieces {
                let mut last = 0;
                let mut pos = 0;
                while pos <= piece.len() {
                    // a regex error (backtrack limit) ends the matching; the
                    // rest of the piece stays one piece
                    let Ok(Some(m)) = regex.find_from_pos(piece, pos) else { break };
                    if m.start() > last {
                        next.push(&piece[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                        last = m.end();
                        pos = m.end();
                    } else {
                        // empty match: step over one character
                        pos = m.end() + piece[m.end()..].chars().next().map_or(1, char::len_utf8);
                    }
                }
                if last < piece.len() {
                    next.push(&piece[last..]);
                }
            }
            pieces = next;
        }
        pieces
    }

    /// Tokenizes raw text (no special tokens), appending ids to `out`.
    pub fn encode_text(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        for piece in self.pre_tokenize(text) {
            let mapped = self.byte_map.encode(piece.as_bytes());
            self.encode_word(vocab, &mapped, out);
        }
    }

    fn encode_word(&self, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges
            && let Some(&id) = vocab.text_to_id.get(word)
        {
            out.push(id);
            return;
        }
        // Symbols over the word: byte ranges, linked, merged in place.
        struct Symbol {
            start: usize,
            len: usize,
            prev: usize,
            next: usize,
            id: Option<u32>,
        }
        const NONE: usize = usize::MAX;
        let mut symbols: Vec<Symbol> = word
            .char_indices()
            .enumerate()
            .map(|(i, (start, c))| Symbol {
                start,
                len: c.len_utf8(),
                prev: if i == 0 { NONE } else { i - 1 },
                next: i + 1,
                id: vocab.text_to_id.get(&word[start..start + c.len_utf8()]).copied(),
            })
            .collect();
        if let Some(last) = symbols.last_mut() {
            last.next = NONE;
        }
        // (rank, left index, right index, combined length when queued)
        let mut queue: BinaryHeap<Reverse<(u32, usize, usize, usize)>> = BinaryHeap::new();
        let push_pair =
            |symbols: &[Symbol], queue: &mut BinaryHeap<Reverse<(u32, usize, usize, usize)>>, left: usize| {
                if left == NONE {
                    return;
                }
                let right = symbols[left].next;
                if right == NONE {
                    return;
                }
                if let (Some(l), Some(r)) = (symbols[left].id, symbols[right].id)
                    && let Some(&rank) = self.ranks.get(&(l, r))
                {
                    queue.push(Reverse((rank, left, right, symbols[left].len + symbols[right].len)));
                }
            };
        for i in 0..symbols.len() {
            push_pair(&symbols, &mut queue, i);
        }
        while let Some(Reverse((_, left, right, len))) = queue.pop() {
            let (l, r) = (&symbols[left], &symbols[right]);
            if l.len == 0 || r.len == 0 || l.next != right || l.len + r.len != len {
                continue; // stale entry
            }
            let start = l.start;
            let next = r.next;
            symbols[left].len = len;
            symbols[left].next = next;
            symbols[left].id = vocab.text_to_id.get(&word[start..start + len]).copied();
            symbols[right].len = 0;
            if next != NONE {
                symbols[next].prev = left;
            }
            let prev = symbols[left].prev;
            push_pair(&symbols, &mut queue, prev);
            push_pair(&symbols, &mut queue, left);
        }
        let mut i = 0;
        while i != NONE && i < symbols.len() {
            let s = &symbols[i];
            match s.id {
                Some(id) => out.push(id),
                None => {
                    // as llama.cpp: each byte of the piece as a token if it
                    // is one, else the unknown token if there is one
                    for &b in &word.as_bytes()[s.start..s.start + s.len] {
                        let single = std::str::from_utf8(std::slice::from_ref(&b)).ok();
                        match single.and_then(|t| vocab.text_to_id.get(t)) {
                            Some(&id) => out.push(id),
                            None => out.extend(vocab.unk),
                        }
                    }
                }
            }
            i = s.next;
        }
    }
}
