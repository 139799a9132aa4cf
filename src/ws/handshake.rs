//! The opening handshake (RFC 6455 §4): request bytes in, response bytes out.
//!
//! Server side: [`parse_request`] checks an HTTP upgrade request and hands the caller
//! its path and query (the relay routes on them); [`write_accept`] writes the `101`, and
//! [`write_reject`] a `400` or `426` with a one-line reason. Client side:
//! [`ClientHandshake`] writes a request with a fresh key and checks the `101` answer.
//! Subprotocols are chosen here; the one extension spoken, permessage-deflate, is
//! negotiated by [`deflate`](super::deflate) on the headers this module reads and
//! writes. A server ignores other extensions; a client refuses any it did not offer.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

use super::deflate::{parse_extensions, ClientOffer, DeflateParams, Extension};
use super::error::HandshakeError;

/// Header fields accepted in one handshake (more → [`HandshakeError::HeaderTooLarge`]).
pub const MAX_HEADERS: usize = 64;

/// §1.3: the GUID appended to the key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A checked upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The path, without the query (`/ws`).
    pub path: String,
    /// The query without `?` (`topics=A,B`), if any.
    pub query: Option<String>,
    /// `Sec-WebSocket-Key` as sent.
    pub key: String,
    /// `Origin`, if sent (browsers do).
    pub origin: Option<String>,
    /// Every header field as sent (name, value), in order, for checks of the caller's
    /// own (an API key, a bearer token).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`, every field,
    /// comma-separated), in its order of preference.
    pub fn offered_protocols(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// The subprotocol to answer with (§4.2.2 item 5.5): the first the client offers
    /// that the server serves; `Ok(None)` when the client offers none. A client that
    /// offers some, none of them served, gets `Err` with the reason to refuse it with.
    pub fn select_protocol(&self, served: &[String]) -> Result<Option<&str>, String> {
        let mut offered = self.offered_protocols().peekable();
        if offered.peek().is_none() {
            return Ok(None);
        }
        let mut asked = Vec::new();
        for p in offered {
            if served.iter().any(|s| s == p) {
                return Ok(Some(p));
            }
            asked.push(p);
        }
        Err(format!(
            "none of the subprotocols offered ({}) is served here (served: {})",
            asked.join(", "),
            if served.is_empty() {
                "none".to_owned()
            } else {
                served.join(", ")
            }
        ))
    }

    /// The extensions the client offers (`Sec-WebSocket-Extensions`, every field), in
    /// its order of preference; a malformed list offers nothing (§9.1: the server then
    /// simply accepts no extension).
    pub fn offered_extensions(&self) -> Vec<Extension> {
        let values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
            .map(|(_, v)| v.as_str());
        parse_extensions(values).unwrap_or_default()
    }

    /// The value of query parameter `name`, if present (no percent-decoding).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .find_map(|pair| match pair.split_once('=') {
                Some((k, v)) if k == name => Some(v),
                None if pair == name => Some(""),
                _ => None,
            })
    }
}

/// Whether `s` may name a subprotocol: an HTTP token (RFC 6455 §4.1 item 10; RFC 7230
/// §3.2.6), i.e. visible ASCII without separators.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// `Sec-WebSocket-Accept` for a key (§4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn header_str(value: &[u8], name: &'static str) -> Result<String, HandshakeError> {
    std::str::from_utf8(value)
        .map(|s| s.trim().to_owned())
        .map_err(|_| HandshakeError::BadHeader(name))
}

