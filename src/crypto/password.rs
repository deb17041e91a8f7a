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
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Verdict::Valid {
            needs_rehash: parsed.algorithm.as_str() != "argon2id",
        },
        Err(_) => Verdict::Invalid,
    }
}

/// Spend the time of a real verification, for unknown users, so a wrong username and a wrong
/// password take the same time.
pub fn burn_verification(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy =
        DUMMY.get_or_init(|| hash_password("dialtone-dummy-password-1").unwrap_or_default());
    let _ = verify_password(password, dummy);
}

#[cfg(test)]
mod tests {
    use super::*;

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
