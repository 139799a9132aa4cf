//! Who may connect, decided at the handshake, and what a publisher may publish.
//!
//! - `allowed_origins`: a handshake whose `Origin` is not listed gets 403. A web page
//!   open in a trader's browser could otherwise publish and subscribe through the
//!   browser; clients that send no `Origin` are not browsers and pass.
//! - `[[publisher_tokens]]`: when any is configured, `/pub` needs one, presented as
//!   `Authorization: Bearer TOKEN` or `?token=TOKEN` (browsers cannot set headers);
//!   none or an unknown one gets 401. Each token carries glob patterns of the topics
//!   it may publish; a message for any other topic is not relayed and is counted
//!   against the token's name (never the token itself).
//! - `allow_anonymous`: every role a client can take beyond loopback (publish,
//!   subscribe, metrics) is either authenticated (publisher tokens, subscriber JWTs)
//!   or named here (`true` names them all); a relay that would leave one open refuses
//!   to start, and a reload that would is refused, naming the role.
//!
//! Tokens are compared in time that does not depend on where they differ, against
//! every configured token, so the answer's timing does not reveal a token's prefix.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::relay::access::exposure::{AccessRole, AnonymousRoles, Exposure};
use crate::relay::access::jwt::{JwtConfig, JwtVerifier, SubscriberGrant};
use crate::relay::access::secret::{read_secret_file, Secret};
use crate::ws::handshake::Request;

/// Shortest publisher token accepted, in bytes: long enough not to be guessed.
pub const MIN_TOKEN_BYTES: usize = 16;
/// Longest publisher token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 1024;
/// Most `[[publisher_tokens]]` tables (each message's topic is checked against one).
pub const MAX_PUBLISHER_TOKENS: usize = 1024;
/// Most topic patterns one token may carry.
pub const MAX_TOKEN_PATTERNS: usize = 256;

/// One `[[publisher_tokens]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherTokenConfig {
    /// Its name in metrics, logs and the exit summary (default `token1`, `token2`, ...
    /// in file order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The token (URL-safe: `A-Z a-z 0-9 - . _ ~`, 16-1024 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// A file holding the token (surrounding whitespace ignored), relative to the
    /// config file; read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Glob patterns of the topics it may publish (`*` any run, `?` one character,
    /// `[A-Z]` a class): `["BTC-*", "ETH-USD"]`.
    pub topics: Vec<String>,
}

