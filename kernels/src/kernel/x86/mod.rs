//! x86-64 kernels: AVX2 and AVX-512 drivers over the row-slot and
//! column-major layouts, and the pieces they share.
//!
//! Everything here is `#[inline(always)]` and uses intrinsics without
//! `#[target_feature]`: it is compiled into the generated variant functions,
//! which carry the features (the pattern of memchr and pulp).

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod colsparse;
pub(crate) mod interleaved;
pub(crate) mod interleaved_avx2;

use std::arch::x86_64::*;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::kernel::{HeaderKind, KernelArgs, KernelFormat, unit_affine};
use crate::pack::{PackedMatrix, SlotGeometry, step_code_bytes};

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
    F::UNIT == 32 && !F::SPLIT && matches!(F::HEADER, HeaderKind::Scale { .. } | HeaderKind::ScaleMin)
}

impl ChunkScales {
    #[inline(always)]
    pub(crate) const fn new() -> Self {
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
    /// `headers` points at the chunk's `units * R * UNIT_HEADER` header
    /// bytes, followed by at least 16 readable bytes; the CPU has AVX2.
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
        if matches!(F::HEADER, HeaderKind::K4 | HeaderKind::K6) {
            // SAFETY: forwarded from the caller (K formats have one unit per chunk).
            unsafe { self.prepare_super_blocks::<F, R>(headers) };
            return;
        }
        let nu = F::SUBS_PER_UNIT;
        let mut unit = UnitScales::default();
        for u in 0..units {
            for r in 0..R {
                // SAFETY: the unit's header is within the chunk's headers.
                unsafe { unit.decode::<F>(headers.add((u * R + r) * F::UNIT_HEADER)) };
                for j in 0..nu {
                    let g = (u * nu + j) * R + r;
                    self.s_lo[g] = unit.s_lo[j];
                    self.m_lo[g] = unit.m_lo[j];
                    if F::SPLIT {
                        self.s_hi[g] = unit.s_hi[j];
                        self.m_hi[g] = unit.m_hi[j];
                    }
                }
            }
        }
        // Slots of a partial last step carry zero scales.
        let end = slots.div_ceil(4) * 4;
        for g in slots..end {
            self.s_lo[g] = 0.0;
            self.m_lo[g] = 0.0;
            self.s_hi[g] = 0.0;
            self.m_hi[g] = 0.0;
        }
    }

    /// [`prepare`](Self::prepare) for the K formats: `R` super-block
    /// headers, decoded eight sub-blocks at a time and transposed into slot
    /// order in registers.
    #[inline(always)]
    unsafe fn prepare_super_blocks<F: KernelFormat, const R: usize>(&mut self, headers: *const u8) {
        // SAFETY: the caller guarantees the header reads and AVX2.
        unsafe {
            let zero = _mm256_setzero_ps();
            let (mut s_lo, mut m_lo, mut s_hi, mut m_hi) = ([zero; 8], [zero; 8], [zero; 8], [zero; 8]);
            for r in 0..R {
                (s_lo[r], m_lo[r], s_hi[r], m_hi[r]) = super_block_scales::<F>(headers.add(r * F::UNIT_HEADER));
            }
            to_slot_order::<R>(&s_lo, &mut self.s_lo);
            to_slot_order::<R>(&m_lo, &mut self.m_lo);
            if F::SPLIT {
                to_slot_order::<R>(&s_hi, &mut self.s_hi);
                to_slot_order::<R>(&m_hi, &mut self.m_hi);
            }
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
                let (s_lo, m_lo) = (_mm_loadu_ps(self.s_lo.as_ptr().add(at)), _mm_loadu_ps(self.m_lo.as_ptr().add(at)));
                if F::SPLIT {
                    let s_hi = _mm_loadu_ps(self.s_hi.as_ptr().add(at));
                    StepScales { s_lo, m_lo, s_hi, m_hi: _mm_loadu_ps(self.m_hi.as_ptr().add(at)) }
                } else {
                    StepScales { s_lo, m_lo, s_hi: s_lo, m_hi: m_lo }
                }
            }
        }
    }
}

