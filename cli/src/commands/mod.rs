//! One module per `asdsl` command: its clap arguments and its `run`.

pub mod bench;
pub mod export;
pub mod generate;
pub mod info;
pub mod logits;
pub mod perplexity;
pub mod plan;
pub mod quantize;
pub mod roofline;
pub mod subject;
pub mod tune;

use asdsl_kernels::variant::Variant;

/// The kernel registry.
pub fn registry() -> &'static [Variant] {
    asdsl_kernels::registry::VARIANTS
}

pub use asdsl_model::error::human_bytes;

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
