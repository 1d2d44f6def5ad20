//! Cross-crate integration tests live in `tests/tests/`; this library holds
//! their shared helpers, such as finding `../shared`.

use std::path::PathBuf;

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
