//! Plain HTTP/1.1 `GET`s beside WebSocket: the few endpoints a relay serves to
//! scrapers (`/metrics`), on the data port or on an address of their own.
//!
//! [`serve`] answers off the workers: one accepting thread, and a short-lived thread
//! per connection, at most [`MAX_CONCURRENT`] at once (more are answered 503 at once),
//! each bounded in time and size: a scraper that trickles its request or stops reading
//! holds its own thread for at most [`REQUEST_TIMEOUT`], never the others'.
//!
//! A request's credential ([`PlainGet::token`]: `Authorization: Bearer T`, or
//! `?token=T` for a browser) is handed to the handler, which decides.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::IoError;

/// Largest request head read; a longer one is answered 431.
pub const MAX_REQUEST_BYTES: usize = 8192;

/// A request must arrive, and its answer be written, within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections answered at once; more are answered 503 on the spot.
pub const MAX_CONCURRENT: usize = 8;

/// The token of an `Authorization: Bearer TOKEN` header value (the scheme in any case).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A plain `GET`: its path (without the query) and the credential it presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainGet {
    /// The path.
    pub path: String,
    /// `Authorization: Bearer T`, or else the `token` query parameter.
    pub token: Option<String>,
}

/// The complete plain `GET` (not a WebSocket upgrade) at the start of `buf`; `None` if
/// it is anything else or not complete.
pub fn plain_get(buf: &[u8]) -> Option<PlainGet> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) if req.method == Some("GET") => {}
        _ => return None,
    }
    if req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade"))
    {
        return None;
    }
    let target = req.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let bearer = req.headers.iter().find_map(|h| {
        if !h.name.eq_ignore_ascii_case("authorization") {
            return None;
        }
        bearer_token(std::str::from_utf8(h.value).ok()?).map(str::to_owned)
    });
    let in_query = || {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_owned)
    };
    Some(PlainGet {
        path: path.to_owned(),
        token: bearer.or_else(in_query),
    })
}

/// Writes a `200 OK` with `body` that closes the connection.
pub fn write_ok(content_type: &str, body: &str, out: &mut Vec<u8>) {
    write_response(200, "OK", content_type, body, out);
}

/// Writes a response with a status line, a body, and `Connection: close`.
pub fn write_response(
    status: u16,
    phrase: &str,
    content_type: &str,
    body: &str,
    out: &mut Vec<u8>,
) {
    let head = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
}

/// What a plain endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 200, or 503 when the endpoint reports something down (`/readyz`).
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Reply {
    /// `200 OK` with `body`.
    pub fn ok(content_type: &'static str, body: String) -> Reply {
        Reply {
            status: 200,
            content_type,
            body,
        }
    }

    /// `401 Unauthorized`: the path needs a credential this request did not present.
    pub fn unauthorized() -> Reply {
        Reply {
            status: 401,
            content_type: "text/plain",
            body: "this path needs `Authorization: Bearer TOKEN` (or ?token=TOKEN)\n".into(),
        }
    }

    /// `503 Service Unavailable` with `body` (a probe that should not pass).
    pub fn unavailable(content_type: &'static str, body: String) -> Reply {
        Reply {
            status: 503,
            content_type,
            body,
        }
    }

    /// The reason phrase of its status.
    pub fn phrase(&self) -> &'static str {
        match self.status {
            200 => "OK",
            401 => "Unauthorized",
            503 => "Service Unavailable",
            _ => "",
        }
    }
}

/// What a plain endpoint answers for a request, or `None` for 404.
pub type Handler = dyn Fn(&PlainGet) -> Option<Reply> + Send + Sync;

/// Serves plain `GET`s on `addr` from a thread named `name`, answering each path with
/// `handler`; returns the bound address.
pub fn serve(addr: SocketAddr, name: &str, handler: Box<Handler>) -> Result<SocketAddr, IoError> {
    let listener = TcpListener::bind(addr).map_err(|e| IoError::op("listen on", addr, e))?;
    let local = listener
        .local_addr()
        .map_err(|e| IoError::op("listen on", addr, e))?;
    let handler: Arc<Handler> = Arc::from(handler);
    let busy = Arc::new(AtomicUsize::new(0));
    let worker_name = format!("{name}-conn");
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(conn) => dispatch(conn, &handler, &busy, &worker_name),
                    // EMFILE and the like: pause, the connections in the backlog wait.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
        .map_err(|e| IoError::op("spawn thread for", name, e))?;
    Ok(local)
}

