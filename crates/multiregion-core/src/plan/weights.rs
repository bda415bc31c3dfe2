//! Integer traffic weights that sum to 100.

/// Normalises relative shares to integers summing to 100 by largest
/// remainder; ties go to the earlier entry. All-zero shares give all zeros.
pub fn normalise(shares: &[i32]) -> Vec<i32> {
    let total: i64 = shares.iter().map(|&s| s.max(0) as i64).sum();
    if total == 0 {
        return vec![0; shares.len()];
    }
    let mut out: Vec<i32> = Vec::with_capacity(shares.len());
    let mut remainders: Vec<(i64, usize)> = Vec::with_capacity(shares.len());
    for (i, &s) in shares.iter().enumerate() {
        let scaled = s.max(0) as i64 * 100;
        out.push((scaled / total) as i32);
        remainders.push((scaled % total, i));
    }
    let mut left = 100 - out.iter().sum::<i32>();
    // Largest remainder first; among equals, list order.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        if shares[i] > 0 {
            out[i] += 1;
            left -= 1;
        }
    }
    out
}

/// `us-east=0 eu-west=100`: spec order, single spaces.
pub fn summary<'a>(entries: impl IntoIterator<Item = (&'a str, i32)>) -> String {
    entries
        .into_iter()
        .map(|(name, w)| format!("{name}={w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let cases: &[(&[i32], &[i32])] = &[
            (&[100, 100, 100], &[34, 33, 33]),
            (&[50, 50], &[50, 50]),
            (&[1, 1, 1, 1, 1, 1], &[17, 17, 17, 17, 16, 16]),
            (&[0, 100, 0], &[0, 100, 0]),
            (&[0, 0], &[0, 0]),
            (&[1, 2], &[33, 67]),
            (&[1000, 1], &[100, 0]),
            (&[300, 100], &[75, 25]),
        ];
        for (shares, want) in cases {
            assert_eq!(normalise(shares), *want, "{shares:?}");
        }
    }

    #[test]
    fn summary_is_spec_order_with_single_spaces() {
        assert_eq!(
            summary([("us-east", 0), ("eu-west", 100)]),
            "us-east=0 eu-west=100"
        );
    }

    proptest! {
        #[test]
        fn sums_to_100_when_any_share_is_positive(shares in proptest::collection::vec(0i32..=1000, 1..12)) {
            let w = normalise(&shares);
            if shares.iter().any(|&s| s > 0) {
                prop_assert_eq!(w.iter().sum::<i32>(), 100);
            } else {
                prop_assert!(w.iter().all(|&x| x == 0));
            }
            for (s, x) in shares.iter().zip(&w) {
                if *s == 0 { prop_assert_eq!(*x, 0); }
                prop_assert!(*x >= 0 && *x <= 100);
            }
        }
    }
}
