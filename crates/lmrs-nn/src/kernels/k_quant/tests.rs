//! Unit tests of the K-quant kernels (beside the kernels to keep that file readable).

use super::*;
use lmrs_core::candle::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use lmrs_core::candle::{Device, Module, Tensor};

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Random blocks: every quant and scale byte random, `d` (and `dmin`) finite and small.
fn random_matrix(f: KFormat, rows: usize, cols: usize, seed: &mut u64) -> KQuantMatrix {
    let mut data = Vec::new();
    for _ in 0..rows * cols / QK_K {
        let mut scale = || half::f16::from_f32((xorshift(seed) % 1000) as f32 / 1e5 + 1e-4);
        let (d, dmin) = (scale(), scale());
        match f {
            KFormat::Q4K => {
                data.extend(d.to_le_bytes());
                data.extend(dmin.to_le_bytes());
                data.extend((0..140).map(|_| xorshift(seed) as u8));
            }
            KFormat::Q6K => {
                data.extend((0..208).map(|_| xorshift(seed) as u8));
                data.extend(d.to_le_bytes());
            }
        }
    }
    KQuantMatrix::new(f, data, rows, cols).expect("sizes agree")
}

/// Every path this CPU can run.
fn paths() -> Vec<Path> {
    match detect_path() {
        Path::AvxVnni => vec![Path::Scalar, Path::Avx2, Path::AvxVnni],
        Path::Avx2 => vec![Path::Scalar, Path::Avx2],
        Path::Scalar => vec![Path::Scalar],
    }
}

fn random_x(len: usize, seed: &mut u64) -> Vec<f32> {
    (0..len)
        .map(|_| (xorshift(seed) % 20001) as f32 / 10000.0 - 1.0)
        .collect()
}

/// The error 8-bit activations allow: each value is off by at most `amax / 254` of its
/// 256-block, so a dot is off by at most `Σ |w| · amax / 254`; twice that as the bound.
fn bound(w: &[f32], x: &[f32]) -> f32 {
    w.chunks(QK_K)
        .zip(x.chunks(QK_K))
        .map(|(wb, xb)| {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            wb.iter().map(|v| v.abs()).sum::<f32>() * amax / 127.0
        })
        .sum::<f32>()
        + 1e-4
}