/// Why the access settings are not usable.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A setting is out of range; `.0` names the field, `.1` says what is allowed.
    #[error("field `{0}`: {1}")]
    Invalid(&'static str, String),
    /// A token file cannot be read.
    #[error("field `publisher_tokens.token_file`: {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Reads each table's `token_file` (relative to `dir`) into its `token`.
pub fn read_token_files(
    tokens: &mut [PublisherTokenConfig],
    dir: &Path,
) -> Result<(), AccessError> {
    for t in tokens {
        let Some(file) = &t.token_file else { continue };
        if t.token.is_some() {
            return Err(AccessError::Invalid(
                "publisher_tokens",
                "give `token` or `token_file`, not both".into(),
            ));
        }
        // `join` keeps an absolute path as it is.
        let path = dir.join(file);
        let text = read_secret_file(&path).map_err(|source| AccessError::TokenFile {
            path: path.display().to_string(),
            source,
        })?;
        t.token = Some(Secret::new(text.trim()));
    }
    Ok(())
}

/// Reads `metrics_token_file` (`inline`: `metrics_token` was given too, an error).
pub fn read_metrics_token(inline: bool, path: &Path) -> Result<Secret, AccessError> {
    if inline {
        return Err(AccessError::Invalid(
            "metrics_token",
            "give `metrics_token` or `metrics_token_file`, not both".into(),
        ));
    }
    let text = read_secret_file(path).map_err(|source| AccessError::TokenFile {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Secret::new(text.trim()))
}

/// Whether `secret` is a usable token: [`MIN_TOKEN_BYTES`]..=[`MAX_TOKEN_BYTES`] of
/// URL-safe characters (so it can go in a query unencoded).
fn is_usable_token(secret: &[u8]) -> bool {
    (MIN_TOKEN_BYTES..=MAX_TOKEN_BYTES).contains(&secret.len())
        && secret.iter().all(|&b| is_url_safe(b))
}

/// Checks the access settings: origins well formed, every token usable and unique,
/// every pattern valid, and no role open beyond loopback unless `anonymous` names it.
pub fn validate(
    exposure: Exposure,
    anonymous: &AnonymousRoles,
    origins: &[String],
    tokens: &[PublisherTokenConfig],
    jwt: Option<&JwtConfig>,
    metrics_token: Option<&Secret>,
) -> Result<(), AccessError> {
    if metrics_token.is_some_and(|t| !is_usable_token(t.expose())) {
        return Err(AccessError::Invalid(
            "metrics_token",
            format!("a token is {MIN_TOKEN_BYTES}-{MAX_TOKEN_BYTES} bytes of A-Z a-z 0-9 - . _ ~"),
        ));
    }
    if let Some(j) = jwt {
        j.verifier()
            .map_err(|e| AccessError::Invalid("jwt", e.to_string()))?;
    }
    let bad = |field, reason: String| Err(AccessError::Invalid(field, reason));
    for o in origins {
        if !is_origin(o) {
            return bad(
                "allowed_origins",
                format!("{o:?} is not an origin (scheme://host[:port], no path)"),
            );
        }
    }
    if tokens.len() > MAX_PUBLISHER_TOKENS {
        return bad(
            "publisher_tokens",
            format!("at most {MAX_PUBLISHER_TOKENS} tables"),
        );
    }
    let mut names = std::collections::HashSet::new();
    let mut secrets = std::collections::HashSet::new();
    for (i, t) in tokens.iter().enumerate() {
        let name = token_name(t, i);
        if !names.insert(name.clone()) {
            return bad("publisher_tokens.name", format!("{name:?} is used twice"));
        }
        let Some(secret) = t.token.as_ref().map(Secret::expose) else {
            return bad(
                "publisher_tokens",
                format!("{name}: needs `token` or `token_file`"),
            );
        };
        if !is_usable_token(secret) {
            return bad(
                "publisher_tokens.token",
                format!(
                    "{name}: a token is {MIN_TOKEN_BYTES}-{MAX_TOKEN_BYTES} bytes of A-Z a-z 0-9 - . _ ~"
                ),
            );
        }
        if !secrets.insert(secret) {
            return bad(
                "publisher_tokens.token",
                format!("{name}: the same token is given twice"),
            );
        }
        if t.topics.is_empty() || t.topics.len() > MAX_TOKEN_PATTERNS {
            return bad(
                "publisher_tokens.topics",
                format!("{name}: 1..={MAX_TOKEN_PATTERNS} patterns"),
            );
        }
        for p in &t.topics {
            if let Err(e) = glob::Pattern::new(p) {
                return bad("publisher_tokens.topics", format!("{name}: {p:?}: {e}"));
            }
        }
    }
    let refused: Vec<(AccessRole, String)> = exposure
        .open_roles(!tokens.is_empty(), jwt.is_some(), metrics_token.is_some())
        .into_iter()
        .filter(|(role, _)| !anonymous.allows(*role))
        .collect();
    if !refused.is_empty() {
        let names: Vec<String> = refused
            .iter()
            .map(|(r, _)| format!("{:?}", r.name()))
            .collect();
        let whys: Vec<&str> = refused.iter().map(|(_, w)| w.as_str()).collect();
        return bad(
            "allow_anonymous",
            format!(
                "not loopback and open to anyone who reaches it: {} ({}); configure \
                 publisher tokens, subscriber JWTs or a loopback metrics address, or set \
                 allow_anonymous = [{}] if that is meant",
                names.join(", "),
                whys.join("; "),
                names.join(", ")
            ),
        );
    }
    Ok(())
}

/// `scheme://host[:port]` with nothing after it.
fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
}

fn is_url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn token_name(t: &PublisherTokenConfig, i: usize) -> String {
    t.name.clone().unwrap_or_else(|| format!("token{}", i + 1))
}

/// What one publisher token may publish.
#[derive(Debug)]
pub struct Grant {
    /// Its name (for counters and logs).
    pub name: String,
    token: Secret,
    topics: Vec<glob::Pattern>,
}

impl Grant {
    /// Whether a message for `topic` may be relayed. Topics that are not UTF-8 match
    /// no pattern.
    pub fn allows(&self, topic: &[u8]) -> bool {
        match std::str::from_utf8(topic) {
            Ok(t) => self.topics.iter().any(|p| p.matches(t)),
            Err(_) => false,
        }
    }
}

/// Why the access rules refused a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token, or one that is unknown, expired or badly signed (401).
    Token,
    /// An `Origin` not allowed (403).
    Origin,
    /// A subscriber's initial topics outside its token's claim (403).
    Topic,
}

/// Why a handshake is refused: status and a one-line reason for the client.
pub type Refusal = (u16, String);

