//! One module per `asdsl` command: its clap arguments and its `run`.

pub mod bench;
pub mod export;
pub mod generate;
pub mod info;
pub mod logits;
pub mod perplexity;
pub mod plan;
pub mod roofline;
pub mod tune;

use asdsl_kernels::variant::Variant;

/// The kernel registry.
pub fn registry() -> &'static [Variant] {
    asdsl_kernels::registry::VARIANTS
}

/// `bytes` in the largest binary unit that keeps the number at least 1 (`48 KiB`, `2 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(48 << 10), "48 KiB");
        assert_eq!(human_bytes(260 << 20), "260 MiB");
        assert_eq!(human_bytes(9_437_184), "9 MiB");
        assert_eq!(human_bytes(1_500_000), "1.43 MiB");
    }
}
