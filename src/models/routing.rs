//! Weighted canary: which version of an alias serves a request. Each request draws by weight among the
//! alias's ready versions; a request that carries a stable caller identity (OpenAI's `safety_identifier`
//! or `user`; the API key once keys exist) lands on a point fixed by that identity, so that one caller's
//! conversation stays on one version while the weights stand, and moves only if a weight shift moves its
//! point's range.

/// The version (an index into `weights`) that serves this request, or `None` when no version with a
/// positive weight is ready.
pub fn pick(
    alias: &str,
    weights: &[(String, u32)],
    ready: impl Fn(&str) -> bool,
    identity: Option<&str>,
) -> Option<usize> {
    let eligible = |&(ref id, weight): &(String, u32)| weight > 0 && ready(id);
    let total: u64 = weights
        .iter()
        .filter(|w| eligible(w))
        .map(|(_, w)| u64::from(*w))
        .sum();
    if total == 0 {
        return None;
    }
    let point = match identity {
        Some(identity) => stable_hash(alias, identity) % total,
        None => rand::random_range(0..total),
    };
    let mut upper = 0u64;
    for (index, entry) in weights.iter().enumerate() {
        if !eligible(entry) {
            continue;
        }
        upper += u64::from(entry.1);
        if point < upper {
            return Some(index);
        }
    }
    None
}

/// FNV-1a over the alias and the identity: the same on every replica and every release (the standard
/// library's hasher promises neither), so a caller is sticky across a fleet.
fn stable_hash(alias: &str, identity: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in alias.bytes().chain([0]).chain(identity.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // FNV's low bits mix poorly for short inputs; fold the high half in before taking a remainder.
    hash ^ (hash >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
        pairs.iter().map(|(id, w)| (id.to_string(), *w)).collect()
    }

    /// Pearson's chi-square statistic of observed counts against the weights' expectation.
    fn chi_square(counts: &[u64], weights: &[u32]) -> f64 {
        let n: u64 = counts.iter().sum();
        let total: u32 = weights.iter().sum();
        counts
            .iter()
            .zip(weights)
            .map(|(&observed, &w)| {
                let expected = n as f64 * f64::from(w) / f64::from(total);
                (observed as f64 - expected).powi(2) / expected
            })
            .sum()
    }

    #[test]
    fn anonymous_requests_split_by_weight() {
        let table = weights(&[("m@v1", 95), ("m@v2", 5)]);
        let mut counts = [0u64; 2];
        for _ in 0..20_000 {
            counts[pick("chat", &table, |_| true, None).unwrap()] += 1;
        }
        // One degree of freedom: 10.83 is the 0.1 % critical value; a fair split stays below it.
        assert!(chi_square(&counts, &[95, 5]) < 10.83, "{counts:?}");
    }

    #[test]
    fn identities_split_by_weight_and_stay_put() {
        let table = weights(&[("m@v1", 50), ("m@v2", 30), ("m@v3", 20)]);
        let mut counts = [0u64; 3];
        for caller in 0..20_000 {
            let identity = format!("user-{caller}");
            let first = pick("chat", &table, |_| true, Some(&identity)).unwrap();
            for _ in 0..3 {
                assert_eq!(pick("chat", &table, |_| true, Some(&identity)), Some(first));
            }
            counts[first] += 1;
        }
        // Two degrees of freedom: 13.82 at 0.1 %.
        assert!(chi_square(&counts, &[50, 30, 20]) < 13.82, "{counts:?}");
    }

    #[test]
    fn versions_not_ready_or_weighted_zero_get_nothing() {
        let table = weights(&[("m@v1", 0), ("m@v2", 10), ("m@v3", 90)]);
        for caller in 0..500 {
            let id = caller.to_string();
            assert_eq!(pick("a", &table, |v| v != "m@v3", Some(&id)), Some(1));
        }
        assert_eq!(pick("a", &table, |_| false, None), None);
        assert_eq!(pick("a", &weights(&[("m@v1", 0)]), |_| true, None), None);
    }

    #[test]
    fn a_weight_shift_moves_only_the_callers_whose_range_moved() {
        let before = weights(&[("m@v1", 90), ("m@v2", 10)]);
        let after = weights(&[("m@v1", 80), ("m@v2", 20)]);
        for caller in 0..2_000 {
            let id = caller.to_string();
            // The canary's range only grows: nobody on it is sent back.
            if pick("a", &before, |_| true, Some(&id)) == Some(1) {
                assert_eq!(pick("a", &after, |_| true, Some(&id)), Some(1));
            }
        }
    }
}
