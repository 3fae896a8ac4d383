//! Retry delays: exponential backoff with jitter.

use std::time::Duration;

use rand::{Rng, RngExt};

use crate::workflow::Retry;

/// The delay before attempt `failed + 1`, after `failed` failures (≥ 1): the initial backoff
/// doubled per failure, capped at the maximum, then scaled by a random factor in [0.5, 1.0]
/// so that many sites failing together do not retry in lockstep.
pub fn delay(retry: &Retry, failed: u32, rng: &mut impl Rng) -> Duration {
    let doublings = failed.saturating_sub(1).min(30);
    let raw = retry
        .initial_backoff
        .saturating_mul(1 << doublings)
        .min(retry.max_backoff);
    // Backoffs are at most a day (`limits::MAX_BACKOFF`), so the product cannot overflow.
    raw.mul_f64(rng.random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn doubles_to_the_cap_with_jitter_below_the_nominal_delay() {
        let retry = Retry {
            attempts: 10,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(10),
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for (failed, nominal) in [(1, 2), (2, 4), (3, 8), (4, 10), (9, 10)] {
            let d = delay(&retry, failed, &mut rng);
            let nominal = Duration::from_secs(nominal);
            assert!(
                d <= nominal && d >= nominal / 2,
                "failure {failed}: {d:?} vs {nominal:?}"
            );
        }
    }
}