/// How subscribers are admitted.
#[derive(Debug, Default)]
enum Subscribers {
    /// Anyone, to any topic.
    #[default]
    Open,
    /// With a JWT whose claims bound their topics.
    Jwt(Box<JwtVerifier>),
    /// A JWT is configured but its key is unusable (validation refuses this at start):
    /// nobody is let in.
    Closed,
}

/// The access rules of a running relay (one per worker; built from the config).
#[derive(Debug, Default)]
pub struct Access {
    /// Allowed `Origin` values, lowercased; empty: any.
    origins: Vec<String>,
    /// Publisher tokens; empty: publishers need none.
    grants: Vec<Grant>,
    subscribers: Subscribers,
    /// The bearer token the metrics paths need; `None`: none.
    metrics_token: Option<Secret>,
}

impl Access {
    /// The rules of a validated configuration (patterns that do not compile, which
    /// validation refuses, are left out; an unusable JWT key lets no subscriber in).
    pub fn new(
        origins: &[String],
        tokens: &[PublisherTokenConfig],
        jwt: Option<&JwtConfig>,
    ) -> Access {
        Access {
            subscribers: match jwt.map(JwtConfig::verifier) {
                None => Subscribers::Open,
                Some(Ok(v)) => Subscribers::Jwt(Box::new(v)),
                Some(Err(_)) => Subscribers::Closed,
            },
            origins: origins.iter().map(|o| o.to_ascii_lowercase()).collect(),
            grants: tokens
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    Some(Grant {
                        name: token_name(t, i),
                        token: t.token.clone()?,
                        topics: t
                            .topics
                            .iter()
                            .filter_map(|p| glob::Pattern::new(p).ok())
                            .collect(),
                    })
                })
                .collect(),
            metrics_token: None,
        }
    }

    /// These rules with the metrics paths behind `token` (if any).
    pub fn with_metrics_token(mut self, token: Option<Secret>) -> Access {
        self.metrics_token = token;
        self
    }

    /// Whether a request for a metrics path presenting `presented` is served: always
    /// when no metrics token is configured (the start-up check keeps that to loopback
    /// or `allow_anonymous`), else only with it (compared in time that does not depend
    /// on where they differ).
    pub fn metrics_allowed(&self, presented: Option<&str>) -> bool {
        match (&self.metrics_token, presented) {
            (None, _) => true,
            (Some(want), Some(got)) => constant_time_eq(want.expose(), got.as_bytes()),
            (Some(_), None) => false,
        }
    }

    /// The grants, in configuration order (a publisher's grant is an index here).
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// 403 when the request carries an `Origin` that is not allowed.
    pub fn check_origin(&self, req: &Request) -> Result<(), Refusal> {
        match &req.origin {
            Some(o) if !self.origin_allowed(o) => {
                Err((403, format!("origin {o:?} is not allowed")))
            }
            _ => Ok(()),
        }
    }

    /// Whether `origin` may connect (any may, when none are listed).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.is_empty() || self.origins.iter().any(|a| a.eq_ignore_ascii_case(origin))
    }

    /// Whether publishers need a token ([`publisher`](Access::publisher)).
    pub fn publishers_need_tokens(&self) -> bool {
        !self.grants.is_empty()
    }

    /// The grant whose token is `token`, compared in constant time against every one.
    pub fn grant_of(&self, token: &Secret) -> Option<usize> {
        self.grant_presented(token.expose())
    }

    /// The token a grant holds (what the publisher presented), for re-checking it
    /// against the rules of a reload.
    pub fn grant_token(&self, i: usize) -> Option<&Secret> {
        self.grants.get(i).map(|g| &g.token)
    }

    fn grant_presented(&self, presented: &[u8]) -> Option<usize> {
        // Every token is compared, each in full: no early exit to time.
        let mut found = None;
        for (i, g) in self.grants.iter().enumerate() {
            if constant_time_eq(g.token.expose(), presented) {
                found = Some(i);
            }
        }
        found
    }

    /// Whether subscribers need a token ([`subscriber_token`](Access::subscriber_token)).
    pub fn subscribers_need_tokens(&self) -> bool {
        !matches!(self.subscribers, Subscribers::Open)
    }

    /// The token a subscriber's request presents, to be verified
    /// ([`verify_subscriber_token`](Access::verify_subscriber_token), off the worker):
    /// `Ok(None)` when no `[jwt]` is configured (any topic), 401 when one is needed and
    /// none is presented (or the relay cannot check tokens).
    pub fn subscriber_token(&self, req: &Request) -> Result<Option<String>, Refusal> {
        match &self.subscribers {
            Subscribers::Open => Ok(None),
            Subscribers::Closed => Err((401, "the relay cannot check tokens".into())),
            Subscribers::Jwt(_) => {
                presented_token(req)
                    .map(|t| Some(t.to_owned()))
                    .ok_or_else(|| {
                        (
                            401,
                            "a token is required (Authorization: Bearer JWT, or ?token=JWT)"
                                .to_owned(),
                        )
                    })
            }
        }
    }

    /// Checks a subscriber's token (at the handshake, or sent on an open connection with
    /// `refresh`). `Err` is the reason, safe to send to the client.
    pub fn verify_subscriber_token(&self, token: &str) -> Result<SubscriberGrant, String> {
        match &self.subscribers {
            Subscribers::Jwt(v) => v.verify(token),
            Subscribers::Open => Err("this relay takes no subscriber tokens".into()),
            Subscribers::Closed => Err("the relay cannot check tokens".into()),
        }
    }

    /// A publisher's grant: `Ok(None)` when no tokens are configured (anyone may
    /// publish anything), `Ok(Some(i))` for the token presented, 401 otherwise.
    pub fn publisher(&self, req: &Request) -> Result<Option<usize>, Refusal> {
        if self.grants.is_empty() {
            return Ok(None);
        }
        let Some(presented) = presented_token(req) else {
            return Err((
                401,
                "a publisher token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)"
                    .into(),
            ));
        };
        self.grant_presented(presented.as_bytes())
            .map(Some)
            .ok_or_else(|| (401, "unknown publisher token".into()))
    }
}

