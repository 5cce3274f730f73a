//! Fused GATv2 kernels for the CPU: plain Rust, rayon over destination (forward, backward
//! pass 1) or source rows (backward pass 2). Per edge only `[E, H]` scalars are stored (the
//! attention weights and their score gradients); the `[E, H, C]` terms are recomputed where
//! they are needed.
//!
//! Layout: `xl` is `[N_src, H, C]`, `xr` `[N_dst, H, C]`, `att` `[H, C]`, all row-major;
//! edges are in the destination-sorted order of [`Csr`].

use rayon::prelude::*;
use segger_graph::csr::{group_by_key, Csr};

use super::{NEGATIVE_SLOPE, SOFTMAX_EPS};

/// The destination-sorted edges grouped by source: the outgoing edges of source `j` are
/// `row_ptr[j]..row_ptr[j + 1]` of `edge` (positions in the destination-sorted order) and
/// `dst` (their destinations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrcIndex {
    /// Segment boundaries, length `N_src + 1`.
    pub row_ptr: Vec<usize>,
    /// Position of the edge in the destination-sorted order.
    pub edge: Vec<u32>,
    /// Destination of the edge.
    pub dst: Vec<u32>,
}

impl SrcIndex {
    /// Groups the edges of `csr` by source (`num_src` sources).
    pub fn new(csr: &Csr, num_src: usize) -> Self {
        let (row_ptr, edge) = group_by_key(csr.num_edges(), num_src, |k| csr.src[k] as usize);
        let dst_of = csr.dst_of_sorted();
        let dst = edge.iter().map(|&k| dst_of[k as usize]).collect();
        Self { row_ptr, edge, dst }
    }
}

#[inline(always)]
fn lrelu(z: f32) -> f32 {
    if z > 0.0 {
        z
    } else {
        NEGATIVE_SLOPE * z
    }
}

#[inline(always)]
fn lrelu_grad(z: f32) -> f32 {
    if z > 0.0 {
        1.0
    } else {
        NEGATIVE_SLOPE
    }
}

/// Lanes of the manual reductions below: float sums are not reassociated by the compiler, so
/// independent accumulators are what lets it vectorise them.
const LANES: usize = 8;

/// Score of one edge and head: `Σ_c att[c]·LeakyReLU(xl[c] + xr[c])`.
#[inline(always)]
fn score(xl: &[f32], xr: &[f32], att: &[f32]) -> f32 {
    let n = att.len();
    let (xl, xr) = (&xl[..n], &xr[..n]);
    let mut acc = [0f32; LANES];
    let split = n - n % LANES;
    for ((a, l), r) in att[..split]
        .chunks_exact(LANES)
        .zip(xl[..split].chunks_exact(LANES))
        .zip(xr[..split].chunks_exact(LANES))
    {
        for k in 0..LANES {
            acc[k] += a[k] * lrelu(l[k] + r[k]);
        }
    }
    let mut tail = 0f32;
    for c in split..n {
        tail += att[c] * lrelu(xl[c] + xr[c]);
    }
    acc.iter().sum::<f32>() + tail
}

/// Dot product with lane accumulators.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let b = &b[..n];
    let mut acc = [0f32; LANES];
    let split = n - n % LANES;
    for (x, y) in a[..split]
        .chunks_exact(LANES)
        .zip(b[..split].chunks_exact(LANES))
    {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0f32;
    for c in split..n {
        tail += a[c] * b[c];
    }
    acc.iter().sum::<f32>() + tail
}

/// `out += w * x`.
#[inline(always)]
fn axpy(out: &mut [f32], w: f32, x: &[f32]) {
    let x = &x[..out.len()];
    for (o, v) in out.iter_mut().zip(x) {
        *o += w * v;
    }
}

/// Splits `v` into consecutive mutable segments of `row_ptr[i+1] - row_ptr[i]` rows of
/// `width` values each.
fn segments_mut<'a>(mut v: &'a mut [f32], row_ptr: &[usize], width: usize) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(row_ptr.len().saturating_sub(1));
    for w in row_ptr.windows(2) {
        let (head, tail) = v.split_at_mut((w[1] - w[0]) * width);
        out.push(head);
        v = tail;
    }
    out
}