/// The `(scale, min)` of the sub-blocks of one unit, lo and hi halves.
#[derive(Default)]
struct UnitScales {
    s_lo: [f32; 8],
    m_lo: [f32; 8],
    s_hi: [f32; 8],
    m_hi: [f32; 8],
}

impl UnitScales {
    /// Decodes one unit header (`F::UNIT_HEADER` bytes at `h`, followed by
    /// at least 16 readable bytes).
    #[inline(always)]
    unsafe fn decode<F: KernelFormat>(&mut self, h: *const u8) {
        // SAFETY: the caller guarantees the reads and AVX2 + F16C.
        unsafe {
            let header = std::slice::from_raw_parts(h, F::UNIT_HEADER);
            for j in 0..F::SUBS_PER_UNIT {
                (self.s_lo[j], self.m_lo[j]) = unit_affine::<F>(header, j, 0);
                if F::SPLIT {
                    (self.s_hi[j], self.m_hi[j]) = unit_affine::<F>(header, j, 1);
                }
            }
        }
    }
}
/// The scales and mins of the eight sub-blocks of a K-format super-block
/// whose header is at `h` (followed by at least 16 readable bytes):
/// `(s_lo, m_lo, s_hi, m_hi)`.
#[inline(always)]
unsafe fn super_block_scales<F: KernelFormat>(h: *const u8) -> (__m256, __m256, __m256, __m256) {
    // SAFETY: the caller guarantees the reads and AVX2 + F16C.
    unsafe {
        if matches!(F::HEADER, HeaderKind::K4) {
            let (sc, m) = k4_scales_mins(h.add(4));
            let s = _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(h)), sc);
            let m = _mm256_mul_ps(_mm256_set1_ps(-f16_to_f32(h.add(2))), m);
            (s, m, s, m)
        } else {
            // Q6_K: i8 scales of 16-weight halves (even ones lo, odd ones hi), offset 32.
            let sc = _mm_loadu_si128(h.cast());
            let split = _mm_shuffle_epi8(sc, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
            let d = _mm256_set1_ps(f16_to_f32(h.add(16)));
            let s_lo = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(split)));
            let s_hi = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(split))));
            let offset = _mm256_set1_ps(-32.0);
            (s_lo, _mm256_mul_ps(offset, s_lo), s_hi, _mm256_mul_ps(offset, s_hi))
        }
    }
}

/// Stores eight values of each of `R` rows (`rows[r][j]` = row `r`,
/// sub-block `j`) in slot order: slot `g` = row `g % R`, sub-block `g / R`.
#[inline(always)]
unsafe fn to_slot_order<const R: usize>(rows: &[__m256; 8], out: &mut [f32; MAX_CHUNK_SLOTS]) {
    // SAFETY: AVX, guaranteed by the caller; the stores stay within `out`
    // (at most 8 x 8 = 64 values).
    unsafe {
        let o = out.as_mut_ptr();
        match R {
            1 => _mm256_storeu_ps(o, rows[0]),
            2 => {
                let a = _mm256_unpacklo_ps(rows[0], rows[1]);
                let b = _mm256_unpackhi_ps(rows[0], rows[1]);
                _mm256_storeu_ps(o, _mm256_permute2f128_ps::<0x20>(a, b));
                _mm256_storeu_ps(o.add(8), _mm256_permute2f128_ps::<0x31>(a, b));
            }
            _ => {
                // Four rows at a time: u[j] holds sub-blocks j (low half) and j + 4 (high half).
                for group in 0..R / 4 {
                    let r = &rows[4 * group..4 * group + 4];
                    let (t0, t1) = (_mm256_unpacklo_ps(r[0], r[1]), _mm256_unpackhi_ps(r[0], r[1]));
                    let (t2, t3) = (_mm256_unpacklo_ps(r[2], r[3]), _mm256_unpackhi_ps(r[2], r[3]));
                    let u = [
                        _mm256_shuffle_ps::<0b01_00_01_00>(t0, t2),
                        _mm256_shuffle_ps::<0b11_10_11_10>(t0, t2),
                        _mm256_shuffle_ps::<0b01_00_01_00>(t1, t3),
                        _mm256_shuffle_ps::<0b11_10_11_10>(t1, t3),
                    ];
                    // Sub-block j of this group is step j * R / 4 + group.
                    for (j, uj) in u.iter().enumerate() {
                        _mm_storeu_ps(o.add(4 * (j * R / 4 + group)), _mm256_castps256_ps128(*uj));
                        _mm_storeu_ps(o.add(4 * ((j + 4) * R / 4 + group)), _mm256_extractf128_ps::<1>(*uj));
                    }
                }
            }
        }
    }
}

