//! Subscriber tokens: a JWT (HS256, RS256 or ES256) whose `topics` claim, glob
//! patterns, bounds what the connection may subscribe to, and whose `exp` bounds how
//! long it may stay. Verified with the `jsonwebtoken` crate, with one key
//! (`key_file`) or several chosen by the token's `kid` (`jwks_file`, see
//! [`jwks`](super::jwks)).
//!
//! `*` (every topic) may be subscribed only when the claim holds the pattern `*`
//! itself: a claim of `BTC-*` allows `BTC-USD`, never the wildcard subscription.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::relay::access::jwks::{parse_jwks, select, KeyEntry};
use crate::relay::access::secret::{read_secret_file, Secret};
use crate::relay::core::control::WILDCARD;

/// Most patterns a token's `topics` claim may hold.
pub const MAX_CLAIM_PATTERNS: usize = 1024;

/// Longest token accepted, bytes (before any decoding work).
pub const MAX_JWT_BYTES: usize = 8192;

/// The `[jwt]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `HS256`, `RS256` or `ES256`.
    pub algorithm: JwtAlgorithm,
    /// The shared secret (HS256) or the issuer's public key in PEM (RS256, ES256),
    /// relative to the config file; read at start and on SIGHUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Instead of `key_file`: a JWK Set (`{"keys":[..]}`) whose keys a token's `kid`
    /// chooses between (key rotation); read at start and on SIGHUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// The `iss` a token must carry, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The `aud` a token must carry, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Seconds of clock difference tolerated on `exp` and `nbf` (default 0).
    #[serde(default)]
    pub leeway_s: u64,
    /// The key (or key set) file's contents, read at start (never printed).
    #[serde(skip)]
    pub key: Option<Secret>,
}

/// The signature algorithms offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 (a shared secret).
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
}

/// Why the `[jwt]` settings are not usable.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// Neither or both of `key_file` and `jwks_file`.
    #[error("field `jwt.key_file`: give `key_file` or `jwks_file` (one of them)")]
    NoKey,
    /// The key file cannot be read.
    #[error("field `jwt.{field}`: {path}: {source}")]
    Read {
        /// `key_file` or `jwks_file`.
        field: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key is not a key of the algorithm.
    #[error("field `jwt.{field}`: {path}: not a {algorithm:?} key: {reason}")]
    BadKey {
        /// `key_file` or `jwks_file`.
        field: &'static str,
        /// The file.
        path: String,
        /// The configured algorithm.
        algorithm: JwtAlgorithm,
        /// The parser's reason.
        reason: String,
    },
}

impl JwtConfig {
    /// The key's file and the field that names it.
    fn key_source(&self) -> Result<(&'static str, &Path), JwtConfigError> {
        match (&self.key_file, &self.jwks_file) {
            (Some(f), None) => Ok(("key_file", f)),
            (None, Some(f)) => Ok(("jwks_file", f)),
            _ => Err(JwtConfigError::NoKey),
        }
    }

    /// Reads the key file (relative to `dir`) into `key`.
    pub fn read_key(&mut self, dir: &Path) -> Result<(), JwtConfigError> {
        let (field, file) = self.key_source()?;
        let path = dir.join(file); // an absolute path stays as it is
        let text = read_secret_file(&path).map_err(|source| JwtConfigError::Read {
            field,
            path: path.display().to_string(),
            source,
        })?;
        self.key = Some(Secret::new(match (self.algorithm, field) {
            (JwtAlgorithm::HS256, "key_file") => text.trim().to_owned(),
            _ => text,
        }));
        Ok(())
    }

    /// The verifier these settings make (the key read and parsed).
    pub fn verifier(&self) -> Result<JwtVerifier, JwtConfigError> {
        let (field, file) = self.key_source()?;
        let bad = |reason: String| JwtConfigError::BadKey {
            field,
            path: file.display().to_string(),
            algorithm: self.algorithm,
            reason,
        };
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| bad("not read".into()))?
            .expose();
        let algorithm = match self.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
        };
        let keys = if field == "jwks_file" {
            let text = std::str::from_utf8(key).map_err(|e| bad(e.to_string()))?;
            parse_jwks(text, algorithm).map_err(bad)?
        } else {
            let one = match self.algorithm {
                JwtAlgorithm::HS256 if key.len() < 32 => {
                    return Err(bad("an HS256 secret is at least 32 bytes".into()))
                }
                JwtAlgorithm::HS256 => DecodingKey::from_secret(key),
                JwtAlgorithm::RS256 => {
                    DecodingKey::from_rsa_pem(key).map_err(|e| bad(e.to_string()))?
                }
                JwtAlgorithm::ES256 => {
                    DecodingKey::from_ec_pem(key).map_err(|e| bad(e.to_string()))?
                }
            };
            vec![KeyEntry {
                kid: None,
                key: one,
            }]
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway_s;
        validation.validate_nbf = true;
        validation.validate_aud = self.audience.is_some();
        // A configured `iss` or `aud` is required, not only compared when present
        // (the library checks what a token carries; a token without them would pass).
        let mut required = vec!["exp"];
        if let Some(aud) = &self.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(JwtVerifier {
            keys,
            validation,
            leeway: Duration::from_secs(self.leeway_s),
        })
    }
}

