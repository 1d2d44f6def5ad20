//! Hostile inputs and faults through the binary (issue 6): malformed model
//! files and folders give a message naming the file and a distinct exit
//! code; thread, context and memory limits are refused before the work;
//! damaged plans fall back to the heuristic with one line; Ctrl-C stops
//! `generate` with the text so far and the timings (exit 130) and leaves no
//! partial plan behind `tune`.
//!
//! Self-contained: the models are small random-weight GGUF files written
//! here (and the HF fixture when `../shared` is present).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use asdsl_kernels::Format;
use asdsl_model::QuantSpec;
use asdsl_model::gguf::{Array, Gguf, GgufWriter, Value};
use asdsl_model::random::RandomModel;
use asdsl_tests::{TINY, tiny_plan_naming};
use common::{asdsl, scratch, stderr, stdout};

fn tiny_bytes() -> Vec<u8> {
    let model = RandomModel { geometry: TINY, quant: QuantSpec::Uniform(Format::Q8_0), seed: 3 };
    model.to_gguf(&|_, _| {}).unwrap().to_bytes().unwrap()
}

/// The tiny model with metadata values replaced.
fn rewritten(edit: impl Fn(&str, &Value) -> Value) -> Vec<u8> {
    let bytes = tiny_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in gguf.metadata() {
        w.metadata(key.clone(), edit(key, value)).unwrap();
    }
    for t in gguf.tensors() {
        w.tensor(t.name.clone(), &t.dims, t.ggml_type, gguf.tensor_bytes(t).to_vec()).unwrap();
    }
    w.to_bytes().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or_else(|| panic!("killed by a signal: {}", stderr(out)))
}

/// `asdsl generate -m MODEL` on a short prompt, with extra arguments.
fn generate(cache: &Path, model: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["generate", "-m", s(model), "-p", "hello world", "-n", "2", "-t", "1", "--greedy"];
    args.extend_from_slice(extra);
    asdsl(cache, &args)
}

#[test]
fn help_documents_the_exit_codes() {
    let cache = scratch("faults-help");
    let out = asdsl(&cache, &["--help"]);
    let text = stdout(&out);
    for needle in ["Exit codes", "130", "ASDSL_MEMORY_LIMIT", "resource limit", "malformed"] {
        assert!(text.contains(needle), "{needle} missing from --help:\n{text}");
    }
}

#[test]
fn malformed_models_give_the_file_the_problem_and_a_distinct_code() {
    let dir = scratch("faults-models");
    let valid = tiny_bytes();
    let header = Gguf::parse(&valid).unwrap();
    let norm = header.tensor("blk.0.ffn_norm.weight").unwrap().file_range();
    let mut nan = valid.clone();
    nan[norm.start + 8..norm.start + 12].copy_from_slice(&f32::NAN.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, i32, Vec<&str>)> = vec![
        ("truncated.gguf", valid[..valid.len() / 3].to_vec(), 4, vec!["runs past the end"]),
        ("header-only.gguf", valid[..100].to_vec(), 4, vec!["tensor count at byte 16 is 21"]),
        ("nan.gguf", nan, 4, vec!["non-finite weight", "blk.0.ffn_norm.weight"]),
        (
            "zero-layers.gguf",
            rewritten(|k, v| if k == "llama.block_count" { Value::U32(0) } else { v.clone() }),
            4,
            vec!["llama.block_count"],
        ),
        (
            "tokens-u32.gguf",
            rewritten(|k, v| {
                if k == "tokenizer.ggml.tokens" { Value::Array(Array::U32((0..2048).collect())) } else { v.clone() }
            }),
            4,
            vec!["tokenizer.ggml.tokens", "array of u32"],
        ),
        (
            "gpt2.gguf",
            rewritten(|k, v| if k == "general.architecture" { Value::String("gpt2".into()) } else { v.clone() }),
            5,
            vec!["gpt2"],
        ),
        ("not-a-model.gguf", b"this is not a model at all".to_vec(), 5, vec!["not a GGUF file"]),
    ];
    for (name, bytes, expected, needles) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = generate(&dir, &path, &[]);
        let err = stderr(&out);
        assert_eq!(code(&out), expected, "{name}: {err}");
        assert!(err.contains(s(&path)), "{name}: the message does not name the file: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{name}: `{needle}` missing: {err}");
        }
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    // a missing file, a folder without config.json
    let out = generate(&dir, &dir.join("nope.gguf"), &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("nope.gguf"));
    let empty = dir.join("empty-folder");
    std::fs::create_dir_all(&empty).unwrap();
    let out = generate(&dir, &empty, &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("config.json"));
}

