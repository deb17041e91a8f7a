//! Password hashing: argon2id for new hashes; dialtone v1 bcrypt (`$2a$…`) hashes still verify and
//! are flagged for re-hashing. These calls are CPU-heavy: callers run them on the blocking pool,
//! never on an actor thread.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use super::CryptoError;

/// Result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid { needs_rehash: bool },
    Invalid,
}

/// Hash a password with argon2id (default parameters: 19 MiB, t=2, p=1).
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| CryptoError::PasswordHash(e.to_string()))
}

/// Check `password` against a stored argon2 or bcrypt hash. Unknown formats never verify.
pub fn verify_password(password: &str, stored: &str) -> Verdict {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return match bcrypt::verify(password.as_bytes(), stored) {
            Ok(true) => Verdict::Valid { needs_rehash: true },
            _ => Verdict::Invalid,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verdict::Invalid;
    };
    #[cfg(test)]
    tests::ARGON2_RUNS.with(|n| n.set(n.get() + 1));
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Verdict::Valid {
            needs_rehash: parsed.algorithm.as_str() != "argon2id",
        },
        Err(_) => Verdict::Invalid,
    }
}

/// The bcrypt cost dialtone v1 (Go's `bcrypt.DefaultCost`) stored its hashes with.
pub const V1_BCRYPT_COST: u32 = 10;

/// Check `password` against `stored`, or, when there is no stored hash (unknown user, account
/// without a password), against a fixed dummy hash. Either way exactly one full verification runs,
/// so a wrong username and a wrong password take the same time; the dummy never verifies.
///
/// Every check then lasts at least [`check_floor`]: a v1 bcrypt hash (not yet re-hashed, which
/// happens on its first successful login) verifies more slowly than argon2id, and without the
/// floor the answer's timing would tell an attacker which accounts still hold one.
pub fn check(password: &str, stored: Option<&str>) -> Verdict {
    let floor = check_floor();
    let started = std::time::Instant::now();
    let verdict = check_once(password, stored);
    if let Some(rest) = floor.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    verdict
}

fn check_once(password: &str, stored: Option<&str>) -> Verdict {
    match stored {
        Some(stored) => verify_password(password, stored),
        None => {
            let _ = verify_password(password, dummy_argon2());
            Verdict::Invalid
        }
    }
}

fn dummy_argon2() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("dialtone-dummy-password-1").unwrap_or_default())
}

/// The least time a [`check`] takes: the slower of one argon2id verification and one bcrypt
/// verification at [`V1_BCRYPT_COST`], each the fastest of three runs (so a busy moment during
/// the calibration does not inflate it), plus 10 %. Measured once per process, on first use.
pub fn check_floor() -> std::time::Duration {
    static FLOOR: OnceLock<std::time::Duration> = OnceLock::new();
    *FLOOR.get_or_init(|| {
        let fastest = |f: &dyn Fn()| {
            (0..3)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed()
                })
                .min()
                .unwrap_or_default()
        };
        let bcrypt_v1 =
            bcrypt::hash("dialtone-dummy-password-1", V1_BCRYPT_COST).unwrap_or_default();
        let argon2 = fastest(&|| {
            let _ = verify_password("calibration-1", dummy_argon2());
        });
        let bcrypt = fastest(&|| {
            let _ = verify_password("calibration-1", &bcrypt_v1);
        });
        argon2.max(bcrypt).mul_f64(1.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Full argon2 verifications run on this thread (the tests call `check` directly, so no
        /// other test's work is counted).
        pub(super) static ARGON2_RUNS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    fn argon2_runs_during(f: impl FnOnce() -> Verdict) -> (Verdict, u32) {
        // The floor's one-time calibration runs argon2 too; it is not the check's work.
        check_floor();
        let before = ARGON2_RUNS.with(|n| n.get());
        let verdict = f();
        (verdict, ARGON2_RUNS.with(|n| n.get()) - before)
    }

    #[test]
    fn an_unknown_user_costs_one_full_verification_and_never_verifies() {
        let real = hash_password("correct horse 1").unwrap();
        assert_eq!(
            argon2_runs_during(|| check("wrong horse 1", Some(&real))),
            (Verdict::Invalid, 1)
        );
        // The dummy's own password must not open a user-less account either.
        for pw in ["wrong horse 1", "dialtone-dummy-password-1"] {
            assert_eq!(
                argon2_runs_during(|| check(pw, None)),
                (Verdict::Invalid, 1)
            );
        }
    }

    #[test]
    fn every_kind_of_check_lasts_at_least_the_floor() {
        let floor = check_floor();
        let argon2 = hash_password("correct horse 1").unwrap();
        let bcrypt_v1 = bcrypt::hash("correct horse 1", V1_BCRYPT_COST).unwrap();
        // The floor covers a v1 bcrypt verification, the slowest kind.
        let t = std::time::Instant::now();
        let _ = verify_password("wrong horse 1", &bcrypt_v1);
        let bcrypt_alone = t.elapsed();
        assert!(
            floor >= bcrypt_alone.mul_f64(0.5),
            "{floor:?} vs {bcrypt_alone:?}"
        );
        for stored in [None, Some(argon2.as_str()), Some(bcrypt_v1.as_str())] {
            let t = std::time::Instant::now();
            assert_eq!(check("wrong horse 1", stored), Verdict::Invalid);
            let took = t.elapsed();
            assert!(took >= floor, "{stored:?}: {took:?} < {floor:?}");
        }
    }

    #[test]
    fn argon2id_round_trip() {
        let h = hash_password("correct horse 1").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(
            verify_password("correct horse 1", &h),
            Verdict::Valid {
                needs_rehash: false
            }
        );
        assert_eq!(verify_password("wrong horse 1", &h), Verdict::Invalid);
    }

    #[test]
    fn v1_bcrypt_hash_verifies_and_asks_for_rehash() {
        let h = bcrypt::hash("hunter2hunter2", 4).unwrap();
        let h = h.replacen("$2b$", "$2a$", 1);
        assert_eq!(
            verify_password("hunter2hunter2", &h),
            Verdict::Valid { needs_rehash: true }
        );
        assert_eq!(verify_password("nope", &h), Verdict::Invalid);
    }

    #[test]
    fn junk_hashes_never_verify() {
        for junk in ["", "plain", "$2a$", "$argon2id$garbage"] {
            assert_eq!(verify_password("x", junk), Verdict::Invalid);
        }
    }
}