/// The f16 at `p` as f32 (F16C).
#[inline(always)]
unsafe fn f16_to_f32(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes and F16C.
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<u16>().read_unaligned() as i32))) }
}

/// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block from its 12
/// packed bytes at `q` (ggml's `get_scale_min_k4` for all eight at once):
///
/// - `sc[j] = q[j] & 63`, `m[j] = q[j + 4] & 63` for `j < 4`;
/// - `sc[j] = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4`,
///   `m[j] = (q[j + 4] >> 4) | (q[j] >> 6) << 4` for `j >= 4`.
///
/// # Safety
/// 16 readable bytes at `q`; AVX2.
#[inline(always)]
unsafe fn k4_scales_mins(q: *const u8) -> (__m256, __m256) {
    // SAFETY: the caller guarantees the read and AVX2.
    unsafe {
        let q = _mm_loadu_si128(q.cast());
        // a = [q0..q3 (sc0-3), q4..q7 (m0-3), q8..q11 (sc4-7 low), q8..q11 (m4-7 low)]
        let a = _mm_shuffle_epi8(q, _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 8, 9, 10, 11));
        // b = [0 x 8, q0..q3 (sc4-7 high), q4..q7 (m4-7 high)]
        let b = _mm_shuffle_epi8(q, _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 2, 3, 4, 5, 6, 7));
        let low = _mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 63, 63, 63, 63, 15, 15, 15, 15, 0, 0, 0, 0));
        let nib =
            _mm_and_si128(_mm_srli_epi16::<4>(a), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15));
        let high = _mm_srli_epi16::<2>(_mm_and_si128(b, _mm_set1_epi8(0xC0u8 as i8)));
        let v = _mm_or_si128(_mm_or_si128(low, nib), high);
        // v = [sc0-3, m0-3, sc4-7, m4-7] -> [sc0-7, m0-7]
        let v = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15));
        (_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(v))))
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

/// The prefetch distance of this process, once resolved (`usize::MAX`: not yet).
static RESOLVED_PREFETCH: AtomicUsize = AtomicUsize::new(usize::MAX);

/// How far ahead of the kernel (in bytes of the weight stream) software
/// prefetches are issued, 0 for not at all: [`crate::cpu::prefetch_distance`]
/// (the CPU's default or `ASDSL_PREFETCH`), resolved once; an invalid
/// `ASDSL_PREFETCH` means the default here (the CLI refuses it up front).
#[inline(always)]
fn prefetch_distance() -> usize {
    match RESOLVED_PREFETCH.load(Ordering::Relaxed) {
        usize::MAX => resolve_prefetch(),
        distance => distance,
    }
}

#[cold]
fn resolve_prefetch() -> usize {
    let distance = crate::cpu::prefetch_distance()
        .unwrap_or_else(|_| crate::cpu::default_prefetch_distance(&crate::cpu::detect().vendor));
    RESOLVED_PREFETCH.store(distance, Ordering::Relaxed);
    distance
}