/// The token from `Authorization: Bearer TOKEN`, else from `?token=TOKEN`.
pub fn presented_token(req: &Request) -> Option<&str> {
    let bearer = req
        .header("authorization")
        .and_then(crate::io::http::bearer_token);
    bearer.or_else(|| req.query_param("token"))
}

/// Equality whose time depends on the lengths only, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::access::exposure::AccessRole;
    use std::net::SocketAddr;

    fn check(
        listen: SocketAddr,
        anonymous: bool,
        origins: &[String],
        tokens: &[PublisherTokenConfig],
    ) -> Result<(), AccessError> {
        let exposure = Exposure {
            listen,
            metrics: [None, None],
        };
        let anonymous = match anonymous {
            // Subscribers open: these checks are about tokens and origins.
            false => AnonymousRoles::Roles(vec![AccessRole::Subscribe]),
            true => AnonymousRoles::All(true),
        };
        validate(exposure, &anonymous, origins, tokens, None, None)
    }

    fn open_access(origins: &[String], tokens: &[PublisherTokenConfig]) -> Access {
        Access::new(origins, tokens, None)
    }

    fn request(headers: &[(&str, &str)], query: Option<&str>, origin: Option<&str>) -> Request {
        Request {
            path: "/pub".into(),
            query: query.map(Into::into),
            key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
            origin: origin.map(Into::into),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn token(name: Option<&str>, secret: &str, topics: &[&str]) -> PublisherTokenConfig {
        PublisherTokenConfig {
            name: name.map(Into::into),
            token: Some(Secret::new(secret)),
            token_file: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    const A: &str = "aaaaaaaaaaaaaaaa-1";
    const B: &str = "bbbbbbbbbbbbbbbb-2";

    #[test]
    fn a_publisher_presents_its_token_either_way() {
        let access = open_access(
            &[],
            &[
                token(None, A, &["BTC-*"]),
                token(Some("eth"), B, &["ETH-USD"]),
            ],
        );
        let auth = format!("Bearer {B}");
        let by_header = request(&[("Authorization", &auth)], None, None);
        assert_eq!(access.publisher(&by_header), Ok(Some(1)));
        let lower = format!("bearer  {A} ");
        assert_eq!(
            access.publisher(&request(&[("authorization", &lower)], None, None)),
            Ok(Some(0))
        );
        let query = format!("token={A}");
        assert_eq!(
            access.publisher(&request(&[], Some(&query), None)),
            Ok(Some(0))
        );
        let none = access.publisher(&request(&[], None, None)).unwrap_err();
        assert_eq!(none.0, 401);
        let wrong = access
            .publisher(&request(
                &[("Authorization", "Bearer aaaaaaaaaaaaaaaa-3")],
                None,
                None,
            ))
            .unwrap_err();
        assert_eq!(wrong, (401, "unknown publisher token".into()));
        assert_eq!(access.grants()[0].name, "token1");
        assert_eq!(access.grants()[1].name, "eth");
    }

    #[test]
    fn without_tokens_anyone_publishes() {
        let access = open_access(&[], &[]);
        assert_eq!(access.publisher(&request(&[], None, None)), Ok(None));
    }

    #[test]
    fn grants_match_topics_by_pattern() {
        let access = open_access(&[], &[token(None, A, &["BTC-*", "ETH-USD", "FX.?"])]);
        let g = &access.grants()[0];
        for ok in ["BTC-USD", "BTC-", "ETH-USD", "FX.1"] {
            assert!(g.allows(ok.as_bytes()), "{ok}");
        }
        for no in ["ETH-USDT", "btc-usd", "XBTC-USD", "FX.12", "", "BTC"] {
            assert!(!g.allows(no.as_bytes()), "{no}");
        }
        assert!(!g.allows(b"BTC-\xff"), "not UTF-8: no match");
    }

    #[test]
    fn origins_outside_the_list_are_forbidden() {
        let access = open_access(&["https://desk.example.com".into()], &[]);
        assert!(access
            .check_origin(&request(&[], None, Some("https://DESK.example.com")))
            .is_ok());
        assert!(
            access.check_origin(&request(&[], None, None)).is_ok(),
            "not a browser"
        );
        let (status, reason) = access
            .check_origin(&request(&[], None, Some("https://evil.example")))
            .unwrap_err();
        assert_eq!(status, 403);
        assert!(reason.contains("evil.example"), "{reason}");
        let open = open_access(&[], &[]);
        assert!(open
            .check_origin(&request(&[], None, Some("https://evil.example")))
            .is_ok());
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let lo: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let open: SocketAddr = "0.0.0.0:9001".parse().unwrap();
        let ok = [token(None, A, &["*"])];
        assert!(check(lo, false, &[], &[]).is_ok());
        assert!(check(open, false, &[], &ok).is_ok());
        assert!(check(open, true, &[], &[]).is_ok());
        let err = |r: Result<(), AccessError>| r.unwrap_err().to_string();
        assert!(err(check(open, false, &[], &[])).contains("allow_anonymous"));
        assert!(err(check("[::]:1".parse().unwrap(), false, &[], &[])).contains("not loopback"));
        assert!(check("[::1]:1".parse().unwrap(), false, &[], &[]).is_ok());
        assert!(err(check(lo, false, &["desk.example".into()], &[])).contains("not an origin"));
        assert!(err(check(lo, false, &["https://a/b".into()], &[])).contains("not an origin"));
        assert!(err(check(lo, false, &[], &[token(None, "short", &["*"])])).contains("16-1024"));
        assert!(err(check(
            lo,
            false,
            &[],
            &[token(None, "a b c d e f g h i j", &["*"])]
        ))
        .contains("16-1024"));
        assert!(err(check(lo, false, &[], &[token(None, A, &[])])).contains("patterns"));
        assert!(err(check(lo, false, &[], &[token(None, A, &["[a-"])])).contains("[a-"));
        let twice = [token(None, A, &["*"]), token(None, A, &["*"])];
        assert!(err(check(lo, false, &[], &twice)).contains("twice"));
        let named = [token(Some("x"), A, &["*"]), token(Some("x"), B, &["*"])];
        assert!(err(check(lo, false, &[], &named)).contains("\"x\" is used twice"));
        let mut missing = token(None, A, &["*"]);
        missing.token = None;
        assert!(err(check(lo, false, &[], &[missing])).contains("needs `token`"));
    }

    #[test]
    fn token_files_are_read_relative_to_the_config_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("feedrelay-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pub.token"), format!("{A}\n")).unwrap();
        let mut t = token(None, A, &["*"]);
        t.token = None;
        t.token_file = Some("pub.token".into());
        let mut tokens = [t];
        read_token_files(&mut tokens, &dir).unwrap();
        assert_eq!(tokens[0].token, Some(Secret::new(A)));
        let mut huge = tokens.clone();
        huge[0].token = None;
        huge[0].token_file = Some("/dev/zero".into());
        let e = read_token_files(&mut huge, &dir).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        let mut gone = tokens.clone();
        gone[0].token = None;
        gone[0].token_file = Some("nope.token".into());
        let e = read_token_files(&mut gone, &dir).unwrap_err().to_string();
        assert!(e.contains("nope.token"), "{e}");
        let mut both = tokens.clone();
        both[0].token_file = Some("pub.token".into());
        assert!(read_token_files(&mut both, &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_never_print() {
        let t = token(Some("desk"), A, &["*"]);
        assert!(!format!("{t:?}").contains(A));
        let text = toml::to_string(&t).unwrap();
        assert!(!text.contains(A), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
