//! Kernel-level proof of our engine patches (`patches/`): each test here fails on the unpatched crate.
//! The patches that need a whole model are proven by the integration tests their headers name.

use candle_core::{Device, Tensor};
use mistralrs::core::layers::{prompt_mask, KvCache, Sdpa, SdpaParams};

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

/// softmax(q·k / sqrt(d)) · v in f64 over the (key, value) pairs a query may see.
fn reference_attention(q: &[f32], visible: &[(Vec<f64>, Vec<f64>)]) -> Vec<f64> {
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
        let visible: Vec<(Vec<f64>, Vec<f64>)> = (self.masked[row]..self.kv_len)
            .map(|pos| (at(&self.k, pos), at(&self.v, pos)))
            .collect();
        reference_attention(q, &visible)
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

/// One sequence of a prompt step: `new` queries at positions `past..past + new` over its `past + new`
/// keys and values, (1, heads, positions, head_dim).
struct Prompt {
    past: usize,
    new: usize,
    q: Tensor,
    k: Tensor,
    v: Tensor,
}

impl Prompt {
    fn new(seed: u64, past: usize, new: usize) -> Self {
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
    fn cache(&self) -> KvCache {
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
    fn assert_matches_reference(&self, got: &Tensor, window: Option<usize>) {
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

/// patches/mistralrs-core-0.8.1/0016: the prompt kernel, rebuilt on the decode kernel's tiles, over four
/// 64-position tiles past a cached prefix: causal, and with a 100-position window (a Gemma 3 local layer),
/// where the late queries' first tiles are wholly masked and skipped.
#[test]
fn prompt_attention_matches_the_reference_across_tiles_and_windows() {
    let prompt = Prompt::new(11, 70, 150);
    for window in [None, Some(100)] {
        let mask = prompt_mask(
            prompt.new,
            prompt.past,
            window,
            &Device::Cpu,
            candle_core::DType::F32,
        )
        .unwrap();
        let out = Sdpa
            .run_attention(
                &prompt.q,
                &prompt.k,
                &prompt.v,
                Some(&mask),
                None,
                &Step::params(),
            )
            .unwrap();
        assert!(
            out.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .all(|x| x.is_finite()),
            "NaN or inf in the output"
        );
        prompt.assert_matches_reference(&out, window);
    }
}

/// patches/mistralrs-core-0.8.1/0016: a packed prompt step (several sequences' new tokens in one row, each
/// sequence with its own cache, cached prefix or not, one new token or many) gives each sequence exactly
/// the attention it gets when prefilled alone, appends each one's keys to its own cache only, and matches
/// the reference.
#[test]
fn a_packed_prompt_step_gives_each_sequence_its_own_attention() {
    let prompts = [
        Prompt::new(20, 0, 37),
        Prompt::new(30, 70, 5),
        Prompt::new(40, 10, 1),
        Prompt::new(50, 130, 90),
    ];
    for window in [None, Some(100)] {
        let new = |t: &Tensor, p: &Prompt| t.narrow(2, p.past, p.new).unwrap();
        let cat = |pick: &dyn Fn(&Prompt) -> Tensor| {
            Tensor::cat(&prompts.iter().map(pick).collect::<Vec<_>>(), 2).unwrap()
        };
        let q = cat(&|p| p.q.clone());
        let k = cat(&|p| new(&p.k, p));
        let v = cat(&|p| new(&p.v, p));
        let lens: Vec<usize> = prompts.iter().map(|p| p.new).collect();
        let mut rows: Vec<KvCache> = prompts.iter().map(Prompt::cache).collect();
        let packed = Sdpa
            .run_packed_prompt(&q, &k, &v, &lens, &mut rows, &Step::params(), window)
            .unwrap();
        let mut start = 0;
        for (prompt, row) in prompts.iter().zip(&rows) {
            let mut alone = [prompt.cache()];
            let solo = Sdpa
                .run_packed_prompt(
                    &prompt.q,
                    &new(&prompt.k, prompt),
                    &new(&prompt.v, prompt),
                    &[prompt.new],
                    &mut alone,
                    &Step::params(),
                    window,
                )
                .unwrap();
            let in_pack = packed.narrow(2, start, prompt.new).unwrap();
            start += prompt.new;
            assert_eq!(
                in_pack.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                solo.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "past {} new {}: packed and alone differ",
                prompt.past,
                prompt.new
            );
            prompt.assert_matches_reference(&in_pack, window);
            let cached = row.k().unwrap().expect("a filled cache");
            assert_eq!(cached.dim(2).unwrap(), prompt.past + prompt.new);
            assert_eq!(
                cached.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                prompt.k.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "past {}: the cache holds another sequence's keys",
                prompt.past
            );
        }
    }
}

/// patches/mistralrs-core-0.8.1/0016: a prefix-cache hit prefills its prompt's last token alone, over the
/// cached keys; that query comes out bit for bit as it does in the cold prompt's step, causal or windowed
/// (so a hit answers as the cold prompt does). It went through the decode kernel, whose tiles merge in
/// another order, or, windowed, start elsewhere.
#[test]
fn a_prompt_s_last_token_after_a_prefix_cache_hit_rounds_as_in_the_cold_prompt() {
    let cold = Prompt::new(60, 0, 200);
    let last = cold.new - 1;
    let hit = Prompt {
        past: last,
        new: 1,
        q: cold.q.narrow(2, last, 1).unwrap(),
        k: cold.k.clone(),
        v: cold.v.clone(),
    };
    for window in [None, Some(100)] {
        let run = |prompt: &Prompt| {
            let new = |t: &Tensor| t.narrow(2, prompt.past, prompt.new).unwrap();
            Sdpa.run_packed_prompt(
                &prompt.q,
                &new(&prompt.k),
                &new(&prompt.v),
                &[prompt.new],
                &mut [prompt.cache()],
                &Step::params(),
                window,
            )
            .unwrap()
        };
        let in_cold = run(&cold).narrow(2, last, 1).unwrap();
        assert_eq!(
            run(&hit).flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            in_cold.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "window {window:?}: the hit's last query differs from the cold prompt's"
        );
    }
}

/// The blocks of a Q8_0, Q4_0 or Q5_0 tensor: each block's scale and its 32 values, unpacked from the
/// GGUF layouts (Q8_0: f16 scale, 32 bytes; Q4_0: f16 scale, 16 bytes of two 4-bit values, low nibbles
/// first, each minus 8; Q5_0: f16 scale, 32 high bits, then Q4_0's nibbles, each minus 16).
fn q8_0_blocks(tensor: &candle_core::quantized::QTensor) -> Vec<(f32, [i8; 32])> {
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

/// Every output of an `m` × `n` matmul equals `want(row, col)` bit for bit.
fn assert_outputs_are(
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

/// Serializes the tests that force a kernel level: the level is process-wide. (Tests that only multiply
/// need not take it: every level gives the same bits, which is what the test below proves.)
static KERNEL_LEVEL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// patches/candle-core-0.10.2/0001–0003 and 0005: the Q8_0 matmul computes tiles of rows × columns in one
/// parallel loop, columns in SIMD lanes (sixteen per register with AVX-512 VNNI); Q4_0 and Q5_0 weights
/// join its kernels (0005), and the kernel level can be forced. At every level this CPU supports (scalar,
/// AVX2 and, where reported, AVX-512), every output of a Q8_0, Q4_0 or Q5_0 matmul, for 1 to 33 rows,
/// must be exactly the dot product defined above: so levels agree bit for bit, and a row's output is the
/// same alone or co-batched. Without 0003 the Q8_0 kernels sum eight lanes per result; without 0005 the
/// Q4_0 and Q5_0 outputs are upstream's `vec_dot` sums, and levels cannot be forced.
#[test]
fn quantized_matmul_gives_the_same_bits_at_every_kernel_level() {
    use candle_core::quantized::cpu_kernels::{self, KernelLevel};
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::Module;

    let _level = KERNEL_LEVEL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (k, n) = (320, 83);
    let cpu = &Device::Cpu;
    let levels: Vec<KernelLevel> = KernelLevel::ALL
        .into_iter()
        .filter(|&level| level <= cpu_kernels::supported())
        .collect();
    assert!(
        levels.contains(&KernelLevel::Avx2),
        "the test build targets AVX2"
    );
    eprintln!("kernel levels tested: {levels:?}");
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::Q5_0] {
        let weights = QTensor::quantize(
            &Tensor::from_vec(values(11, n * k), (n, k), cpu).unwrap(),
            dtype,
        )
        .unwrap();
        let weight_blocks = q8_0_blocks(&weights);
        let matmul = QMatMul::from_qtensor(weights).unwrap();
        let kb = k / 32;
        for &level in &levels {
            cpu_kernels::set_level(Some(level)).unwrap();
            for m in [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33] {
                let x = Tensor::from_vec(values(200 + m as u64, m * k), (m, k), cpu).unwrap();
                let x_blocks = q8_0_blocks(&QTensor::quantize(&x, GgmlDType::Q8_0).unwrap());
                let out: Vec<f32> = matmul
                    .forward(&x)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                assert_outputs_are(
                    &out,
                    m,
                    n,
                    &format!("{dtype:?} at {level:?}"),
                    |row, col| {
                        q8_0_dot(
                            &weight_blocks[col * kb..(col + 1) * kb],
                            &x_blocks[row * kb..(row + 1) * kb],
                        )
                    },
                );
            }
        }
    }
    cpu_kernels::set_level(None).unwrap();
    // A level above the CPU's is refused, and names the highest one.
    if cpu_kernels::supported() < KernelLevel::Avx512 {
        assert_eq!(
            cpu_kernels::set_level(Some(KernelLevel::Avx512)),
            Err(cpu_kernels::supported())
        );
    }
}

/// A K-quant super-block as the fixed-order kernels use it: the two scales (`dmin` zero for Q6_K), the
/// 256 integer values, and per sub-block its integer scale and min (Q6_K: sixteen sub-blocks of 16 values
/// and no mins; Q4_K and Q5_K: eight of 32).
struct SuperBlock {
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
fn k_super_blocks(tensor: &candle_core::quantized::QTensor) -> Vec<SuperBlock> {
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
fn q8k_blocks(tensor: &candle_core::quantized::QTensor) -> Vec<(f32, [i32; 256])> {
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
fn k_quant_dot(weights: &[SuperBlock], activations: &[(f32, [i32; 256])]) -> f32 {
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

/// patches/candle-core-0.10.2/0005: the K-quants' products (Q4_K, Q5_K, Q6_K weights × Q8_K activations)
/// sum exact integers per super-block and then take fixed float steps. At every level this CPU supports,
/// for 1 to 19 rows, every output must be exactly the dot product defined above. Upstream's AVX2 and
/// scalar kernels sum floats per lane and then the lanes, in orders that differ from this one and from
/// each other. The reference's unpacking is checked too: its dot products must be the product of the
/// dequantized weights and activations, to float rounding.
#[test]
fn k_quant_matmul_gives_the_same_bits_at_every_kernel_level_and_batch_size() {
    use candle_core::quantized::cpu_kernels::{self, KernelLevel};
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::Module;

    let _level = KERNEL_LEVEL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (k, n) = (512, 45);
    let kb = k / 256;
    let cpu = &Device::Cpu;
    let levels: Vec<KernelLevel> = KernelLevel::ALL
        .into_iter()
        .filter(|&level| level <= cpu_kernels::supported())
        .collect();
    let m = 19;
    let x = Tensor::from_vec(values(300, m * k), (m, k), cpu).unwrap();
    let x_q8k = QTensor::quantize(&x, GgmlDType::Q8K).unwrap();
    let activations = q8k_blocks(&x_q8k);
    let x_dequantized = x_q8k.dequantize(cpu).unwrap();
    for dtype in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K] {
        let weights = QTensor::quantize(
            &Tensor::from_vec(values(21, n * k), (n, k), cpu).unwrap(),
            dtype,
        )
        .unwrap();
        let blocks = k_super_blocks(&weights);
        let want = |row: usize, col: usize| {
            k_quant_dot(
                &blocks[col * kb..(col + 1) * kb],
                &activations[row * kb..(row + 1) * kb],
            )
        };
        // The reference against the dequantized product.
        let dequantized = weights.dequantize(cpu).unwrap();
        let exact: Vec<f32> = x_dequantized
            .matmul(&dequantized.t().unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let norms = |t: &Tensor| -> Vec<f32> {
            t.sqr()
                .unwrap()
                .sum(1)
                .unwrap()
                .sqrt()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (x_norms, w_norms) = (norms(&x_dequantized), norms(&dequantized));
        for row in 0..m {
            for col in 0..n {
                let (v, e) = (want(row, col), exact[row * n + col]);
                assert!(
                    (v - e).abs() <= 1e-5 * x_norms[row] * w_norms[col],
                    "{dtype:?} ({row}, {col}): the reference says {v}, the dequantized product {e}"
                );
            }
        }
        let matmul = QMatMul::from_qtensor(weights).unwrap();
        for &level in &levels {
            cpu_kernels::set_level(Some(level)).unwrap();
            for rows in [1, 2, 5, 16, 19] {
                let got: Vec<f32> = matmul
                    .forward(&x.narrow(0, 0, rows).unwrap())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                assert_outputs_are(&got, rows, n, &format!("{dtype:?} at {level:?}"), want);
            }
        }
    }
    cpu_kernels::set_level(None).unwrap();
}

/// Patch 0017: the engine's logger carries the paged KV cache's use for `llmserve_kv_cache_usage_perc`:
/// nothing before the paged scheduler's first step (and never without paged attention), then what it
/// recorded last.
#[test]
fn the_engine_logger_carries_the_paged_kv_cache_usage() {
    use mistralrs::core::{IntervalLogger, KvCacheUsage};
    let logger = IntervalLogger::new(std::time::Duration::from_secs(3600), None);
    assert_eq!(logger.kv_cache_usage(), None);
    for usage in [0.25, 0.75] {
        let recorded = KvCacheUsage {
            block_size: 32,
            total_blocks: 1000,
            usage,
        };
        logger.set_kv_cache_usage(recorded);
        assert_eq!(logger.kv_cache_usage(), Some(recorded));
    }
}
