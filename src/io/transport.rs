//! A byte stream over the ring: plain TCP, or TLS (`rustls`) on top of it.
//!
//! rustls does no IO of its own: ciphertext read from the socket is handed to it, and
//! the records it wants sent are written by us. That keeps TLS on the same ring as
//! everything else (no blocking sockets, no second runtime).
//!
//! Trust: [`client_config`] builds the client side from the webpki roots plus an
//! optional PEM file of extra roots; certificate and host-name verification are always
//! on. SNI is sent for host names (not for IP addresses, which rustls checks against
//! the certificate's IP SANs).

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::local::LocalLock;
use super::ring::{self, TcpStream, WriteBatch};

/// Ciphertext read per socket read (a TLS record is at most 16 KiB plus overhead).
const CIPHER_READ_BYTES: usize = 18 * 1024;

/// Plaintext one TLS record carries at most (RFC 8446 §5.1).
const TLS_RECORD_PLAINTEXT: usize = 16 * 1024;

/// Buffers a TLS batch write gathers its frames in: per thread and only as many as
/// writes are in flight at once, so an idle TLS connection holds none.
mod scratch {
    use std::cell::RefCell;

    /// Spare buffers kept at most; more in flight at once are dropped on return.
    const KEPT: usize = 64;

    thread_local! {
        static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// A cleared buffer.
    pub(super) fn take() -> Vec<u8> {
        SPARE
            .with(|s| s.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(2 * super::TLS_RECORD_PLAINTEXT))
    }

    /// Returns a buffer for the next write.
    pub(super) fn give_back(mut buf: Vec<u8>) {
        buf.clear();
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEPT {
                s.push(buf);
            }
        });
    }
}

