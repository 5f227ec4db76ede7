//! Attempt policy: how long to wait before retrying a failed attempt, and when to give up.

/// Bounds on retries for one endpoint's upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptPolicy {
    /// Attempts allowed in all, the first one included. At least 1.
    pub max_attempts: u32,
    /// Wait after the first failure; doubled after each further failure.
    pub backoff_initial_secs: u64,
    /// The wait never grows beyond this.
    pub backoff_max_secs: u64,
}

/// What to do after an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after this many seconds.
    RetryAfter { secs: u64 },
    /// The last attempt failed: restore the previous version and report.
    GiveUp,
}

/// Hard upper bound on attempts, whatever an operator asks for: a broken package must not
/// keep an endpoint busy for days.
pub const MAX_ATTEMPTS_LIMIT: u32 = 20;

impl AttemptPolicy {
    /// Decides the next step after `failed_attempts` attempts have failed (1 after the first).
    pub fn after_failure(&self, failed_attempts: u32) -> AfterFailure {
        if failed_attempts >= self.max_attempts.clamp(1, MAX_ATTEMPTS_LIMIT) {
            return AfterFailure::GiveUp;
        }
        let doublings = failed_attempts.saturating_sub(1).min(32);
        let secs = self.backoff_initial_secs.saturating_mul(1u64 << doublings).min(self.backoff_max_secs);
        AfterFailure::RetryAfter { secs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps_then_gives_up() {
        let p = AttemptPolicy { max_attempts: 6, backoff_initial_secs: 5, backoff_max_secs: 30 };
        let steps: Vec<_> = (1..=6).map(|n| p.after_failure(n)).collect();
        expect_test::expect![[r#"
            [
                RetryAfter {
                    secs: 5,
                },
                RetryAfter {
                    secs: 10,
                },
                RetryAfter {
                    secs: 20,
                },
                RetryAfter {
                    secs: 30,
                },
                RetryAfter {
                    secs: 30,
                },
                GiveUp,
            ]
        "#]]
        .assert_debug_eq(&steps);
    }

    #[test]
    fn single_attempt_gives_up_at_once() {
        let p = AttemptPolicy { max_attempts: 1, backoff_initial_secs: 5, backoff_max_secs: 30 };
        assert_eq!(p.after_failure(1), AfterFailure::GiveUp);
    }

    #[test]
    fn zero_attempts_means_one_and_huge_counts_are_capped() {
        let zero = AttemptPolicy { max_attempts: 0, backoff_initial_secs: 1, backoff_max_secs: 1 };
        assert_eq!(zero.after_failure(1), AfterFailure::GiveUp);
        let huge = AttemptPolicy { max_attempts: 1000, backoff_initial_secs: 1, backoff_max_secs: u64::MAX };
        assert_eq!(huge.after_failure(MAX_ATTEMPTS_LIMIT), AfterFailure::GiveUp);
        assert!(matches!(huge.after_failure(19), AfterFailure::RetryAfter { .. }));
    }
}
