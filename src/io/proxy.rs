//! PROXY protocol, v1 and v2 (the header HAProxy, AWS NLB, nginx and Envoy put before a
//! proxied TCP stream): behind a load balancer, the address a connection comes from is
//! the balancer's, and the client's is in this header. The relay reads it only from
//! addresses it is told to trust ([`TrustedProxies`]); from any other, a header is just
//! bytes (and the WebSocket handshake fails on them).
//!
//! Read exactly, never a byte of what follows (a TLS ClientHello or an HTTP request):
//! the first 8 bytes tell the version. v2 (binary): 16 bytes, then the length they
//! announce (at most [`MAX_ADDRESS_BYTES`]). v1 (a text line, what nginx's stream
//! module and Envoy send by default): at most [`V1_MAX_BYTES`] up to its CRLF; its
//! length is not announced, so what has arrived is peeked and only the line's own bytes
//! are taken. `LOCAL` and `UNKNOWN` (the balancer speaking for itself) and an
//! unspecified family keep the connection's own address; TCP over IPv4 or IPv6 gives
//! the client's. Anything else (bad signature, version, command or family, short
//! addresses, a malformed line) is an error, and the connection is closed: a trusted
//! peer that does not speak the protocol is misconfigured, and guessing would let a
//! client choose its own address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use super::ring::{peek_append, read_append, TcpStream};
use super::rt::{self, Either};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The most address bytes (and TLVs) read after the fixed 16.
pub const MAX_ADDRESS_BYTES: usize = 512;

/// How a v1 header starts.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// The longest v1 header, its CRLF included (the protocol's own bound: `UNKNOWN` with
/// two full IPv6 addresses and two ports).
pub const V1_MAX_BYTES: usize = 107;

/// Why a PROXY header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Neither the v1 nor the v2 signature.
    #[error("no PROXY signature (v1 or v2)")]
    Signature,
    /// Version other than 2, or a command other than LOCAL and PROXY.
    #[error("PROXY header version/command byte {0:#04x} is not v2 LOCAL or PROXY")]
    Version(u8),
    /// Address block longer than [`MAX_ADDRESS_BYTES`].
    #[error("PROXY address block of {0} bytes (at most {MAX_ADDRESS_BYTES})")]
    TooLong(usize),
    /// The family's addresses do not fit the block, or the family is not TCP over
    /// IPv4/IPv6 (or unspecified).
    #[error("PROXY family/protocol byte {0:#04x} unsupported or its addresses truncated")]
    Family(u8),
    /// A v1 line with no CRLF in its first [`V1_MAX_BYTES`].
    #[error("PROXY v1 line without CRLF in {V1_MAX_BYTES} bytes")]
    V1TooLong,
    /// A v1 line that is not `PROXY TCP4|TCP6 src dst sport dport` or `PROXY UNKNOWN`.
    #[error("PROXY v1 line: {0}")]
    V1Line(&'static str),
    /// The stream ended or failed before the header did.
    #[error("PROXY header: {0}")]
    Io(String),
    /// The header did not arrive by the deadline.
    #[error("PROXY header not received in time")]
    Timeout,
}

/// Checks the fixed 16 bytes; returns the length of the address block that follows.
pub fn parse_fixed(h: &[u8; 16]) -> Result<usize, ProxyError> {
    if h[..12] != SIGNATURE {
        return Err(ProxyError::Signature);
    }
    if !matches!(h[12], 0x20 | 0x21) {
        return Err(ProxyError::Version(h[12]));
    }
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    if len > MAX_ADDRESS_BYTES {
        return Err(ProxyError::TooLong(len));
    }
    Ok(len)
}

/// The client's address from the fixed header `h` and its address block: `None` to
/// keep the connection's own (LOCAL, or an unspecified family).
pub fn parse_source(h: &[u8; 16], block: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    if h[12] == 0x20 {
        return Ok(None); // LOCAL: the balancer speaking for itself.
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match h[13] {
        0x00 => Ok(None),
        // TCP over IPv4: src 4, dst 4, src port 2, dst port 2.
        0x11 if block.len() >= 12 => {
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port(&block[8..10]))))
        }
        // TCP over IPv6: src 16, dst 16, src port 2, dst port 2.
        0x21 if block.len() >= 36 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&block[..16]);
            let ip = Ipv6Addr::from(o);
            Ok(Some(SocketAddr::new(IpAddr::V6(ip), port(&block[32..34]))))
        }
        other => Err(ProxyError::Family(other)),
    }
}

