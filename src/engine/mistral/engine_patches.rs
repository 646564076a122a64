//! Kernel-level proof of our engine patches (`patches/`): each test here fails on the unpatched crate.
//! The patches that need a whole model are proven by the integration tests their headers name.

mod reference;

use candle_core::{Device, Tensor};
use mistralrs::core::layers::{prompt_mask, KvCache, Sdpa};
use reference::{
    assert_outputs_are, k_quant_dot, k_super_blocks, q8_0_blocks, q8_0_dot, q8k_blocks, values,
    Prompt, Step, BATCH, KV_LEN_TILES,
};

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

/// Serializes the tests that force a kernel level: the level is process-wide. (Tests that only multiply
/// need not take it: every level gives the same bits, which is what the test below proves.)
static KERNEL_LEVEL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// patches/candle-core-0.10.2/0001–0003 and 0005: the Q8_0 matmul computes tiles of rows × columns in one
/// parallel loop, columns in SIMD lanes (sixteen per register with AVX-512 VNNI); Q4_0 and Q5_0 weights
/// join its kernels (0005), and the kernel level can be forced. At every level this CPU supports (scalar,
/// AVX2 and, where reported, AVX-512), every output of a Q8_0, Q4_0 or Q5_0 matmul, for 1 to 33 rows,
/// must be exactly the dot product of `reference::q8_0_dot`: so levels agree bit for bit, and a row's output is the
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

/// patches/candle-core-0.10.2/0005: the K-quants' products (Q4_K, Q5_K, Q6_K weights × Q8_K activations)
/// sum exact integers per super-block and then take fixed float steps. At every level this CPU supports,
/// for 1 to 19 rows, every output must be exactly the dot product of `reference::k_quant_dot`. Upstream's AVX2 and
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