/// Checks subscriber tokens.
pub struct JwtVerifier {
    /// One key (`key_file`), or a set chosen by `kid` (`jwks_file`).
    keys: Vec<KeyEntry>,
    validation: Validation,
    leeway: Duration,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
    /// Issued at: a token from the future (past the leeway) is refused.
    #[serde(default)]
    iat: Option<u64>,
    topics: Vec<String>,
}

/// What a verified token allows.
#[derive(Debug, Clone)]
pub struct SubscriberGrant {
    patterns: Vec<glob::Pattern>,
    everything: bool,
    /// When the connection must close unless a newer token arrives (`exp` plus the
    /// leeway).
    pub expires: SystemTime,
}

impl SubscriberGrant {
    /// Whether the claim allows subscribing to `topic` (`*` only if it holds `*`).
    pub fn allows(&self, topic: &str) -> bool {
        if topic == WILDCARD {
            self.everything
        } else {
            self.everything || self.patterns.iter().any(|p| p.matches(topic))
        }
    }

    /// The first of `topics` the claim does not allow.
    pub fn first_refused<'t>(&self, topics: impl IntoIterator<Item = &'t str>) -> Option<&'t str> {
        topics.into_iter().find(|t| !self.allows(t))
    }
}

impl JwtVerifier {
    /// Verifies `token`: signature, algorithm, `exp` (required), `iss` and `aud`
    /// (required when configured; `aud` may be a list), `nbf` and `iat` (within
    /// `leeway_s`), and a `topics` claim of glob patterns. `Err` is the reason, safe to
    /// send to the client (it never echoes the token).
    pub fn verify(&self, token: &str) -> Result<SubscriberGrant, String> {
        if token.len() > MAX_JWT_BYTES {
            return Err(format!("token longer than {MAX_JWT_BYTES} bytes"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("bad token: {e}"))?;
        let key = select(&self.keys, header.kid.as_deref())?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired".to_owned(),
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "bad token signature".to_owned()
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                        "wrong token issuer".to_owned()
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                        "wrong token audience".to_owned()
                    }
                    jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                        "token not yet valid (nbf)".to_owned()
                    }
                    jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) => {
                        format!("bad token: it lacks the `{c}` claim")
                    }
                    _ => format!("bad token: {e}"),
                }
            })?;
        let claims = data.claims;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if claims
            .iat
            .is_some_and(|iat| iat > now + self.leeway.as_secs())
        {
            return Err("token issued in the future (iat)".to_owned());
        }
        if claims.topics.len() > MAX_CLAIM_PATTERNS {
            return Err(format!(
                "the topics claim holds more than {MAX_CLAIM_PATTERNS} patterns"
            ));
        }
        let mut patterns = Vec::with_capacity(claims.topics.len());
        for p in &claims.topics {
            patterns.push(glob::Pattern::new(p).map_err(|e| format!("topics claim: {p:?}: {e}"))?);
        }
        Ok(SubscriberGrant {
            everything: claims.topics.iter().any(|t| t == WILDCARD),
            patterns,
            expires: UNIX_EPOCH + Duration::from_secs(claims.exp) + self.leeway,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

    fn now_s() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs256(issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
        JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            key_file: Some("k".into()),
            jwks_file: None,
            issuer: issuer.map(Into::into),
            audience: audience.map(Into::into),
            leeway_s: 0,
            key: Some(Secret::new(SECRET)),
        }
        .verifier()
        .unwrap()
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn claims_bound_the_topics() {
        let v = hs256(None, None);
        let t = token(
            serde_json::json!({"exp": now_s() + 60, "topics": ["BTC-*", "ETH-USD"]}),
            SECRET,
        );
        let g = v.verify(&t).unwrap();
        assert!(g.allows("BTC-USD") && g.allows("ETH-USD"));
        assert!(!g.allows("ETH-EUR") && !g.allows("*"));
        assert_eq!(g.first_refused(["BTC-X", "SOL", "ETH-USD"]), Some("SOL"));
        let all = token(
            serde_json::json!({"exp": now_s() + 60, "topics": ["*"]}),
            SECRET,
        );
        let g = v.verify(&all).unwrap();
        assert!(g.allows("*") && g.allows("anything"));
    }

    #[test]
    fn bad_tokens_say_why() {
        let v = hs256(Some("desk-auth"), Some("feedrelay"));
        let good = serde_json::json!({
            "exp": now_s() + 60, "topics": ["*"], "iss": "desk-auth", "aud": "feedrelay"
        });
        assert!(v.verify(&token(good.clone(), SECRET)).is_ok());
        let mut c = good.clone();
        c["exp"] = (now_s() - 10).into();
        assert_eq!(v.verify(&token(c, SECRET)).unwrap_err(), "token expired");
        assert_eq!(
            v.verify(&token(good.clone(), "another-secret-of-32-bytes-or-more"))
                .unwrap_err(),
            "bad token signature"
        );
        let mut c = good.clone();
        c["iss"] = "mallory".into();
        assert_eq!(
            v.verify(&token(c, SECRET)).unwrap_err(),
            "wrong token issuer"
        );
        let mut c = good.clone();
        c["aud"] = "other".into();
        assert_eq!(
            v.verify(&token(c, SECRET)).unwrap_err(),
            "wrong token audience"
        );
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("topics");
        assert!(v
            .verify(&token(c, SECRET))
            .unwrap_err()
            .starts_with("bad token"));
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("exp");
        assert!(v
            .verify(&token(c, SECRET))
            .unwrap_err()
            .starts_with("bad token"));
        let mut c = good;
        c["topics"] = serde_json::json!(["[a-"]);
        assert!(v.verify(&token(c, SECRET)).unwrap_err().contains("[a-"));
        assert!(v.verify("not.a.jwt").is_err());
        assert!(v.verify(&"x".repeat(MAX_JWT_BYTES + 1)).is_err());
    }

    /// A configured issuer and audience are required, not only compared when a token
    /// carries them; `nbf` and `iat` are honoured, with the leeway; `aud` may be a list.
    #[test]
    fn configured_claims_are_required_and_times_honoured() {
        let v = hs256(Some("desk-auth"), Some("feedrelay"));
        let bare = serde_json::json!({"exp": now_s() + 60, "topics": ["*"]});
        // Which of the two it names first is the library's choice.
        let lacks = v.verify(&token(bare.clone(), SECRET)).unwrap_err();
        assert!(
            lacks == "bad token: it lacks the `aud` claim"
                || lacks == "bad token: it lacks the `iss` claim",
            "{lacks}"
        );
        let mut c = bare.clone();
        c["aud"] = "feedrelay".into();
        assert_eq!(
            v.verify(&token(c.clone(), SECRET)).unwrap_err(),
            "bad token: it lacks the `iss` claim"
        );
        c["iss"] = "desk-auth".into();
        assert!(v.verify(&token(c.clone(), SECRET)).is_ok());
        c["aud"] = serde_json::json!(["other", "feedrelay"]);
        assert!(v.verify(&token(c.clone(), SECRET)).is_ok(), "aud as a list");
        let mut later = c.clone();
        later["nbf"] = (now_s() + 86_400).into();
        assert_eq!(
            v.verify(&token(later, SECRET)).unwrap_err(),
            "token not yet valid (nbf)"
        );
        let mut future = c.clone();
        future["iat"] = (now_s() + 3_600).into();
        assert_eq!(
            v.verify(&token(future, SECRET)).unwrap_err(),
            "token issued in the future (iat)"
        );
        // Within the leeway, a clock a little ahead is tolerated.
        let lenient = JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            key_file: Some("k".into()),
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway_s: 30,
            key: Some(Secret::new(SECRET)),
        }
        .verifier()
        .unwrap();
        let mut soon = bare;
        soon["nbf"] = (now_s() + 10).into();
        soon["iat"] = (now_s() + 10).into();
        assert!(lenient.verify(&token(soon, SECRET)).is_ok());
    }

    #[test]
    fn the_algorithm_is_the_configured_one() {
        // A token signed with HS256 is refused by an RS256 or ES256 relay, and one with
        // `alg: none` by every relay.
        let v = hs256(None, None);
        let claims = serde_json::json!({"exp": now_s() + 60, "topics": ["*"]});
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(v.verify(&hs384).is_err());
        let none = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            base64_url(claims.to_string().as_bytes())
        );
        assert!(v.verify(&none).is_err());
    }

    fn base64_url(b: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    #[test]
    fn keys_are_checked_at_start() {
        let cfg = |algorithm, key: &str| JwtConfig {
            algorithm,
            key_file: Some("k.pem".into()),
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway_s: 0,
            key: Some(Secret::new(key)),
        };
        let e = cfg(JwtAlgorithm::HS256, "short").verifier().unwrap_err();
        assert!(e.to_string().contains("32 bytes"), "{e}");
        let e = cfg(JwtAlgorithm::RS256, "not pem").verifier().unwrap_err();
        assert!(e.to_string().contains("RS256"), "{e}");
        let e = cfg(JwtAlgorithm::ES256, "not pem").verifier().unwrap_err();
        assert!(e.to_string().contains("ES256"), "{e}");
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let v = cfg(JwtAlgorithm::ES256, &kp.public_key_pem())
            .verifier()
            .unwrap();
        let t = encode(
            &Header::new(Algorithm::ES256),
            &serde_json::json!({"exp": now_s() + 60, "topics": ["A"]}),
            &EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(v.verify(&t).unwrap().allows("A"));
    }
}
