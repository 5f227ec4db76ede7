//! Validity periods: how long each kind of certificate lives, and the conversion from
//! `jiff::Timestamp` (the workspace's time type) to the time type rcgen writes into certificates.
//!
//! Time always comes in as an argument (`now`); only the convenience wrappers in `ca.rs` read the
//! clock, so every validity decision here is testable with a fixed instant.

use jiff::{SignedDuration, Timestamp};

use crate::PkiError;

/// How far `not_before` is set in the past, so that a peer whose clock is a little behind the
/// issuer's still accepts a freshly issued certificate.
pub const BACKDATE_SECS: i64 = 60 * 60;

/// Lifetime of the CA certificate made by [`crate::Ca::generate`]: ten years.
pub const CA_VALID_DAYS: u32 = 3650;

/// Lifetime of server certificates made by [`crate::Ca::issue_server_cert`]: 825 days (about
/// 27 months). The server should re-issue its certificate when it gets close to `not_after`
/// (see [`crate::not_after_from_cert_der`]); agents keep trusting the CA, not the leaf.
pub const SERVER_CERT_VALID_DAYS: u32 = 825;

/// Largest `valid_days` accepted by [`crate::Ca::sign_client_csr`]; it equals the CA's lifetime,
/// since a certificate cannot usefully outlive its issuer.
pub const MAX_CLIENT_CERT_VALID_DAYS: u32 = CA_VALID_DAYS;

/// Sets `params.not_before` and `params.not_after` for a certificate issued at `now` that lives
/// `valid_days`.
///
/// `not_before` is backdated by [`BACKDATE_SECS`]; `not_after` is exactly `valid_days` after
/// `now`. Fails, leaving `params` untouched, when either bound is not expressible.
pub(crate) fn apply_window(
    params: &mut rcgen::CertificateParams,
    now: Timestamp,
    valid_days: u32,
) -> Result<(), PkiError> {
    let not_before = now.checked_sub(SignedDuration::from_secs(BACKDATE_SECS)).map_err(|_| out_of_range(now))?;
    let not_after =
        now.checked_add(SignedDuration::from_hours(24 * i64::from(valid_days))).map_err(|_| out_of_range(now))?;
    let (not_before, not_after) = (unix_secs(not_before)?, unix_secs(not_after)?);
    // rcgen takes the `time` crate's type and only exposes `date_time_ymd` to build one; the
    // epoch plus a `std::time::Duration` avoids a direct dependency on `time`.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + std::time::Duration::from_secs(not_before);
    params.not_after = epoch + std::time::Duration::from_secs(not_after);
    Ok(())
}

/// Checks `valid_days` against `1..=max_days`.
pub(crate) fn check_days(valid_days: u32, max_days: u32) -> Result<(), PkiError> {
    if valid_days == 0 || valid_days > max_days {
        return Err(PkiError::InvalidValidity { valid_days, max_days });
    }
    Ok(())
}

/// Seconds since the Unix epoch, for times a certificate can carry.
///
/// Certificates can express 1950 to 9999; this conservatively rejects anything before 1970.
fn unix_secs(ts: Timestamp) -> Result<u64, PkiError> {
    const MAX_UNIX_SECS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z.
    let secs = ts.as_second();
    if secs > MAX_UNIX_SECS {
        return Err(out_of_range(ts));
    }
    u64::try_from(secs).map_err(|_| out_of_range(ts))
}

fn out_of_range(ts: Timestamp) -> PkiError {
    PkiError::TimeOutOfRange { time: ts.to_string() }
}
