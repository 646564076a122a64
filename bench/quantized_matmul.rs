//! The quantized matmuls of one forward pass of SmolLM2-135M, timed per weight type, row count and CPU
//! kernel level: where engine patches candle 0001–0005 spend a decode step (docs/benchmarks.md).
//!
//! `cargo run --release --example quantized_matmul [-- TYPES [ROWS]]`, e.g. `-- q5_0,q4k 1,16`.
//! Each cell is the median of 7 runs of the 30 layers' four projections (q/o 576→576, k/v 576→192,
//! gate/up 576→1536, down 1536→576, with the K-quants' 256-wide blocks on `down` only, as llama.cpp's
//! Q4_K_M file has them) plus the 49,152-token head (Q8_0 in that file, so timed only for q8_0).

use std::time::Instant;

use candle_core::quantized::cpu_kernels::{self, KernelLevel};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

const LAYERS: usize = 30;
const HIDDEN: usize = 576;
const FFN: usize = 1536;
const VOCAB: usize = 49152;

fn weights(dtype: GgmlDType, out: usize, inp: usize) -> QMatMul {
    let values: Vec<f32> = (0..out * inp)
        .map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0)
        .collect();
    let dense = Tensor::from_vec(values, (out, inp), &Device::Cpu).unwrap();
    QMatMul::from_qtensor(QTensor::quantize(&dense, dtype).unwrap()).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let types: Vec<GgmlDType> = args
        .get(1)
        .map_or("q8_0,q4_0,q5_0,q4k,q5k,q6k", String::as_str)
        .split(',')
        .map(|t| match t {
            "q8_0" => GgmlDType::Q8_0,
            "q4_0" => GgmlDType::Q4_0,
            "q5_0" => GgmlDType::Q5_0,
            "q4k" => GgmlDType::Q4K,
            "q5k" => GgmlDType::Q5K,
            "q6k" => GgmlDType::Q6K,
            other => panic!("unknown type {other}"),
        })
        .collect();
    let rows: Vec<usize> = args
        .get(2)
        .map_or("1,4,16,64", String::as_str)
        .split(',')
        .map(|r| r.parse().unwrap())
        .collect();
    let levels: Vec<KernelLevel> = KernelLevel::ALL
        .into_iter()
        .filter(|&l| l <= cpu_kernels::supported())
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("ms per forward pass's matmuls ({cores} cores)");
    println!(
        "| type | level | {} |",
        rows.iter()
            .map(|r| format!("{r} rows"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(rows.len()));
    for &dtype in &types {
        let k_quant = matches!(dtype, GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K);
        // 576-wide inputs cannot take 256-value blocks: those projections are Q5_0 in a K-quant file.
        let narrow = if k_quant { GgmlDType::Q5_0 } else { dtype };
        // (weights, input width, how many per layer)
        let layer = [
            (weights(narrow, HIDDEN, HIDDEN), HIDDEN, 2),
            (weights(narrow, HIDDEN / 3, HIDDEN), HIDDEN, 2),
            (weights(narrow, FFN, HIDDEN), HIDDEN, 2),
            (weights(dtype, HIDDEN, FFN), FFN, 1),
        ];
        let head = (dtype == GgmlDType::Q8_0).then(|| weights(dtype, VOCAB, HIDDEN));
        for &level in &levels {
            cpu_kernels::set_level(Some(level)).unwrap();
            let mut cells = Vec::new();
            for &m in &rows {
                let x = Tensor::ones((m, HIDDEN), candle_core::DType::F32, &Device::Cpu).unwrap();
                let x_ffn = Tensor::ones((m, FFN), candle_core::DType::F32, &Device::Cpu).unwrap();
                let mut runs: Vec<f64> = (0..7)
                    .map(|_| {
                        let started = Instant::now();
                        for _ in 0..LAYERS {
                            for (w, width, times) in &layer {
                                let input = if *width == HIDDEN { &x } else { &x_ffn };
                                for _ in 0..*times {
                                    w.forward(input).unwrap();
                                }
                            }
                        }
                        if let Some(head) = &head {
                            head.forward(&x).unwrap();
                        }
                        started.elapsed().as_secs_f64() * 1e3
                    })
                    .collect();
                runs.sort_by(f64::total_cmp);
                cells.push(format!("{:.1}", runs[3]));
            }
            println!("| {dtype:?} | {} | {} |", level.name(), cells.join(" | "));
        }
    }
    cpu_kernels::set_level(None).unwrap();
}
