//! How far /proc's user/system split, and the bench's sampled one
//! (`feedrelay::io::cpu_mode`), are from a thread's known user share.
//!
//! A worker thread on CPU 0 waits on a socket pair that a pacer on CPU 1 writes
//! `rate` times a second (a fixed-rate load, like the bench's), then spins in user space for
//! `spin_us` (timed: the known user time), then writes 256 B to each of `sends`
//! loopback sockets (kernel time). Over `secs` seconds, it prints the spin's share of
//! the thread's exact run time (most of its user time: the loop's own user work adds a
//! few percent, interrupts taken during a spin take a little off), the tick's split
//! from /proc, and the sampled split.
//!
//!   cargo run --release --example cpu_split -- [rate] [spin_us] [sends] [secs] [sample]
//!   cargo run --release --example cpu_split -- 5000 20 8 10
//!
//! `sample` 0 runs the same load without the sampler, to see what sampling costs:
//! the thread's run time per wake with it against without it.
//!
//! Needs two CPUs, and perf events (root, or kernel.perf_event_paranoid <= 1).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use feedrelay::bench::procfs::{thread_cpu_times, CpuTimes};
use feedrelay::io::cpu_mode::{CpuModeSampler, DATA_PAGES, PERIOD};

/// This thread's id, from `/proc/thread-self` (`PID/task/TID`).
fn thread_id() -> anyhow::Result<i32> {
    let link = std::fs::read_link("/proc/thread-self")?;
    let tid = link.file_name().and_then(|n| n.to_str());
    tid.and_then(|t| t.parse().ok())
        .ok_or_else(|| anyhow!("unreadable /proc/thread-self: {link:?}"))
}

/// /proc's tick-split CPU time and the exact run time (ns) of thread `tid`.
fn thread_times(tid: i32) -> anyhow::Result<(CpuTimes, u64)> {
    let pid = std::process::id();
    let ticks = thread_cpu_times(pid, tid).context("unreadable thread stat")?;
    let sched = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))?;
    let run = sched
        .split_whitespace()
        .next()
        .context("empty schedstat")?
        .parse()?;
    Ok((ticks, run))
}

fn pin(core: usize) {
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
}

fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: u64| -> anyhow::Result<u64> {
        std::env::args()
            .nth(i)
            .map_or(Ok(default), |a| Ok(a.parse()?))
    };
    let (rate, spin_us, sends, secs) = (arg(1, 5000)?, arg(2, 20)?, arg(3, 8)?, arg(4, 10)?);
    let sample = arg(5, 1)? != 0;
    let (mut wake_rx, mut wake_tx) = UnixStream::pair()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut outs = Vec::new();
    let mut ins = Vec::new();
    for _ in 0..sends.max(1) {
        let out = TcpStream::connect(listener.local_addr()?)?;
        out.set_nodelay(true)?;
        outs.push(out);
        let (sink, _) = listener.accept()?;
        sink.set_nonblocking(true)?;
        ins.push(sink);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let pacer_stop = Arc::clone(&stop);
    let pacer = std::thread::spawn(move || {
        pin(1);
        let mut buf = vec![0u8; 1 << 16];
        let gap = Duration::from_nanos(1_000_000_000 / rate.max(1));
        let mut next = Instant::now();
        while !pacer_stop.load(Ordering::Relaxed) {
            next += gap;
            while Instant::now() < next {
                for mut sink in &ins {
                    let _ = sink.read(&mut buf);
                }
            }
            let _ = wake_tx.write(&[1]);
        }
        let _ = wake_tx.write(&[0]);
    });
    pin(0);
    let tid = thread_id()?;
    let mut sampler = if sample {
        Some(CpuModeSampler::start(&[tid], PERIOD, DATA_PAGES)?)
    } else {
        None
    };
    let (start, end) = (Instant::now(), Instant::now() + Duration::from_secs(secs));
    let (before, mut spun, mut last_drain) = (thread_times(tid)?, Duration::ZERO, start);
    let mut byte = [0u8; 1];
    let frame = [7u8; 256];
    let mut wakes = 0u64;
    while Instant::now() < end {
        if wake_rx.read(&mut byte)? == 0 || byte[0] == 0 {
            break;
        }
        let woke = Instant::now();
        let mut x = 1u64;
        while woke.elapsed() < Duration::from_micros(spin_us) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        spun += woke.elapsed();
        for out in outs.iter_mut().take(sends as usize) {
            out.write_all(&frame)?;
        }
        if last_drain.elapsed() > Duration::from_millis(200) {
            sampler.as_mut().map(CpuModeSampler::drain);
            last_drain = Instant::now();
        }
        wakes += 1;
    }
    let after = thread_times(tid)?;
    let modes = sampler.as_mut().map(CpuModeSampler::drain);
    stop.store(true, Ordering::Relaxed);
    let _ = pacer.join();
    let (ticks, run) = (after.0.since(before.0), after.1 - before.1);
    let pct = |share: f64| format!("{:.1}%", 100.0 * share);
    println!(
        "{rate}/s, {spin_us} µs user spin and {sends} sends each: run {:.2} s of {:.1} s, {:.2} µs per wake",
        run as f64 / 1e9,
        start.elapsed().as_secs_f64(),
        run as f64 / 1e3 / wakes.max(1) as f64
    );
    println!(
        "  spin (the known user time): {}",
        pct(spun.as_nanos() as f64 / run.max(1) as f64)
    );
    println!(
        "  /proc tick split, user: {} ({} of {} ms)",
        pct(ticks.user.as_secs_f64() / ticks.total().as_secs_f64().max(1e-9)),
        ticks.user.as_millis(),
        ticks.total().as_millis()
    );
    if let Some(modes) = modes {
        println!(
            "  sampled split, user: {} ({} samples, {} lost)",
            modes.user_share().map_or("-".into(), pct),
            modes.user + modes.kernel,
            modes.lost
        );
    }
    Ok(())
}
