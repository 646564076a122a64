//! Kernel-level proof of our engine patches (`patches/`): each test here fails on the unpatched crate.
//! The patches that need a whole model are proven by the integration tests their headers name.

use candle_core::{Device, Tensor};
use mistralrs::core::layers::{Sdpa, SdpaParams};

/// A decode step's shapes: several sequences, one query token each, grouped-query heads. The KV length is
/// the step's: 37 fits in one of patch 0010's 64-position tiles; 203 spans three whole tiles and a partial
/// fourth, whose per-tile results the kernel merges.
const BATCH: usize = 4;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 16;
const KV_LEN: usize = 37;
const KV_LEN_TILES: usize = 3 * 64 + 11;

/// Reproducible values in [-1, 1): different for every row, so a row that reads another's data shows.
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Step {
    kv_len: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Per row: how many leading KV positions are masked out (left padding).
    masked: [usize; BATCH],
}

impl Step {
    fn new(masked: [usize; BATCH]) -> Self {
        Self::with_kv_len(KV_LEN, masked)
    }

    fn with_kv_len(kv_len: usize, masked: [usize; BATCH]) -> Self {
        Step {
            kv_len,
            q: values(1, BATCH * HEADS * HEAD_DIM),
            k: values(2, BATCH * KV_HEADS * kv_len * HEAD_DIM),
            v: values(3, BATCH * KV_HEADS * kv_len * HEAD_DIM),
            masked,
        }
    }

    fn params() -> SdpaParams {
        SdpaParams {
            n_kv_groups: HEADS / KV_HEADS,
            softcap: None,
            softmax_scale: 1.0 / (HEAD_DIM as f32).sqrt(),
            sliding_window: None,
            sinks: None,
        }
    }

