//! Retry back-off: 2^(n-1) × base with ±25 % jitter (seed: 1 s → 2 s → 4 s). The jitter
//! is a hash of (job id, attempt), so it spreads retries yet is the same in every run.

use std::time::Duration;

use uuid::Uuid;

/// The delay before the attempt after `attempt` (1-based) of job `id`.
pub fn retry_delay(id: Uuid, attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let raw = base.saturating_mul(1u32 << exp).min(max);
    // 0..=1000 from the id and attempt, mapped to a factor in [0.75, 1.25].
    let h = (id.as_u128() as u64 ^ (id.as_u128() >> 64) as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(attempt).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let permille = (h >> 33) % 1001;
    let factor = 0.75 + (permille as f64) / 2000.0;
    raw.mul_f64(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_bounded_jitter() {
        let id = Uuid::now_v7();
        let base = Duration::from_secs(1);
        for (attempt, nominal) in [(1u32, 1.0f64), (2, 2.0), (3, 4.0), (4, 8.0)] {
            let d = retry_delay(id, attempt, base, Duration::from_secs(3600)).as_secs_f64();
            assert!(
                d >= nominal * 0.75 && d <= nominal * 1.25,
                "attempt {attempt}: {d}"
            );
            assert_eq!(
                d,
                retry_delay(id, attempt, base, Duration::from_secs(3600)).as_secs_f64()
            );
        }
        assert!(retry_delay(id, 40, base, Duration::from_secs(60)) <= Duration::from_secs(60));
    }
}
