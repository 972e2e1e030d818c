//! Relative position buckets (T5, "Exploring the Limits of Transfer Learning", Raffel et al.).

/// Bucket of a relative position `memory - query`, exactly as `transformers`'
/// `T5Attention._relative_position_bucket` computes it (the logarithmic part in f32).
///
/// Bidirectional (encoder) buckets use half the buckets for positive offsets; causal
/// (decoder) buckets only see the past (`relative_position <= 0`).
pub fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut num_buckets = num_buckets as i64;
    let mut bucket = 0i64;
    let distance = if bidirectional {
        num_buckets /= 2;
        if relative_position > 0 {
            bucket += num_buckets;
        }
        relative_position.abs()
    } else {
        (-relative_position).max(0)
    };
    let max_exact = num_buckets / 2;
    if distance < max_exact {
        bucket += distance;
    } else {
        let scaled = (distance as f32 / max_exact as f32).ln()
            / (max_distance as f32 / max_exact as f32).ln()
            * (num_buckets - max_exact) as f32;
        let large = max_exact + scaled as i64;
        bucket += large.min(num_buckets - 1);
    }
    bucket as usize
}

#[cfg(test)]
mod tests {
    use super::relative_position_bucket as b;

    #[test]
    fn matches_reference_values() {
        // Values computed with transformers' T5Attention._relative_position_bucket
        // (num_buckets=32, max_distance=128).
        let bi: Vec<usize> = [-200, -128, -64, -20, -8, -7, -1, 0, 1, 7, 8, 20, 64, 200]
            .iter()
            .map(|&r| b(r, true, 32, 128))
            .collect();
        assert_eq!(bi, vec![15, 15, 14, 10, 8, 7, 1, 0, 17, 23, 24, 26, 30, 31]);
        let causal: Vec<usize> = [-200, -64, -20, -16, -15, -1, 0, 5]
            .iter()
            .map(|&r| b(r, false, 32, 128))
            .collect();
        assert_eq!(causal, vec![31, 26, 17, 16, 15, 1, 0, 0]);
    }
}