/// Fused forward. Returns `out` `[N_dst, H, C]` (0 for destinations without edges) and the
/// attention weights `[E, H]`.
pub fn forward(
    xl: &[f32],
    xr: &[f32],
    att: &[f32],
    h: usize,
    c: usize,
    csr: &Csr,
) -> (Vec<f32>, Vec<f32>) {
    let hc = h * c;
    let nd = csr.num_dst();
    let mut out = vec![0f32; nd * hc];
    let mut alpha = vec![0f32; csr.num_edges() * h];
    let segs = segments_mut(&mut alpha, &csr.row_ptr, h);
    out.par_chunks_mut(hc.max(1))
        .zip(segs)
        .enumerate()
        .with_min_len(16)
        .for_each(|(i, (out_i, alpha_i))| {
            let start = csr.row_ptr[i];
            let deg = csr.row_ptr[i + 1] - start;
            if deg == 0 {
                return;
            }
            let xr_i = &xr[i * hc..(i + 1) * hc];
            // Edge-major loops: each source row is fetched once per pass, all heads at once.
            let mut m = vec![f32::NEG_INFINITY; h];
            for k in 0..deg {
                let j = csr.src[start + k] as usize;
                let xl_j = &xl[j * hc..(j + 1) * hc];
                for hh in 0..h {
                    let o = hh * c;
                    let e = score(&xl_j[o..o + c], &xr_i[o..o + c], &att[o..o + c]);
                    alpha_i[k * h + hh] = e;
                    m[hh] = m[hh].max(e);
                }
            }
            for hh in 0..h {
                let mut sum = 0f32;
                for k in 0..deg {
                    let p = (alpha_i[k * h + hh] - m[hh]).exp();
                    alpha_i[k * h + hh] = p;
                    sum += p;
                }
                let denom = sum + SOFTMAX_EPS;
                for k in 0..deg {
                    alpha_i[k * h + hh] /= denom;
                }
            }
            for k in 0..deg {
                let j = csr.src[start + k] as usize;
                let xl_j = &xl[j * hc..(j + 1) * hc];
                for hh in 0..h {
                    let o = hh * c;
                    axpy(&mut out_i[o..o + c], alpha_i[k * h + hh], &xl_j[o..o + c]);
                }
            }
        });
    (out, alpha)
}

