//! x86-64 kernels: AVX2 and AVX-512 drivers over the row-slot and
//! column-major layouts, and the pieces they share.
//!
//! Everything here is `#[inline(always)]` and uses intrinsics without
//! `#[target_feature]`: it is compiled into the generated variant functions,
//! which carry the features (the pattern of memchr and pulp).

pub(crate) mod avx2;
pub(crate) mod avx512;

use std::arch::x86_64::*;

use crate::kernel::{HeaderKind, KernelArgs, KernelFormat, unit_affine};
use crate::pack::{SlotGeometry, step_code_bytes};

/// Most slots in one chunk: `lcm(4, 8 tile rows * 8 sub-blocks per unit)`.
const MAX_CHUNK_SLOTS: usize = 64;

/// Per-slot `(scale, min)` of the lo and hi halves of the sub-blocks of one
/// chunk, decoded from its headers.
pub(crate) struct ChunkScales {
    s_lo: [f32; MAX_CHUNK_SLOTS],
    m_lo: [f32; MAX_CHUNK_SLOTS],
    s_hi: [f32; MAX_CHUNK_SLOTS],
    m_hi: [f32; MAX_CHUNK_SLOTS],
}

/// The scales of one step: four slots' scale and min, for lo and hi halves
/// (equal unless the format is split).
#[derive(Copy, Clone)]
pub(crate) struct StepScales {
    pub s_lo: __m128,
    pub m_lo: __m128,
    pub s_hi: __m128,
    pub m_hi: __m128,
}

/// Whether `F`'s headers decode per step straight from memory: one f16
/// scale (and min) per 32-weight unit, in slot order.
pub(crate) const fn direct_headers<F: KernelFormat>() -> bool {
    F::UNIT == 32 && !F::SPLIT && !matches!(F::HEADER, HeaderKind::Other)
}

impl ChunkScales {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        ChunkScales {
            s_lo: [0.0; MAX_CHUNK_SLOTS],
            m_lo: [0.0; MAX_CHUNK_SLOTS],
            s_hi: [0.0; MAX_CHUNK_SLOTS],
            m_hi: [0.0; MAX_CHUNK_SLOTS],
        }
    }

    /// Decodes the headers of a chunk of `slots` slots (`units` units of
    /// each of the `R` rows) at `headers`, unless `F` decodes per step.
    ///
    /// # Safety
    /// `headers` points at the chunk's `units * R * UNIT_HEADER` header bytes.
    #[inline(always)]
    pub(crate) unsafe fn prepare<F: KernelFormat, const R: usize>(
        &mut self,
        headers: *const u8,
        units: usize,
        slots: usize,
    ) {
        if direct_headers::<F>() {
            return;
        }
        // SAFETY: the caller guarantees the header bytes.
        let headers = unsafe { std::slice::from_raw_parts(headers, units * R * F::UNIT_HEADER) };
        let geometry = SlotGeometry::of::<F>(R);
        for g in 0..geometry.chunk_slots {
            if g >= slots {
                self.s_lo[g] = 0.0;
                self.m_lo[g] = 0.0;
                self.s_hi[g] = 0.0;
                self.m_hi[g] = 0.0;
                continue;
            }
            let (row, sub) = (g % R, g / R);
            let (unit, sub) = (sub / F::SUBS_PER_UNIT, sub % F::SUBS_PER_UNIT);
            let header = &headers[(unit * R + row) * F::UNIT_HEADER..][..F::UNIT_HEADER];
            let (s, m) = unit_affine::<F>(header, sub, 0);
            self.s_lo[g] = s;
            self.m_lo[g] = m;
            let (s, m) = if F::SPLIT { unit_affine::<F>(header, sub, 1) } else { (s, m) };
            self.s_hi[g] = s;
            self.m_hi[g] = m;
        }
    }

    /// The scales of step `step` of the chunk (`slots` of its four slots
    /// real), whose headers are at `headers`.
    ///
    /// # Safety
    /// `headers` points at the chunk's header bytes, followed by at least 16
    /// readable bytes; the CPU has F16C.
    #[inline(always)]
    pub(crate) unsafe fn step<F: KernelFormat>(&self, headers: *const u8, step: usize, slots: usize) -> StepScales {
        // SAFETY: F16C and SSE are part of every x86 ISA we run on; the
        // pointers stay within the chunk's headers, the step's codes after
        // them, or these arrays.
        unsafe {
            if direct_headers::<F>() {
                let at = headers.add(4 * step * F::UNIT_HEADER);
                let (s, m) = match F::HEADER {
                    HeaderKind::Scale { offset } => {
                        let s = _mm_cvtph_ps(_mm_loadl_epi64(at.cast()));
                        (s, _mm_mul_ps(s, _mm_set1_ps(-offset)))
                    }
                    _ => {
                        let v = _mm256_cvtph_ps(_mm_loadu_si128(at.cast()));
                        let (a, b) = (_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                        (_mm_shuffle_ps::<0b10_00_10_00>(a, b), _mm_shuffle_ps::<0b11_01_11_01>(a, b))
                    }
                };
                let (s, m) = if slots < 4 {
                    let keep = lane_mask(slots);
                    (_mm_and_ps(s, keep), _mm_and_ps(m, keep))
                } else {
                    (s, m)
                };
                StepScales { s_lo: s, m_lo: m, s_hi: s, m_hi: m }
            } else {
                let at = 4 * step;
                StepScales {
                    s_lo: _mm_loadu_ps(self.s_lo.as_ptr().add(at)),
                    m_lo: _mm_loadu_ps(self.m_lo.as_ptr().add(at)),
                    s_hi: _mm_loadu_ps(self.s_hi.as_ptr().add(at)),
                    m_hi: _mm_loadu_ps(self.m_hi.as_ptr().add(at)),
                }
            }
        }
    }
}

