//! Helpers shared by the K formats: the packed 6-bit scales and mins of Q4_K
//! and Q5_K, and ports of ggml's scale searches `make_qx_quants` and
//! `make_qkx2_quants`.
//!
//! The ports keep ggml's order of f32 operations exactly (every `a * b + c`
//! stays two roundings, as in a build of `ggml-quants.c` without FMA
//! contraction, which is how ggml's portable `ggml-base` is compiled on
//! x86-64), so the quantizers that use them produce ggml's bytes.

use super::{K_SCALE_SIZE, nearest_int};

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below this is all zero.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j`
/// (`0..8`) from the 12 packed bytes.
///
/// Bytes `0..4` hold the scales of sub-blocks 0–3 in their low six bits,
/// bytes `4..8` the mins of sub-blocks 0–3; bytes `8..12` hold the low four
/// bits of the scale (low nibble) and min (high nibble) of sub-blocks 4–7,
/// whose top two bits sit in the top two bits of bytes `0..4` (scales) and
/// `4..8` (mins).
#[inline(always)]
pub(crate) fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The inverse of [`get_scale_min_k4`] for all eight sub-blocks: packs
/// 6-bit scales `ls` and mins `lm` (each `< 64`) as ggml's K quantizers do.
pub(crate) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; K_SCALE_SIZE] {
    let mut q = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        let (s, m) = (ls[j], lm[j]);
        if j < 4 {
            q[j] = s;
            q[j + 4] = m;
        } else {
            q[j + 4] = (s & 0x0F) | ((m & 0x0F) << 4);
            q[j - 4] |= (s >> 4) << 6;
            q[j] |= (m >> 4) << 6;
        }
    }
    q
}

/// ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights
/// (the case `quantize_row_q6_K_ref` uses): symmetric codes
/// `L[i] = nmax + clamp(round(x[i] / scale), -nmax, nmax - 1)` with the
/// scale chosen among 19 candidates to minimize the error weighted by
/// `x[i]^2`. Writes `L` (in `0..2 nmax`) and returns the scale.
pub(crate) fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [u8]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // The weighted sums of one candidate scale, in ggml's order of operations.
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (o, &v) in l_out.iter_mut().zip(x) {
        *o = (quant(iscale, v) + nmax) as u8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1f32 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (o, &v) in l_out.iter_mut().zip(x) {
                *o = (quant(iscale, v) + nmax) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Parameters of ggml's `make_qkx2_quants` search.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Qkx2Search {
    /// Largest code.
    pub nmax: i32,
    /// First candidate offset of the inverse scale, in code units.
    pub rmin: f32,
    /// Step between candidates.
    pub rdelta: f32,
    /// Candidates after the first: `0..=nstep`.
    pub nstep: i32,
}

/// ggml's `make_qkx2_quants` with `use_mad = false`: asymmetric codes
/// `L[i]` in `0..=nmax` with weight ≈ `scale * L[i] - the_min`, the scale
/// and min fitted by weighted least squares over `nstep + 1` candidate
/// rounding grids. Writes `L` and returns `(scale, the_min)`; `laux` is
/// scratch of `x.len()` bytes.
pub(crate) fn make_qkx2_quants(
    search: Qkx2Search,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    laux: &mut [u8],
) -> (f32, f32) {
    let Qkx2Search { nmax, rmin, rdelta, nstep } = search;
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's per-sub-block weights for the K quantizers without importance
/// matrix: `sqrt(mean(x^2)) + |x[i]|` over a 32-weight sub-block.
pub(crate) fn qkx2_weights(x: &[f32], weights: &mut [f32; 32]) {
    let mut sum_x2 = 0.0f32;
    for &v in &x[..32] {
        sum_x2 += v * v;
    }
    let av_x = (sum_x2 / 32.0).sqrt();
    for (w, &v) in weights.iter_mut().zip(&x[..32]) {
        *w = av_x + v.abs();
    }
}

/// The common first half of `quantize_row_q4_K_ref` and
/// `quantize_row_q5_K_ref`: fits every 32-weight sub-block with
/// [`make_qkx2_quants`], quantizes the sub-block scales and mins to 6 bits
/// against the super-block's `d` and `dmin`, and requantizes the weights
/// with the final scales. Returns `(d, dmin, packed scales)` (the f16
/// values already rounded) and writes one code per weight into `l`.
pub(crate) fn quantize_k_super_block(
    x: &[f32],
    search: Qkx2Search,
    l: &mut [u8; super::QK_K],
) -> (half::f16, half::f16, [u8; K_SCALE_SIZE]) {
    let mut laux = [0u8; 32];
    let mut weights = [0.0f32; 32];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        qkx2_weights(xs, &mut weights);
        let (scale, min) = make_qkx2_quants(search, xs, &weights, &mut l[32 * j..32 * j + 32], &mut laux);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        // C stores the int into a uint8_t (wrapping) before clamping to 63.
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = half::f16::from_f32(max_scale / 63.0);
    let dmin = half::f16::from_f32(max_min / 63.0);
    let nmax = search.nmax;
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let d = d.to_f32() * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed)
}