/// The client's address from a v1 line (`line`: from `PROXY ` to just before the
/// CRLF): `None` for `UNKNOWN`, whatever follows it.
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let rest = line.strip_prefix(V1_PREFIX).ok_or(ProxyError::Signature)?;
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        return Ok(None);
    }
    let text = std::str::from_utf8(rest).map_err(|_| ProxyError::V1Line("not ASCII"))?;
    let mut fields = text.split(' ');
    let mut next = || fields.next();
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) =
        (next(), next(), next(), next(), next(), next())
    else {
        return Err(ProxyError::V1Line("not five fields after PROXY"));
    };
    let v4 = match proto {
        "TCP4" => true,
        "TCP6" => false,
        _ => return Err(ProxyError::V1Line("protocol not TCP4, TCP6 or UNKNOWN")),
    };
    let address = |a: &str| match v4 {
        true => a.parse::<Ipv4Addr>().map(IpAddr::V4).ok(),
        false => a.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
    };
    let (Some(ip), Some(_)) = (address(src), address(dst)) else {
        return Err(ProxyError::V1Line(
            "an address is not of the protocol's family",
        ));
    };
    let (Some(port), Some(_)) = (v1_port(sport), v1_port(dport)) else {
        return Err(ProxyError::V1Line("a port is not 0-65535 in plain decimal"));
    };
    Ok(Some(SocketAddr::new(ip, port)))
}

/// A v1 port: decimal digits, no sign, no leading zero, at most 65535.
fn v1_port(s: &str) -> Option<u16> {
    let plain = s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    s.parse().ok().filter(|_| plain)
}

/// One read of at most `n` bytes (a peek with `peek`: they stay in the socket),
/// appended to `buf`, by `deadline`; the stream's end is an error.
async fn recv_once(
    stream: &TcpStream,
    mut buf: Vec<u8>,
    n: usize,
    peek: bool,
    deadline: Instant,
) -> Result<Vec<u8>, ProxyError> {
    let part = Vec::with_capacity(n);
    let mut recv = std::pin::pin!(async {
        if peek {
            peek_append(stream, part).await
        } else {
            read_append(stream, part).await
        }
    });
    let (res, got) = match rt::race(recv.as_mut(), rt::sleep_until(deadline)).await {
        Either::Left(r) => r,
        Either::Right(()) => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let _ = recv.await;
            return Err(ProxyError::Timeout);
        }
    };
    match res {
        Ok(0) => Err(ProxyError::Io("closed".into())),
        Ok(_) => {
            buf.extend_from_slice(&got);
            Ok(buf)
        }
        Err(e) => Err(ProxyError::Io(e.to_string())),
    }
}

/// Reads exactly `n` more bytes into `buf`, by `deadline`.
async fn read_exact(
    stream: &TcpStream,
    mut buf: Vec<u8>,
    n: usize,
    deadline: Instant,
) -> Result<Vec<u8>, ProxyError> {
    let want = buf.len() + n;
    while buf.len() < want {
        let n = want - buf.len();
        buf = recv_once(stream, buf, n, false, deadline).await?;
    }
    Ok(buf)
}

/// Takes the rest of a v1 line whose first bytes (`line`) are taken, by `deadline`:
/// peeks at what has arrived; takes up to the CRLF if it is there, else all of it (every
/// byte before the CRLF is the line's) and peeks again. Returns the line without CRLF.
async fn read_v1_line(
    stream: &TcpStream,
    mut line: Vec<u8>,
    deadline: Instant,
) -> Result<Vec<u8>, ProxyError> {
    loop {
        let held = line.len();
        let seen = recv_once(stream, line.clone(), V1_MAX_BYTES - held, true, deadline).await?;
        // A CR taken last time may end with the LF seen now.
        let from = held.saturating_sub(1);
        if let Some(at) = seen[from..].windows(2).position(|w| w == b"\r\n") {
            let end = from + at + 2;
            let mut line = read_exact(stream, line, end - held, deadline).await?;
            line.truncate(end - 2);
            return Ok(line);
        }
        if seen.len() >= V1_MAX_BYTES {
            return Err(ProxyError::V1TooLong);
        }
        line = read_exact(stream, line, seen.len() - held, deadline).await?;
    }
}