    /// The engine's attention over rows `rows` of this step, as one batch: (rows, heads, 1, head_dim).
    fn engine(&self, rows: std::ops::Range<usize>) -> Vec<f32> {
        let b = rows.len();
        let per_q = HEADS * HEAD_DIM;
        let per_kv = KV_HEADS * self.kv_len * HEAD_DIM;
        let cpu = &Device::Cpu;
        let q = Tensor::from_vec(
            self.q[rows.start * per_q..rows.end * per_q].to_vec(),
            (b, HEADS, 1, HEAD_DIM),
            cpu,
        )
        .unwrap();
        let kv = |data: &[f32]| {
            Tensor::from_vec(
                data[rows.start * per_kv..rows.end * per_kv].to_vec(),
                (b, KV_HEADS, self.kv_len, HEAD_DIM),
                cpu,
            )
            .unwrap()
        };
        let mask: Vec<f32> = rows
            .clone()
            .flat_map(|row| {
                (0..self.kv_len).map(move |pos| {
                    if pos < self.masked[row] {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (b, 1, 1, self.kv_len), cpu).unwrap();
        let with_mask = self.masked.iter().any(|&m| m > 0);
        Sdpa.run_attention(
            &q,
            &kv(&self.k),
            &kv(&self.v),
            with_mask.then_some(&mask),
            None,
            &Self::params(),
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
    }

    /// softmax(q·k / sqrt(d)) · v for one row and head, over its unmasked positions, in f64.
    fn reference(&self, row: usize, head: usize) -> Vec<f64> {
        let kv_head = head / (HEADS / KV_HEADS);
        let q = &self.q[(row * HEADS + head) * HEAD_DIM..][..HEAD_DIM];
        let at = |data: &[f32], pos: usize| -> Vec<f64> {
            let start = ((row * KV_HEADS + kv_head) * self.kv_len + pos) * HEAD_DIM;
            data[start..start + HEAD_DIM]
                .iter()
                .map(|&x| f64::from(x))
                .collect()
        };
        let positions = self.masked[row]..self.kv_len;
        let scores: Vec<f64> = positions
            .clone()
            .map(|pos| {
                let k = at(&self.k, pos);
                q.iter()
                    .zip(&k)
                    .map(|(&a, b)| f64::from(a) * b)
                    .sum::<f64>()
                    / (HEAD_DIM as f64).sqrt()
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut out = vec![0.0; HEAD_DIM];
        for (pos, weight) in positions.zip(weights) {
            for (o, v) in out.iter_mut().zip(at(&self.v, pos)) {
                *o += weight / total * v;
            }
        }
        out
    }

    fn assert_matches_reference(&self, batched: &[f32]) {
        for row in 0..BATCH {
            for head in 0..HEADS {
                let got = &batched[(row * HEADS + head) * HEAD_DIM..][..HEAD_DIM];
                for (g, want) in got.iter().zip(self.reference(row, head)) {
                    assert!(
                        (f64::from(*g) - want).abs() < 1e-4,
                        "row {row} head {head}: {g} against the reference {want}"
                    );
                }
            }
        }
    }

    /// Each row computed in the batch is bit for bit the row computed alone.
    fn assert_batch_invariant(&self, batched: &[f32]) {
        let per_row = HEADS * HEAD_DIM;
        for row in 0..BATCH {
            assert_eq!(
                &batched[row * per_row..(row + 1) * per_row],
                &self.engine(row..row + 1)[..],
                "row {row} differs between the batch and a batch of one"
            );
        }
    }
}

/// patches/mistralrs-core-0.8.1/0001: the decode kernel kept one scratch for all batch rows, so every row
/// came out as the last row's attention.
#[test]
fn decode_attention_gives_each_batch_row_its_own_result() {
    let step = Step::new([0; BATCH]);
    let batched = step.engine(0..BATCH);
    step.assert_matches_reference(&batched);
    step.assert_batch_invariant(&batched);
}

/// patches/mistralrs-core-0.8.1/0001: a row whose leading positions are masked with -inf (left padding)
/// came out as NaN; now it attends to its unmasked positions only, whatever the other rows' masks.
#[test]
fn decode_attention_skips_masked_positions_without_nan() {
    let step = Step::new([0, 5, 16, 20]);
    let batched = step.engine(0..BATCH);
    assert!(
        batched.iter().all(|x| x.is_finite()),
        "NaN or inf in the output"
    );
    step.assert_matches_reference(&batched);
    step.assert_batch_invariant(&batched);
}

/// patches/mistralrs-core-0.8.1/0010: decode attention over several 64-position tiles, merged per (row, head),
/// equals the reference for each row and is the same in a batch as alone, with masks that end inside the
/// first, second and third tile.
#[test]
fn decode_attention_merges_its_tiles() {
    let step = Step::with_kv_len(KV_LEN_TILES, [0, 5, 70, 150]);
    let batched = step.engine(0..BATCH);
    assert!(
        batched.iter().all(|x| x.is_finite()),
        "NaN or inf in the output"
    );
    step.assert_matches_reference(&batched);
    step.assert_batch_invariant(&batched);
}

/// The blocks of a Q8_0 tensor: each block's scale and its 32 values.
fn q8_0_blocks(tensor: &candle_core::quantized::QTensor) -> Vec<(f32, [i8; 32])> {
    let bytes = tensor.data().unwrap();
    bytes
        .chunks_exact(34)
        .map(|block| {
            let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            (d, std::array::from_fn(|i| block[2 + i] as i8))
        })
        .collect()
}

/// One output of the Q8_0 × Q8_0 matmul, step by step as every kernel must compute it (candle's
/// `dot_q8_0_q8_0_blocks`, patch 0003): per block, in order, the exact integer dot product of the 32 byte
/// pairs, accumulated as `fma(dx * dy, dot, acc)` from zero.
fn q8_0_dot(weights: &[(f32, [i8; 32])], activations: &[(f32, [i8; 32])]) -> f32 {
    let mut acc = 0f32;
    for ((dx, x), (dy, y)) in weights.iter().zip(activations) {
        let dot: i32 = x
            .iter()
            .zip(y)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        acc = (dx * dy).mul_add(dot as f32, acc);
    }
    acc
}

/// patches/candle-core-0.10.2/0001–0003: the Q8_0 matmul computes tiles of rows × columns in one
/// parallel loop, sixteen columns per register with AVX-512 VNNI where the CPU has it; every output must
/// be exactly the dot product defined above, whatever the number of rows and the instruction set.
#[test]
fn q8_0_matmul_outputs_are_the_single_row_dot_product_bit_for_bit() {
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::Module;

    let (k, n) = (256, 75);
    let cpu = &Device::Cpu;
    let weights = QTensor::quantize(
        &Tensor::from_vec(values(7, n * k), (n, k), cpu).unwrap(),
        GgmlDType::Q8_0,
    )
    .unwrap();
    let weight_blocks = q8_0_blocks(&weights);
    let matmul = QMatMul::from_qtensor(weights).unwrap();
    let kb = k / 32;
    for m in [1, 2, 3, 4, 5, 7, 8, 16, 33] {
        let x = Tensor::from_vec(values(100 + m as u64, m * k), (m, k), cpu).unwrap();
        // The matmul quantizes its activations the way `QTensor::quantize` does.
        let x_blocks = q8_0_blocks(&QTensor::quantize(&x, GgmlDType::Q8_0).unwrap());
        let out: Vec<f32> = matmul
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for row in 0..m {
            for col in 0..n {
                let want = q8_0_dot(
                    &weight_blocks[col * kb..(col + 1) * kb],
                    &x_blocks[row * kb..(row + 1) * kb],
                );
                assert_eq!(
                    out[row * n + col].to_bits(),
                    want.to_bits(),
                    "{m} rows: ({row}, {col}) is {}, the dot product is {want}",
                    out[row * n + col]
                );
            }
        }
    }
}

/// patches/candle-core-0.10.2/0002: activations are quantized 8 values at a time, with the scalar code's
/// results: scale = max |x| / 127, values rounded halfway away from zero.
#[test]
fn q8_0_quantization_rounds_halfway_away_from_zero() {
    use candle_core::quantized::{GgmlDType, QTensor};

    // Blocks whose maximum is 127, so that x * (1 / d) lands on exact halves: 0.5, -2.5, 126.5, ...
    let mut x = Vec::new();
    for block in 0..64 {
        let mut b: Vec<f32> = (0..31)
            .map(|i| (i as f32 - 15.0) * 4.0 + 0.5 * ((block + i) % 2) as f32)
            .collect();
        b.push(if block % 2 == 0 { 127.0 } else { -127.0 });
        x.extend(b);
    }
    x.extend(values(3, 32 * 64).iter().map(|v| v * 3.0));
    let blocks = x.len() / 32;
    let quantized = QTensor::quantize(
        &Tensor::from_vec(x.clone(), (blocks, 32), &Device::Cpu).unwrap(),
        GgmlDType::Q8_0,
    )
    .unwrap();
    for (i, (d, q)) in q8_0_blocks(&quantized).iter().enumerate() {
        let xs = &x[i * 32..(i + 1) * 32];
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let want_d = amax / 127.0;
        assert_eq!(*d, half::f16::from_f32(want_d).to_f32(), "block {i} scale");
        let id = if want_d != 0.0 { 1.0 / want_d } else { 0.0 };
        for (j, (&got, &v)) in q.iter().zip(xs).enumerate() {
            assert_eq!(got, (v * id).round() as i8, "block {i} value {j}: {v}");
        }
    }
}

/// patches/candle-core-0.10.2/0004: `k_quants::matmul` is safe and writes its output through a raw pointer;
/// buffers shorter than `(m, k, n)` say were written or read out of bounds. Now they are errors, and exact
/// ones still multiply.
#[test]
fn quantized_matmul_refuses_buffers_shorter_than_its_shape() {
    use candle_core::quantized::k_quants::{matmul, BlockQ8_0, GgmlType};
    let (m, k, n) = (2, 64, 16);
    let lhs = vec![0.5f32; m * k];
    let rhs = vec![BlockQ8_0::zeros(); n * k / 32];
    let mut dst = vec![0f32; m * n];
    assert!(matmul((m, k, n), &lhs, &rhs, &mut dst).is_ok());
    let mut short_dst = vec![0f32; m * n - 1];
    assert!(
        matmul((m, k, n), &lhs, &rhs, &mut short_dst).is_err(),
        "a short output"
    );
    assert!(
        matmul((m, k, n), &lhs, &rhs[1..], &mut dst).is_err(),
        "a short weight"
    );
    assert!(
        matmul((m, k, n), &lhs[1..], &rhs, &mut dst).is_err(),
        "a short input"
    );
    assert!(
        matmul((usize::MAX, k, n), &lhs, &rhs, &mut dst).is_err(),
        "an overflowing shape"
    );
}
