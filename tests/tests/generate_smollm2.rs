//! The real model: SmolLM2-135M-Instruct Q4_1 (GGUF, tensors run as
//! stored) against two references:
//!
//! - the exact model (`tests/fixtures/smollm2/`, made by
//!   `make_exact_reference.py`: the stored weights dequantized by the `gguf`
//!   package and run in float64 with numpy, no activation rounding);
//! - llama.cpp's outputs in `../shared/fixtures/gguf`.
//!
//! llama.cpp multiplies with int8 activations. On this model that rounding
//! is far from negligible: llama.cpp's first-prompt logits are up to 1.36
//! away from the exact model's, and it leaves the exact greedy continuation
//! at step 5 of the first prompt (where llama.cpp's top-2 gap is 0.33) and of
//! the fifth. Re-running a numpy emulation of llama.cpp's int8 scheme with
//! only the summation order of the block sums changed moves logits by up to
//! 0.83: which side of a gap of a few tenths an int8 implementation lands on
//! is decided by rounding, not by the model. So:
//!
//! - our f32 activation path (`Activations::F32`) must match the exact model
//!   tightly: logits within [`EXACT_LOGIT_BOUND`], greedy ids equal up to the
//!   first step whose exact top-2 gap is below [`EXACT_GAP`];
//! - our int8 path (the default, as llama.cpp) must be as close to the exact
//!   model as llama.cpp is ([`Q8_LOGIT_BOUND`]), and its greedy ids must equal
//!   llama.cpp's up to the first step whose llama.cpp top-2 gap is below 0.1
//!   or where llama.cpp leaves the exact model (from there on llama.cpp's own
//!   rounding decides).

use std::path::{Path, PathBuf};

use asdsl_model::generate::{GenerateOptions, generate};
use asdsl_model::{Activations, Exec, LoadOptions, Model, Sampler, SamplerConfig};
use safetensors::SafeTensors;
use serde_json::Value;

/// Max |logit difference| of the f32 activation path from the exact model
/// (first prompt, 5 positions x 49,152 logits spanning about -20..27):
/// measured 3.6e-5 (f32 accumulation against numpy's f64), bound 1e-3.
const EXACT_LOGIT_BOUND: f32 = 1e-3;
/// Greedy ids of the f32 path are compared up to the first step whose exact
/// top-2 gap is below this (f32 summation differs from numpy's f64 by ~1e-4).
const EXACT_GAP: f64 = 0.01;
/// Max |logit difference| of the int8 path from the exact model: measured
/// 1.24 (and 0.96 from llama.cpp's logits); llama.cpp's own is 1.36 on the
/// same logits. Bound 1.5.
const Q8_LOGIT_BOUND: f32 = 1.5;

fn paths() -> Option<(PathBuf, PathBuf)> {
    let shared = asdsl_tests::shared_dir()?;
    let model = shared.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let fixtures = shared.join("fixtures/gguf");
    if !model.is_file() || !fixtures.is_dir() {
        eprintln!("skipping: {} or {} is missing", model.display(), fixtures.display());
        return None;
    }
    Some((model, fixtures))
}