/// Reads a PROXY header, v1 or v2, from `stream` by `deadline`: the client's address,
/// or `None` to keep the connection's own.
pub async fn read_header(
    stream: &TcpStream,
    deadline: Instant,
) -> Result<Option<SocketAddr>, ProxyError> {
    // Both versions' headers are longer than this.
    let first = read_exact(stream, Vec::with_capacity(16), 8, deadline).await?;
    if first.starts_with(V1_PREFIX) {
        let line = read_v1_line(stream, first, deadline).await?;
        return parse_v1(&line);
    }
    if first[..] != SIGNATURE[..8] {
        return Err(ProxyError::Signature);
    }
    let fixed = read_exact(stream, first, 8, deadline).await?;
    let mut h = [0u8; 16];
    h.copy_from_slice(&fixed);
    let len = parse_fixed(&h)?;
    let block = read_exact(stream, Vec::with_capacity(len), len, deadline).await?;
    parse_source(&h, &block)
}

/// The addresses whose connections start with a PROXY header (`proxy_protocol_from`:
/// addresses or CIDR blocks, IPv4 or IPv6; an IPv4-mapped IPv6 peer matches as IPv4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    blocks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`, ...; `Err` names the entry.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let mut blocks = Vec::with_capacity(entries.len());
        for e in entries {
            let (ip, bits) = match e.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (e.as_str(), None),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("{e:?} is not an address or CIDR block"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|&b| b <= max)
                    .ok_or_else(|| format!("{e:?}: a prefix is 0..={max} bits"))?,
            };
            blocks.push((ip, bits));
        }
        Ok(TrustedProxies { blocks })
    }

    /// Whether none are trusted.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether `ip` is one of them.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.blocks.iter().any(|&(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), bits),
            _ => false,
        })
    }
}

