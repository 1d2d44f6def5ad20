//! SentencePiece-style tokenization (`tokenizer.ggml.model = llama`) as
//! llama.cpp's `llm_tokenizer_spm`: spaces become `▁`, adjacent pieces merge
//! best score first, pieces not in the vocabulary fall back to `<0xNN>`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::vocab::Vocab;

/// A piece (start, length) -> the two pieces it was merged from.
type RevMerge = HashMap<(usize, usize), ((usize, usize), (usize, usize))>;

/// A candidate merge of two adjacent symbols.
#[derive(Debug)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Highest score first; on ties the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes `text` (spaces already escaped to `▁`), appending ids to `out`.
pub fn encode_text(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    if text.is_empty() {
        return;
    }
    struct Symbol {
        start: usize,
        len: usize,
        prev: usize,
        next: usize,
    }
    const NONE: usize = usize::MAX;
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: if i == 0 { NONE } else { i - 1 },
            next: i + 1,
        })
        .collect();
    if let Some(last) = symbols.last_mut() {
        last.next = NONE;
    }
    // merged text -> (left, right) texts, to re-split pieces not in the vocabulary
    let mut rev_merge: RevMerge = HashMap::new();
    let mut queue = BinaryHeap::new();
    let try_add = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: usize, right: usize| {
        if left == NONE || right == NONE {
            return;
        }
        let start = symbols[left].start;
        let len = symbols[left].len + symbols[right].len;
        if let Some(&id) = vocab.text_to_id.get(&text[start..start + len]) {
            queue.push(Bigram { score: vocab.scores[id as usize], left, right, len });
        }
    };
    for i in 1..symbols.len() {
        try_add(&symbols, &mut queue, i - 1, i);
    }
    while let Some(bigram) = queue.pop() {
        let (l, r) = (&symbols[bigram.left], &symbols[bigram.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != bigram.len || l.next != bigram.right {
            continue;
        }
        let start = l.start;
        let (left_len, right_start, right_len) = (l.len, r.start, r.len);
        let next = r.next;
        rev_merge.insert((start, bigram.len), ((start, left_len), (right_start, right_len)));
        symbols[bigram.left].len = bigram.len;
        symbols[bigram.left].next = next;
        symbols[bigram.right].len = 0;
        if next != NONE {
            symbols[next].prev = bigram.left;
        }
        let prev = symbols[bigram.left].prev;
        try_add(&symbols, &mut queue, prev, bigram.left);
        try_add(&symbols, &mut queue, bigram.left, next);
    }
    let mut i = if symbols.is_empty() { NONE } else { 0 };
    while i != NONE {
        let s = &symbols[i];
        resegment(vocab, text, &rev_merge, s.start, s.len, out);
        i = s.next;
    }
}

/// Emits the piece `text[start..start+len]`: its token, or the two pieces it
/// was merged from, or its bytes.
fn resegment(vocab: &Vocab, text: &str, rev_merge: &RevMerge, start: usize, len: usize, out: &mut Vec<u32>) {
    // iterative to bound the stack on hostile input
    let mut stack = vec![(start, len)];
    while let Some((start, len)) = stack.pop() {
        let piece = &text[start..start + len];
        if let Some(&id) = vocab.text_to_id.get(piece) {
            out.push(id);
        } else if let Some(&(left, right)) = rev_merge.get(&(start, len)) {
            stack.push(right);
            stack.push(left);
        } else {
            for b in piece.bytes() {
                match vocab.text_to_id.get(&format!("<0x{b:02X}>")) {
                    Some(&id) => out.push(id),
                    None => out.extend(vocab.unk),
                }
            }
        }
    }
}
