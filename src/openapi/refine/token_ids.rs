//! The pattern of a `logit_bias` key: a decimal token id up to a bound, as validation reads it.

/// A `logit_bias` key as validation reads it (`str::trim` then `u32` parsing, which takes a `+` and
/// leading zeros): a decimal token id up to `max`.
pub(super) fn token_id_key(max: usize) -> String {
    format!("^[ \\t\\n\\r]*\\+?0*({})[ \\t\\n\\r]*$", decimal_range(max))
}

/// A regular expression matching the decimal numbers 0..=`max` without leading zeros.
pub(super) fn decimal_range(max: usize) -> String {
    let digits: Vec<u8> = max.to_string().bytes().map(|b| b - b'0').collect();
    let width = digits.len();
    let mut alternatives = vec!["0".to_string()];
    // Every number with fewer digits than `max`.
    if width >= 2 {
        alternatives.push(format!("[1-9][0-9]{{0,{}}}", width - 2));
    }
    // Numbers of `max`'s width: equal to it up to position i, smaller at i, anything after.
    for i in 0..width {
        let low = if i == 0 { 1 } else { 0 };
        if digits[i] > low {
            let prefix: String = digits[..i].iter().map(|d| d.to_string()).collect();
            let rest = width - i - 1;
            let tail = if rest > 0 {
                format!("[0-9]{{{rest}}}")
            } else {
                String::new()
            };
            alternatives.push(format!("{prefix}[{low}-{}]{tail}", digits[i] - 1));
        }
    }
    if max > 0 {
        alternatives.push(max.to_string());
    }
    alternatives.join("|")
}
