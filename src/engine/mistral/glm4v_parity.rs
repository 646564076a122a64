//! GLM-4.1V (engine patch 0013) against the reference implementation: transformers' outputs on a tiny random
//! GLM-4.1V and on the pictures beside it, written by `scripts/glm4v-fixtures.sh` into
//! `tests/fixtures/glm4v/` (see `make_fixtures.py` there for what each expected tensor is). The served
//! model's prefill logits and greedy decoding are checked end to end in `tests/integration/glm4v.rs`.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use mistralrs::core::glm4v::{rope_positions, ImageSettings, VisionTower};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm4v")
}

fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("expected.safetensors"), &Device::Cpu)
        .expect("tests/fixtures/glm4v/expected.safetensors")
}

fn picture(name: &str) -> image::DynamicImage {
    image::open(fixtures().join(name)).expect(name)
}

fn grid(t: &Tensor) -> [u32; 3] {
    let v = t.flatten_all().unwrap().to_vec1::<i64>().unwrap();
    [v[0] as u32, v[1] as u32, v[2] as u32]
}

fn floats(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The largest absolute difference, and the mean one.
fn differences(ours: &[f32], theirs: &[f32]) -> (f32, f32) {
    assert_eq!(ours.len(), theirs.len(), "lengths differ");
    let diffs: Vec<f32> = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let max = diffs.iter().copied().fold(0f32, f32::max);
    (max, diffs.iter().sum::<f32>() / diffs.len() as f32)
}

#[test]
fn an_image_at_its_target_size_becomes_the_same_patches_as_in_transformers() {
    let expected = expected();
    let (ours, ours_grid) = ImageSettings::default()
        .preprocess(&picture("chat-168x112.png"))
        .unwrap();
    assert_eq!(ours_grid, grid(&expected["chat.grid_thw"]));
    let (max, _) = differences(&ours, &floats(&expected["chat.pixel_values"]));
    assert!(max < 1e-5, "largest difference {max}");
}

#[test]
fn resized_images_get_transformers_grids_and_pixels() {
    let expected = expected();
    // A non-square picture that is resized (150 × 97 → 140 × 84).
    let (ours, ours_grid) = ImageSettings::default()
        .preprocess(&picture("nonsquare-150x97.png"))
        .unwrap();
    assert_eq!(ours_grid, grid(&expected["nonsquare.grid_thw"]));
    // The resize is torch's antialiased bicubic on 8-bit values, bit for bit: what differs is the float
    // rounding of the normalisation, far below one 8-bit level (0.015 after CLIP's std).
    let (max, _) = differences(&ours, &floats(&expected["nonsquare.pixel_values"]));
    assert!(max < 1e-5, "largest difference {max}");

    // Open-AutoGLM's 1080 × 2400 screenshot, at the processor's default limit and at vLLM's max_pixels.
    let screenshot = picture("screenshot-1080x2400.png");
    for (label, max_pixels) in [("default", None), ("max5m", Some(5_000_000))] {
        let mut settings = ImageSettings::default();
        if let Some(max) = max_pixels {
            settings.max_pixels = max;
        }
        let (ours, ours_grid) = settings.preprocess(&screenshot).unwrap();
        assert_eq!(
            ours_grid,
            grid(&expected[&format!("screenshot.{label}.grid_thw")]),
            "{label}"
        );
        let width = ours.len() / (ours_grid[1] * ours_grid[2]) as usize;
        let rows: Vec<i64> = expected[&format!("screenshot.{label}.rows")]
            .to_vec1()
            .unwrap();
        let ours_rows: Vec<f32> = rows
            .iter()
            .flat_map(|&r| ours[r as usize * width..(r as usize + 1) * width].to_vec())
            .collect();
        let (max, _) = differences(
            &ours_rows,
            &floats(&expected[&format!("screenshot.{label}.pixel_rows")]),
        );
        assert!(max < 1e-5, "{label}: largest difference {max}");
        let sums: Vec<f64> = expected[&format!("screenshot.{label}.sums")]
            .to_vec1()
            .unwrap();
        let ours_sum: f64 = ours.iter().map(|&v| f64::from(v)).sum();
        assert!(
            (ours_sum - sums[0]).abs() / sums[1] < 1e-6,
            "{label}: sum {ours_sum} vs {}",
            sums[0]
        );
    }
}

#[test]
fn three_row_positions_match_get_rope_index() {
    let expected = expected();
    let tokens: Vec<u32> = expected["chat.input_ids"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|t| t as u32)
        .collect();
    let image_token = 270; // `<|image|>` in the fixture's vocabulary
    let (positions, delta) =
        rope_positions(&tokens, image_token, &[grid(&expected["chat.grid_thw"])], 2).unwrap();
    let theirs: Vec<Vec<i64>> = expected["chat.position_ids"].to_vec2().unwrap();
    for (i, pos) in positions.iter().enumerate() {
        assert_eq!(
            *pos,
            [theirs[0][i], theirs[1][i], theirs[2][i]],
            "token {i}"
        );
    }
    assert_eq!(positions.len(), tokens.len());
    assert_eq!(
        delta,
        expected["chat.rope_delta"].to_vec1::<i64>().unwrap()[0]
    );
    // A run of image tokens that does not match its grid is refused, not misplaced.
    assert!(rope_positions(&tokens[..tokens.len() - 40], image_token, &[[1, 8, 14]], 2).is_err());
}

#[test]
fn the_vision_tower_matches_transformers() {
    let expected = expected();
    let tower = VisionTower::load(&fixtures().join("model"), &Device::Cpu).unwrap();
    let ours = tower
        .encode(
            &expected["chat.pixel_values"],
            &[grid(&expected["chat.grid_thw"])],
        )
        .unwrap();
    let theirs = &expected["chat.vision_embeds"];
    assert_eq!(ours.dims(), theirs.dims());
    let (max, _) = differences(&floats(&ours), &floats(theirs));
    assert!(max < 1e-4, "largest difference {max}");
}