/// Answers `conn` on a thread of its own, or 503 at once when [`MAX_CONCURRENT`] are
/// being answered already.
fn dispatch(
    mut conn: std::net::TcpStream,
    handler: &Arc<Handler>,
    busy: &Arc<AtomicUsize>,
    name: &str,
) {
    let refuse = |conn: &mut std::net::TcpStream| {
        let mut out = Vec::new();
        let body = "busy: too many requests at once\n";
        write_response(503, "Service Unavailable", "text/plain", body, &mut out);
        let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
        let _ = conn.write_all(&out);
    };
    if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONCURRENT {
        busy.fetch_sub(1, Ordering::AcqRel);
        return refuse(&mut conn);
    }
    let (handler, done) = (Arc::clone(handler), Arc::clone(busy));
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            answer(conn, &*handler);
            done.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one request (bounded in size and time) and answers it.
fn answer(mut conn: std::net::TcpStream, handler: &Handler) {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let _ = conn.set_write_timeout(Some(REQUEST_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if buf.len() >= MAX_REQUEST_BYTES || left.is_zero() {
            break false;
        }
        let _ = conn.set_read_timeout(Some(left));
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let mut out = Vec::new();
    match (complete, plain_get(&buf)) {
        (false, _) if buf.len() >= MAX_REQUEST_BYTES => write_response(
            431,
            "Request Header Fields Too Large",
            "text/plain",
            "request head too large\n",
            &mut out,
        ),
        (false, _) => return,
        (true, Some(get)) => match handler(&get) {
            Some(r) => write_response(r.status, r.phrase(), r.content_type, &r.body, &mut out),
            None => write_response(404, "Not Found", "text/plain", "no such path\n", &mut out),
        },
        (true, None) => write_response(
            400,
            "Bad Request",
            "text/plain",
            "only plain GET here\n",
            &mut out,
        ),
    }
    let _ = conn.write_all(&out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(request).unwrap();
        let mut s = String::new();
        let _ = c.read_to_string(&mut s);
        s
    }

    #[test]
    fn answers_paths_and_refuses_the_rest() {
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            "test-http",
            Box::new(|g| {
                (g.path == "/metrics").then(|| match g.token.as_deref() {
                    Some("t0k") => Reply::ok("text/plain", "x 1\n".to_owned()),
                    _ => Reply::unauthorized(),
                })
            }),
        )
        .unwrap();
        let ok = get(
            addr,
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t0k\r\n\r\n",
        );
        assert!(
            ok.starts_with("HTTP/1.1 200 OK") && ok.ends_with("x 1\n"),
            "{ok}"
        );
        let by_query = get(
            addr,
            b"GET /metrics?x=1&token=t0k HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        assert!(by_query.starts_with("HTTP/1.1 200 OK"), "{by_query}");
        let without = get(addr, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(without.starts_with("HTTP/1.1 401"), "{without}");
        let missing = get(addr, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(addr, b"POST /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 400"), "{post}");
        let huge = get(addr, &[b'a'; MAX_REQUEST_BYTES]);
        assert!(huge.starts_with("HTTP/1.1 431"), "{huge}");
    }

    /// A client that never sends its request holds only its own thread: others are
    /// answered meanwhile; past [`MAX_CONCURRENT`] silent ones, a request gets 503 at
    /// once rather than waiting.
    #[test]
    fn a_silent_client_does_not_hold_the_others() {
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            "test-http-2",
            Box::new(|_| Some(Reply::ok("text/plain", "y\n".to_owned()))),
        )
        .unwrap();
        let silent: Vec<_> = (0..MAX_CONCURRENT - 1)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        let ok = get(addr, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        // One more silent client takes the last slot. The thread that answered `ok` may
        // give its slot back a moment after the answer (it is counted until it ends),
        // so a request that still finds a slot free adds a silent client and tries
        // again; a cap that holds refuses within a few.
        let mut more: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut answers = Vec::new();
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(100));
            let answer = get(addr, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
            if answer.starts_with("HTTP/1.1 503") {
                drop((silent, more));
                return;
            }
            answers.push(answer);
            more.push(std::net::TcpStream::connect(addr).unwrap());
        }
        panic!("never refused past the cap: {answers:?}");
    }

    #[test]
    fn plain_get_is_told_apart_from_an_upgrade() {
        let path = |b: &[u8]| plain_get(b).map(|g| g.path);
        assert_eq!(
            path(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some("/metrics".into())
        );
        let upgrade =
            b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(path(upgrade), None);
        assert_eq!(
            path(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            None,
            "incomplete"
        );
        assert_eq!(path(b"POST /metrics HTTP/1.1\r\n\r\n"), None);
    }
}