/// Whether the first `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (full, rest) = (usize::from(bits / 8), bits % 8);
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 PROXY header for TCP from `src` to `dst`.
    pub(crate) fn header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.push(0x21);
        let mut block = Vec::new();
        match (src, dst) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                h.push(0x11);
                block.extend_from_slice(&s.ip().octets());
                block.extend_from_slice(&d.ip().octets());
            }
            (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                h.push(0x21);
                block.extend_from_slice(&s.ip().octets());
                block.extend_from_slice(&d.ip().octets());
            }
            _ => panic!("one family"),
        }
        block.extend_from_slice(&src.port().to_be_bytes());
        block.extend_from_slice(&dst.port().to_be_bytes());
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(&block);
        h
    }

    fn parse(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
        let mut h = [0u8; 16];
        h.copy_from_slice(&bytes[..16]);
        let len = parse_fixed(&h)?;
        parse_source(&h, &bytes[16..16 + len.min(bytes.len() - 16)])
    }

    #[test]
    fn tcp4_tcp6_and_local() {
        let src: SocketAddr = "198.51.100.7:5555".parse().unwrap();
        let dst: SocketAddr = "10.0.0.1:443".parse().unwrap();
        assert_eq!(parse(&header(src, dst)), Ok(Some(src)));
        let src6: SocketAddr = "[2001:db8::7]:6000".parse().unwrap();
        let dst6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(parse(&header(src6, dst6)), Ok(Some(src6)));
        let mut local = header(src, dst);
        local[12] = 0x20;
        assert_eq!(
            parse(&local),
            Ok(None),
            "LOCAL keeps the peer's own address"
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let src: SocketAddr = "198.51.100.7:5555".parse().unwrap();
        let dst: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let good = header(src, dst);
        let mut bad = good.clone();
        bad[0] = b'G';
        assert_eq!(parse(&bad), Err(ProxyError::Signature));
        let mut v1 = good.clone();
        v1[12] = 0x11;
        assert_eq!(parse(&v1), Err(ProxyError::Version(0x11)));
        let mut udp = good.clone();
        udp[13] = 0x12;
        assert_eq!(parse(&udp), Err(ProxyError::Family(0x12)));
        let mut long = good.clone();
        long[14..16].copy_from_slice(&600u16.to_be_bytes());
        assert_eq!(parse(&long), Err(ProxyError::TooLong(600)));
        let mut short = good;
        short[14..16].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(parse(&short[..20]), Err(ProxyError::Family(0x11)));
    }

    #[test]
    fn v1_lines_give_the_source_or_keep_the_peer() {
        let v1 = |l: &str| parse_v1(l.as_bytes());
        let src: SocketAddr = "198.51.100.7:5555".parse().unwrap();
        assert_eq!(
            v1("PROXY TCP4 198.51.100.7 10.0.0.1 5555 443"),
            Ok(Some(src))
        );
        let src6: SocketAddr = "[2001:db8::7]:6000".parse().unwrap();
        assert_eq!(
            v1("PROXY TCP6 2001:db8::7 2001:db8::1 6000 443"),
            Ok(Some(src6))
        );
        assert_eq!(v1("PROXY UNKNOWN"), Ok(None));
        assert_eq!(
            v1("PROXY UNKNOWN ffff::1 ffff::2 1 2"),
            Ok(None),
            "the rest ignored"
        );
        assert_eq!(
            v1("PROXY TCP4 0.0.0.0 10.0.0.1 0 443").map(|a| a.map(|a| a.port())),
            Ok(Some(0))
        );
        // The longest line the protocol allows fits the bound, its CRLF included.
        let ip6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let longest = format!("PROXY UNKNOWN {ip6} {ip6} 65535 65535");
        assert_eq!(longest.len() + 2, V1_MAX_BYTES);
        assert_eq!(v1(&longest), Ok(None));
        let tcp6 = format!("PROXY TCP6 {ip6} {ip6} 65535 65535");
        assert!(v1(&tcp6).is_ok_and(|a| a.is_some()));
    }

    #[test]
    fn malformed_v1_lines_are_refused() {
        let refused = |l: &str| match parse_v1(l.as_bytes()) {
            Err(ProxyError::V1Line(_)) => {}
            other => panic!("{l:?}: {other:?}"),
        };
        refused("PROXY TCP4 198.51.100.7 10.0.0.1 5555");
        refused("PROXY TCP4 198.51.100.7 10.0.0.1 5555 443 extra");
        refused("PROXY TCP4 198.51.100.7  10.0.0.1 5555 443");
        refused("PROXY TCP4 198.51.100.7 10.0.0.1 5555 443 ");
        refused("PROXY UDP4 198.51.100.7 10.0.0.1 5555 443");
        refused("PROXY UNKNOWNX");
        refused("PROXY TCP4 2001:db8::7 10.0.0.1 5555 443");
        refused("PROXY TCP6 198.51.100.7 2001:db8::1 5555 443");
        refused("PROXY TCP4 198.51.100.7 10.0.0.1 65536 443");
        refused("PROXY TCP4 198.51.100.7 10.0.0.1 +555 443");
        refused("PROXY TCP4 198.51.100.7 10.0.0.1 0555 443");
        refused("PROXY TCP4 198.51.100.07 10.0.0.1 5555 443");
        refused("PROXY TCP4 198.51.100.7 10.0.0.1 5555 4\u{e9}3");
        assert_eq!(
            parse_v1(b"PROXY TCP4 \xff 1 2 3"),
            Err(ProxyError::V1Line("not ASCII"))
        );
        assert_eq!(parse_v1(b"proxy TCP4"), Err(ProxyError::Signature));
    }

    #[test]
    fn trusted_blocks_match_by_prefix() {
        let t = TrustedProxies::parse(&[
            "10.0.0.0/8".into(),
            "192.0.2.7".into(),
            "2001:db8::/32".into(),
        ])
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(t.trusts(ip("10.200.3.4")) && t.trusts(ip("192.0.2.7")));
        assert!(!t.trusts(ip("11.0.0.1")) && !t.trusts(ip("192.0.2.8")));
        assert!(t.trusts(ip("2001:db8:ffff::1")) && !t.trusts(ip("2001:db9::1")));
        assert!(
            t.trusts(ip("::ffff:10.1.1.1")),
            "mapped IPv4 matches as IPv4"
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["nope".into()]).is_err());
        assert!(TrustedProxies::parse(&["10.0.0.0/7".into()])
            .unwrap()
            .trusts(ip("11.1.1.1")));
    }
}
