//! Every committed fuzz seed (`fuzz/seeds/<target>/`, hand-made, and
//! `fuzz/corpus/<target>/`, minimized by `cargo fuzz cmin`) and crash
//! regression (`fuzz/regressions/<target>/`) through the fuzz target bodies of
//! [`asdsl_tests::fuzz`], so CI covers what fuzzing found.

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
    let [seeds, corpus, regressions] =
        ["seeds", "corpus", "regressions"].map(|d| files_in(&fuzz_dir().join(d).join(name)));
    assert!(!corpus.is_empty() || !seeds.is_empty(), "no committed seeds for fuzz target {name}");
    for path in seeds.iter().chain(&corpus).chain(&regressions) {
        let bytes = std::fs::read(path).unwrap();
        eprintln!("{name}: {}", path.display());
        target(&bytes);
    }
}

macro_rules! seed_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
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
    safetensors_header,
    config_json,
    plan_json,
    tokenizer_text,
    tokenizer_vocab,
    chat_template,
);
