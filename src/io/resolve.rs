//! Host names to addresses, off the worker threads.
//!
//! `getaddrinfo` blocks (for seconds when a name server does not answer), so a worker
//! that called it would stall every connection it serves. A name is resolved on a
//! short-lived thread of its own while the task that asked waits; an IP literal needs
//! no thread. At most [`MAX_IN_FLIGHT`] resolutions run at once (a name server that
//! hangs cannot make the relay pile up threads); past that, resolving fails at once.
//!
//! Every address a name has is returned, in the resolver's order, so a dialler can try
//! them in turn ([`connect_any`]).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::ring::{self, TcpStream};
use super::rt;
use super::sockopt::SocketOptions;

/// Resolutions running at once, process-wide.
pub const MAX_IN_FLIGHT: usize = 16;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// A blocking lookup (the system resolver, or a test's).
pub type Lookup = fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

/// The system resolver (`getaddrinfo`).
pub fn system_lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Every address of `host:port`, resolved off this thread.
pub async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    resolve_with(host, port, system_lookup).await
}

/// [`resolve`] with the lookup given.
pub async fn resolve_with(host: &str, port: u16, lookup: Lookup) -> io::Result<Vec<SocketAddr>> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if IN_FLIGHT.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{MAX_IN_FLIGHT} name resolutions already in flight"),
        ));
    }
    let slot = Arc::new(Mutex::new(Slot::default()));
    let theirs = Arc::clone(&slot);
    let name = host.to_owned();
    let spawned = std::thread::Builder::new()
        .name("feedrelay-resolve".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(|| lookup(&name, port))
                .unwrap_or_else(|_| Err(io::Error::other("the resolver panicked")));
            IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
            let waker = match theirs.lock() {
                Ok(mut s) => {
                    s.result = Some(result);
                    s.waker.take()
                }
                Err(_) => None,
            };
            if let Some(w) = waker {
                w.wake();
            }
        });
    if let Err(e) = spawned {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        return Err(e);
    }
    let addrs = Answer { slot }.await?;
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no address"),
        ));
    }
    Ok(addrs)
}

#[derive(Default)]
struct Slot {
    result: Option<io::Result<Vec<SocketAddr>>>,
    waker: Option<Waker>,
}

/// Resolves when the resolver thread has answered.
struct Answer {
    slot: Arc<Mutex<Slot>>,
}

impl Future for Answer {
    type Output = io::Result<Vec<SocketAddr>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut slot) = self.slot.lock() else {
            return Poll::Ready(Err(io::Error::other("resolver thread panicked")));
        };
        match slot.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Connects to the first of `addrs` that answers, in order, within `timeout` in all:
/// each address gets an equal share of what is left, so one that drops the SYN cannot
/// use up the time of those after it. The error is the last address's.
pub async fn connect_any(
    addrs: &[SocketAddr],
    options: &SocketOptions,
    timeout: Duration,
) -> io::Result<(TcpStream, SocketAddr)> {
    let deadline = Instant::now() + timeout;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for (i, &addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / (addrs.len() - i) as u32;
        match rt::timeout(share, ring::connect_with(addr, options)).await {
            Ok(Ok(stream)) => return Ok((stream, addr)),
            Ok(Err(e)) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
            Err(rt::Elapsed) => {
                last = io::Error::new(io::ErrorKind::TimedOut, format!("{addr}: timed out"))
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::ring::Ring;
    use std::cell::Cell;
    use std::rc::Rc;

    fn slow_lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_millis(300));
        match host {
            "two.test" => Ok(vec![
                SocketAddr::from(([127, 0, 0, 1], port)),
                SocketAddr::from(([127, 0, 0, 2], port)),
            ]),
            _ => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn on_ring<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .name("resolve-test-worker".into())
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_slow_lookup_does_not_stall_the_worker() {
        on_ring(|| {
            let ring = Ring::new().unwrap();
            ring.block_on(async {
                let ticks = Rc::new(Cell::new(0u32));
                let t = Rc::clone(&ticks);
                let ticker = rt::spawn(async move {
                    loop {
                        rt::sleep(Duration::from_millis(10)).await;
                        t.set(t.get() + 1);
                    }
                });
                let addrs = resolve_with("two.test", 80, slow_lookup).await.unwrap();
                assert_eq!(addrs.len(), 2, "every address comes back");
                assert!(
                    ticks.get() >= 10,
                    "the worker kept running while the name resolved: {} ticks",
                    ticks.get()
                );
                let e = resolve_with("nothing.test", 80, slow_lookup)
                    .await
                    .unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::NotFound);
                drop(ticker);
            });
        });
    }

    #[test]
    fn ip_literals_need_no_lookup() {
        on_ring(|| {
            Ring::new().unwrap().block_on(async {
                fn never(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
                    Err(io::Error::other("looked up an IP literal"))
                }
                let v4 = resolve_with("127.0.0.1", 9, never).await.unwrap();
                assert_eq!(v4, vec![SocketAddr::from(([127, 0, 0, 1], 9))]);
                let v6 = resolve_with("[::1]", 9, never).await.unwrap();
                assert_eq!(v6[0].ip(), "::1".parse::<IpAddr>().unwrap());
            });
        });
    }

    #[test]
    fn connect_any_tries_each_address_in_turn() {
        on_ring(|| {
            let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let dead_addr = dead.local_addr().unwrap();
            drop(dead); // refused from now on
            let addrs = [dead_addr, live.local_addr().unwrap()];
            Ring::new().unwrap().block_on(async move {
                let opts = SocketOptions::default();
                let (_s, used) = connect_any(&addrs, &opts, Duration::from_secs(5))
                    .await
                    .unwrap();
                assert_eq!(used, addrs[1], "the refused address was skipped");
                let e = connect_any(&addrs[..1], &opts, Duration::from_secs(5))
                    .await
                    .unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
            });
        });
    }
}
