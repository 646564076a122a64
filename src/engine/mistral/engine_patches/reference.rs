//! The reference implementations and harnesses the patch tests compare against: the decode and prompt
//! attention steps with their f64 references, and the quantized blocks' unpacking and exact dot products.

use candle_core::{Device, Tensor};
use mistralrs::core::layers::{KvCache, Sdpa, SdpaParams};

/// A decode step's shapes: several sequences, one query token each, grouped-query heads. The KV length is
/// the step's: 37 fits in one of patch 0010's 64-position tiles; 203 spans three whole tiles and a partial
/// fourth, whose per-tile results the kernel merges.
pub(super) const BATCH: usize = 4;
pub(super) const HEADS: usize = 4;
pub(super) const KV_HEADS: usize = 2;
pub(super) const HEAD_DIM: usize = 16;
pub(super) const KV_LEN: usize = 37;
pub(super) const KV_LEN_TILES: usize = 3 * 64 + 11;

/// Reproducible values in [-1, 1): different for every row, so a row that reads another's data shows.
pub(super) fn values(seed: u64, n: usize) -> Vec<f32> {
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

/// softmax(q·k / sqrt(d)) · v in f64 over the (key, value) pairs a query may see.
pub(super) fn reference_attention(q: &[f32], visible: &[(Vec<f64>, Vec<f64>)]) -> Vec<f64> {
    let scores: Vec<f64> = visible
        .iter()
        .map(|(k, _)| {
            q.iter().zip(k).map(|(&a, b)| f64::from(a) * b).sum::<f64>() / (HEAD_DIM as f64).sqrt()
        })
        .collect();
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut out = vec![0.0; HEAD_DIM];
    for ((_, v), weight) in visible.iter().zip(weights) {
        for (o, x) in out.iter_mut().zip(v) {
            *o += weight / total * x;
        }
    }
    out
}

pub(super) struct Step {
    kv_len: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Per row: how many leading KV positions are masked out (left padding).
    masked: [usize; BATCH],
}

impl Step {
    pub(super) fn new(masked: [usize; BATCH]) -> Self {
        Self::with_kv_len(KV_LEN, masked)
    }

    pub(super) fn with_kv_len(kv_len: usize, masked: [usize; BATCH]) -> Self {
        Step {
            kv_len,
            q: values(1, BATCH * HEADS * HEAD_DIM),
            k: values(2, BATCH * KV_HEADS * kv_len * HEAD_DIM),
            v: values(3, BATCH * KV_HEADS * kv_len * HEAD_DIM),
            masked,
        }
    }

    pub(super) fn params() -> SdpaParams {
        SdpaParams {
            n_kv_groups: HEADS / KV_HEADS,
            softcap: None,
            softmax_scale: 1.0 / (HEAD_DIM as f32).sqrt(),
            sliding_window: None,
            sinks: None,
        }
    }

    /// The engine's attention over rows `rows` of this step, as one batch: (rows, heads, 1, head_dim).
    pub(super) fn engine(&self, rows: std::ops::Range<usize>) -> Vec<f32> {
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
        let visible: Vec<(Vec<f64>, Vec<f64>)> = (self.masked[row]..self.kv_len)
            .map(|pos| (at(&self.k, pos), at(&self.v, pos)))
            .collect();
        reference_attention(q, &visible)
    }

    pub(super) fn assert_matches_reference(&self, batched: &[f32]) {
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
    pub(super) fn assert_batch_invariant(&self, batched: &[f32]) {
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

/// One sequence of a prompt step: `new` queries at positions `past..past + new` over its `past + new`
/// keys and values, (1, heads, positions, head_dim).
pub(super) struct Prompt {
    pub(super) past: usize,
    pub(super) new: usize,
    pub(super) q: Tensor,
    pub(super) k: Tensor,
    pub(super) v: Tensor,
}

impl Prompt {
    pub(super) fn new(seed: u64, past: usize, new: usize) -> Self {
        let total = past + new;
        let cpu = &Device::Cpu;
        let tensor = |seed: u64, heads: usize, len: usize| {
            Tensor::from_vec(
                values(seed, heads * len * HEAD_DIM),
                (1, heads, len, HEAD_DIM),
                cpu,
            )
            .unwrap()
        };
        Prompt {
            past,
            new,
            q: tensor(seed, HEADS, new),
            k: tensor(seed + 1, KV_HEADS, total),
            v: tensor(seed + 2, KV_HEADS, total),
        }
    }

    /// A KV cache holding the sequence's `past` positions, as a prefix-cache hit starts with.
    pub(super) fn cache(&self) -> KvCache {
        let mut cache = KvCache::new_normal(2, 4096, 512);
        if self.past > 0 {
            cache
                .append(
                    &self.k.narrow(2, 0, self.past).unwrap(),
                    &self.v.narrow(2, 0, self.past).unwrap(),
                )
                .unwrap();
        }
        cache
    }

    /// softmax(q·k / sqrt(d)) · v in f64 for one head and query, over the positions it may see: up to its
    /// own, and within the last `window` if given.
    fn reference(&self, head: usize, query: usize, window: Option<usize>) -> Vec<f64> {
        let kv_head = head / (HEADS / KV_HEADS);
        let rows = |t: &Tensor, h: usize| -> Vec<Vec<f32>> {
            t.get(0).unwrap().get(h).unwrap().to_vec2().unwrap()
        };
        let q = &rows(&self.q, head)[query];
        let (k, v) = (rows(&self.k, kv_head), rows(&self.v, kv_head));
        let q_pos = self.past + query;
        let first = window.map_or(0, |w| (q_pos + 1).saturating_sub(w));
        let as_f64 = |row: &[f32]| row.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
        let visible: Vec<(Vec<f64>, Vec<f64>)> = (first..=q_pos)
            .map(|pos| (as_f64(&k[pos]), as_f64(&v[pos])))
            .collect();
        reference_attention(q, &visible)
    }

    /// `got` (1, heads, new, head_dim) against the reference.
    pub(super) fn assert_matches_reference(&self, got: &Tensor, window: Option<usize>) {
        let got: Vec<Vec<Vec<f32>>> = got.get(0).unwrap().to_vec3().unwrap();
        for (head, queries) in got.iter().enumerate() {
            for (query, row) in queries.iter().enumerate() {
                for (g, want) in row.iter().zip(self.reference(head, query, window)) {
                    assert!(
                        (f64::from(*g) - want).abs() < 1e-4,
                        "past {} head {head} query {query}: {g} against the reference {want}",
                        self.past
                    );
                }
            }
        }
    }
}

/// The blocks of a Q8_0, Q4_0 or Q5_0 tensor: each block's scale and its 32 values, unpacked from the
/// GGUF layouts (Q8_0: f16 scale, 32 bytes; Q4_0: f16 scale, 16 bytes of two 4-bit values, low nibbles
/// first, each minus 8; Q5_0: f16 scale, 32 high bits, then Q4_0's nibbles, each minus 16).
pub(super) fn q8_0_blocks(tensor: &candle_core::quantized::QTensor) -> Vec<(f32, [i8; 32])> {
    use candle_core::quantized::GgmlDType;
    let bytes = tensor.data().unwrap();
    let nibble = |qs: &[u8], i: usize| if i < 16 { qs[i] & 15 } else { qs[i - 16] >> 4 };
    let scale = |block: &[u8]| half::f16::from_le_bytes([block[0], block[1]]).to_f32();
    match tensor.dtype() {
        GgmlDType::Q8_0 => bytes
            .chunks_exact(34)
            .map(|block| (scale(block), std::array::from_fn(|i| block[2 + i] as i8)))
            .collect(),
        GgmlDType::Q4_0 => bytes
            .chunks_exact(18)
            .map(|block| {
                let qs = &block[2..];
                (
                    scale(block),
                    std::array::from_fn(|i| nibble(qs, i) as i8 - 8),
                )
            })
            .collect(),
        GgmlDType::Q5_0 => bytes
            .chunks_exact(22)
            .map(|block| {
                let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
                let qs = &block[6..];
                let value = |i: usize| (nibble(qs, i) | (((qh >> i) & 1) as u8) << 4) as i8 - 16;
                (scale(block), std::array::from_fn(value))
            })
            .collect(),
        other => panic!("no unpacking for {other:?}"),
    }
}

/// One output of the Q8_0 × Q8_0 matmul (and, since patch 0005, Q4_0 or Q5_0 × Q8_0), step by step as
/// every kernel must compute it (candle's `dot_q8_values_blocks`, patches 0003 and 0005): per block, in
/// order, the exact integer dot product of the 32 value pairs, accumulated as `fma(dx * dy, dot, acc)`
/// from zero.
pub(super) fn q8_0_dot(weights: &[(f32, [i8; 32])], activations: &[(f32, [i8; 32])]) -> f32 {
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

/// Every output of an `m` × `n` matmul equals `want(row, col)` bit for bit.
pub(super) fn assert_outputs_are(
    out: &[f32],
    m: usize,
    n: usize,
    what: &str,
    want: impl Fn(usize, usize) -> f32,
) {
    for row in 0..m {
        for col in 0..n {
            let (got, want) = (out[row * n + col], want(row, col));
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{what}, {m} rows: ({row}, {col}) is {got}, the dot product is {want}"
            );
        }
    }
}

/// A K-quant super-block as the fixed-order kernels use it: the two scales (`dmin` zero for Q6_K), the
/// 256 integer values, and per sub-block its integer scale and min (Q6_K: sixteen sub-blocks of 16 values
/// and no mins; Q4_K and Q5_K: eight of 32).
pub(super) struct SuperBlock {
    d: f32,
    dmin: f32,
    values: [i32; 256],
    scales: Vec<i32>,
    mins: Vec<i32>,
}

/// The super-blocks of a Q4_K, Q5_K or Q6_K tensor, unpacked from the GGUF layouts:
/// - Q4_K (144 bytes): f16 `d`, f16 `dmin`, 12 bytes of eight 6-bit scales and mins, 128 bytes of 4-bit
///   values (64-value chunk `j`: the low nibbles of bytes `32j..32j + 32`, then their high nibbles);
/// - Q5_K (176 bytes): as Q4_K with 32 bytes of high bits before the nibbles (chunk `j` takes bits `2j`
///   and `2j + 1` of each byte);
/// - Q6_K (210 bytes): 128 bytes of low nibbles, 64 of 2-bit high parts, sixteen i8 scales, f16 `d`; the
///   values are `q - 32`.
pub(super) fn k_super_blocks(tensor: &candle_core::quantized::QTensor) -> Vec<SuperBlock> {
    use candle_core::quantized::GgmlDType;
    let f16_at = |b: &[u8], i: usize| half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
    // The 6-bit scale and min of sub-block j, packed in 12 bytes.
    let scale_min = |p: &[u8], j: usize| -> (i32, i32) {
        if j < 4 {
            (i32::from(p[j] & 63), i32::from(p[j + 4] & 63))
        } else {
            (
                i32::from((p[j + 4] & 15) | ((p[j - 4] >> 6) << 4)),
                i32::from((p[j + 4] >> 4) | ((p[j] >> 6) << 4)),
            )
        }
    };
    let four_bit = |b: &[u8], packed: &[u8], qh: Option<&[u8]>| -> SuperBlock {
        let mut values = [0i32; 256];
        for j in 0..4 {
            for l in 0..32 {
                let byte = packed[32 * j + l];
                let high = |bit: usize| qh.map_or(0, |qh| i32::from((qh[l] >> bit) & 1) << 4);
                values[64 * j + l] = i32::from(byte & 15) + high(2 * j);
                values[64 * j + 32 + l] = i32::from(byte >> 4) + high(2 * j + 1);
            }
        }
        let (scales, mins) = (0..8).map(|j| scale_min(&b[4..16], j)).unzip();
        SuperBlock {
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
            values,
            scales,
            mins,
        }
    };
    let bytes = tensor.data().unwrap();
    match tensor.dtype() {
        GgmlDType::Q4K => bytes
            .chunks_exact(144)
            .map(|b| four_bit(b, &b[16..], None))
            .collect(),
        GgmlDType::Q5K => bytes
            .chunks_exact(176)
            .map(|b| four_bit(b, &b[48..], Some(&b[16..48])))
            .collect(),
        GgmlDType::Q6K => bytes
            .chunks_exact(210)
            .map(|b| {
                let (ql, qh) = (&b[..128], &b[128..192]);
                let mut values = [0i32; 256];
                for half in 0..2 {
                    for l in 0..32 {
                        let (low_a, low_b, high) =
                            (ql[64 * half + l], ql[64 * half + 32 + l], qh[32 * half + l]);
                        let v = |low: u8, pair: u8| {
                            i32::from(low | (((high >> (2 * pair)) & 3) << 4)) - 32
                        };
                        values[128 * half + l] = v(low_a & 15, 0);
                        values[128 * half + 32 + l] = v(low_b & 15, 1);
                        values[128 * half + 64 + l] = v(low_a >> 4, 2);
                        values[128 * half + 96 + l] = v(low_b >> 4, 3);
                    }
                }
                SuperBlock {
                    d: f16_at(b, 208),
                    dmin: 0.0,
                    values,
                    scales: b[192..208].iter().map(|&s| i32::from(s as i8)).collect(),
                    mins: vec![0; 16],
                }
            })
            .collect(),
        other => panic!("no unpacking for {other:?}"),
    }
}

/// The Q8_K blocks of activations: f32 scale, 256 i8 values (then 16 i16 sums, recomputed here).
pub(super) fn q8k_blocks(tensor: &candle_core::quantized::QTensor) -> Vec<(f32, [i32; 256])> {
    let bytes = tensor.data().unwrap();
    bytes
        .chunks_exact(292)
        .map(|b| {
            let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (d, std::array::from_fn(|i| i32::from(b[4 + i] as i8)))
        })
        .collect()
}

/// One output of a K-quant × Q8_K matmul as every kernel must compute it (candle's `dot_k_q8k_exact`,
/// patch 0005): per super-block, in order, `A` = sum over sub-blocks of scale × (exact integer dot of
/// the value pairs), `B` = sum over sub-blocks of min × (sum of its activations), then
/// `acc = fma(dx * dy, A, acc)` and `acc = fma(-(dmin * dy), B, acc)`, from zero.
pub(super) fn k_quant_dot(weights: &[SuperBlock], activations: &[(f32, [i32; 256])]) -> f32 {
    let mut acc = 0f32;
    for (x, (dy, y)) in weights.iter().zip(activations) {
        let size = 256 / x.scales.len();
        let (mut a, mut b) = (0i32, 0i32);
        for (j, (&scale, &min)) in x.scales.iter().zip(&x.mins).enumerate() {
            let range = j * size..(j + 1) * size;
            let dot: i32 = range.clone().map(|i| x.values[i] * y[i]).sum();
            a += scale * dot;
            b += min * range.map(|i| y[i]).sum::<i32>();
        }
        acc = (x.d * dy).mul_add(a as f32, acc);
        acc = (-(x.dmin * dy)).mul_add(b as f32, acc);
    }
    acc
}
