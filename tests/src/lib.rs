//! Cross-crate integration tests live in `tests/tests/`; this library holds
//! their shared helpers, such as finding `../shared`.

use std::path::PathBuf;

pub mod fuzz;

use asdsl_model::geometry::Geometry;
use asdsl_model::kernels::Format;
use asdsl_model::kernels::tune::MatrixKey;
use asdsl_model::kernels::tune::plan::{Entry, Measured, Plan};

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

/// A plan for this machine whose entries name `variant` for every q8_0 key
/// of the [`TINY`] model (for tests of plans that name the wrong thing).
pub fn tiny_plan_naming(variant: &str) -> Plan {
    let mut plan = Plan::new_for_this_machine();
    let (h, ffn, vocab) = (TINY.hidden, TINY.ffn, TINY.vocab);
    let qkv = TINY.heads * TINY.head_dim + 2 * TINY.kv_heads * TINY.head_dim;
    for (rows, cols) in [(qkv, h), (h, h), (2 * ffn, h), (h, ffn), (vocab, h)] {
        plan.entries.push(Entry {
            key: MatrixKey::dense(Format::Q8_0, rows, cols),
            threads: 1,
            choice: Measured {
                variant: variant.to_string(),
                partition: Default::default(),
                secs: 1e-5,
                gbs: 1.0,
                roofline_pct: None,
                samples: 3,
            },
            runners_up: vec![],
            heuristic: None,
            slowest: None,
            candidates: 1,
        });
    }
    plan
}
