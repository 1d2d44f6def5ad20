//! Cross-crate integration tests live in `tests/tests/`; this library holds
//! their shared helpers, such as finding `../shared`.

use std::path::PathBuf;

pub mod fuzz;

use asdsl_model::geometry::Geometry;

/// A tiny model geometry (two layers, hidden 64, vocabulary 2048): its
/// random-weight GGUF file is about 200 KB and loads in milliseconds.
pub const TINY: Geometry = Geometry {
    name: "tiny",
    model: "tiny test model",
    hidden: 64,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    head_dim: 16,
    ffn: 128,
    vocab: 2048,
    fused_qkv: false,
    fused_gate_up: false,
    tied_embeddings: false,
};

/// Where the shared fixtures are: `ASDSL_SHARED`, or `../shared` beside the
/// workspace. `None` (with a message on stderr) when missing, unless
/// `ASDSL_REQUIRE_SHARED=1`, which turns a missing folder into a panic so CI
/// cannot silently skip.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ASDSL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("ASDSL_REQUIRE_SHARED").as_deref() == Ok("1") {
        panic!("ASDSL_REQUIRE_SHARED=1 but the shared fixtures are missing at {}", dir.display());
    }
    eprintln!("skipping: shared fixtures not found at {} (set ASDSL_SHARED)", dir.display());
    None
}