/// Parses an upgrade request from the start of `buf`. `Ok(None)`: need more bytes.
/// Otherwise the request and the length of its header block.
pub fn parse_request(
    buf: &[u8],
    max_header_bytes: usize,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_header_bytes => n,
        Ok(httparse::Status::Partial) if buf.len() <= max_header_bytes => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::HeaderTooLarge(max_header_bytes))
        }
        Err(_) => return Err(HandshakeError::MalformedHttp("not an HTTP/1.1 request")),
    };
    // §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
    if req.method != Some("GET") {
        return Err(HandshakeError::MethodNotGet);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::WrongHttpVersion);
    }
    let target = req.path.unwrap_or("/");
    let headers = req.headers;
    // §4.2.1 item 2: a |Host| header field.
    header(headers, "Host").ok_or(HandshakeError::BadHeader("Host"))?;
    // §4.2.1 item 3: |Upgrade| including "websocket" (case-insensitive).
    if !header(headers, "Upgrade").is_some_and(|v| has_token(v, "websocket")) {
        return Err(HandshakeError::BadHeader("Upgrade: websocket"));
    }
    // §4.2.1 item 4: |Connection| including the token "Upgrade" (case-insensitive).
    if !header(headers, "Connection").is_some_and(|v| has_token(v, "upgrade")) {
        return Err(HandshakeError::BadHeader("Connection: Upgrade"));
    }
    // §4.2.1 item 6: |Sec-WebSocket-Version| must be 13; otherwise §4.4 applies.
    let version = header(headers, "Sec-WebSocket-Version")
        .ok_or(HandshakeError::BadHeader("Sec-WebSocket-Version"))?;
    if version.trim_ascii() != b"13" {
        return Err(HandshakeError::UnsupportedVersion);
    }
    // §4.2.1 item 5: |Sec-WebSocket-Key|, base64 of 16 bytes.
    let key = header(headers, "Sec-WebSocket-Key").ok_or(HandshakeError::BadKey)?;
    let key = header_str(key, "Sec-WebSocket-Key")?;
    match BASE64.decode(&key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    let origin = header(headers, "Origin")
        .map(|v| header_str(v, "Origin"))
        .transpose()?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let headers = headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    Ok(Some((
        Request {
            path,
            query,
            key,
            origin,
            headers,
        },
        len,
    )))
}

