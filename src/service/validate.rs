//! Input validation shared by every endpoint and the WebSocket protocol.

use super::{ServiceError, ServiceResult};
use crate::crypto::e2e::parse_public_key;

/// Largest client ciphertext for names (channel names, display names, profile names).
pub const MAX_NAME_ENC: usize = 4096;
/// Largest key envelope.
pub const MAX_ENVELOPE: usize = 4096;
/// Largest `client_message_id`.
pub const MAX_CLIENT_MESSAGE_ID: usize = 128;

/// Trim and lowercase; 2–32 characters with no whitespace or control characters inside.
pub fn normalize_username(raw: &str) -> ServiceResult<String> {
    let name = raw.trim().to_lowercase();
    let len = name.chars().count();
    if !(2..=32).contains(&len) {
        return Err(ServiceError::invalid("username must be 2 to 32 characters"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServiceError::invalid(
            "username must not contain whitespace or control characters",
        ));
    }
    Ok(name)
}

/// A username being created (registration, `POST /users`): [`normalize_username`], and no
/// character that renders as nothing or reorders the text around it, so two accounts cannot look
/// alike and a name cannot spoof what follows it.
///
/// Only new names are checked: login keeps the v1 normalization alone, so a v1 account whose name
/// holds such a character still logs in (and a wrong one gets the usual 401, never a 400).
pub fn new_username(raw: &str) -> ServiceResult<String> {
    let name = normalize_username(raw)?;
    if name.chars().any(is_invisible) {
        return Err(ServiceError::invalid(
            "username must not contain invisible, formatting or bidirectional control characters",
        ));
    }
    Ok(name)
}

/// Format (Cf: zero-width, bidi controls, word joiners, tags, BOM), private-use, unassigned and
/// separator characters, plus the letters and marks that draw nothing (Hangul fillers, the braille
/// blank, the combining grapheme joiner, variation selectors).
fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        G::Format
            | G::PrivateUse
            | G::Unassigned
            | G::Surrogate
            | G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::Control
    ) || matches!(
        c,
        '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}' | '\u{034F}'
            | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{FE00}'..='\u{FE0F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// At least 8 bytes with a letter and a digit; at most 1024 bytes.
pub fn check_password(password: &str) -> ServiceResult<()> {
    if password.len() > 1024 {
        return Err(ServiceError::invalid("password must be at most 1024 bytes"));
    }
    if password.len() < 8 {
        return Err(ServiceError::invalid("password must be at least 8 bytes"));
    }
    if !password.chars().any(char::is_alphabetic) || !password.chars().any(|c| c.is_ascii_digit()) {
        return Err(ServiceError::invalid(
            "password must contain a letter and a digit",
        ));
    }
    Ok(())
}

/// A device public key: standard base64 of 32 bytes. Returns the canonical encoding.
pub fn public_key(raw: &str) -> ServiceResult<String> {
    use base64::Engine;
    let key = parse_public_key(raw).map_err(|_| {
        ServiceError::invalid("public_key must be standard base64 of a 32-byte X25519 key")
    })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key.as_bytes()))
}

/// A server-generated id: a UUID string.
pub fn id(field: &str, raw: &str) -> ServiceResult<String> {
    uuid::Uuid::parse_str(raw.trim())
        .map(|u| u.to_string())
        .map_err(|_| ServiceError::invalid(format!("{field} must be a UUID")))
}

/// A value the store can hold: no NUL (U+0000), which PostgreSQL `text` and `jsonb` refuse (the
/// statement fails, and with it a whole group-commit batch). SQLite could store it, but both
/// backends refuse the same input. Every client string that reaches the database without passing
/// through a stricter check ([`id`], [`public_key`], [`normalize_username`]) goes through here.
pub fn storable(field: &str, raw: &str) -> ServiceResult<()> {
    if raw.contains('\0') {
        return Err(ServiceError::invalid(format!(
            "{field} must not contain NUL (U+0000)"
        )));
    }
    Ok(())
}

