//! `ws://` and `wss://` URLs, split into what dialling needs.

use std::str::FromStr;

/// A `ws://` or `wss://` URL, split into what dialling needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (default 80 or 443).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path_and_query: String,
}

impl WsUrl {
    /// The `Host` header value: the port only when not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (false, 80) | (true, 443) => host,
            (_, p) => format!("{host}:{p}"),
        }
    }
}

impl FromStr for WsUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| UrlError(format!("{url}: {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("ws://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else {
            return Err(bad("the scheme must be ws:// or wss://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(WsUrl {
            tls,
            host: host.to_owned(),
            port,
            path_and_query: path,
        })
    }
}

/// A URL that cannot be dialled, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad URL {0}")]
pub struct UrlError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u: WsUrl = "ws://127.0.0.1:9001/ws?topics=A,B".parse().unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path_and_query.as_str()),
            (false, "127.0.0.1", 9001, "/ws?topics=A,B")
        );
        assert_eq!(u.host_header(), "127.0.0.1:9001");
        let u: WsUrl = "wss://example.com".parse().unwrap();
        assert_eq!(
            (u.port, u.path_and_query.as_str(), u.host_header().as_str()),
            (443, "/", "example.com")
        );
        let u: WsUrl = "ws://[::1]:8080?x=1".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("::1", 8080, "/?x=1")
        );
        assert_eq!(u.host_header(), "[::1]:8080");
        for bad in ["http://x", "ws://", "ws://h:notaport/", "ws://[::1"] {
            assert!(bad.parse::<WsUrl>().is_err(), "{bad}");
        }
    }
}
