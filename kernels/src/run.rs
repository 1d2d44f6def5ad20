//! Running a variant: checked once at construction, then called with an
//! explicit thread count and row partition (both tunables of the plan).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::KernelError;
use crate::input::Input;
use crate::kernel::KernelArgs;
use crate::pack::{Layout, PackedMatrix};
use crate::team::Team;
use crate::variant::{Activation, Variant};

/// A pool of worker threads of a fixed size. With one thread, kernels run on
/// the caller's thread and no pool exists.
pub struct Threads {
    count: usize,
    team: Option<Team>,
}

impl fmt::Debug for Threads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Threads({})", self.count)
    }
}

impl Threads {
    /// A pool of exactly `count` threads (at least 1, at most 65,535): the calling thread
    /// and `count - 1` workers, which spin for a moment between jobs (see
    /// the `team` module) so that back-to-back GEMVs start without a wake-up.
    pub fn new(count: usize) -> Result<Threads, KernelError> {
        if count == 0 {
            return Err(KernelError::Invalid("thread count must be at least 1".into()));
        }
        if count > crate::team::MAX_PIECES {
            return Err(KernelError::Invalid(format!(
                "thread count {count} is too large (at most {})",
                crate::team::MAX_PIECES
            )));
        }
        let team = if count > 1 {
            Some(
                Team::new(count, "asdsl")
                    .map_err(|e| KernelError::Invalid(format!("cannot start {count} threads: {e}")))?,
            )
        } else {
            None
        };
        Ok(Threads { count, team })
    }

    /// The number of threads.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Runs `job(share)` once for each share `0..count()`, in parallel, and
    /// returns when all are done: the pool for a runtime's own parallel
    /// loops between GEMVs. Shares are claimed by whichever thread is free
    /// (the calling thread too), so a share is not a thread's identity. A
    /// panic in any share is re-raised here.
    pub fn broadcast(&self, job: impl Fn(usize) + Sync) {
        match &self.team {
            Some(team) => team.run(self.count, &job),
            None => job(0),
        }
    }
}

/// How work is handed to threads.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Each thread takes one contiguous, equal share of the rows.
    Static,
    /// Chunks of `rows_per_chunk` rows are taken by whichever thread is free.
    Dynamic,
}

/// The row partition of a run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Partition {
    /// Rows per chunk of work (rounded up to whole tiles).
    pub rows_per_chunk: usize,
    /// Static or dynamic hand-out.
    pub schedule: Schedule,
}

impl Default for Partition {
    fn default() -> Self {
        Partition { rows_per_chunk: 256, schedule: Schedule::Static }
    }
}

/// A matrix packed for one variant, ready to multiply.
#[derive(Clone, Debug)]
pub struct Gemv {
    variant: &'static Variant,
    matrix: PackedMatrix,
}

/// The output pointer, shared by threads that write disjoint rows.
#[derive(Copy, Clone)]
struct Out(*mut f32);
// SAFETY: threads write disjoint rows of the output (see `Gemv::run`), and
// the buffer outlives the scope in which they run.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Gemv {
    /// Packs `rows x cols` weights given as blocks of the variant's format
    /// (a GGUF tensor's bytes) for `variant`. Fails if the CPU (or
    /// `ASDSL_FORCE_ISA`) does not allow the variant's ISA.
    pub fn from_blocks(
        variant: &'static Variant,
        rows: usize,
        cols: usize,
        blocks: &[u8],
    ) -> Result<Gemv, KernelError> {
        crate::cpu::check_variant(variant.name, variant.isa)?;
        let matrix = PackedMatrix::from_blocks(variant.format, rows, cols, blocks, Layout::for_variant(variant))?;
        Ok(Gemv { variant, matrix })
    }

    /// Uses an already packed matrix; its format and layout must be the variant's.
    pub fn new(variant: &'static Variant, matrix: PackedMatrix) -> Result<Gemv, KernelError> {
        crate::cpu::check_variant(variant.name, variant.isa)?;
        if matrix.format() != variant.format || matrix.layout() != Layout::for_variant(variant) {
            return Err(KernelError::Layout(format!(
                "{} needs {} in layout {:?}, the matrix is {} in {:?}",
                variant.name,
                variant.format,
                Layout::for_variant(variant),
                matrix.format(),
                matrix.layout()
            )));
        }
        Ok(Gemv { variant, matrix })
    }

    /// The variant.
    pub fn variant(&self) -> &'static Variant {
        self.variant
    }

    /// The packed matrix.
    pub fn matrix(&self) -> &PackedMatrix {
        &self.matrix
    }

    /// Whether inputs must be prepared with int8 activations.
    pub fn needs_q8(&self) -> bool {
        self.variant.activation == Activation::Q8
    }

    /// A borrowed view of this pair (see [`GemvRef`]).
    pub fn borrowed(&self) -> GemvRef<'_> {
        GemvRef { variant: self.variant, matrix: &self.matrix }
    }

    /// `out[c * rows + r] = sum_k W[r][k] * x_c[k]` for every input column
    /// `c`, on `threads` threads partitioned by `partition`.
    pub fn run(
        &self,
        input: &Input,
        out: &mut [f32],
        threads: &Threads,
        partition: Partition,
    ) -> Result<(), KernelError> {
        self.borrowed().run(input, out, threads, partition)
    }
}

