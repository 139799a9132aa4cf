//! TLS over the ring (`io::transport`) against rustls' own blocking streams: records
//! larger than one read, and a server outside the trust roots.

use std::io::{self, Write};

use feedrelay::io::ring::{self, Ring};
use feedrelay::io::transport::{client_config, server_config, Transport};
use feedrelay::mock_exchange::certs::write_self_signed;

/// A server writes 2 MiB in 64 KiB writes (many full records per socket read); the
/// client reads through small buffers, so rustls' plaintext buffer fills and the
/// ciphertext must wait for the reader. Everything arrives, in order, intact.
#[test]
fn tls_streams_more_than_rustls_buffers_through_small_reads() {
    let dir = std::env::temp_dir().join(format!("feedrelay-transport-{}", std::process::id()));
    let names = ["localhost".to_owned()];
    let files = write_self_signed(&dir, &names).unwrap();
    let server_cfg = server_config(&files.cert, &files.key).unwrap();
    let client_cfg = client_config(Some(&files.ca)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    const TOTAL: usize = 2 << 20;
    let pattern = |i: usize| (i * 31 % 251) as u8;
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(server_cfg).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        for chunk in data.chunks(64 << 10) {
            tls.write_all(chunk).unwrap();
        }
        tls.conn.send_close_notify();
        tls.flush().unwrap();
    });
    let got = Ring::new().unwrap().block_on(async move {
        let tcp = ring::connect(addr).await.unwrap();
        let t = Transport::tls_client(tcp, client_cfg, "localhost")
            .await
            .unwrap();
        let mut got = Vec::with_capacity(TOTAL);
        let mut buf = Vec::with_capacity(4096);
        loop {
            let (res, b) = t.read_append(buf).await;
            buf = b;
            match res.unwrap() {
                0 => break,
                _ => {
                    got.extend_from_slice(&buf);
                    buf.clear();
                }
            }
        }
        got
    });
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got.len(), TOTAL);
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
}

#[test]
fn a_server_outside_the_trust_roots_is_refused() {
    let dir = std::env::temp_dir().join(format!("feedrelay-transport-bad-{}", std::process::id()));
    let names = ["localhost".to_owned()];
    let files = write_self_signed(&dir, &names).unwrap();
    let server_cfg = server_config(&files.cert, &files.key).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(server_cfg).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let _ = tls.write_all(b"never");
    });
    let err = Ring::new().unwrap().block_on(async move {
        let tcp = ring::connect(addr).await.unwrap();
        // The webpki roots only: a self-signed test CA is not among them.
        match Transport::tls_client(tcp, client_config(None).unwrap(), "localhost").await {
            Ok(_) => panic!("an unknown CA was accepted"),
            Err(e) => e,
        }
    });
    let _ = server.join();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}
