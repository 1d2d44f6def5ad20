//! End-to-end tests of `asdsl bench` (the binary, as a user runs it) on the
//! tiny Hugging Face llama of `../shared/fixtures/hf`: the table's and the
//! JSON's shape and the numbers' sanity, not their speed.

mod common;

use std::path::PathBuf;

use common::{asdsl, json_of, scratch, stderr, stdout};
use serde_json::Value;

/// The tiny llama folder, if the shared fixtures are there.
fn tiny() -> Option<PathBuf> {
    let model = asdsl_tests::shared_dir()?.join("fixtures/hf/llama-tiny");
    if !model.is_dir() {
        eprintln!("skipping: {} is missing", model.display());
        return None;
    }
    Some(model)
}

fn number(row: &Value, key: &str) -> f64 {
    row[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number: {row}"))
}

#[test]
fn bench_gives_one_row_per_test_and_thread_count() {
    let dir = scratch("bench-rows");
    let Some(model) = tiny() else { return };
    let model = model.to_str().unwrap();
    let args =
        ["bench", "-m", model, "--quant", "q8_0", "-p", "16", "-n", "4", "-t", "1,2", "-r", "2", "--no-roofline"];

    let out = asdsl(&dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
    assert!(lines[0].starts_with("| model | size | params | backend | threads | test | t/s |"), "{table}");
    assert_eq!(lines.len(), 2 + 4, "header, rule and four rows: {table}");
    for (line, (threads, test)) in lines[2..].iter().zip([(1, "pp16"), (1, "tg4"), (2, "pp16"), (2, "tg4")]) {
        assert!(line.contains(&format!("| {threads} | {test} |")), "{line}");
        assert!(line.contains(" ± "), "{line}");
    }

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = json_of(&asdsl(&dir, &json_args));
    let rows = json.as_array().expect("an array of rows");
    assert_eq!(rows.len(), 4, "{json}");
    for row in rows {
        let test = row["test"].as_str().unwrap();
        assert!(test == "pp16" || test == "tg4", "{row}");
        assert!(matches!(row["threads"].as_u64(), Some(1 | 2)), "{row}");
        assert_eq!(row["repetitions"], 2, "{row}");
        let samples: Vec<f64> =
            row["samples_tok_per_s"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(samples.len(), 2, "{row}");
        assert!(samples.iter().all(|s| s.is_finite() && *s > 0.0), "{row}");
        let (mean, sd) = (number(row, "tok_per_s_mean"), number(row, "tok_per_s_sd"));
        assert!((mean - (samples[0] + samples[1]) / 2.0).abs() <= 1e-9 * mean, "the mean of the samples: {row}");
        assert!(sd >= 0.0 && sd.is_finite(), "{row}");
        assert!(number(row, "size_bytes") > 0.0 && number(row, "params") > 0.0, "{row}");
        if test == "tg4" {
            // Decode rows: the weight bytes of one token, and the rate they are read at.
            let bytes = number(row, "bytes_per_token");
            assert!(bytes > 0.0, "{row}");
            assert!((number(row, "gb_per_s") - bytes * mean / 1e9).abs() <= 1e-9 * bytes * mean, "{row}");
        } else {
            assert!(row["bytes_per_token"].is_null() && row["gb_per_s"].is_null(), "{row}");
        }
        // --no-roofline: no DRAM figure.
        assert!(row["roofline_pct"].is_null(), "{row}");
    }
}

#[test]
fn decode_rows_give_their_share_of_the_measured_dram_bandwidth() {
    let dir = scratch("bench-roofline");
    let Some(model) = tiny() else { return };
    let args = ["bench", "-m", model.to_str().unwrap(), "--quant", "q4_0", "-p", "0", "-n", "4", "-t", "1", "-r", "1"];
    let json = json_of(&asdsl(&dir, &[&args[..], &["--json"]].concat()));
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 1, "-p 0 measures no prompt: {json}");
    let row = &rows[0];
    assert_eq!(row["test"], "tg4");
    let (dram, pct) = (number(row, "dram_gb_per_s"), number(row, "roofline_pct"));
    assert!(dram > 0.0 && dram.is_finite(), "{row}");
    assert!((pct - 100.0 * number(row, "gb_per_s") / dram).abs() <= 1e-6 * pct.max(1.0), "{row}");
}

#[test]
fn bad_arguments_are_errors() {
    let dir = scratch("bench-errors");
    let Some(model) = tiny() else { return };
    let model = model.to_str().unwrap();
    for (args, what) in [
        (vec!["bench", "-m", model, "-t", "0", "-p", "8", "-n", "2"], "thread count"),
        (vec!["bench", "-m", "/nonexistent/model.gguf", "-p", "8", "-n", "2"], "nonexistent"),
        (vec!["bench", "--geometry", "no-such-geometry", "-p", "8", "-n", "2"], "no-such-geometry"),
    ] {
        let out = asdsl(&dir, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.status.code().is_some_and(|c| c != 0 && c != 101), "{args:?}: {:?}", out.status);
        let err = stderr(&out);
        assert!(err.contains(what), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn roofline_bounds_every_matrix_of_a_model_and_the_whole_step() {
    let dir = scratch("roofline-model");
    let Some(model) = tiny() else { return };
    let common = ["roofline", "--dram-only", "--threads", "1", "--reps", "1", "--streams", "1", "--json"];
    let json = json_of(&asdsl(&dir, &[&common[..], &["--model", model.to_str().unwrap(), "--quant", "q8_0"]].concat()));
    let ceilings = json["ceilings"].as_array().expect("ceilings");
    assert!(!ceilings.is_empty(), "{json}");
    let mut total = 0;
    for c in ceilings {
        assert_eq!(c["format"], "q8_0", "a float model quantized to --quant: {c}");
        let (rows, cols) = (c["rows"].as_u64().unwrap(), c["cols"].as_u64().unwrap());
        // Q8_0: 34 bytes per 32 weights.
        assert_eq!(c["bytes_per_call"].as_u64(), Some(rows * cols / 32 * 34), "{c}");
        let row = &c["per_threads"][0];
        assert_eq!(row["threads"], 1, "{c}");
        assert!(number(&row["dram"], "us_per_call") > 0.0, "{c}");
        total += c["bytes_per_call"].as_u64().unwrap() * c["count"].as_u64().unwrap();
    }
    assert_eq!(json["bytes_per_token"].as_u64(), Some(total), "{json}");

    let json = json_of(&asdsl(&dir, &[&common[..], &["--geometry", "llama-1b", "--quant", "q4_0"]].concat()));
    let calls: u64 = json["ceilings"].as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum();
    assert_eq!(calls, 22 * 7 + 1, "TinyLlama: q, k, v, o, gate, up and down per layer, and the head: {json}");
}
