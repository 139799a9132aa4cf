//! Several subscriber-token keys at once, chosen by the token's `kid`: a JWK Set file
//! (RFC 7517, `{"keys":[...]}`) for key rotation without dropping every desk. The
//! issuer publishes the new key beside the old one, the relay re-reads the set on
//! SIGHUP, tokens signed with either verify; once the old key leaves the set, the
//! connections still holding a token it signed are closed (see
//! [`revocation`](super::revocation)).
//!
//! Every key must be of the configured algorithm (an `alg` member naming another is
//! refused, and so is a key of another type), carry a `kid` when the set holds more than
//! one, and no two may share a `kid`. At most [`MAX_KEYS`].

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Keys a set may hold at most.
pub const MAX_KEYS: usize = 64;

/// One verification key and the `kid` that selects it.
pub struct KeyEntry {
    /// The key's id (`None` only in a set of one).
    pub kid: Option<String>,
    /// The key.
    pub key: DecodingKey,
}

/// Parses a JWK Set for `algorithm` (HS256, RS256 or ES256); `Err` says which key is
/// wrong and why.
pub fn parse_jwks(text: &str, algorithm: Algorithm) -> Result<Vec<KeyEntry>, String> {
    let mut bytes = text.as_bytes().to_vec();
    let set: JwkSet = simd_json::serde::from_slice(&mut bytes)
        .map_err(|e| format!("not a JWK Set ({{\"keys\":[..]}}): {e}"))?;
    if set.keys.is_empty() || set.keys.len() > MAX_KEYS {
        return Err(format!(
            "a set holds 1..={MAX_KEYS} keys, this one {}",
            set.keys.len()
        ));
    }
    let mut keys: Vec<KeyEntry> = Vec::with_capacity(set.keys.len());
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = jwk.common.key_id.clone();
        let name = kid.clone().unwrap_or_else(|| format!("key {i}"));
        let wrong = |why: &str| Err(format!("{name}: {why}"));
        let want = match algorithm {
            Algorithm::HS256 => KeyAlgorithm::HS256,
            Algorithm::RS256 => KeyAlgorithm::RS256,
            Algorithm::ES256 => KeyAlgorithm::ES256,
            other => return Err(format!("{other:?} is not offered")),
        };
        if jwk.common.key_algorithm.is_some_and(|a| a != want) {
            return wrong(&format!("its `alg` is not the configured {algorithm:?}"));
        }
        let fits = match (&jwk.algorithm, algorithm) {
            (AlgorithmParameters::OctetKey(_), Algorithm::HS256) => true,
            (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
            (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => {
                p.curve == EllipticCurve::P256
            }
            _ => false,
        };
        if !fits {
            return wrong(&format!("not a {algorithm:?} key"));
        }
        if set.keys.len() > 1 && kid.is_none() {
            return wrong("a set of several keys needs a `kid` on each");
        }
        if kid.is_some() && keys.iter().any(|k| k.kid == kid) {
            return wrong("this `kid` is given twice");
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{name}: {e}"))?;
        if algorithm == Algorithm::HS256 && key_bytes_too_short(jwk) {
            return wrong("an HS256 secret is at least 32 bytes");
        }
        keys.push(KeyEntry { kid, key });
    }
    Ok(keys)
}

/// Whether an `oct` key's secret is shorter than 32 bytes.
fn key_bytes_too_short(jwk: &jsonwebtoken::jwk::Jwk) -> bool {
    use base64::Engine;
    match &jwk.algorithm {
        AlgorithmParameters::OctetKey(p) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.value.trim_end_matches('='))
            .map_or(true, |k| k.len() < 32),
        _ => false,
    }
}

/// The key for a token whose header names `kid`: that key, or with no `kid` the only
/// key of a set of one.
pub fn select<'k>(keys: &'k [KeyEntry], kid: Option<&str>) -> Result<&'k DecodingKey, String> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .map(|k| &k.key)
            .ok_or_else(|| "unknown token key (kid)".to_owned()),
        None if keys.len() == 1 => Ok(&keys[0].key),
        None => Err("the token names no key (kid) and several are configured".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oct(kid: Option<&str>, secret: &[u8]) -> serde_json::Value {
        use base64::Engine;
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let mut v = serde_json::json!({"kty": "oct", "k": k});
        if let Some(kid) = kid {
            v["kid"] = kid.into();
        }
        v
    }

    fn set(keys: &[serde_json::Value]) -> String {
        serde_json::json!({ "keys": keys }).to_string()
    }

    #[test]
    fn keys_are_chosen_by_kid() {
        let s = [0x11u8; 32];
        let keys = parse_jwks(
            &set(&[oct(Some("a"), &s), oct(Some("b"), &s)]),
            Algorithm::HS256,
        )
        .unwrap();
        assert!(select(&keys, Some("b")).is_ok());
        assert_eq!(
            select(&keys, Some("c")).err().unwrap(),
            "unknown token key (kid)"
        );
        assert!(
            select(&keys, None).is_err(),
            "several keys: a kid is needed"
        );
        let one = parse_jwks(&set(&[oct(None, &s)]), Algorithm::HS256).unwrap();
        assert!(select(&one, None).is_ok());
    }

    #[test]
    fn bad_sets_say_which_key_and_why() {
        let s = [0x11u8; 32];
        let err = |text: &str, alg| parse_jwks(text, alg).err().unwrap();
        assert!(err("{}", Algorithm::HS256).contains("JWK Set"));
        assert!(err(&set(&[]), Algorithm::HS256).contains("1..="));
        let e = err(&set(&[oct(Some("a"), &s)]), Algorithm::RS256);
        assert!(e.contains("a: not a RS256 key"), "{e}");
        let mut wrong_alg = oct(Some("a"), &s);
        wrong_alg["alg"] = "HS512".into();
        assert!(err(&set(&[wrong_alg]), Algorithm::HS256).contains("`alg`"));
        let e = err(&set(&[oct(Some("a"), &s), oct(None, &s)]), Algorithm::HS256);
        assert!(e.contains("needs a `kid`"), "{e}");
        let e = err(
            &set(&[oct(Some("a"), &s), oct(Some("a"), &s)]),
            Algorithm::HS256,
        );
        assert!(e.contains("twice"), "{e}");
        let e = err(&set(&[oct(Some("a"), b"short")]), Algorithm::HS256);
        assert!(e.contains("32 bytes"), "{e}");
        let many: Vec<_> = (0..=MAX_KEYS)
            .map(|i| oct(Some(&i.to_string()), &s))
            .collect();
        assert!(err(&set(&many), Algorithm::HS256).contains("1..="));
    }
}