/// All-ones in the first `n` of four lanes.
#[inline(always)]
pub(crate) unsafe fn lane_mask(n: usize) -> __m128 {
    // SAFETY: SSE2 is baseline on x86-64.
    unsafe {
        let idx = _mm_set_epi32(3, 2, 1, 0);
        _mm_castsi128_ps(_mm_cmplt_epi32(idx, _mm_set1_epi32(n as i32)))
    }
}

/// Per-slot values of a per-sub-block array (`d`, sums) for the step whose
/// first slot is `g`: slot `j` is sub-block `(g + j) / R`.
///
/// # Safety
/// `values` is readable at `(g / R)..(g / R + 4)`.
#[inline(always)]
pub(crate) unsafe fn slot_values<const R: usize>(values: *const f32, g: usize) -> __m128 {
    // SAFETY: the caller guarantees the reads.
    unsafe {
        match R {
            1 => _mm_loadu_ps(values.add(g)),
            2 => {
                let pair = _mm_castpd_ps(_mm_load_sd(values.add(g / 2).cast()));
                _mm_unpacklo_ps(pair, pair)
            }
            _ => _mm_set1_ps(*values.add(g / R)),
        }
    }
}

/// Per-slot values of a per-half-sub-block array (`sum16`): `(lo, hi)`.
///
/// # Safety
/// `values` is readable at `2 * (g / R)..2 * (g / R) + 8`.
#[inline(always)]
pub(crate) unsafe fn slot_half_values<const R: usize>(values: *const f32, g: usize) -> (__m128, __m128) {
    // SAFETY: the caller guarantees the reads.
    unsafe {
        match R {
            1 => {
                let (a, b) = (_mm_loadu_ps(values.add(2 * g)), _mm_loadu_ps(values.add(2 * g + 4)));
                (_mm_shuffle_ps::<0b10_00_10_00>(a, b), _mm_shuffle_ps::<0b11_01_11_01>(a, b))
            }
            2 => {
                let v = _mm_loadu_ps(values.add(g));
                (_mm_shuffle_ps::<0b10_10_00_00>(v, v), _mm_shuffle_ps::<0b11_11_01_01>(v, v))
            }
            _ => {
                let k = 2 * (g / R);
                (_mm_set1_ps(*values.add(k)), _mm_set1_ps(*values.add(k + 1)))
            }
        }
    }
}

/// How far ahead of the kernel (in bytes of the weight stream) software
/// prefetches are issued. The hardware prefetchers alone leave a single
/// sequential stream well short of DRAM bandwidth on the machines measured
/// (see `kernels/BENCHMARKS.md`).
pub(crate) const PREFETCH_DISTANCE: usize = 4096;

/// Prefetches the cache lines of `bytes` bytes starting at `p + PREFETCH_DISTANCE`.
#[inline(always)]
unsafe fn prefetch_ahead(p: *const u8, bytes: usize) {
    let mut at = 0;
    while at < bytes {
        // SAFETY: prefetching is a hint and never faults, even past the end
        // of the buffer.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_DISTANCE + at).cast()) };
        at += 64;
    }
}

/// [`slot_values`] for integer arrays.
///
/// # Safety
/// As [`slot_values`].
#[inline(always)]
pub(crate) unsafe fn slot_ints<const R: usize>(values: *const i32, g: usize) -> __m128i {
    // SAFETY: the caller guarantees the reads.
    unsafe {
        match R {
            1 => _mm_loadu_si128(values.add(g).cast()),
            2 => {
                let pair = _mm_loadl_epi64(values.add(g / 2).cast());
                _mm_unpacklo_epi32(pair, pair)
            }
            _ => _mm_set1_epi32(*values.add(g / R)),
        }
    }
}

