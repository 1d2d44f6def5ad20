//! Typed errors of the tuner and of plan files.

use std::path::PathBuf;

use thiserror::Error;

use crate::error::KernelError;

/// Everything that can go wrong tuning, or reading, checking and writing a plan.
///
/// The messages are meant to be shown to users as they are: a refused plan
/// says exactly what differs between the plan and this machine or build.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The plan file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a plan (not JSON, truncated, or fields of the wrong type).
    #[error("{path}: not a valid plan file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the JSON parser (or the check of a field) said.
        reason: String,
    },
    /// The plan's format version is not the one this build reads.
    #[error("{path}: plan format version {found}, this asdsl reads version {expected}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The version this build writes and reads.
        expected: u32,
    },
    /// The plan was written by another asdsl version (kernel speed may differ).
    #[error("{path}: tuned by asdsl {found}, this is asdsl {expected}")]
    AsdslVersion {
        /// The file.
        path: PathBuf,
        /// asdsl version in the file.
        found: String,
        /// This build's version.
        expected: String,
    },
    /// The plan was tuned against another set of kernel variants.
    #[error(
        "{path}: tuned for kernel registry {found} ({found_count} variants), this build has {expected} ({expected_count} variants)"
    )]
    Registry {
        /// The file.
        path: PathBuf,
        /// Registry hash in the file.
        found: String,
        /// Variant count in the file.
        found_count: usize,
        /// This build's registry hash.
        expected: String,
        /// This build's variant count.
        expected_count: usize,
    },
    /// The plan was tuned on another machine.
    #[error("{path}: tuned on another machine ({})", .differences.join("; "))]
    Fingerprint {
        /// The file.
        path: PathBuf,
        /// Every field that differs, as `field: plan X, this machine Y`.
        differences: Vec<String>,
    },
    /// No registry variant computes this key on this CPU.
    #[error("no kernel variant for {0} on this CPU")]
    NoVariant(String),
    /// Invalid tuner options or keys.
    #[error("invalid tuning request: {0}")]
    Invalid(String),
    /// A kernel error while tuning (packing, running).
    #[error(transparent)]
    Kernel(#[from] KernelError),
}
