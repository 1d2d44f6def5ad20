//! End-to-end tests of `asdsl perplexity` (the binary, as a user runs it):
//! on the tiny Hugging Face llama of `../shared/fixtures/hf` (the numbers'
//! shape, `--kl-base` then `--kl`, errors) and on the real SmolLM2 model of
//! `../shared/models` with a short context (a sane perplexity).

mod common;

use std::path::{Path, PathBuf};

use common::{MODEL, asdsl, json_of, scratch, stderr, stdout};

/// The tiny llama folder and a file of prose (`bytes` of the Brown corpus) in `dir`.
fn tiny(dir: &Path, bytes: usize) -> Option<(PathBuf, PathBuf)> {
    let shared = asdsl_tests::shared_dir()?;
    let model = shared.join("fixtures/hf/llama-tiny");
    let corpus = shared.join("corpus/brown-dev.txt");
    if !model.is_dir() || !corpus.is_file() {
        eprintln!("skipping: {} or {} is missing", model.display(), corpus.display());
        return None;
    }
    let text = std::fs::read(&corpus).unwrap();
    let file = dir.join("text.txt");
    std::fs::write(&file, String::from_utf8_lossy(&text[..bytes]).as_bytes()).unwrap();
    Some((model, file))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn perplexity_prints_running_estimates_and_the_final_estimate() {
    let dir = scratch("text");
    let Some((model, text)) = tiny(&dir, 6000) else { return };
    let args =
        ["perplexity", "-m", s(&model), "--quant", "q8_0", "-f", s(&text), "-c", "64", "--chunks", "3", "-t", "1"];
    let out = asdsl(&dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let so = stdout(&out);
    assert!(so.starts_with("[1]") && so.contains(",[2]") && so.contains(",[3]") && !so.contains("[4]"), "{so}");
    let last = so.lines().last().unwrap();
    assert!(last.starts_with("Final estimate: PPL = ") && last.contains(" +/- "), "{so}");

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = json_of(&asdsl(&dir, &json_args));
    let ppl = json["ppl"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0, "PPL {ppl}");
    assert!(json["ppl_error"].as_f64().unwrap() > 0.0);
    assert_eq!(json["n_ctx"], 64);
    assert_eq!(json["n_chunks"], 3);
    assert_eq!(json["scored"], 3 * 31);
    let chunks = json["chunk_ppl"].as_array().unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[2].as_f64().unwrap(), ppl);
    // The text report prints the same number.
    assert!(last.contains(&format!("PPL = {ppl:.4}")), "{last} vs {ppl}");
}

#[test]
fn kl_of_a_model_against_its_own_base_is_zero() {
    let dir = scratch("kl");
    let Some((model, text)) = tiny(&dir, 6000) else { return };
    let base = dir.join("base.safetensors");
    let common = ["perplexity", "-m", s(&model), "--quant", "q8_0", "-c", "64", "--chunks", "2", "-t", "1"];
    let mut save = common.to_vec();
    save.extend(["-f", s(&text), "--kl-base", s(&base), "--json"]);
    let saved = json_of(&asdsl(&dir, &save));
    assert!(base.is_file());

    // The text comes from the base; -f is optional.
    let mut compare = common.to_vec();
    compare.extend(["--kl", s(&base), "--json"]);
    let json = json_of(&asdsl(&dir, &compare));
    assert_eq!(json["ppl"], saved["ppl"]);
    let kl = &json["kl"];
    assert!(kl["kld"]["value"].as_f64().unwrap().abs() < 1e-3, "{kl}");
    assert!(kl["kld_percentiles"]["max"].as_f64().unwrap().abs() < 1e-3, "{kl}");
    assert_eq!(kl["same_top"]["value"].as_f64().unwrap(), 1.0, "{kl}");
    assert_eq!(kl["count"], 2 * 31);

    // The text report: llama.cpp's sections.
    let mut report = common.to_vec();
    report.extend(["--kl", s(&base), "-f", s(&text)]);
    let out = asdsl(&dir, &report);
    assert!(out.status.success(), "{}", stderr(&out));
    let so = stdout(&out);
    for needle in
        ["Mean    KLD:", "Median  KLD:", "99.0%   KLD:", "Maximum KLD:", "Same top p: 100.000", "Final estimate"]
    {
        assert!(so.contains(needle), "{needle:?} missing from\n{so}");
    }

    // Another text than the base's is refused.
    let other = dir.join("other.txt");
    std::fs::write(&other, std::fs::read_to_string(&text).unwrap().replace("the", "a")).unwrap();
    let mut wrong = common.to_vec();
    wrong.extend(["--kl", s(&base), "-f", s(&other)]);
    let out = asdsl(&dir, &wrong);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not the one the KL base"), "{}", stderr(&out));
    // So is another context.
    let out = asdsl(&dir, &["perplexity", "-m", s(&model), "--quant", "q8_0", "--kl", s(&base), "-c", "32"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("computed with -c 64"), "{}", stderr(&out));
}

#[test]
fn a_short_text_is_a_clear_error() {
    let dir = scratch("short");
    let Some((model, text)) = tiny(&dir, 100) else { return };
    let out = asdsl(&dir, &["perplexity", "-m", s(&model), "--quant", "q8_0", "-f", s(&text), "-c", "64"]);
    // an invalid argument for this text: exit code 2 (README, "Exit codes")
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("error:") && err.contains("needs at least 128") && !err.contains("panicked"), "{err}");
}

#[test]
fn smollm2_perplexity_is_sane() {
    let Some(shared) = asdsl_tests::shared_dir() else { return };
    let model = shared.join("models").join(MODEL);
    if !model.is_file() {
        eprintln!("skipping: {} is missing", model.display());
        return;
    }
    let dir = scratch("smollm2");
    let text = dir.join("text.txt");
    let corpus = std::fs::read(shared.join("corpus/brown-dev.txt")).unwrap();
    std::fs::write(&text, &corpus[..4000]).unwrap();
    let out = asdsl(
        &dir,
        &["perplexity", "-m", s(&model), "-f", s(&text), "-c", "128", "--chunks", "2", "-t", "2", "--json"],
    );
    let json = json_of(&out);
    let ppl = json["ppl"].as_f64().unwrap();
    // A real model on English prose: far better than a uniform guess over 49152 tokens.
    assert!(ppl.is_finite() && ppl > 1.0 && ppl < 500.0, "PPL {ppl}");
    assert_eq!(json["add_bos"], false, "SmolLM2's add_bos_token is false");
    assert_eq!(json["scored"], 2 * 63);
}
