//! `feedrelay echo` as an operator meets it: clean shutdown on signals, and a one-line
//! error with exit code 2 for every start-up failure, never a panic.

mod common;

use std::process::{Command, Output};

use common::{Raw, Server};

fn feedrelay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .args(args)
        .output()
        .expect("run feedrelay")
}

fn assert_fails_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    let mut server = Server::echo(&["--workers", "2"]);
    let mut clients: Vec<Raw> = (0..4).map(|_| Raw::connect(server.addr)).collect();
    for c in &mut clients {
        c.send(0x81, b"hi");
        assert_eq!(c.recv().unwrap(), (0x81, b"hi".to_vec()));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    for mut c in clients {
        let (first, payload) = c.recv().expect("close frame");
        assert_eq!(first, 0x88);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
        c.send(0x88, &payload[..2]);
        assert_eq!(c.recv(), None, "server closes TCP after the handshake");
    }
    assert_eq!(server.terminate().code(), Some(0));
}

/// A connection part-way through its handshake is closed at shutdown, not waited for
/// until the handshake timeout (10 s).
#[test]
fn sigterm_does_not_wait_for_a_handshake_in_progress() {
    use std::io::{Read, Write};
    let mut server = Server::echo(&[]);
    let mut partial = std::net::TcpStream::connect(server.addr).unwrap();
    partial.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    assert_eq!(server.terminate().code(), Some(0));
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    let mut buf = [0u8; 256];
    partial
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    match partial.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "closed without a response"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn sigint_with_no_connections_exits_0() {
    let mut server = Server::echo(&[]);
    let _ = Command::new("kill")
        .args(["-INT", &server.child.id().to_string()])
        .status();
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn port_in_use_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = feedrelay(&["echo", "--listen", &addr]);
    assert_fails_with(&out, "Address already in use");
    assert_fails_with(&out, "pick another with --listen");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn bad_address_and_cores_are_refused() {
    assert_fails_with(
        &feedrelay(&["echo", "--listen", "not-an-address"]),
        "invalid socket address",
    );
    assert_fails_with(
        &feedrelay(&["echo", "--listen", "127.0.0.1:0", "--cores", "4095"]),
        "core 4095 is not online",
    );
    assert_fails_with(
        &feedrelay(&["echo", "--listen", "127.0.0.1:0", "--workers", "0"]),
        "at least 1",
    );
    assert_fails_with(
        &feedrelay(&["echo", "--listen", "192.0.2.1:0"]),
        "not on this host",
    );
}

/// A seccomp filter that makes `io_uring_setup` fail with EPERM, as container runtimes'
/// default profiles do: feedrelay must say so and exit 2.
#[cfg(target_arch = "x86_64")]
#[test]
fn io_uring_blocked_by_seccomp_is_a_one_line_error() {
    use std::os::unix::process::CommandExt;

    const SYS_IO_URING_SETUP: u32 = 425;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedrelay"));
    cmd.args(["echo", "--listen", "127.0.0.1:0"]);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl,
    // which is async-signal-safe; the filter program lives on the child's stack for
    // the duration of the call, which copies it into the kernel.
    unsafe {
        cmd.pre_exec(|| {
            let filter = [
                // Load the syscall number (offset 0 of struct seccomp_data).
                libc::sock_filter {
                    code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                    jt: 0,
                    jf: 0,
                    k: 0,
                },
                libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 1,
                    k: SYS_IO_URING_SETUP,
                },
                libc::sock_filter {
                    code: (libc::BPF_RET | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
                },
                libc::sock_filter {
                    code: (libc::BPF_RET | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ALLOW,
                },
            ];
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut _,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const _,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run feedrelay under seccomp");
    assert_fails_with(&out, "io_uring is not available");
    assert_fails_with(&out, "seccomp");
}
