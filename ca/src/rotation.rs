//! The renewal schedule for SVIDs, as pure functions of (not_before, not_after, now, random):
//! renew at 50% of the lifetime plus a jitter of up to +10% (so a fleet issued at once does
//! not renew at once), never later than 10% of the lifetime before expiry, and immediately
//! when that moment has already passed. [`warn_before_expiry`] says when a certificate is
//! close enough to expiry that it should have been renewed already (metrics, logs).
//!
//! No clock and no RNG live here: the caller passes `now` and a random `u64`.

use std::time::Duration;

use ::time::OffsetDateTime;

/// Renewal point as a fraction of the lifetime (numerator / denominator).
const BASE: (i128, i128) = (1, 2);
/// Largest jitter added, as a fraction of the lifetime.
const JITTER: (i128, i128) = (1, 10);
/// Renewal never happens later than `not_after - lifetime * SAFETY`.
const SAFETY: (i128, i128) = (1, 10);
/// Warn once less than this fraction of the lifetime remains.
const WARN: (i128, i128) = (1, 5);

/// When to renew, and how long to wait from `now` until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// The renewal instant (`now` if it is already due).
    pub at: OffsetDateTime,
    /// `at - now`, zero when due.
    pub delay: Duration,
}

fn frac(lifetime_ns: i128, (num, den): (i128, i128)) -> i128 {
    lifetime_ns * num / den
}

fn nanos(ns: i128) -> ::time::Duration {
    ::time::Duration::nanoseconds_i128(ns)
}

/// When to renew a certificate valid from `not_before` to `not_after`, given the current
/// time and a uniformly random `random` (the jitter is `random / 2^64` of 10% of the
/// lifetime). A certificate with no lifetime left to speak of is due now.
pub fn renewal_time(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
    random: u64,
) -> Renewal {
    let lifetime = (not_after - not_before).whole_nanoseconds();
    if lifetime <= 0 {
        return Renewal {
            at: now,
            delay: Duration::ZERO,
        };
    }
    let max_jitter = frac(lifetime, JITTER);
    // max_jitter < 2^63 for any representable lifetime, so this product fits in a u128.
    let jitter = ((max_jitter as u128 * u128::from(random)) >> 64) as i128;
    let planned = not_before + nanos(frac(lifetime, BASE) + jitter);
    let deadline = not_after - nanos(frac(lifetime, SAFETY));
    let at = planned.min(deadline).max(now);
    Renewal {
        at,
        delay: (at - now).unsigned_abs(),
    }
}

/// How far through its lifetime a certificate is at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryState {
    /// Less than 80% of the lifetime used.
    Healthy,
    /// Less than 20% of the lifetime left (renewal should have happened): warn.
    ExpiringSoon {
        /// Time left until `not_after`.
        remaining: Duration,
    },
    /// Past `not_after`.
    Expired,
    /// Before `not_before`.
    NotYetValid,
}

/// Whether to warn about a certificate's expiry at `now`: `Some(remaining)` once less than
/// 20% of its lifetime is left (`Some(ZERO)` when expired), `None` while healthy or not yet
/// valid.
pub fn warn_before_expiry(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Option<Duration> {
    match expiry_state(not_before, not_after, now) {
        ExpiryState::Healthy | ExpiryState::NotYetValid => None,
        ExpiryState::ExpiringSoon { remaining } => Some(remaining),
        ExpiryState::Expired => Some(Duration::ZERO),
    }
}

/// Classifies a certificate's validity at `now`; see [`ExpiryState`].
pub fn expiry_state(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> ExpiryState {
    if now > not_after {
        return ExpiryState::Expired;
    }
    if now < not_before {
        return ExpiryState::NotYetValid;
    }
    let lifetime = (not_after - not_before).whole_nanoseconds();
    let remaining = not_after - now;
    if remaining.whole_nanoseconds() < frac(lifetime, WARN) {
        ExpiryState::ExpiringSoon {
            remaining: remaining.unsigned_abs(),
        }
    } else {
        ExpiryState::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::time::Duration as D;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    #[test]
    fn renewal_table() {
        let nb = t0();
        let na = nb + D::hours(1);
        // (now offset from nb, random, expected renewal offset from nb)
        let cases: &[(D, u64, D)] = &[
            (D::ZERO, 0, D::minutes(30)),                // 50%, no jitter
            (D::ZERO, u64::MAX / 2 + 1, D::minutes(33)), // 50% + half of 10%
            (D::ZERO, u64::MAX, D::minutes(36) - D::nanoseconds(1)), // just under 60%
            (D::minutes(10), 0, D::minutes(30)),         // waiting
            (D::minutes(45), 0, D::minutes(45)),         // already past: due now
            (D::minutes(59), u64::MAX, D::minutes(59)),  // nearly expired: due now
            (D::hours(2), 0, D::hours(2)),               // expired: due now
        ];
        for (now_off, random, want_off) in cases {
            let now = nb + *now_off;
            let r = renewal_time(nb, na, now, *random);
            assert_eq!(r.at, nb + *want_off, "now+{now_off} random {random}");
            assert_eq!(r.delay, (r.at - now).unsigned_abs());
            assert!(r.at <= na - D::minutes(6) || r.at == now);
        }
    }

    #[test]
    fn renewal_is_bounded_for_any_random() {
        let nb = t0();
        for hours in [1i64, 24, 24 * 365, 24 * 3650] {
            let na = nb + D::hours(hours);
            let life = na - nb;
            for random in [0, 1, 12345, u64::MAX / 3, u64::MAX - 1, u64::MAX] {
                let r = renewal_time(nb, na, nb, random);
                assert!(r.at >= nb + life / 2, "{hours}h {random}");
                assert!(r.at < nb + life * 6 / 10, "{hours}h {random}");
                assert!(r.at <= na - life / 10);
                assert_eq!(r.delay, (r.at - nb).unsigned_abs());
            }
        }
    }

    #[test]
    fn degenerate_lifetimes_are_due_now() {
        let now = t0();
        for (nb, na) in [(now, now), (now + D::hours(1), now)] {
            let r = renewal_time(nb, na, now, 7);
            assert_eq!(r.at, now);
            assert_eq!(r.delay, Duration::ZERO);
        }
    }

    #[test]
    fn expiry_table() {
        let nb = t0();
        let na = nb + D::hours(10);
        let cases: &[(D, ExpiryState)] = &[
            (D::hours(-1), ExpiryState::NotYetValid),
            (D::ZERO, ExpiryState::Healthy),
            (D::hours(7), ExpiryState::Healthy),
            (D::hours(8), ExpiryState::Healthy), // exactly 20% left
            (
                D::hours(9),
                ExpiryState::ExpiringSoon {
                    remaining: Duration::from_secs(3600),
                },
            ),
            (
                D::hours(10),
                ExpiryState::ExpiringSoon {
                    remaining: Duration::ZERO,
                },
            ),
            (D::hours(11), ExpiryState::Expired),
        ];
        for (off, want) in cases {
            assert_eq!(expiry_state(nb, na, nb + *off), *want, "nb+{off}");
        }
    }

    #[test]
    fn warn_helper() {
        let nb = t0();
        let na = nb + D::hours(10);
        assert_eq!(warn_before_expiry(nb, na, nb + D::hours(1)), None);
        assert_eq!(warn_before_expiry(nb, na, nb - D::hours(1)), None);
        assert_eq!(
            warn_before_expiry(nb, na, nb + D::minutes(570)),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(
            warn_before_expiry(nb, na, na + D::seconds(1)),
            Some(Duration::ZERO)
        );
    }
}
