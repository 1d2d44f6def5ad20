//! Helpers shared by the binary's end-to-end tests.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The real model's file name in `../shared/models`.
pub const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// A scratch folder for one test (removed first if a previous run left it).
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `asdsl ARGS` with its cache in `cache` (so no plan or model of the user's leaks in).
pub fn asdsl(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asdsl"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("ASDSL_PLAN")
        .output()
        .unwrap()
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Standard output parsed as JSON (the run must have succeeded).
pub fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "asdsl failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}