/// What setting TLS up can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A PEM file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("{path}: {why}")]
    Pem {
        /// The file.
        path: String,
        /// What was wrong.
        why: String,
    },
    /// rustls refused the configuration (bad key, no usable root).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate in a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: shown.clone(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem {
            path: shown.clone(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Pem {
            path: shown,
            why: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// A client configuration trusting the webpki roots and, if given, the certificates
/// in `extra_roots` (a PEM file). Verification is not optional.
pub fn client_config(
    extra_roots: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_roots {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|e| TlsSetupError::Pem {
                path: path.display().to_string(),
                why: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let chain = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::Pem {
        path: key.display().to_string(),
        why: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A connected stream, plain or TLS.
///
/// Methods take `&self`, so one task can write (a ping, say) while another read is in
/// flight: a read must never be cancelled (the ring owns its buffer until it
/// completes, and dropping it loses what it read). One reader at a time; writers are
/// serialised by a lock, so records and frames never interleave.
pub struct Transport {
    tcp: TcpStream,
    /// Boxed: a plain connection (most of them) does not carry rustls' state inline.
    tls: Option<Box<Tls>>,
    /// Held for the whole of each socket write.
    write_lock: LocalLock,
    /// A write must finish within this (`None`: no limit); see [`ring::deadline`].
    write_timeout: std::cell::Cell<Option<Duration>>,
    /// The socket's watch on the ring's sweeper, registered at the first write under
    /// a timeout.
    write_watch: std::cell::OnceCell<ring::deadline::WriteWatch>,
}

struct Tls {
    conn: RefCell<rustls::Connection>,
    /// Ciphertext read but not yet handed to rustls (taken while a read is in flight).
    cipher_in: RefCell<Vec<u8>>,
    /// Records rustls produced, being written (taken while a write is in flight).
    cipher_out: RefCell<Vec<u8>>,
    /// Plaintext rustls holds, as its last `process_new_packets` said, less what has
    /// been read since: a read copies only this much (and zero-fills no more).
    readable: std::cell::Cell<usize>,
    /// The peer sent close_notify: once `readable` is 0, the stream has ended.
    peer_closed: std::cell::Cell<bool>,
}

impl Transport {
    /// Plain TCP.
    pub fn plain(tcp: TcpStream) -> Transport {
        Transport {
            tcp,
            tls: None,
            write_lock: LocalLock::new(),
            write_timeout: std::cell::Cell::new(None),
            write_watch: std::cell::OnceCell::new(),
        }
    }

    /// TLS client over `tcp`, verifying the server as `host`; runs the handshake.
    pub async fn tls_client(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        host: &str,
    ) -> io::Result<Transport> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        Transport::tls_handshake(tcp, conn.into(), None).await
    }

    /// TLS server over `tcp`; runs the handshake (the client's first flight is read
    /// here).
    pub async fn tls_server(
        tcp: TcpStream,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<Transport> {
        let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Transport::tls_handshake(tcp, conn.into(), None).await
    }

    /// [`tls_server`](Transport::tls_server) that must finish by `deadline`: a client
    /// that stalls mid-handshake gets its socket shut down and a `TimedOut` error.
    pub async fn tls_server_by(
        tcp: TcpStream,
        config: Arc<rustls::ServerConfig>,
        deadline: std::time::Instant,
    ) -> io::Result<Transport> {
        let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Transport::tls_handshake(tcp, conn.into(), Some(deadline)).await
    }

    /// Wraps `tcp` in TLS and runs the handshake to its end (by `deadline`, if given).
    async fn tls_handshake(
        tcp: TcpStream,
        conn: rustls::Connection,
        deadline: Option<std::time::Instant>,
    ) -> io::Result<Transport> {
        let t = Transport {
            tcp,
            tls: Some(Box::new(Tls {
                conn: RefCell::new(conn),
                cipher_in: RefCell::new(Vec::with_capacity(CIPHER_READ_BYTES)),
                cipher_out: RefCell::new(Vec::with_capacity(CIPHER_READ_BYTES)),
                readable: std::cell::Cell::new(0),
                peer_closed: std::cell::Cell::new(false),
            })),
            write_lock: LocalLock::new(),
            write_timeout: std::cell::Cell::new(None),
            write_watch: std::cell::OnceCell::new(),
        };
        let handshaking = |t: &Transport| {
            t.tls
                .as_ref()
                .is_some_and(|s| s.conn.borrow().is_handshaking())
        };
        while handshaking(&t) {
            t.flush_tls().await?;
            if handshaking(&t) && !t.feed_records().await? && !t.read_records_by(deadline).await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                ));
            }
        }
        t.flush_tls().await?;
        Ok(t)
    }

    /// Every write from now on must finish within `timeout`, or the socket is shut
    /// down and the write fails with `TimedOut` (`None`: no limit).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) {
        self.write_timeout.set(timeout);
    }

    /// Runs one write under the write timeout, if there is one.
    async fn timed<T>(
        &self,
        write: impl Future<Output = (io::Result<()>, T)>,
    ) -> (io::Result<()>, T) {
        let deadline = self.watch_write();
        let (res, back) = write.await;
        (self.check_deadline(deadline, res), back)
    }

    /// Arms the socket's watch for a write about to start under the write timeout
    /// (`None`: no limit); hand it to [`check_deadline`](Self::check_deadline) with the
    /// write's result.
    pub fn watch_write(&self) -> Option<(ring::deadline::Armed, Duration)> {
        let limit = self.write_timeout.get()?;
        let watch = self
            .write_watch
            .get_or_init(|| ring::deadline::WriteWatch::register(self.tcp.as_raw_fd()));
        Some((watch.arm(limit), limit))
    }

    /// A finished write's result, or `TimedOut` if its deadline passed meanwhile (the
    /// socket was shut down for it).
    pub fn check_deadline(
        &self,
        deadline: Option<(ring::deadline::Armed, Duration)>,
        res: io::Result<()>,
    ) -> io::Result<()> {
        match deadline {
            Some((d, limit)) if d.expired() => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("a write did not finish within {limit:?}: the peer is not reading"),
            )),
            _ => res,
        }
    }

    /// For a writer that submits through a completion port
    /// ([`Port`](ring::port::Port)) rather than [`write_frames`](Self::write_frames):
    /// the plain TCP socket, with this connection's write turn taken. `None` if TLS, or
    /// another write holds the turn. The caller writes only to this socket, arms
    /// [`watch_write`](Self::watch_write), and gives the turn back with
    /// [`end_port_write`](Self::end_port_write) once the write is done.
    pub fn begin_port_write(&self) -> Option<&TcpStream> {
        if self.tls.is_some() || !self.write_lock.try_hold() {
            return None;
        }
        Some(&self.tcp)
    }

    /// Gives back the write turn taken by [`begin_port_write`](Self::begin_port_write).
    pub fn end_port_write(&self) {
        self.write_lock.release();
    }

    /// Whether this is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Reads into the spare capacity of `buf`; returns the number of plaintext bytes
    /// appended (0 at end of stream) and the buffer. A TLS alert or bad record is an
    /// `InvalidData` error naming the cause.
    pub async fn read_append(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if self.tls.is_none() {
            return ring::read_append(&self.tcp, buf).await;
        }
        loop {
            match self.plaintext_into(&mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            // Ciphertext already read first (rustls takes it only as fast as its
            // plaintext is drained), then the socket.
            match self.feed_records().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return (Err(e), buf),
            }
            match self.read_records().await {
                Ok(true) => {}
                Ok(false) => return (Ok(0), buf),
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Plaintext rustls already holds, appended to `buf`; `None` if it holds none,
    /// `Some(0)` once the peer's close_notify has been read.
    fn plaintext_into(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let pending = tls.readable.get();
        if pending == 0 {
            return Ok(tls.peer_closed.get().then_some(0));
        }
        let len = buf.len();
        let want = pending.min(buf.capacity() - len);
        if want == 0 {
            return Err(io::Error::other("read buffer full"));
        }
        // rustls reads into initialised memory only: zero just what it will fill.
        buf.resize(len + want, 0);
        let res = tls.conn.borrow_mut().reader().read(&mut buf[len..]);
        match res {
            Ok(n) => {
                buf.truncate(len + n);
                tls.readable.set(pending.saturating_sub(n));
                Ok(Some(n))
            }
            Err(e) => {
                buf.truncate(len);
                if e.kind() == io::ErrorKind::WouldBlock {
                    tls.readable.set(0);
                    return Ok(None);
                }
                Err(e)
            }
        }
    }

    /// Reads ciphertext from the socket, appending it to what rustls has not taken yet;
    /// false at end of stream.
    /// [`read_records`](Transport::read_records) that gives up at `deadline`: the
    /// socket is shut down (so the read completes; a read is never abandoned) and the
    /// result is `TimedOut`.
    async fn read_records_by(&self, deadline: Option<std::time::Instant>) -> io::Result<bool> {
        let Some(deadline) = deadline else {
            return self.read_records().await;
        };
        let mut read = std::pin::pin!(self.read_records());
        match super::rt::race(read.as_mut(), super::rt::sleep_until(deadline)).await {
            super::rt::Either::Left(r) => r,
            super::rt::Either::Right(()) => {
                self.shutdown_both_now();
                let _ = read.await;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the TLS handshake did not finish in time",
                ))
            }
        }
    }

    async fn read_records(&self) -> io::Result<bool> {
        let Some(tls) = &self.tls else {
            return Ok(true);
        };
        let mut cipher = std::mem::take(&mut *tls.cipher_in.borrow_mut());
        if cipher.capacity() - cipher.len() < CIPHER_READ_BYTES / 2 {
            cipher.reserve(CIPHER_READ_BYTES);
        }
        let (res, cipher) = ring::read_append(&self.tcp, cipher).await;
        *tls.cipher_in.borrow_mut() = cipher;
        Ok(res? > 0)
    }

    /// Hands the ciphertext read so far to rustls, as much as it takes: it refuses more
    /// while its plaintext buffer is full (back-pressure, not an error), so the rest
    /// waits for the reader. Returns whether it took any; a bad record or an alert is
    /// an `InvalidData` error (after rustls' own alert has been sent).
    async fn feed_records(&self) -> io::Result<bool> {
        let Some(tls) = &self.tls else {
            return Ok(false);
        };
        let failed = {
            let mut cipher = tls.cipher_in.borrow_mut();
            let mut conn = tls.conn.borrow_mut();
            let mut rest = &cipher[..];
            let mut failed = None;
            while !rest.is_empty() {
                match conn.read_tls(&mut rest) {
                    // Back-pressure, or close_notify seen: stop feeding for now.
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                match conn.process_new_packets() {
                    Ok(state) => {
                        tls.readable.set(state.plaintext_bytes_to_read());
                        tls.peer_closed.set(state.peer_has_closed());
                    }
                    Err(e) => {
                        failed = Some(io::Error::new(io::ErrorKind::InvalidData, e));
                        break;
                    }
                }
            }
            let taken = cipher.len() - rest.len();
            cipher.drain(..taken);
            match failed {
                Some(e) => Err(e),
                None => Ok(taken > 0),
            }
        };
        // Anything rustls wants to say (an alert, a key update reply) goes out now.
        let flushed = self.flush_tls().await;
        let took = failed?;
        flushed?;
        Ok(took)
    }

    /// Writes whatever records rustls has queued.
    async fn flush_tls(&self) -> io::Result<()> {
        if self.tls.is_none() {
            return Ok(());
        }
        let _writing = self.write_lock.lock().await;
        self.timed(async { (self.write_records().await, ()) })
            .await
            .0
    }

    /// Writes whatever records rustls has queued; the caller holds the write lock.
    async fn write_records(&self) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        loop {
            let mut out = std::mem::take(&mut *tls.cipher_out.borrow_mut());
            {
                let mut conn = tls.conn.borrow_mut();
                while conn.wants_write() {
                    conn.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                *tls.cipher_out.borrow_mut() = out;
                return Ok(());
            }
            let (res, out) = ring::write_all(&self.tcp, out).await;
            *tls.cipher_out.borrow_mut() = out;
            res?;
        }
    }

    /// Writes all of `buf` and hands it back, cleared. The write lock is held
    /// throughout, so concurrent writers never interleave inside a frame.
    pub async fn write_all(&self, mut buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let _writing = self.write_lock.lock().await;
        self.timed(async {
            if self.tls.is_none() {
                return ring::write_all(&self.tcp, buf).await;
            }
            let mut res = self.write_plaintext(&buf).await;
            if res.is_ok() {
                res = self.write_records().await;
            }
            buf.clear();
            (res, buf)
        })
        .await
    }

    /// Hands `plain` to rustls to encrypt, writing records out only when its buffer
    /// is full; the caller holds the write lock and writes the rest
    /// ([`write_records`](Transport::write_records)) when it has handed over all it has.
    async fn write_plaintext(&self, plain: &[u8]) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let mut at = 0;
        while at < plain.len() {
            at += tls.conn.borrow_mut().writer().write(&plain[at..])?;
            if at < plain.len() {
                self.write_records().await?;
            }
        }
        Ok(())
    }

    /// Writes every frame of `batch`, in order, behind anything written before (one
    /// vectored submission on plain TCP; through rustls record by record on TLS) and
    /// hands the batch back, empty.
    pub async fn write_frames(&self, mut batch: WriteBatch) -> (io::Result<()>, WriteBatch) {
        let _writing = self.write_lock.lock().await;
        let deadline = self.watch_write();
        // Awaited here, not inside a `timed` block: the plain path's future stays
        // small (the TLS path's state is not built, nor moved, for every write). The
        // relay's fan-out is this call, once per subscriber write.
        let res = if self.tls.is_none() {
            let (res, back) = ring::writev_all(&self.tcp, batch).await;
            batch = back;
            res
        } else {
            // Frames are gathered into full TLS records (one record per frame would
            // cost a record's overhead, and a segment, per frame), and the records of
            // the whole batch go out in one write.
            let res = self.write_batch_tls(&batch.frames).await;
            batch.frames.clear();
            res
        };
        (self.check_deadline(deadline, res), batch)
    }

    /// The TLS side of [`write_frames`](Transport::write_frames): frames copied into
    /// the connection's plaintext buffer, handed to rustls a full record at a time,
    /// then every record written.
    async fn write_batch_tls(&self, frames: &[bytes::Bytes]) -> io::Result<()> {
        if self.tls.is_none() {
            return Ok(());
        }
        let mut plain = scratch::take();
        let mut res = Ok(());
        for frame in frames {
            if !plain.is_empty() && plain.len() + frame.len() > TLS_RECORD_PLAINTEXT {
                res = self.write_plaintext(&plain).await;
                plain.clear();
                if res.is_err() {
                    break;
                }
            }
            if frame.len() >= TLS_RECORD_PLAINTEXT {
                res = self.write_plaintext(frame).await;
                if res.is_err() {
                    break;
                }
            } else {
                plain.extend_from_slice(frame);
            }
        }
        if res.is_ok() && !plain.is_empty() {
            res = self.write_plaintext(&plain).await;
        }
        scratch::give_back(plain);
        res?;
        self.write_records().await
    }

    /// The socket's descriptor.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.tcp.as_raw_fd()
    }

    /// Sends FIN (TLS: close_notify is not sent; the peer sees the stream end).
    pub fn shutdown_write(&self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Write);
    }

    /// Shuts the socket down both ways at once (a read in flight ends with 0).
    pub fn shutdown_both_now(&self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }

    /// Sends TLS close_notify (if TLS) and shuts the socket down.
    pub async fn shutdown(&self) {
        if let Some(tls) = &self.tls {
            tls.conn.borrow_mut().send_close_notify();
            let _ = self.flush_tls().await;
        }
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}
