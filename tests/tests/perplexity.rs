//! `asdsl_model::perplexity` on the tiny Hugging Face llama
//! (`../shared/fixtures/hf/llama-tiny`, random weights, vocabulary 512) and
//! English prose from `../shared/corpus/brown-dev.txt`:
//!
//! - the evaluation scores what llama.cpp scores: a direct computation from
//!   `forward_all` over each whole chunk (BOS substituted, second half,
//!   textbook f64 log-softmax) gives the same NLL sum;
//! - a `--kl-base` file written by one run reads back (tokens, context,
//!   chunks), and the same model compared against it has KL ≈ 0 and the
//!   same top token everywhere; another quantization of it has KL > 0;
//! - a text shorter than 2 x the context is a clear error; other files are
//!   not taken for a KL base.

use std::path::{Path, PathBuf};

use asdsl_model::perplexity::{self, KlBase, KlBaseWriter, Mode, Outcome, Setup};
use asdsl_model::tokenizer::Tokenizer;
use asdsl_model::{Exec, LoadOptions, Model, QuantSpec};

const N_CTX: usize = 64;

struct Fixture {
    model_dir: PathBuf,
    text: String,
}

fn fixture() -> Option<Fixture> {
    let shared = asdsl_tests::shared_dir()?;
    let model_dir = shared.join("fixtures/hf/llama-tiny");
    let corpus = shared.join("corpus/brown-dev.txt");
    if !model_dir.is_dir() || !corpus.is_file() {
        eprintln!("skipping: {} or {} is missing", model_dir.display(), corpus.display());
        return None;
    }
    let bytes = std::fs::read(&corpus).unwrap();
    let text = String::from_utf8_lossy(&bytes[..4000]).into_owned();
    Some(Fixture { model_dir, text })
}

