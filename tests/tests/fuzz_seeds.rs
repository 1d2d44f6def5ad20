//! Every committed fuzz seed (`fuzz/seeds/<target>/`, hand-made, and
//! `fuzz/corpus/<target>/`, minimized by `cargo fuzz cmin`) and crash
//! regression (`fuzz/regressions/<target>/`) through the fuzz target bodies of
//! [`asdsl_tests::fuzz`], so CI covers what fuzzing found.
//!
//! Under Miri (`scripts/miri.sh`) the parsers' targets run on the seeds and
//! regressions (the corpus would take hours); the tokenizer, chat-template
//! and safetensors targets are left out there (regex and template engines
//! of other crates, slow to interpret; file-backed mmap, which Miri lacks).

use std::path::{Path, PathBuf};

use asdsl_tests::fuzz::{TARGETS, Target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs the seeds and regressions of `name`; there must be seeds.
fn run(name: &str) {
    let target: Target = TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, t)| t).expect("a known target");
    let [seeds, mut corpus, regressions] =
        ["seeds", "corpus", "regressions"].map(|d| files_in(&fuzz_dir().join(d).join(name)));
    if cfg!(miri) {
        corpus.clear();
    }
    assert!(!corpus.is_empty() || !seeds.is_empty(), "no committed seeds for fuzz target {name}");
    for path in seeds.iter().chain(&corpus).chain(&regressions) {
        let bytes = std::fs::read(path).unwrap();
        eprintln!("{name}: {}", path.display());
        target(&bytes);
    }
}

macro_rules! seed_tests {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            #[test]
            $(#[$attr])*
            fn $name() {
                run(stringify!($name));
            }
        )*
        /// Every target has a test here.
        #[test]
        fn every_target_is_tested() {
            let tested = [$(stringify!($name)),*];
            for (name, _) in TARGETS {
                assert!(tested.contains(name), "fuzz target {name} has no seed test");
            }
        }
    };
}

seed_tests!(
    gguf_header,
    gguf_model,
    #[cfg_attr(miri, ignore = "file-backed mmap")]
    safetensors_header,
    config_json,
    plan_json,
    #[cfg_attr(miri, ignore = "regex engine, slow under Miri")]
    tokenizer_text,
    #[cfg_attr(miri, ignore = "regex engine, slow under Miri")]
    tokenizer_vocab,
    #[cfg_attr(miri, ignore = "template engine, slow under Miri")]
    chat_template,
);