fn exact_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/smollm2")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn gaps(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|g| g.as_f64().unwrap()).collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `input_ids` and `logits` of a logits fixture.
fn logits_fixture(path: &Path) -> (Vec<u32>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ids = st
        .tensor("input_ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    let logits = st
        .tensor("logits")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (ids, logits)
}

fn load(path: &Path, activations: Activations) -> Model {
    Model::load(path, &LoadOptions { threads: 2, activations, ..LoadOptions::default() }).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Greedy continuation of `prompt`, `steps` tokens.
fn greedy(model: &Model, prompt: &[u32], steps: usize) -> Vec<u32> {
    let exec = Exec::new(2).unwrap();
    let mut state = model.new_state(512, 32).unwrap();
    let mut sampler = Sampler::new(SamplerConfig::greedy());
    let options = GenerateOptions { max_tokens: steps, ignore_eos: true, stop_tokens: vec![] };
    generate(model, &mut state, &exec, &mut sampler, prompt, &options, |_| true).unwrap().ids
}

#[test]
fn f32_activations_match_the_exact_model() {
    let Some((model_path, _)) = paths() else { return };
    let model = load(&model_path, Activations::F32);
    let (prompt, exact) = logits_fixture(&exact_dir().join("exact-logits.safetensors"));
    let mut state = model.new_state(512, 32).unwrap();
    let logits = model.forward_all(&mut state, &prompt, &Exec::new(2).unwrap()).unwrap();
    let diff = max_diff(&logits, &exact);
    eprintln!("f32 path: max |logit diff| from the exact model {diff:.3e} (bound {EXACT_LOGIT_BOUND})");
    assert!(diff <= EXACT_LOGIT_BOUND, "max |logit diff| {diff} > {EXACT_LOGIT_BOUND}");

    let reference = json(&exact_dir().join("exact-greedy.json"));
    for case in reference["cases"].as_array().unwrap().iter().take(3) {
        let expected = ids(&case["greedy_new_ids"]);
        let checked = gaps(&case["top1_top2_gap"]).iter().position(|&g| g < EXACT_GAP).unwrap_or(expected.len());
        let got = greedy(&model, &ids(&case["ids"]), checked.max(1));
        eprintln!("{:?}: f32 path greedy, {checked} steps checked against the exact model", case["prompt"]);
        assert_eq!(got[..checked], expected[..checked], "prompt {:?}", case["prompt"]);
    }
}

#[test]
fn q8_activations_are_as_close_as_llama_cpp() {
    let Some((model_path, fixtures)) = paths() else { return };
    let model = load(&model_path, Activations::Q8);
    let (ids, exact) = logits_fixture(&exact_dir().join("exact-logits.safetensors"));
    let (llama_ids, llama) = logits_fixture(&fixtures.join("smollm2-q4_1-llamacpp.safetensors"));
    assert_eq!(ids, llama_ids);
    let mut state = model.new_state(512, 32).unwrap();
    let logits = model.forward_all(&mut state, &ids, &Exec::new(2).unwrap()).unwrap();
    let ours = max_diff(&logits, &exact);
    let theirs = max_diff(&llama, &exact);
    eprintln!(
        "int8 path: max |logit diff| from the exact model {ours:.3} (llama.cpp's: {theirs:.3}; bound {Q8_LOGIT_BOUND}); \
         from llama.cpp {:.3}",
        max_diff(&logits, &llama)
    );
    assert!(ours <= Q8_LOGIT_BOUND, "max |logit diff| {ours} > {Q8_LOGIT_BOUND}");
}

#[test]
fn q8_greedy_matches_llama_cpp_where_the_model_decides() {
    let Some((model_path, fixtures)) = paths() else { return };
    let model = load(&model_path, Activations::Q8);
    let llama = json(&fixtures.join("smollm2-q4_1-llamacpp.json"));
    let exact = json(&exact_dir().join("exact-greedy.json"));
    for (case, exact) in llama["cases"].as_array().unwrap().iter().zip(exact["cases"].as_array().unwrap()) {
        assert_eq!(case["ids"], exact["ids"]);
        let expected = ids(&case["greedy_new_ids"]);
        let exact_ids = ids(&exact["greedy_new_ids"]);
        let small_gap = gaps(&case["top1_top2_gap"]).iter().position(|&g| g < 0.1).unwrap_or(expected.len());
        let departs = expected.iter().zip(&exact_ids).position(|(a, b)| a != b).unwrap_or(expected.len());
        let checked = small_gap.min(departs);
        let got = greedy(&model, &ids(&case["ids"]), checked.max(1));
        eprintln!(
            "{:?}: {checked} steps checked (llama.cpp gap < 0.1 at {small_gap}, leaves the exact model at {departs})",
            case["prompt"]
        );
        assert_eq!(got[..checked], expected[..checked], "prompt {:?}", case["prompt"]);
    }
}