fn load(dir: &Path, quant: &str) -> Model {
    let quant: QuantSpec = quant.parse().unwrap();
    let options = LoadOptions { quant, threads: 1, ..LoadOptions::default() };
    Model::load(dir, &options).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

/// The text's tokens with BOS as the model asks, and that BOS.
fn tokens(dir: &Path, text: &str) -> (Vec<u32>, Option<u32>) {
    let tok = Tokenizer::from_hf_folder(dir).unwrap();
    let bos = if tok.add_bos() { tok.bos() } else { None };
    let ids = tok.encode_with(text, false, false).unwrap();
    (perplexity::prepare_tokens(ids, bos), bos)
}

fn run(model: &Model, tokens: &[u32], setup: &Setup, mode: Mode<'_>) -> Outcome {
    let exec = Exec::new(1).unwrap();
    let mut state = model.new_state(setup.n_ctx, 16).unwrap();
    let mut seen = Vec::new();
    let outcome =
        perplexity::evaluate(model, &mut state, &exec, tokens, setup, mode, |done| seen.push(done.chunk)).unwrap();
    assert_eq!(seen, (1..=setup.n_chunks).collect::<Vec<_>>(), "one callback per chunk, in order");
    outcome
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("perplexity-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn perplexity_scores_the_second_half_of_each_chunk() {
    let Some(f) = fixture() else { return };
    let model = load(&f.model_dir, "f32");
    let (tokens, bos) = tokens(&f.model_dir, &f.text);
    let n_chunks = perplexity::count_chunks(tokens.len(), N_CTX, Some(3)).unwrap();
    assert_eq!(n_chunks, 3, "the text has {} tokens", tokens.len());
    let setup = Setup { n_ctx: N_CTX, n_chunks, bos };
    let outcome = run(&model, &tokens, &setup, Mode::Perplexity);
    let s = outcome.stats;
    assert_eq!(s.count, n_chunks * (N_CTX - 1 - N_CTX / 2));
    assert_eq!(outcome.chunk_ppl.len(), n_chunks);
    assert_eq!(*outcome.chunk_ppl.last().unwrap(), s.ppl());
    let ppl = s.ppl();
    // Random weights: about as good as a uniform guess over 512 tokens (or worse).
    assert!(ppl.is_finite() && ppl > 1.0, "PPL {ppl}");
    assert!(s.ppl_error().unwrap() > 0.0);

    // The same from the logits of whole chunks, the textbook way.
    let exec = Exec::new(1).unwrap();
    let vocab = model.config.vocab_size;
    let mut sum = 0.0f64;
    for c in 0..n_chunks {
        let mut input = tokens[c * N_CTX..(c + 1) * N_CTX].to_vec();
        if let Some(b) = bos {
            input[0] = b;
        }
        let mut state = model.new_state(N_CTX, N_CTX).unwrap();
        let logits = model.forward_all(&mut state, &input, &exec).unwrap();
        for j in N_CTX / 2..N_CTX - 1 {
            let row = &logits[j * vocab..(j + 1) * vocab];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = row.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln() + max;
            sum += lse - row[tokens[c * N_CTX + j + 1] as usize] as f64;
        }
    }
    assert!((sum - s.sum).abs() < 1e-6 * sum.abs(), "direct {sum} vs evaluate {}", s.sum);
}

#[test]
fn kl_against_the_same_model_is_zero() {
    let Some(f) = fixture() else { return };
    let model = load(&f.model_dir, "q8_0");
    let (tokens, bos) = tokens(&f.model_dir, &f.text);
    let setup = Setup { n_ctx: N_CTX, n_chunks: 2, bos };
    let path = scratch("same").join("base.safetensors");
    let vocab = model.config.vocab_size;
    let mut writer = KlBaseWriter::create(&path, &tokens, N_CTX, 2, vocab, "llama-tiny").unwrap();
    let saved = run(&model, &tokens, &setup, Mode::SaveBase(&mut writer));
    writer.finish().unwrap();
    let scored = 2 * (N_CTX - 1 - N_CTX / 2);
    let size = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(size >= 2 * scored * vocab && size < 2 * scored * vocab + 4096, "file of {size} bytes");

    let base = KlBase::open(&path).unwrap();
    assert_eq!((base.n_ctx, base.n_chunks, base.vocab), (N_CTX, 2, vocab));
    assert_eq!(base.tokens, tokens[..2 * N_CTX]);
    assert!(!base.llama_cpp);

    let compared = run(&model, &base.tokens, &setup, Mode::Compare(&base));
    assert_eq!(compared.stats, saved.stats, "the same model gives the same NLLs");
    let r = compared.kl.expect("a KL comparison").report();
    assert_eq!(r.count, scored);
    assert!(r.kld.value.abs() < 1e-3, "mean KLD {}", r.kld.value);
    assert!(r.kld_percentiles.max.abs() < 1e-3, "max KLD {}", r.kld_percentiles.max);
    assert_eq!(r.same_top.value, 1.0, "top-1 agreement");
    assert!((r.ppl.value / r.ppl_base.value - 1.0).abs() < 1e-3, "{} vs {}", r.ppl.value, r.ppl_base.value);
    assert!(r.p_diff_rms.value < 1e-3);
}

#[test]
fn kl_sees_another_quantization() {
    let Some(f) = fixture() else { return };
    let reference = load(&f.model_dir, "f32");
    let (tokens, bos) = tokens(&f.model_dir, &f.text);
    let setup = Setup { n_ctx: N_CTX, n_chunks: 2, bos };
    let path = scratch("other").join("base.safetensors");
    let vocab = reference.config.vocab_size;
    let mut writer = KlBaseWriter::create(&path, &tokens, N_CTX, 2, vocab, "llama-tiny f32").unwrap();
    let base_run = run(&reference, &tokens, &setup, Mode::SaveBase(&mut writer));
    writer.finish().unwrap();
    let base = KlBase::open(&path).unwrap();

    let q4 = load(&f.model_dir, "q4_0");
    let r = run(&q4, &tokens, &setup, Mode::Compare(&base)).kl.unwrap().report();
    assert!(r.kld.value > 1e-4, "q4_0 against f32: mean KLD {}", r.kld.value);
    assert!(r.kld_percentiles.max >= r.kld_percentiles.p99 && r.kld_percentiles.p99 >= r.kld_percentiles.median);
    assert!(r.same_top.value > 0.0 && r.same_top.value <= 1.0);
    assert!((r.ppl_base.value / base_run.stats.ppl() - 1.0).abs() < 1e-3, "the base's PPL reads back");

    // A base for another context or vocabulary is refused.
    let wrong = Setup { n_ctx: N_CTX / 2, n_chunks: 2, bos };
    let exec = Exec::new(1).unwrap();
    let mut state = q4.new_state(N_CTX, 16).unwrap();
    let err = perplexity::evaluate(&q4, &mut state, &exec, &tokens, &wrong, Mode::Compare(&base), |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("chunks of"), "{err}");
}

#[test]
fn a_short_text_is_an_error() {
    let Some(f) = fixture() else { return };
    let short: String = f.text.chars().take(100).collect();
    let (tokens, _) = tokens(&f.model_dir, &short);
    assert!(tokens.len() < 2 * N_CTX);
    let err = perplexity::count_chunks(tokens.len(), N_CTX, None).unwrap_err().to_string();
    assert!(err.contains(&format!("only {} tokens", tokens.len())) && err.contains("at least 128"), "{err}");
}

#[test]
fn other_files_are_not_a_kl_base() {
    let Some(f) = fixture() else { return };
    let err = KlBase::open(&f.model_dir.join("model.safetensors")).unwrap_err().to_string();
    assert!(err.contains("not a KL base"), "{err}");
    let err = KlBase::open(&f.model_dir.join("config.json")).unwrap_err().to_string();
    assert!(err.contains("not a KL base"), "{err}");
}
