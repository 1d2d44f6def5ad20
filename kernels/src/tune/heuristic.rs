//! The heuristic default: a variant and partition chosen by rule, without
//! measuring (what llama.cpp does). It is used wherever no plan fits.
//!
//! # The rule
//!
//! Among the registry variants that compute the key (same format and
//! sparsity; one-column variants for one input column, multi-column ones
//! otherwise) and whose ISA this CPU allows (hardware and
//! `ASDSL_FORCE_ISA`), take the one that is best by, in order:
//!
//! 1. the widest ISA: AVX-512 VNNI, then AVX-512, then AVX2, then scalar;
//! 2. the int8 activation path (integer dot products, as llama.cpp runs
//!    quantized weights) over the f32 one;
//! 3. the 16-row interleaved layout where the format has it (Q4_0, Q4_1,
//!    Q4_K, Q6_K, q4g32; on AVX2 since 2026-12-03, whose prompt speed
//!    against four tile rows is not yet measured): its lanes are rows, so for a prompt one conversion and
//!    one scale product serve 16 rows of a sub-block (pp512 of llama-1b
//!    Q4_K_M went from 40 to 56 tok/s at one thread, `BENCHMARKS.md`), and
//!    decode runs within a few per cent of the row-slot layout for Q4_0 and
//!    Q4_K (Q6_K 15-28 % slower before commit 52e4731 unrolled its loop),
//!    so one packed copy of the weights serves both (see
//!    `kernels/BENCHMARKS.md`); then four tile
//!    rows, then 8, 2, 1 (four rows keep four accumulators in flight, enough
//!    to hide the FMA latency, without spilling registers).
//!
//! The partition is static (each thread one contiguous, equal share of the
//! rows), the nominal 256 rows per chunk ([`Partition::default`]).
//!
//! The rule never returns a variant the CPU does not allow: it only looks
//! at allowed ones, and fails ([`PlanError::NoVariant`]) if there are none.

use super::MatrixKey;
use super::error::PlanError;
use super::plan::{Choice, ChoiceSource};
use crate::cpu;
use crate::registry::VARIANTS;
use crate::run::Partition;
use crate::variant::{Activation, Isa, Variant};

/// The heuristic default for `key` at `threads` threads on this CPU.
pub fn heuristic(key: &MatrixKey, threads: usize) -> Result<Choice, PlanError> {
    let variant = heuristic_variant(key, |isa| cpu::available(isa).unwrap_or(false))?;
    Ok(Choice { variant, partition: heuristic_partition(threads), source: ChoiceSource::Heuristic(String::new()) })
}

/// The rule's variant for `key` when exactly the ISAs for which `allowed`
/// holds may run (a pure function, for tests with made-up CPUs).
pub fn heuristic_variant(key: &MatrixKey, allowed: impl Fn(Isa) -> bool) -> Result<&'static Variant, PlanError> {
    VARIANTS
        .iter()
        .filter(|v| key.admits(v) && allowed(v.isa))
        .max_by_key(|v| rank(v))
        .ok_or_else(|| PlanError::NoVariant(key.to_string()))
}

/// The rule's partition at `threads` threads.
pub fn heuristic_partition(_threads: usize) -> Partition {
    Partition::default()
}

/// Larger is preferred.
fn rank(v: &Variant) -> (u8, u8, u8) {
    let isa = match v.isa {
        Isa::Avx512Vnni => 3,
        Isa::Avx512 => 2,
        Isa::Avx2 => 1,
        Isa::Scalar => 0,
    };
    let act = u8::from(v.activation == Activation::Q8);
    let rows = match v.tile_rows {
        16 => 4,
        4 => 3,
        8 => 2,
        2 => 1,
        _ => 0,
    };
    (isa, act, rows)
}