#[test]
fn malformed_hf_folders() {
    let Some(shared) = asdsl_tests::shared_dir() else { return };
    let src = shared.join("fixtures/hf/llama-tiny");
    let dir = scratch("faults-hf").join("llama-tiny");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::write(dir.join(file), std::fs::read(src.join(file)).unwrap()).unwrap();
    }
    let cache = dir.parent().unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), config.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 0"))
        .unwrap();
    let out = generate(cache, &dir, &[]);
    let err = stderr(&out);
    assert_eq!(code(&out), 4, "{err}");
    assert!(err.contains("config.json") && err.contains("num_hidden_layers") && err.contains("positive"), "{err}");
    std::fs::write(dir.join("config.json"), &config).unwrap();
    let st = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &st[..st.len() - 100]).unwrap();
    let out = generate(cache, &dir, &[]);
    let err = stderr(&out);
    assert_eq!(code(&out), 4, "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn thread_context_and_memory_limits() {
    let dir = scratch("faults-limits");
    let model = dir.join("tiny.gguf");
    std::fs::write(&model, tiny_bytes()).unwrap();
    let out = generate(&dir, &model, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let check = |extra: &[&str], env: &[(&str, &str)], expected: i32, needle: &str| {
        let mut args = vec!["generate", "-m", s(&model), "-p", "hello world", "--greedy"];
        args.extend_from_slice(extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_asdsl"));
        cmd.args(&args).env("XDG_CACHE_HOME", &dir).env_remove("ASDSL_PLAN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), expected, "{extra:?} {env:?}: {err}");
        assert!(err.contains(needle), "{extra:?} {env:?}: `{needle}` missing: {err}");
    };
    check(&["-t", "0"], &[], 2, "at least 1");
    check(&["-t", "100000"], &[], 6, "logical cores");
    check(&["-t", "1", "-c", "0"], &[], 2, "at least 1");
    check(&["-t", "1", "-c", "100000"], &[], 6, "longer than the model's context of 4096");
    check(&["-t", "1", "-c", "2"], &[], 6, "longer than the context of 2");
    check(&["-t", "1"], &[("ASDSL_MEMORY_LIMIT", "64K")], 6, "needs about");
    check(&["-t", "1"], &[("ASDSL_MEMORY_LIMIT", "lots")], 2, "ASDSL_MEMORY_LIMIT");
    check(&["-t", "1"], &[("ASDSL_MEMORY_LIMIT", "off")], 0, "eval time");
    // the KV cache: a limit above the weights but below weights + cache
    check(&["-t", "1", "-c", "4096"], &[("ASDSL_MEMORY_LIMIT", "1M")], 6, "KV cache");
    // a random geometry is refused before it is built
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_asdsl"))
        .args(["generate", "--geometry", "llama-8b", "-p", "hi", "-n", "1", "-t", "1"])
        .env("ASDSL_MEMORY_LIMIT", "1G")
        .env("XDG_CACHE_HOME", &dir)
        .output()
        .unwrap();
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("random llama-8b"), "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(20), "the refusal took {:?}", start.elapsed());
    // a huge -n is not an allocation
    check(
        &["-t", "1", "-n", "18446744073709551615", "-c", "16", "--ignore-eos"],
        &[],
        0,
        "generation stops when it is full",
    );
}

#[test]
fn damaged_plans_fall_back_with_one_line() {
    let dir = scratch("faults-plans");
    let model = dir.join("tiny.gguf");
    std::fs::write(&model, tiny_bytes()).unwrap();
    let good = tiny_plan_naming("q8_0.r4.c1.dense.q8.scalar");
    let mut other_cpu = good.clone();
    other_cpu.fingerprint.brand = "Imaginary CPU 9000".into();
    other_cpu.fingerprint.features.push("avx1024".into());
    let gone = tiny_plan_naming("q8_0.r4.c1.dense.q8.avx1024");
    let json = good.to_json();
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated.json", json[..json.len() / 2].to_string(), "not a valid plan file"),
        ("corrupt.json", json.replacen("\"rows\"", "\"rowz\"", 1), "not a valid plan file"),
        ("garbage.json", "\u{0}\u{1}garbage".to_string(), "not a valid plan file"),
        ("other-cpu.json", other_cpu.to_json(), "tuned on another machine"),
        ("gone.json", gone.to_json(), "no longer exists"),
    ];
    for (name, text, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = generate(&dir, &model, &["--plan", s(&path), "--json"]);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let line = json["plan"].as_str().unwrap();
        assert!(line.contains(needle), "{name}: {line}");
        assert!(line.contains("heuristic"), "{name}: {line}");
        assert!(!line.contains('\n'), "{name}: more than one line: {line}");
        assert!(line.len() < 600, "{name}: {} characters: {line}", line.len());
    }
}

/// Reads a child's standard output on a thread, as it comes.
fn stream(child: &mut Child) -> mpsc::Receiver<Vec<u8>> {
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

fn interrupt(child: &Child) {
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Waits at most `limit` for `child`, killing it (and failing) past that.
fn wait_for(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_during_generate_prints_the_text_so_far_and_the_timings() {
    let cache = scratch("faults-ctrl-c");
    // SmolLM2's geometry: slow enough (tens of tokens per second) to be
    // interrupted long before the context of 4096 is full.
    let mut child = Command::new(env!("CARGO_BIN_EXE_asdsl"))
        .args(["generate", "--geometry", "smollm2-135m", "--quant", "q8_0", "-p", "Once upon a time"])
        .args(["-n", "100000", "--ignore-eos", "--greedy", "-t", "1"])
        .env("XDG_CACHE_HOME", &cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stream(&mut child);
    let mut text = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    // the prompt is echoed first; wait for some generated text after it
    while text.len() < "Once upon a time".len() + 24 {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(chunk) => text.extend(chunk),
            Err(_) if Instant::now() < deadline => {}
            Err(_) => {
                let _ = child.kill();
                panic!("no tokens within 180 s: {}", String::from_utf8_lossy(&text));
            }
        }
    }
    interrupt(&child);
    let status = wait_for(&mut child, Duration::from_secs(60));
    while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(5)) {
        text.extend(chunk);
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {err}");
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("Once upon a time") && text.ends_with('\n'), "{text}");
    assert!(err.contains("eval time") && err.contains("tokens per second"), "{err}");
    assert!(err.trim_end().ends_with("interrupted"), "{err}");
}

#[test]
fn ctrl_c_during_tune_leaves_no_partial_plan() {
    // also when started with SIGINT ignored, as a shell without job control
    // starts background jobs: tune installs its own handler
    for sigint_ignored in [false, true] {
        let cache = scratch(if sigint_ignored { "faults-tune-ignored" } else { "faults-tune" });
        let dir = cache.join("out");
        std::fs::create_dir_all(&dir).unwrap();
        let plan = dir.join("plan.json");
        std::fs::write(&plan, "the previous plan").unwrap();
        let tune = ["tune", "--geometry", "smollm2-135m", "--quant", "q8_0", "--threads", "1", "--budget", "60"];
        let tune = tune.into_iter().chain(["--no-roofline", "-o", s(&plan)]);
        let mut command = if sigint_ignored {
            let mut sh = Command::new("sh");
            sh.args(["-c", "trap '' INT; exec \"$@\"", "sh", env!("CARGO_BIN_EXE_asdsl")]).args(tune);
            sh
        } else {
            let mut direct = Command::new(env!("CARGO_BIN_EXE_asdsl"));
            direct.args(tune);
            direct
        };
        let mut child =
            command.env("XDG_CACHE_HOME", &cache).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let rx = stream(&mut child);
        // the first line describes the subject; measuring follows
        rx.recv_timeout(Duration::from_secs(60)).expect("tune printed nothing");
        std::thread::sleep(Duration::from_millis(1500));
        interrupt(&child);
        let status = wait_for(&mut child, Duration::from_secs(30));
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(130), "SIGINT ignored: {sigint_ignored}; {status:?}; {err}");
        assert!(err.contains("interrupted"), "{err}");
        assert_eq!(std::fs::read_to_string(&plan).unwrap(), "the previous plan");
        let files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files, vec![plan], "a partial or temporary plan was left behind");
    }
}
