//! Tests of the model bounds in the served document and of the token-id pattern.

use super::token_ids::decimal_range;
use super::*;

#[test]
fn the_served_document_states_the_model_bounds() {
    let committed = super::super::document_value();
    let served = with_model_bounds(
        committed.clone(),
        ModelBounds {
            vocab_size: 49152,
            accepts_images: false,
            fill_in_middle: false,
            embedding_dimensions: None,
        },
    );
    let schemas = &served["components"]["schemas"];
    assert_eq!(
        schemas["DetokenizeRequest"]["properties"]["tokens"]["items"]["maximum"],
        49151
    );
    assert_eq!(
        schemas["ContentPart"]["properties"]["type"]["const"],
        "text"
    );
    let pattern = schemas["CompletionRequest"]["properties"]["logit_bias"]["propertyNames"]
        ["pattern"]
        .as_str()
        .unwrap();
    assert!(pattern.contains("|49151)"), "{pattern}");
    let vision = with_model_bounds(
        committed.clone(),
        ModelBounds {
            vocab_size: 10,
            accepts_images: true,
            fill_in_middle: true,
            embedding_dimensions: None,
        },
    );
    assert_eq!(
        vision["components"]["schemas"]["ContentPart"],
        committed["components"]["schemas"]["ContentPart"]
    );
}

#[test]
fn decimal_ranges_match_exactly_the_numbers_up_to_the_bound() {
    for max in [0, 1, 9, 10, 99, 100, 49151, 32000, 151935] {
        let pattern = format!("^({})$", decimal_range(max));
        let matches = |n: usize| -> bool { full_match(&pattern, &n.to_string()) };
        for n in (0..=max.min(2000)).chain(max.saturating_sub(2000)..=max) {
            assert!(matches(n), "{n} should match {pattern}");
        }
        for n in [max + 1, max + 10, max * 10 + 1] {
            assert!(!matches(n), "{n} should not match {pattern}");
        }
        assert!(!full_match(&pattern, "01"));
    }
}

/// A tiny matcher for the patterns `decimal_range` writes: alternatives of literal digits, `[a-b]`
/// classes and `{n}` / `{0,n}` repeats of `[0-9]`.
fn full_match(pattern: &str, text: &str) -> bool {
    let body = &pattern[2..pattern.len() - 2];
    body.split('|')
        .any(|alternative| matches_alternative(alternative, text))
}

fn matches_alternative(alternative: &str, text: &str) -> bool {
    // Expand into a list of (class, min, max) items.
    let mut items: Vec<(u8, u8, usize, usize)> = Vec::new();
    let bytes = alternative.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let (lo, hi) = if bytes[i] == b'[' {
            let class = (bytes[i + 1], bytes[i + 3]);
            i += 5;
            class
        } else {
            let digit = bytes[i];
            i += 1;
            (digit, digit)
        };
        let (mut min, mut max) = (1, 1);
        if i < bytes.len() && bytes[i] == b'{' {
            let end = alternative[i..].find('}').unwrap() + i;
            let spec = &alternative[i + 1..end];
            (min, max) = match spec.split_once(',') {
                Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                None => (spec.parse().unwrap(), spec.parse().unwrap()),
            };
            i = end + 1;
        }
        items.push((lo, hi, min, max));
    }
    fn go(items: &[(u8, u8, usize, usize)], text: &[u8]) -> bool {
        let Some(&(lo, hi, min, max)) = items.first() else {
            return text.is_empty();
        };
        (min..=max).any(|n| {
            n <= text.len()
                && text[..n].iter().all(|c| (lo..=hi).contains(c))
                && go(&items[1..], &text[n..])
        })
    }
    go(&items, text.as_bytes())
}
