//! PROXY protocol v2 (the binary header HAProxy, AWS NLB, nginx and Envoy put before a
//! proxied TCP stream): behind a load balancer, the address a connection comes from is
//! the balancer's, and the client's is in this header. The relay reads it only from
//! addresses it is told to trust ([`TrustedProxies`]); from any other, a header is just
//! bytes (and the WebSocket handshake fails on them).
//!
//! Read exactly: 16 bytes, then the length they announce (at most
//! [`MAX_ADDRESS_BYTES`]), never a byte of what follows (a TLS ClientHello or an HTTP
//! request). `LOCAL` (the balancer's own health check) and an unspecified family keep
//! the connection's own address; TCP over IPv4 or IPv6 gives the client's. Anything else
//! (bad signature, version, command or family, short addresses) is an error, and the
//! connection is closed: a trusted peer that does not speak the protocol is
//! misconfigured, and guessing would let a client choose its own address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use super::ring::TcpStream;
use super::rt::{self, Either};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The most address bytes (and TLVs) read after the fixed 16.
pub const MAX_ADDRESS_BYTES: usize = 512;

/// Why a PROXY header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Not the v2 signature.
    #[error("no PROXY v2 signature")]
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

/// Reads exactly `n` more bytes into `buf`, by `deadline`.
async fn read_exact(
    stream: &TcpStream,
    mut buf: Vec<u8>,
    n: usize,
    deadline: Instant,
) -> Result<Vec<u8>, ProxyError> {
    let want = buf.len() + n;
    while buf.len() < want {
        let mut exact = Vec::with_capacity(want - buf.len());
        let mut read = std::pin::pin!(super::ring::read_append(stream, exact));
        let (res, got) = match rt::race(read.as_mut(), rt::sleep_until(deadline)).await {
            Either::Left(r) => r,
            Either::Right(()) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                let _ = read.await;
                return Err(ProxyError::Timeout);
            }
        };
        exact = got;
        match res {
            Ok(0) => return Err(ProxyError::Io("closed".into())),
            Ok(_) => buf.extend_from_slice(&exact),
            Err(e) => return Err(ProxyError::Io(e.to_string())),
        }
    }
    Ok(buf)
}

/// Reads a v2 header from `stream` by `deadline`: the client's address, or `None` to
/// keep the connection's own.
pub async fn read_v2(
    stream: &TcpStream,
    deadline: Instant,
) -> Result<Option<SocketAddr>, ProxyError> {
    let fixed = read_exact(stream, Vec::with_capacity(16), 16, deadline).await?;
    let mut h = [0u8; 16];
    h.copy_from_slice(&fixed);
    let len = parse_fixed(&h)?;
    let block = read_exact(stream, Vec::with_capacity(len), len, deadline).await?;
    parse_source(&h, &block)
}

/// The addresses whose connections start with a PROXY v2 header (`proxy_protocol_from`:
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