/// Prefetches the cache lines of `bytes` bytes starting at `p` plus the
/// [`prefetch_distance`] (nothing when it is 0).
#[inline(always)]
unsafe fn prefetch_ahead(p: *const u8, bytes: usize) {
    let distance = prefetch_distance();
    if distance == 0 {
        return;
    }
    let mut at = 0;
    while at < bytes {
        // SAFETY: prefetching is a hint and never faults, even past the end
        // of the buffer.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(distance + at).cast()) };
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

/// Walks the steps of `N` tiles of `F`'s row-slot layout with `R` rows in
/// lockstep, decoding each chunk's headers, and calls `kernels[n].step(codes,
/// first slot, real slots, scales)` for each step of tile `n`. Full chunks
/// run in a loop whose shape is fixed at compile time; a partial last chunk
/// (possible only when `R < 4`) follows.
///
/// Walking two tiles at once reads two independent sequential streams,
/// which a single core pulls from DRAM faster than one (see
/// `kernels/BENCHMARKS.md`).
///
/// Returns the `N` copies of `kernel`, one per tile, holding their sums.
/// `scales` holds the decoded headers of each tile's current chunk (the
/// first `N`), made once per call of [`drive`] rather than per tile: every
/// tile of a call writes the same entries, each chunk before it reads them,
/// so what an earlier tile left is never read.
///
/// # Safety
/// `m` is packed in `F`'s row-slot layout with `R` rows per tile, and each
/// of `tiles` is below `m.tiles()`; the CPU has AVX2 and F16C (and AVX-512
/// if `K::AVX512`).
#[inline(always)]
pub(crate) unsafe fn walk_tiles<F: KernelFormat, const R: usize, K: StepKernel + Copy, const N: usize>(
    m: &PackedMatrix,
    tiles: [usize; N],
    kernel: K,
    scales: &mut [ChunkScales; 2],
) -> [K; N] {
    const { assert!(N <= 2, "one chunk's scales per tile") };
    let mut kernels = [kernel; N];
    let mut starts = [std::ptr::null(); N];
    for (start, &tile) in starts.iter_mut().zip(&tiles) {
        // SAFETY: the tile lies within the packed data (the caller's guarantee).
        *start = unsafe { m.data().as_ptr().add(tile * m.tile_bytes()) };
    }
    let tiles = starts;
    let subs = m.padded_cols() / 32;
    let geometry = SlotGeometry::of::<F>(R);
    let chunk_slots = geometry.chunk_slots;
    let steps = chunk_slots / 4;
    let step_bytes = step_code_bytes(F::CODE_BITS, 4);
    let header_bytes = geometry.chunk_units * R * F::UNIT_HEADER;
    let chunk_bytes = header_bytes + steps * step_bytes;
    let total = R * subs;
    let full = total / chunk_slots;
    // SAFETY: the offsets follow the layout's own arithmetic (see `pack`).
    unsafe {
        for chunk in 0..full {
            let at = chunk * chunk_bytes;
            for n in 0..N {
                let p = tiles[n].add(at);
                prefetch_ahead(p, chunk_bytes);
                if K::AVX512 && R >= 4 && matches!(F::HEADER, HeaderKind::K4 | HeaderKind::K6) {
                    scales[n].prepare_super_blocks_avx512::<F, R>(p);
                } else {
                    scales[n].prepare::<F, R>(p, geometry.chunk_units, chunk_slots);
                }
            }
            for i in 0..steps {
                for n in 0..N {
                    let p = tiles[n].add(at);
                    let sc = scales[n].step::<F>(p, i, 4);
                    kernels[n].step(p.add(header_bytes + i * step_bytes), chunk * chunk_slots + 4 * i, 4, sc);
                }
            }
        }
        let rest = total - full * chunk_slots;
        if rest > 0 {
            let units = rest / (R * F::SUBS_PER_UNIT);
            for n in 0..N {
                let headers = tiles[n].add(full * chunk_bytes);
                scales[n].prepare::<F, R>(headers, units, rest);
                let mut codes = headers.add(units * R * F::UNIT_HEADER);
                for i in 0..rest.div_ceil(4) {
                    let slots = (rest - 4 * i).min(4);
                    let sc = scales[n].step::<F>(headers, i, slots);
                    kernels[n].step(codes, full * chunk_slots + 4 * i, slots, sc);
                    codes = codes.add(step_code_bytes(F::CODE_BITS, slots));
                }
            }
        }
    }
    kernels
}

/// Computes tiles for a group of `C` input columns (or one).
pub(crate) trait TileRunner {
    /// Computes the tiles `tiles` (walked in lockstep) for the input columns
    /// starting at `c0`, and writes their outputs.
    ///
    /// # Safety
    /// The [`KernelArgs`] contract; the tiles and columns are in range.
    /// `scales` is the walk's buffer for decoded headers ([`walk_tiles`]).
    unsafe fn run<const N: usize>(args: &KernelArgs<'_>, tiles: [usize; N], c0: usize, scales: &mut [ChunkScales; 2]);
}

/// Runs every tile of the call for every input column: columns in groups of
/// `C` (`Full`), the remainder one at a time (`Rest`); tiles in pairs taken
/// from the two halves of the range, so that each pair reads two distant
/// streams, and a last odd tile alone.
///
/// # Safety
/// The [`KernelArgs`] contract.
#[inline(always)]
pub(crate) unsafe fn drive<Full: TileRunner, Rest: TileRunner, const C: usize>(args: &KernelArgs<'_>) {
    let columns = args.input.columns();
    let (start, end) = (args.tiles.start, args.tiles.end);
    let half = (end - start) / 2;
    // Made once per call, not per tile pair ([`walk_tiles`]): a `memset` per
    // pair cost the interleaved layout's Q4_K kernel, which had the same
    // habit, about a sixth of its 1-thread speed (`kernels/BENCHMARKS.md`).
    let mut scales = [const { ChunkScales::new() }; 2];
    // SAFETY: forwarded contract; every tile and column group is in range.
    unsafe {
        for i in 0..half {
            let tiles = [start + i, start + half + i];
            let mut c0 = 0;
            while c0 < columns {
                if columns - c0 >= C {
                    Full::run(args, tiles, c0, &mut scales);
                    c0 += C;
                } else {
                    Rest::run(args, tiles, c0, &mut scales);
                    c0 += 1;
                }
            }
        }
        for tile in start + 2 * half..end {
            let mut c0 = 0;
            while c0 < columns {
                if columns - c0 >= C {
                    Full::run(args, [tile], c0, &mut scales);
                    c0 += C;
                } else {
                    Rest::run(args, [tile], c0, &mut scales);
                    c0 += 1;
                }
            }
        }
    }
}

/// The work of one step, given its codes, first slot, real slots and scales.
pub(crate) trait StepKernel {
    /// Whether the driver runs with AVX-512, so that chunk headers may be
    /// decoded with it.
    const AVX512: bool = false;

    /// # Safety
    /// `codes` points at the step's code bytes; the CPU has the driver's ISA.
    unsafe fn step(&mut self, codes: *const u8, g: usize, slots: usize, scales: StepScales);
}

/// Writes the outputs of the `R` rows of one tile (those that exist) for
/// input column `c`: `sums[r]` is row `r` of the tile (at least `R` values).
#[inline(always)]
pub(crate) fn write_rows<const R: usize>(args: &KernelArgs<'_>, tile: usize, c: usize, sums: &[f32]) {
    let rows = args.matrix.rows();
    for (r, &s) in sums.iter().enumerate().take(R) {
        let row = tile * R + r;
        if row < rows {
            // SAFETY: the `KernelArgs` contract makes this output element writable.
            unsafe { *args.out.add(c * args.out_stride + row) = s };
        }
    }
}
