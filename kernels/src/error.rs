//! Typed errors of the kernel library.

use thiserror::Error;

/// Everything that can go wrong in the kernel library.
#[derive(Debug, Error)]
pub enum KernelError {
    /// A format name that no format has.
    #[error("{0}")]
    UnknownFormat(String),
    /// A variant name that is not in the registry.
    #[error("unknown variant `{0}`")]
    UnknownVariant(String),
    /// Shapes that do not fit together (rows, columns, buffer lengths).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The variant needs instructions this CPU (or the forced ISA) lacks.
    #[error("variant `{variant}` needs {isa}, which {reason}")]
    IsaUnavailable {
        /// The variant's name.
        variant: String,
        /// The ISA it needs.
        isa: String,
        /// Why it is not available (not on this CPU, or forced off).
        reason: String,
    },
    /// The packed matrix was made for another variant layout.
    #[error("layout mismatch: {0}")]
    Layout(String),
    /// An invalid argument (thread count, partition, environment variable).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An I/O error (roofline buffers, files).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