/// A variant and a packed matrix it borrows, checked like [`Gemv::new`].
/// Several variants that read the same layout (every SIMD variant of one
/// format and tile-row count) can run over one packed matrix this way; the
/// tuner uses it to measure them over the same copies of the weights.
#[derive(Copy, Clone, Debug)]
pub struct GemvRef<'a> {
    variant: &'static Variant,
    matrix: &'a PackedMatrix,
}

impl<'a> GemvRef<'a> {
    /// Pairs `variant` with `matrix`; fails like [`Gemv::new`] if the CPU
    /// does not allow the variant or the matrix is not in its layout.
    pub fn new(variant: &'static Variant, matrix: &'a PackedMatrix) -> Result<GemvRef<'a>, KernelError> {
        crate::cpu::check_variant(variant.name, variant.isa)?;
        if matrix.format() != variant.format || matrix.layout() != Layout::for_variant(variant) {
            return Err(KernelError::Layout(format!(
                "{} needs {} in layout {:?}, the matrix is {} in {:?}",
                variant.name,
                variant.format,
                Layout::for_variant(variant),
                matrix.format(),
                matrix.layout()
            )));
        }
        Ok(GemvRef { variant, matrix })
    }

    /// Pairs a variant with a matrix without the checks of [`GemvRef::new`]
    /// (which cost more than a small product, so the tuner checks once per
    /// batch of calls).
    ///
    /// # Safety
    ///
    /// [`GemvRef::new`] must have accepted this variant with a matrix of the
    /// same format and layout (so the CPU allows the variant's ISA and the
    /// kernel reads the layout it was written for).
    pub(crate) unsafe fn trusted(variant: &'static Variant, matrix: &'a PackedMatrix) -> GemvRef<'a> {
        GemvRef { variant, matrix }
    }

    /// The variant.
    pub fn variant(&self) -> &'static Variant {
        self.variant
    }

    /// Whether inputs must be prepared with int8 activations.
    pub fn needs_q8(&self) -> bool {
        self.variant.activation == Activation::Q8
    }

    /// As [`Gemv::run`].
    pub fn run(
        &self,
        input: &Input,
        out: &mut [f32],
        threads: &Threads,
        partition: Partition,
    ) -> Result<(), KernelError> {
        let m = self.matrix;
        if input.k() != m.cols() {
            return Err(KernelError::Shape(format!(
                "input of {} values for a matrix of {} columns",
                input.k(),
                m.cols()
            )));
        }
        if self.needs_q8() && !input.has_q8() {
            return Err(KernelError::Invalid(format!(
                "{} needs int8 activations (prepare with q8)",
                self.variant.name
            )));
        }
        if input.columns() > 1 && self.variant.sparsity == crate::variant::Sparsity::ColumnSparse {
            return Err(KernelError::Invalid(format!("{} takes one input column", self.variant.name)));
        }
        let needed = input.columns() * m.rows();
        if out.len() < needed {
            return Err(KernelError::Shape(format!("output has {} floats, needs {needed}", out.len())));
        }
        if partition.rows_per_chunk == 0 {
            return Err(KernelError::Invalid("rows per chunk must be at least 1".into()));
        }
        let out = Out(out.as_mut_ptr());
        let stride = m.rows();
        let tiles = m.tiles();
        let per_chunk = partition.rows_per_chunk.div_ceil(m.tile_rows()).max(1);
        let kernel = self.variant.kernel;
        let call = move |range: std::ops::Range<usize>| {
            let out = out;
            let args = KernelArgs { matrix: m, input, tiles: range, out: out.0, out_stride: stride };
            // SAFETY: the matrix is packed for this variant (checked at
            // construction), the input matches it (checked above), the tile
            // range is within the matrix, the output holds `columns * rows`
            // floats of which this call writes only its own rows, and the
            // CPU supports the variant's ISA (checked at construction).
            unsafe { kernel(&args) }
        };
        let n = threads.count;
        match partition.schedule {
            _ if n == 1 => call(0..tiles),
            Schedule::Static => threads.broadcast(|t| {
                let (start, end) = (tiles * t / n, tiles * (t + 1) / n);
                if start < end {
                    call(start..end);
                }
            }),
            Schedule::Dynamic => {
                let next = std::sync::atomic::AtomicUsize::new(0);
                let chunks = tiles.div_ceil(per_chunk);
                threads.broadcast(|_| {
                    loop {
                        let chunk = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if chunk >= chunks {
                            break;
                        }
                        call(chunk * per_chunk..((chunk + 1) * per_chunk).min(tiles));
                    }
                });
            }
        }
        Ok(())
    }
}