/// [`slot_half_values`] for integer arrays.
///
/// # Safety
/// As [`slot_half_values`].
#[inline(always)]
pub(crate) unsafe fn slot_half_ints<const R: usize>(values: *const i32, g: usize) -> (__m128i, __m128i) {
    // SAFETY: the caller guarantees the reads.
    unsafe {
        match R {
            1 => {
                let (a, b) = (_mm_loadu_si128(values.add(2 * g).cast()), _mm_loadu_si128(values.add(2 * g + 4).cast()));
                let even =
                    _mm_unpacklo_epi64(_mm_shuffle_epi32::<0b10_00_10_00>(a), _mm_shuffle_epi32::<0b10_00_10_00>(b));
                let odd =
                    _mm_unpacklo_epi64(_mm_shuffle_epi32::<0b11_01_11_01>(a), _mm_shuffle_epi32::<0b11_01_11_01>(b));
                (even, odd)
            }
            2 => {
                let v = _mm_loadu_si128(values.add(g).cast());
                (_mm_shuffle_epi32::<0b10_10_00_00>(v), _mm_shuffle_epi32::<0b11_11_01_01>(v))
            }
            _ => {
                let k = 2 * (g / R);
                (_mm_set1_epi32(*values.add(k)), _mm_set1_epi32(*values.add(k + 1)))
            }
        }
    }
}

/// Walks the steps of one tile of `F`'s row-slot layout with `R` rows,
/// decoding each chunk's headers, and calls `step(codes, first slot, real
/// slots, scales)` for each step. Full chunks run in a loop whose shape is
/// fixed at compile time; a partial last chunk (possible only when `R < 4`)
/// follows.
///
/// # Safety
/// `tile` points at a whole tile with `subs` sub-blocks per row; the CPU has
/// F16C.
#[inline(always)]
pub(crate) unsafe fn walk_tile<F: KernelFormat, const R: usize, K: StepKernel>(
    tile: *const u8,
    subs: usize,
    kernel: &mut K,
) {
    let geometry = SlotGeometry::of::<F>(R);
    let chunk_slots = geometry.chunk_slots;
    let steps = chunk_slots / 4;
    let step_bytes = step_code_bytes(F::CODE_BITS, 4);
    let header_bytes = geometry.chunk_units * R * F::UNIT_HEADER;
    let chunk_bytes = header_bytes + steps * step_bytes;
    let total = R * subs;
    let full = total / chunk_slots;
    let mut scales = ChunkScales::new();
    let mut p = tile;
    // SAFETY: the offsets follow the layout's own arithmetic (see `pack`).
    unsafe {
        for chunk in 0..full {
            prefetch_ahead(p, chunk_bytes);
            scales.prepare::<F, R>(p, geometry.chunk_units, chunk_slots);
            let codes = p.add(header_bytes);
            for i in 0..steps {
                let sc = scales.step::<F>(p, i, 4);
                kernel.step(codes.add(i * step_bytes), chunk * chunk_slots + 4 * i, 4, sc);
            }
            p = p.add(chunk_bytes);
        }
        let rest = total - full * chunk_slots;
        if rest > 0 {
            let units = rest / (R * F::SUBS_PER_UNIT);
            scales.prepare::<F, R>(p, units, rest);
            let headers = p;
            let mut codes = p.add(units * R * F::UNIT_HEADER);
            for i in 0..rest.div_ceil(4) {
                let slots = (rest - 4 * i).min(4);
                let sc = scales.step::<F>(headers, i, slots);
                kernel.step(codes, full * chunk_slots + 4 * i, slots, sc);
                codes = codes.add(step_code_bytes(F::CODE_BITS, slots));
            }
        }
    }
}

/// The work of one step, given its codes, first slot, real slots and scales.
pub(crate) trait StepKernel {
    /// # Safety
    /// `codes` points at the step's code bytes; the CPU has the driver's ISA.
    unsafe fn step(&mut self, codes: *const u8, g: usize, slots: usize, scales: StepScales);
}

/// Writes the outputs of the `R` rows of one tile (those that exist) for
/// input column `c`.
#[inline(always)]
pub(crate) fn write_rows<const R: usize>(args: &KernelArgs<'_>, tile: usize, c: usize, sums: &[f32; 8]) {
    let rows = args.matrix.rows();
    for (r, &s) in sums.iter().enumerate().take(R) {
        let row = tile * R + r;
        if row < rows {
            // SAFETY: the `KernelArgs` contract makes this output element writable.
            unsafe { *args.out.add(c * args.out_stride + row) = s };
        }
    }
}