/// Writes the `101 Switching Protocols` answer (§4.2.2 item 5), with the chosen
/// subprotocol and the accepted extensions' `Sec-WebSocket-Extensions` value, if any.
pub fn write_accept(
    req: &Request,
    protocol: Option<&str>,
    extensions: Option<&str>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(&req.key).as_bytes());
    if let Some(p) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
    }
    if let Some(e) = extensions {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(e.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Writes a refusal with a one-line reason: `426` (with `Sec-WebSocket-Version: 13`)
/// for a version we do not speak, `400` for everything else.
pub fn write_reject(err: &HandshakeError, out: &mut Vec<u8>) {
    let status = err.status();
    let extra = if status == 426 {
        "Sec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    write_status(status, extra, &err.to_string(), out);
}

/// Writes a plain HTTP response that closes the connection, with `reason` as its
/// one-line body (used for 400, 401, 403, 404, 426, 503 at the handshake). A 401
/// names the scheme the client should use (`WWW-Authenticate: Bearer`, RFC 6750).
pub fn write_status(status: u16, extra_headers: &str, reason: &str, out: &mut Vec<u8>) {
    let (phrase, challenge) = match status {
        400 => ("Bad Request", ""),
        401 => ("Unauthorized", "WWW-Authenticate: Bearer\r\n"),
        403 => ("Forbidden", ""),
        404 => ("Not Found", ""),
        426 => ("Upgrade Required", ""),
        503 => ("Service Unavailable", ""),
        _ => ("Error", ""),
    };
    let body = format!("{reason}\n");
    let head = format!(
        "HTTP/1.1 {status} {phrase}\r\n{challenge}{extra_headers}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
}

/// The server's answer, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Every header field, in order (name, value).
    pub headers: Vec<(String, String)>,
    /// The subprotocol the server chose (one the client offered), if any.
    pub protocol: Option<String>,
    /// permessage-deflate as the server accepted it, if offered and accepted.
    pub deflate: Option<DeflateParams>,
}

/// The client side of the handshake: one per connection attempt.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
    /// Subprotocols offered, in order of preference.
    protocols: Vec<String>,
    /// permessage-deflate, if offered.
    deflate: Option<ClientOffer>,
}

impl ClientHandshake {
    /// `nonce`: 16 fresh random bytes (§4.1 item 7); the IO layer draws them from the OS.
    pub fn new(nonce: [u8; 16]) -> Self {
        ClientHandshake {
            key: BASE64.encode(nonce),
            protocols: Vec::new(),
            deflate: None,
        }
    }

    /// Offers permessage-deflate.
    pub fn with_deflate(mut self, offer: Option<ClientOffer>) -> Self {
        self.deflate = offer;
        self
    }

    /// Offers `protocols` (`Sec-WebSocket-Protocol`), in order of preference.
    pub fn with_protocols(mut self, protocols: &[String]) -> Self {
        self.protocols = protocols.to_vec();
        self
    }

    /// Writes the upgrade request for `host` (with the port if not the default) and
    /// `path_and_query` (`/ws?topics=A`), plus `extra` header fields.
    pub fn write_request(
        &self,
        host: &str,
        path_and_query: &str,
        extra: &[(String, String)],
        out: &mut Vec<u8>,
    ) {
        let path = if path_and_query.is_empty() {
            "/"
        } else {
            path_and_query
        };
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.key
        );
        if !self.protocols.is_empty() {
            req.push_str("Sec-WebSocket-Protocol: ");
            req.push_str(&self.protocols.join(", "));
            req.push_str("\r\n");
        }
        if let Some(offer) = &self.deflate {
            req.push_str("Sec-WebSocket-Extensions: ");
            req.push_str(&offer.header_value());
            req.push_str("\r\n");
        }
        for (name, value) in extra {
            req.push_str(name);
            req.push_str(": ");
            req.push_str(value);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        out.extend_from_slice(req.as_bytes());
    }

    /// Parses and checks the server's answer (§4.1, "the client MUST validate the
    /// server's response"). `Ok(None)`: need more bytes.
    pub fn parse_response(
        &self,
        buf: &[u8],
        max_header_bytes: usize,
    ) -> Result<Option<(Response, usize)>, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n <= max_header_bytes => n,
            Ok(httparse::Status::Partial) if buf.len() <= max_header_bytes => return Ok(None),
            Ok(_) | Err(httparse::Error::TooManyHeaders) => {
                return Err(HandshakeError::HeaderTooLarge(max_header_bytes))
            }
            Err(_) => return Err(HandshakeError::MalformedHttp("not an HTTP/1.1 response")),
        };
        let code = resp.code.unwrap_or(0);
        if code != 101 {
            return Err(HandshakeError::NotSwitching(code));
        }
        let headers = resp.headers;
        if !header(headers, "Upgrade").is_some_and(|v| has_token(v, "websocket")) {
            return Err(HandshakeError::BadHeader("Upgrade: websocket"));
        }
        if !header(headers, "Connection").is_some_and(|v| has_token(v, "upgrade")) {
            return Err(HandshakeError::BadHeader("Connection: Upgrade"));
        }
        let accept =
            header(headers, "Sec-WebSocket-Accept").ok_or(HandshakeError::AcceptMismatch)?;
        if accept.trim_ascii() != accept_key(&self.key).as_bytes() {
            return Err(HandshakeError::AcceptMismatch);
        }
        // §4.1: an extension the client did not offer fails the connection.
        let extensions = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
            .map(|h| std::str::from_utf8(h.value).unwrap_or("\u{fffd}"));
        let deflate = match &self.deflate {
            Some(offer) => offer.accept(extensions)?,
            None if extensions.count() > 0 => {
                return Err(HandshakeError::NotOffered("Sec-WebSocket-Extensions"))
            }
            None => None,
        };
        // §4.1: a subprotocol the client did not offer fails the connection.
        let protocol = match header(headers, "Sec-WebSocket-Protocol") {
            None => None,
            Some(v) => {
                let chosen = std::str::from_utf8(v).unwrap_or("").trim();
                if !self.protocols.iter().any(|p| p == chosen) {
                    return Err(HandshakeError::NotOffered("Sec-WebSocket-Protocol"));
                }
                Some(chosen.to_owned())
            }
        };
        let headers = headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        Ok(Some((
            Response {
                headers,
                protocol,
                deflate,
            },
            len,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_REQUEST: &[u8] = b"GET /chat?topics=A,B HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn with_protocol_headers(values: &[&str]) -> Request {
        let (mut req, _) = parse_request(RFC_REQUEST, 8192).unwrap().unwrap();
        for v in values {
            req.headers
                .push(("Sec-WebSocket-Protocol".into(), (*v).to_owned()));
        }
        req
    }

    #[test]
    fn the_first_offered_and_served_subprotocol_is_chosen() {
        let served = ["feedrelay.v1".to_owned(), "json".to_owned()];
        let req = with_protocol_headers(&["x, json", "feedrelay.v1"]);
        assert_eq!(
            req.offered_protocols().collect::<Vec<_>>(),
            ["x", "json", "feedrelay.v1"]
        );
        assert_eq!(
            req.select_protocol(&served),
            Ok(Some("json")),
            "client order"
        );
        assert_eq!(
            with_protocol_headers(&[]).select_protocol(&served),
            Ok(None)
        );
        assert_eq!(
            with_protocol_headers(&[" , "]).select_protocol(&served),
            Ok(None)
        );
        let mqtt = with_protocol_headers(&["mqtt"]);
        assert!(mqtt.select_protocol(&served).unwrap_err().contains("mqtt"));
        assert!(mqtt
            .select_protocol(&[])
            .unwrap_err()
            .contains("served: none"));
        assert!(is_token("feedrelay.v1") && is_token("x-1_~"));
        assert!(!is_token("") && !is_token("a b") && !is_token("a,b") && !is_token("é"));
        let mut out = Vec::new();
        write_accept(&req, Some("json"), None, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\r\nSec-WebSocket-Protocol: json\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_client_accepts_only_a_subprotocol_it_offered() {
        let offered = ["a".to_owned(), "b".to_owned()];
        let client = ClientHandshake::new([7; 16]).with_protocols(&offered);
        let mut req = Vec::new();
        client.write_request("h", "/", &[], &mut req);
        assert!(String::from_utf8_lossy(&req).contains("Sec-WebSocket-Protocol: a, b\r\n"));
        let answer = |p: Option<&str>| {
            let (parsed, _) = parse_request(&req, 8192).unwrap().unwrap();
            let mut out = Vec::new();
            write_accept(&parsed, p, None, &mut out);
            out
        };
        let (resp, _) = client
            .parse_response(&answer(Some("b")), 8192)
            .unwrap()
            .unwrap();
        assert_eq!(resp.protocol.as_deref(), Some("b"));
        let (resp, _) = client.parse_response(&answer(None), 8192).unwrap().unwrap();
        assert_eq!(resp.protocol, None);
        assert_eq!(
            client.parse_response(&answer(Some("c")), 8192),
            Err(HandshakeError::NotOffered("Sec-WebSocket-Protocol"))
        );
    }

    #[test]
    fn rfc_example_accept_key() {
        // §1.3 / §4.2.2: the sample nonce and its accept value.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_request_path_query_and_origin() {
        let (req, n) = parse_request(RFC_REQUEST, 8192).unwrap().unwrap();
        assert_eq!(n, RFC_REQUEST.len());
        assert_eq!(req.path, "/chat");
        assert_eq!(req.query_param("topics"), Some("A,B"));
        assert_eq!(req.origin.as_deref(), Some("http://example.com"));
        let mut out = Vec::new();
        write_accept(&req, None, None, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 "));
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn partial_request_needs_more_at_every_cut() {
        for cut in 0..RFC_REQUEST.len() {
            assert_eq!(
                parse_request(&RFC_REQUEST[..cut], 8192),
                Ok(None),
                "cut {cut}"
            );
        }
    }

    fn with(find: &str, replace: &str) -> Vec<u8> {
        String::from_utf8_lossy(RFC_REQUEST)
            .replace(find, replace)
            .into_bytes()
    }

    #[test]
    fn each_requirement_is_checked() {
        let cases: Vec<(Vec<u8>, HandshakeError)> = vec![
            (with("GET", "POST"), HandshakeError::MethodNotGet),
            (
                with("HTTP/1.1", "HTTP/1.0"),
                HandshakeError::WrongHttpVersion,
            ),
            (
                with("Host: server.example.com\r\n", ""),
                HandshakeError::BadHeader("Host"),
            ),
            (
                with("Upgrade: websocket", "Upgrade: h2c"),
                HandshakeError::BadHeader("Upgrade: websocket"),
            ),
            (
                with("Connection: Upgrade", "Connection: keep-alive"),
                HandshakeError::BadHeader("Connection: Upgrade"),
            ),
            (
                with("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
                HandshakeError::BadKey,
            ),
            (
                with("dGhlIHNhbXBsZSBub25jZQ==", "not base64!"),
                HandshakeError::BadKey,
            ),
            (
                with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
                HandshakeError::UnsupportedVersion,
            ),
            (
                with("Sec-WebSocket-Version: 13\r\n", ""),
                HandshakeError::BadHeader("Sec-WebSocket-Version"),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(parse_request(&bytes, 8192), Err(expected.clone()));
            let mut out = Vec::new();
            write_reject(&expected, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {} ", expected.status())));
            if expected.status() == 426 {
                assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
            }
        }
    }

    #[test]
    fn tokens_are_case_insensitive_and_listed() {
        let req = with("Connection: Upgrade", "Connection: keep-alive, UPGRADE");
        let req = String::from_utf8(req)
            .unwrap()
            .replace("Upgrade: websocket", "upgrade: WebSocket");
        assert!(parse_request(req.as_bytes(), 8192).unwrap().is_some());
    }

    #[test]
    fn header_block_is_limited() {
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(
            parse_request(&big, 8192),
            Err(HandshakeError::HeaderTooLarge(8192))
        );
        assert_eq!(
            parse_request(RFC_REQUEST, 100),
            Err(HandshakeError::HeaderTooLarge(100))
        );
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = with("Origin", &format!("{many}Origin"));
        assert_eq!(
            parse_request(&req, 8192),
            Err(HandshakeError::HeaderTooLarge(8192))
        );
    }

    #[test]
    fn client_round_trip_and_validation() {
        let client = ClientHandshake::new(*b"the sample nonce");
        let mut out = Vec::new();
        client.write_request(
            "server.example.com",
            "/ws?topics=A",
            &[("X-Api-Key".into(), "k".into())],
            &mut out,
        );
        let (req, _) = parse_request(&out, 8192).unwrap().unwrap();
        assert_eq!(req.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(req.query.as_deref(), Some("topics=A"));
        assert!(String::from_utf8_lossy(&out).contains("X-Api-Key: k\r\n"));
        let mut resp = Vec::new();
        write_accept(&req, None, None, &mut resp);
        let (_, n) = client.parse_response(&resp, 8192).unwrap().unwrap();
        assert_eq!(n, resp.len());
        for cut in 0..resp.len() {
            assert_eq!(client.parse_response(&resp[..cut], 8192), Ok(None));
        }
        let wrong = String::from_utf8(resp.clone())
            .unwrap()
            .replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAA");
        assert_eq!(
            client.parse_response(wrong.as_bytes(), 8192),
            Err(HandshakeError::AcceptMismatch)
        );
        let mut refused = Vec::new();
        write_status(404, "", "no such path", &mut refused);
        assert_eq!(
            client.parse_response(&refused, 8192),
            Err(HandshakeError::NotSwitching(404))
        );
        let ext = String::from_utf8(resp).unwrap().replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        );
        assert_eq!(
            client.parse_response(ext.as_bytes(), 8192),
            Err(HandshakeError::NotOffered("Sec-WebSocket-Extensions"))
        );
    }
}