#[test]
fn matches_dequantized_product_within_activation_rounding() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    for f in [KFormat::Q4K, KFormat::Q6K] {
        let (n, k) = (37, 512);
        let w = random_matrix(f, n, k, &mut seed);
        let wf = w.dequantize();
        for m in [1, 3, 5] {
            let x = random_x(m * k, &mut seed);
            for path in paths() {
                let y = w.matmul_with(&x, m, path);
                for r in 0..m {
                    let xr = &x[r * k..(r + 1) * k];
                    for j in 0..n {
                        let wr = &wf[j * k..(j + 1) * k];
                        let exact: f32 = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
                        let got = y[r * n + j];
                        assert!(
                            (got - exact).abs() <= bound(wr, xr),
                            "{f:?} {path:?} m {m} r {r} j {j}: {got} vs {exact}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn batched_rows_are_bit_identical_to_single_rows() {
    let mut seed = 77u64;
    for f in [KFormat::Q4K, KFormat::Q6K] {
        let (n, k) = (37, 512);
        let w = random_matrix(f, n, k, &mut seed);
        for m in (1..=10).chain([33]) {
            let x = random_x(m * k, &mut seed);
            for path in paths() {
                let y = w.matmul_with(&x, m, path);
                for r in 0..m {
                    let alone = w.matmul_with(&x[r * k..(r + 1) * k], 1, path);
                    for j in 0..n {
                        assert_eq!(
                            y[r * n + j].to_bits(),
                            alone[j].to_bits(),
                            "{f:?} {path:?} m {m} r {r} j {j}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn simd_and_scalar_paths_agree() {
    let mut seed = 5u64;
    for f in [KFormat::Q4K, KFormat::Q6K] {
        let (n, k) = (20, 768);
        let w = random_matrix(f, n, k, &mut seed);
        let x = random_x(6 * k, &mut seed);
        let a = w.matmul_with(&x, 6, Path::Scalar);
        let b = w.matmul_xwt(&x, 6);
        // AVX2 and AVX-VNNI build the same integer lanes: bit-identical results.
        if detect_path() == Path::AvxVnni {
            let c = w.matmul_with(&x, 6, Path::Avx2);
            assert!(b.iter().zip(&c).all(|(b, c)| b.to_bits() == c.to_bits()));
        }
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            // Same exact integer sums; only the float folding differs (and Q6_K's lane
            // sums can pass 2^24, where the conversion to f32 rounds).
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "{f:?} {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn agrees_with_the_backend_quantized_matmul() -> lmrs_core::candle::Result<()> {
    let mut seed = 99u64;
    for (f, dtype) in [
        (KFormat::Q4K, GgmlDType::Q4K),
        (KFormat::Q6K, GgmlDType::Q6K),
    ] {
        let (n, k) = (40, 1024);
        let w = random_matrix(f, n, k, &mut seed);
        let wf = w.dequantize();
        let storage =
            QStorage::from_data(std::borrow::Cow::Borrowed(&w.data), &Device::Cpu, dtype)?;
        let qt = QTensor::new(storage, (n, k))?;
        // The layouts agree value for value (the same float expression as ggml's).
        let deq = qt
            .dequantize(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert!(deq.iter().zip(&wf).all(|(a, b)| a.to_bits() == b.to_bits()));
        let qmm = QMatMul::from_qtensor(qt)?;
        for m in [1, 7] {
            let x = random_x(m * k, &mut seed);
            let theirs = qmm
                .forward(&Tensor::from_vec(x.clone(), (m, k), &Device::Cpu)?)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let ours = w.matmul_xwt(&x, m);
            for r in 0..m {
                let xr = &x[r * k..(r + 1) * k];
                for j in 0..n {
                    // Both are within `bound` of the exact product.
                    let tol = 2.0 * bound(&wf[j * k..(j + 1) * k], xr);
                    let (a, b) = (ours[r * n + j], theirs[r * n + j]);
                    assert!((a - b).abs() <= tol, "{f:?} m {m} r {r} j {j}: {a} vs {b}");
                }
            }
        }
    }
    Ok(())
}

#[test]
fn vector_quantization_rounds_like_the_scalar_one() {
    let mut seed = 3u64;
    let mut x = random_x(QK_K, &mut seed);
    x[17] = -1.5;
    let a = quantize_block(&x);
    let b = quantize(&x, detect_path());
    assert_eq!((a.q, a.bsums, a.d), (b.q, b.bsums, b.d));
    let zeros = quantize(&[0.0; QK_K], detect_path());
    assert_eq!((zeros.d, zeros.q, zeros.bsums), (0.0, [0; QK_K], [0; 16]));
}

#[test]
fn new_rejects_mismatched_sizes() {
    let blk = Q4K_BLOCK_BYTES;
    assert!(KQuantMatrix::new(KFormat::Q4K, vec![0; 2 * blk], 2, 256).is_some());
    assert!(KQuantMatrix::new(KFormat::Q4K, vec![0; 2 * blk], 2, 512).is_none());
    assert!(KQuantMatrix::new(KFormat::Q4K, vec![0; 2 * blk - 1], 2, 256).is_none());
    assert!(KQuantMatrix::new(KFormat::Q6K, vec![0; 2 * blk], 2, 256).is_none());
    assert!(KQuantMatrix::new(KFormat::Q6K, vec![0; 3 * Q6K_BLOCK_BYTES], 1, 768).is_some());
    assert!(KQuantMatrix::new(KFormat::Q6K, vec![0; 0], 1, 128).is_none());
    assert!(KQuantMatrix::new(KFormat::Q4K, vec![0; 0], usize::MAX, 256).is_none());
}