/// Standard base64 of a 64-byte Ed25519 signature (its validity is for readers to check).
pub fn signature(field: &str, raw: &str) -> ServiceResult<()> {
    use base64::Engine;
    match base64::engine::general_purpose::STANDARD.decode(raw) {
        Ok(b) if b.len() == 64 => Ok(()),
        _ => Err(ServiceError::invalid(format!(
            "{field} must be standard base64 of a 64-byte Ed25519 signature"
        ))),
    }
}

/// Non-empty, storable client ciphertext of bounded size.
pub fn ciphertext(field: &str, raw: &str, max: usize) -> ServiceResult<()> {
    if raw.is_empty() {
        return Err(ServiceError::invalid(format!("{field} is required")));
    }
    storable(field, raw)?;
    if raw.len() > max {
        return Err(ServiceError::invalid(format!(
            "{field} must be at most {max} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_normalized_and_bounded() {
        assert_eq!(normalize_username("  Alice ").unwrap(), "alice");
        assert!(normalize_username("a").is_err());
        assert!(normalize_username(&"x".repeat(33)).is_err());
        assert!(normalize_username("al ice").is_err());
        assert!(normalize_username("al\u{7}ice").is_err());
        assert_eq!(normalize_username("ÄLÏCE").unwrap(), "älïce");
    }

    #[test]
    fn new_usernames_refuse_invisible_and_bidi_characters() {
        let refused = [
            "al\u{200B}ice",   // zero-width space
            "al\u{200C}ice",   // zero-width non-joiner
            "al\u{200D}ice",   // zero-width joiner
            "al\u{2060}ice",   // word joiner
            "\u{FEFF}alice",   // byte-order mark (not trimmed: not whitespace)
            "al\u{00AD}ice",   // soft hyphen
            "al\u{202E}ecila", // right-to-left override
            "al\u{202A}ice",   // left-to-right embedding
            "al\u{2066}ice",   // left-to-right isolate
            "al\u{2069}ice",   // pop directional isolate
            "al\u{200F}ice",   // right-to-left mark
            "al\u{061C}ice",   // Arabic letter mark
            "al\u{E0041}ice",  // tag character
            "al\u{E000}ice",   // private use
            "al\u{3164}ice",   // Hangul filler
            "al\u{2800}ice",   // braille blank
            "al\u{034F}ice",   // combining grapheme joiner
            "al\u{FE0F}ice",   // variation selector
            "al\u{1D173}ice",  // musical symbol begin beam (Cf)
        ];
        for name in refused {
            let e = new_username(name).unwrap_err();
            assert!(e.to_string().contains("invisible"), "{name:?}: {e}");
            // The v1 normalization alone still accepts it: login looks such a v1 name up.
            assert!(normalize_username(name).is_ok(), "{name:?}");
        }
        for name in [
            "alice",
            "  Bob ",
            "älïce",
            "zoë",
            "李小龙",
            "o'brien",
            "dev-ops_1",
            "émile",
        ] {
            assert_eq!(
                new_username(name).unwrap(),
                normalize_username(name).unwrap()
            );
        }
        // Combining marks that draw something stay allowed (decomposed accents).
        assert!(new_username("e\u{0301}mile").is_ok());
    }

    #[test]
    fn password_rules() {
        assert!(check_password("abcdefg1").is_ok());
        assert!(check_password("abcdef1").is_err());
        assert!(check_password("abcdefgh").is_err());
        assert!(check_password("12345678").is_err());
        assert!(check_password(&format!("a1{}", "x".repeat(1023))).is_err());
    }

    #[test]
    fn nul_is_not_storable() {
        assert!(storable("f", "abc").is_ok());
        let e = storable("body", "a\0b").unwrap_err().to_string();
        assert!(e.contains("body") && e.contains("NUL"), "{e}");
        assert!(ciphertext("name_enc", "\0", 10).is_err());
    }

    #[test]
    fn public_keys_are_canonical() {
        let k = crate::crypto::e2e::DeviceKeypair::generate().public_key_b64();
        assert_eq!(public_key(&format!(" {k} ")).unwrap(), k);
        assert!(public_key("AAAA").is_err());
    }
}
