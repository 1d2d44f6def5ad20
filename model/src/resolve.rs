//! Which kernel variant runs a matrix: the one place where that choice is
//! made, once per matrix at load time.
//!
//! A [`Resolver`] asks the kernel plan (from `asdsl tune`) for the matrix's
//! key at the model's thread count; where the plan has no usable entry, or
//! when there is no plan, it takes the heuristic default
//! ([`asdsl_kernels::tune::heuristic`], a documented rule: the widest ISA,
//! the int8 activation path, four tile rows, a static split of the rows).
//! Either way the variant is one this CPU may run.
//!
//! [`Activations`] can pin the activation path: `f32` runs every matrix on
//! f32 activations (the exact product of the stored weights, slower), `q8`
//! on int8 activations (what llama.cpp does).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use asdsl_kernels::Format;
use asdsl_kernels::cpu;
use asdsl_kernels::registry::VARIANTS;
use asdsl_kernels::run::Partition;
use asdsl_kernels::tune::{self, ChoiceSource, LoadedPlan, MatrixKey};
use asdsl_kernels::variant::{Activation, Isa, Sparsity, Variant};

use crate::error::{ModelError, Result};

/// Which activation path the matrices run on.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Activations {
    /// The plan's (or the heuristic default's) choice per matrix.
    #[default]
    Planned,
    /// f32 activations everywhere: the exact product of the stored weights.
    F32,
    /// int8 activations everywhere (integer dot products).
    Q8,
}

impl Activations {
    fn pinned(self) -> Option<Activation> {
        match self {
            Activations::Planned => None,
            Activations::F32 => Some(Activation::F32),
            Activations::Q8 => Some(Activation::Q8),
        }
    }
}

/// Chooses the variant and partition of every matrix of one load, and
/// counts where the decode choices came from.
#[derive(Debug)]
pub struct Resolver<'a> {
    plan: Option<&'a LoadedPlan>,
    threads: usize,
    activations: Activations,
    from_plan: AtomicUsize,
    from_heuristic: AtomicUsize,
    first_fallback: Mutex<Option<String>>,
}

impl<'a> Resolver<'a> {
    /// A resolver for a model that runs on `threads` threads; `plan: None`
    /// takes the heuristic default for every matrix.
    pub fn new(plan: Option<&'a LoadedPlan>, threads: usize, activations: Activations) -> Resolver<'a> {
        Resolver {
            plan,
            threads,
            activations,
            from_plan: AtomicUsize::new(0),
            from_heuristic: AtomicUsize::new(0),
            first_fallback: Mutex::new(None),
        }
    }

    /// The variant and row partition that run a dense `rows x cols` matrix
    /// of `format` for `columns` input columns at once.
    pub fn resolve(
        &self,
        format: Format,
        rows: usize,
        cols: usize,
        columns: usize,
    ) -> Result<(&'static Variant, Partition)> {
        let key = MatrixKey { format, rows, cols, sparsity: Sparsity::Dense, columns };
        let mut choice = match self.plan {
            Some(plan) => plan.choose(&key, self.threads)?,
            None => {
                let mut c = tune::heuristic(&key, self.threads)?;
                c.source = ChoiceSource::Heuristic("no plan".into());
                c
            }
        };
        if let Some(activation) = self.activations.pinned()
            && choice.variant.activation != activation
        {
            choice.variant = best_with_activation(&key, activation)?;
            choice.source = ChoiceSource::Heuristic(format!("activations pinned to {activation}"));
        }
        // Prompt batches are not tuned; the status line counts decode choices.
        if columns == 1 {
            match &choice.source {
                ChoiceSource::Plan => {
                    self.from_plan.fetch_add(1, Ordering::Relaxed);
                }
                ChoiceSource::Heuristic(reason) => {
                    self.from_heuristic.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut first) = self.first_fallback.lock() {
                        first.get_or_insert_with(|| reason.clone());
                    }
                }
            }
        }
        Ok((choice.variant, choice.partition))
    }

    /// One line on where the decode variants came from: the plan's status,
    /// and how many matrices took the plan's entry or the heuristic default
    /// (with the first reason).
    pub fn summary(&self) -> String {
        let planned = self.from_plan.load(Ordering::Relaxed);
        let fallback = self.from_heuristic.load(Ordering::Relaxed);
        let status = match self.plan {
            Some(p) => p.status.to_string(),
            None => "no plan given, using heuristic default".to_string(),
        };
        if self.plan.is_some_and(|p| p.plan.is_some()) || self.activations != Activations::Planned {
            let why = self.first_fallback.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
            let mut line = format!("{status}; {planned} of {} matrices from the plan", planned + fallback);
            if fallback > 0 {
                line.push_str(&format!(", {fallback} heuristic (first: {why})"));
            }
            line
        } else {
            status
        }
    }
}

/// The best variant of `key` with `activation` that this CPU may run: the
/// heuristic's order (widest ISA, then four tile rows).
fn best_with_activation(key: &MatrixKey, activation: Activation) -> Result<&'static Variant> {
    VARIANTS
        .iter()
        .filter(|v| key.admits(v) && v.activation == activation && cpu::available(v.isa).unwrap_or(false))
        .max_by_key(|v| (isa_rank(v.isa), v.tile_rows == 4, v.tile_rows))
        .ok_or_else(|| {
            ModelError::Unsupported(format!("no variant computes {key} with {activation} activations on this CPU"))
        })
}

fn isa_rank(isa: Isa) -> u8 {
    match isa {
        Isa::Avx512Vnni => 3,
        Isa::Avx512 => 2,
        Isa::Avx2 => 1,
        Isa::Scalar => 0,
    }
}