/// Fused backward. Given the output gradient `grad` `[N_dst, H, C]` and the forward's
/// attention weights, returns the gradients of `xl`, `xr` and `att`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    grad: &[f32],
    xl: &[f32],
    xr: &[f32],
    att: &[f32],
    alpha: &[f32],
    h: usize,
    c: usize,
    csr: &Csr,
    by_src: &SrcIndex,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let hc = h * c;
    let nd = csr.num_dst();
    let ns = by_src.row_ptr.len() - 1;
    // Pass 1, per destination: score gradients de [E, H], dxr and datt.
    let mut de = vec![0f32; csr.num_edges() * h];
    let mut gxr = vec![0f32; nd * hc];
    let segs = segments_mut(&mut de, &csr.row_ptr, h);
    // Destinations are processed in fixed blocks; each block's contribution to datt is summed
    // separately and the partial sums are added in block order, so the result does not depend
    // on how rayon schedules the work (runs are reproducible).
    const BLOCK: usize = 32;
    let mut seg_blocks: Vec<Vec<&mut [f32]>> = Vec::new();
    let mut segs = segs.into_iter();
    loop {
        let b: Vec<&mut [f32]> = segs.by_ref().take(BLOCK).collect();
        if b.is_empty() {
            break;
        }
        seg_blocks.push(b);
    }
    let partials: Vec<Vec<f32>> = gxr
        .par_chunks_mut((hc * BLOCK).max(1))
        .zip(seg_blocks)
        .enumerate()
        .map(|(blk, (gxr_blk, de_blk))| {
            let mut gatt = vec![0f32; hc];
            for (off, (gxr_i, de_i)) in gxr_blk.chunks_mut(hc.max(1)).zip(de_blk).enumerate() {
                let i = blk * BLOCK + off;
                backward_row(
                    i, gxr_i, de_i, &mut gatt, grad, xl, xr, att, alpha, h, c, csr,
                );
            }
            gatt
        })
        .collect();
    let mut gatt = vec![0f32; hc];
    for p in partials {
        for (x, y) in gatt.iter_mut().zip(p) {
            *x += y;
        }
    }
    // Pass 2, per source: dxl[j] = Σ_out-edges α·grad[i] + de·att·LeakyReLU'(z).
    let mut gxl = vec![0f32; ns * hc];
    gxl.par_chunks_mut(hc.max(1))
        .enumerate()
        .with_min_len(64)
        .for_each(|(j, gxl_j)| {
            let xl_j = &xl[j * hc..(j + 1) * hc];
            for p in by_src.row_ptr[j]..by_src.row_ptr[j + 1] {
                let k = by_src.edge[p] as usize;
                let i = by_src.dst[p] as usize;
                let xr_i = &xr[i * hc..(i + 1) * hc];
                let g_i = &grad[i * hc..(i + 1) * hc];
                for hh in 0..h {
                    let al = alpha[k * h + hh];
                    let d = de[k * h + hh];
                    let a = &att[hh * c..(hh + 1) * c];
                    let o = hh * c;
                    let (gj, lj, ri, gi) = (
                        &mut gxl_j[o..o + c],
                        &xl_j[o..o + c],
                        &xr_i[o..o + c],
                        &g_i[o..o + c],
                    );
                    for ((((out, &aa), &l), &r), &g) in gj.iter_mut().zip(a).zip(lj).zip(ri).zip(gi)
                    {
                        let z = l + r;
                        *out += al * g + d * aa * lrelu_grad(z);
                    }
                }
            }
        });
    (gxl, gxr, gatt)
}

/// Backward pass 1 for destination `i`: score gradients of its edges (into `de_i`), its
/// `xr` gradient (into `gxr_i`) and its contribution to `datt`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn backward_row(
    i: usize,
    gxr_i: &mut [f32],
    de_i: &mut [f32],
    gatt: &mut [f32],
    grad: &[f32],
    xl: &[f32],
    xr: &[f32],
    att: &[f32],
    alpha: &[f32],
    h: usize,
    c: usize,
    csr: &Csr,
) {
    let hc = h * c;
    let start = csr.row_ptr[i];
    let deg = csr.row_ptr[i + 1] - start;
    let xr_i = &xr[i * hc..(i + 1) * hc];
    let g_i = &grad[i * hc..(i + 1) * hc];
    // dα for every edge and head (edge-major: one fetch of each source row), kept in de_i.
    let mut s = vec![0f32; h];
    for k in 0..deg {
        let j = csr.src[start + k] as usize;
        let xl_j = &xl[j * hc..(j + 1) * hc];
        for hh in 0..h {
            let o = hh * c;
            let da = dot(&g_i[o..o + c], &xl_j[o..o + c]);
            de_i[k * h + hh] = da;
            s[hh] += alpha[(start + k) * h + hh] * da;
        }
    }
    for k in 0..deg {
        let j = csr.src[start + k] as usize;
        let xl_j = &xl[j * hc..(j + 1) * hc];
        for hh in 0..h {
            let al = alpha[(start + k) * h + hh];
            let d = al * (de_i[k * h + hh] - s[hh]);
            de_i[k * h + hh] = d;
            if d == 0.0 {
                continue;
            }
            let o = hh * c;
            let (gx, ga) = (&mut gxr_i[o..o + c], &mut gatt[o..o + c]);
            for ((((g, gat), &aa), &l), &r) in gx
                .iter_mut()
                .zip(ga.iter_mut())
                .zip(&att[o..o + c])
                .zip(&xl_j[o..o + c])
                .zip(&xr_i[o..o + c])
            {
                let z = l + r;
                *g += d * aa * lrelu_grad(z);
                *gat += d * lrelu(z);
            }
        }
    }
}
