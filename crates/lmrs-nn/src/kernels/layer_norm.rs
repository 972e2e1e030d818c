//! Residual add + LayerNorm in one pass over each row, on the worker pool.
//!
//! Why: post-norm encoders (BERT) finish both sub-blocks with `LayerNorm(y + x)`. As tensor
//! ops that was an add, a contiguous copy and the backend's norm, each a pass over the
//! activations and not all of them parallel; here each row is read once, normalized in
//! cache and written once.

use super::vmath::{lane_sum, multiversion};

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// `x[r] = (z - mean(z)) / sqrt(var(z) + eps) · gamma + beta` with `z = x[r] + residual[r]`,
/// for every row of width `gamma.len()` (the biased variance, as PyTorch's `LayerNorm`).
///
/// # Panics
/// When the slice lengths disagree.
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let d = gamma.len();
    assert!(beta.len() == d && residual.len() == x.len() && (d == 0 || x.len().is_multiple_of(d)));
    if d == 0 || x.is_empty() {
        return;
    }
    let rows = x.len() / d;
    let dst = super::gemm::SyncPtr(x.as_mut_ptr());
    lmrs_core::candle::utils::barrier_pool().execute_chunked(rows.div_ceil(ROWS_PER_TASK), |r| {
        let (r0, r1) = (r.start * ROWS_PER_TASK, (r.end * ROWS_PER_TASK).min(rows));
        // SAFETY: rows r0..r1 lie inside x and belong to this task only.
        let xs = unsafe { std::slice::from_raw_parts_mut(dst.get().add(r0 * d), (r1 - r0) * d) };
        norm_rows(xs, &residual[r0 * d..r1 * d], gamma, beta, eps);
    });
}

multiversion! {
    fn norm_rows(xs: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let d = gamma.len();
        for (row, res) in xs.chunks_exact_mut(d).zip(residual.chunks_exact(d)) {
            row.iter_mut().zip(res).for_each(|(v, r)| *v += r);
            let mean = lane_sum(row) / d as f32;
            row.iter_mut().for_each(|v| *v -= mean);
            let mut sq = [0f32; 16];
            let mut chunks = row.chunks_exact(16);
            for c in &mut chunks {
                for (a, v) in sq.iter_mut().zip(c) {
                    *a += v * v;
                }
            }
            let var = (chunks.remainder().iter().map(|v| v * v).sum::<f32>()
                + sq.iter().sum::<f32>())
                / d as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = *v * inv * g + b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition() {
        for d in [1, 5, 16, 37, 384] {
            let rows = 41;
            let x: Vec<f32> = (0..rows * d)
                .map(|i| ((i * 31) % 97) as f32 / 9.0 - 5.0)
                .collect();
            let res: Vec<f32> = (0..rows * d)
                .map(|i| ((i * 17) % 53) as f32 / 7.0)
                .collect();
            let g: Vec<f32> = (0..d).map(|i| 1.0 + i as f32 / 100.0).collect();
            let b: Vec<f32> = (0..d).map(|i| i as f32 / 50.0 - 0.3).collect();
            let mut got = x.clone();
            add_layer_norm(&mut got, &res, &g, &b, 1e-12);
            for r in 0..rows {
                let z: Vec<f64> = (0..d)
                    .map(|j| (x[r * d + j] + res[r * d + j]) as f64)
                    .collect();
                let mean = z.iter().sum::<f64>() / d as f64;
                let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
                for j in 0..d {
                    let want = (z[j] - mean) / (var + 1e-12).sqrt() * g[j] as f64 + b[j] as f64;
                    let got = got[r * d + j] as f64;
                    assert!((got - want).abs() < 1e-4, "d{d} r{r} j{j}: {got} vs {want}");
                }
            }
        }
    }
}
