//! The hot-path budget, counted: heap allocations on the relay's worker threads per
//! relayed message (none: frames go into reused chunks), with a counting global
//! allocator. The relay runs in this process
//! (two workers); only allocations made on worker threads are counted, so the test's
//! own clients do not blur the figure.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use feedrelay::io::driver::client::{Incoming, WsClient};
use feedrelay::io::listener::bind_reuseport;
use feedrelay::io::ring::Ring;
use feedrelay::io::shutdown;
use feedrelay::io::worker::CoreMap;
use feedrelay::metrics::collector::Collector;
use feedrelay::relay::config::Config;
use feedrelay::relay::feed::plan::plan_feeds;
use feedrelay::relay::reload::ReloadableSettings;
use feedrelay::relay::run::{run_relay, RelayStart};
use feedrelay::relay::worker::telemetry::{MetricsLink, WorkerSummary};
use feedrelay::ws::{Limits, MessageKind};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator unchanged; counting touches
// only an atomic and a const-initialised thread-local without a destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is process-wide: the tests take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const SUBSCRIBERS: usize = 20;
const WARMUP: usize = 10_000;
const MEASURED: usize = 10_000;

/// The relay on two workers in this process, with allocations on its worker threads
/// counted (the hook marks each worker's thread as it starts); stops when `trigger`
/// fires.
fn start_relay(
    config: Config,
) -> (
    std::net::SocketAddr,
    shutdown::Trigger,
    std::thread::JoinHandle<Result<Vec<WorkerSummary>, feedrelay::io::IoError>>,
    Collector,
) {
    let config = Arc::new(config);
    let map = CoreMap::new(Some(2), None).unwrap();
    let listeners = bind_reuseport(config.listen, 2).unwrap();
    let addr = listeners[0].local_addr().unwrap();
    let (trigger, stop) = shutdown::channel();
    let collector = Collector::start(2, None).unwrap();
    let start = RelayStart {
        feeds: plan_feeds(&config, 2).unwrap(),
        metrics: Some(MetricsLink::new(&collector)),
        on_worker_start: Some(|_| COUNTED.with(|c| c.set(true))),
        ..RelayStart::new(
            listeners,
            Arc::clone(&config),
            stop,
            ReloadableSettings::new(&config).unwrap(),
        )
    };
    let relay = std::thread::spawn(move || run_relay(&map, start));
    (addr, trigger, relay, collector)
}

#[test]
fn no_allocation_per_message_per_subscriber() {
    allocations_per_message(false, None, false);
}

/// The same while every message is also exported to a real nats-server: the worker
/// hands the NATS thread two reference counts through a bounded channel, nothing more
/// (the NATS thread's own allocations are not the workers').
#[test]
fn no_allocation_per_message_with_nats_export() {
    let nats = common::nats::NatsServer::start(0);
    allocations_per_message(false, Some(&nats), false);
}

/// The same with permessage-deflate both ways: the publisher's messages are inflated,
/// each is compressed once for every subscriber; buffers and codecs are reused.
#[test]
fn no_allocation_per_message_with_compression() {
    allocations_per_message(true, None, false);
}

/// The same with every subscriber taking sequence envelopes (`seq=1`): each message's
/// envelope is framed once into the worker's arena, its head written into a kept
/// buffer.
#[test]
fn no_allocation_per_message_with_sequence_envelopes() {
    allocations_per_message(false, None, true);
}

/// The same with each topic keeping a history of 64 messages to resume from: its
/// slots are reused in place once full.
#[test]
fn no_allocation_per_message_with_history() {
    allocations_per_message_with(false, None, true, 64);
}

/// Two workers on loopback, compressing and exporting to `nats` as asked.
fn config(deflate: bool, nats: Option<&common::nats::NatsServer>) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: Some(2),
        ..Config::default()
    };
    config.compression.enabled = deflate;
    config.nats = nats.map(|n| feedrelay::relay::nats::config::NatsConfig {
        urls: vec![n.url()],
        export: true,
        ..Default::default()
    });
    config
}

/// What the clients offer: permessage-deflate when `deflate`.
fn client_options(deflate: bool) -> feedrelay::io::driver::client::ConnectOptions {
    feedrelay::io::driver::client::ConnectOptions {
        deflate: deflate.then(Default::default),
        ..Default::default()
    }
}

fn allocations_per_message(deflate: bool, nats: Option<&common::nats::NatsServer>, seq: bool) {
    allocations_per_message_with(deflate, nats, seq, 0);
}

/// [`allocations_per_message`] with each topic keeping `history` messages.
fn allocations_per_message_with(
    deflate: bool,
    nats: Option<&common::nats::NatsServer>,
    seq: bool,
    history: usize,
) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = config(deflate, nats);
    config.history_messages_per_topic = history;
    let options = client_options(deflate);
    let exporting = config.nats.is_some();
    let (addr, trigger, relay, collector) = start_relay(config);
    if exporting {
        // The client connects in the background; exports wait for it.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    let (before, after, delivered) = Ring::new().unwrap().block_on(async move {
        let url = format!("ws://{addr}/");
        let mut readers = Vec::new();
        // Messages each reader has received so far.
        let received = std::rc::Rc::new(vec![std::cell::Cell::new(0usize); SUBSCRIBERS]);
        for i in 0..SUBSCRIBERS {
            let query = format!("{url}ws?topics=*{}", ["", "&seq=1"][usize::from(seq)]);
            let mut c = WsClient::connect_with(&query, &options).await.unwrap();
            assert_eq!(c.deflate().is_some(), deflate);
            assert!(matches!(c.recv().await.unwrap(), Incoming::Message(..)));
            let received = std::rc::Rc::clone(&received);
            readers.push(feedrelay::io::rt::spawn(async move {
                for _ in 0..WARMUP + MEASURED {
                    match c.recv().await.unwrap() {
                        Incoming::Message(MessageKind::Text, m) => {
                            assert_eq!(m.starts_with(b"{\"topic\":"), seq)
                        }
                        other => panic!("{other:?}"),
                    }
                    received[i].set(received[i].get() + 1);
                }
            }));
        }
        // Waits until every reader has `n` messages; fails (rather than hangs) when one
        // never gets there: a reader that panicked, or messages the relay dropped.
        let all_reached = |n: usize| {
            let received = std::rc::Rc::clone(&received);
            async move {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while received.iter().any(|r| r.get() < n) {
                    if std::time::Instant::now() > deadline {
                        let counts: Vec<usize> = received.iter().map(|r| r.get()).collect();
                        panic!(
                            "readers stuck short of {n} messages: {counts:?} ({} tasks panicked)",
                            feedrelay::io::rt::panicked()
                        );
                    }
                    feedrelay::io::rt::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        };
        let publ = WsClient::connect_with(&format!("{url}pub"), &options)
            .await
            .unwrap();
        let pad = "p".repeat(200);
        // At most WINDOW messages ahead of the slowest reader: the readers share this
        // thread, and on a busy machine a publisher running free would overrun the
        // relay's per-subscriber queue (4096 messages), whose drops are not the subject
        // here.
        const WINDOW: usize = 1024;
        let send = async |from: usize, to: usize| {
            for seq in from..to {
                if seq % 64 == 0 {
                    all_reached(seq.saturating_sub(WINDOW)).await;
                }
                let m = format!(r#"{{"s":"SYM{}","seq":{seq},"pad":"{pad}"}}"#, seq % 10);
                publ.send(MessageKind::Text, m.as_bytes()).await.unwrap();
                if seq % 32 == 0 {
                    feedrelay::io::rt::yield_now().await;
                }
            }
        };
        send(0, WARMUP).await;
        all_reached(WARMUP).await;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        send(WARMUP, WARMUP + MEASURED).await;
        all_reached(WARMUP + MEASURED).await;
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        for r in readers {
            r.await.unwrap();
        }
        (before, after, MEASURED * SUBSCRIBERS)
    });
    trigger.fire();
    let summaries = relay.join().unwrap().unwrap();
    if exporting {
        let exported = summaries[0].nats.iter().find(|(n, _)| *n == "exported");
        assert!(
            exported.is_some_and(|(_, n)| *n >= MEASURED as u64),
            "{:?}",
            summaries[0].nats
        );
    }
    let recorded = collector.finish().unwrap().snapshot.merged();
    assert!(
        !recorded.get(feedrelay::metrics::Hop::Egress).is_empty(),
        "egress latencies recorded"
    );
    assert_eq!(
        recorded.get(feedrelay::metrics::Hop::Deflate).len() >= MEASURED as u64,
        deflate,
        "every message compressed once, only with deflate on"
    );

    let label = match (deflate, exporting) {
        (true, _) => "deflate",
        (false, true) => "nats export",
        (false, false) => "plain",
    };
    assert_within_budget(after - before, delivered, label);
}

/// Frames are encoded into the worker's reused chunks: nothing is allocated per
/// message or per delivery. What is left is once-a-second work (the metrics interval)
/// and a chunk now and then; the budget is 1 per 100 messages.
fn assert_within_budget(allocations: u64, delivered: usize, label: &str) {
    let per_message = allocations as f64 / MEASURED as f64;
    let per_delivery = allocations as f64 / delivered as f64;
    println!(
        "relay worker allocations ({label}): {allocations} for {MEASURED} messages to {SUBSCRIBERS} subscribers \
         ({per_message:.3} per message, {per_delivery:.4} per delivery)"
    );
    assert!(
        per_message <= 0.01,
        "{per_message:.3} allocations per message"
    );
    assert!(
        per_delivery <= 0.001,
        "{per_delivery:.4} allocations per delivery"
    );
}

/// The feed path: two in-process mock exchanges as A/B lines, arbitrated; allocations
/// on the workers per forwarded message (the dropped copies must cost nothing).
#[test]
fn feed_lines_allocate_only_the_shared_frame_per_message() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lines = feedrelay::demo::exchange::MockLines::start(5_000).unwrap();
    let mut config = Config::parse(&lines.feeds_toml(), "test").unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.workers = Some(2);
    let (addr, trigger, relay, collector) = start_relay(config);
    const FEED_WARMUP: usize = 2_000;
    const FEED_MEASURED: usize = 10_000;
    let (before, after) = Ring::new().unwrap().block_on(async move {
        let mut c = WsClient::connect(&format!("ws://{addr}/ws?topics=*"), &[], Limits::default())
            .await
            .unwrap();
        let mut n = 0;
        let mut before = 0;
        while n < FEED_WARMUP + FEED_MEASURED {
            if let Incoming::Message(_, m) = c.recv().await.unwrap() {
                if m.starts_with(b"{\"stream\"") {
                    n += 1;
                    if n == FEED_WARMUP {
                        before = ALLOCATIONS.load(Ordering::Relaxed);
                    }
                }
            }
        }
        (before, ALLOCATIONS.load(Ordering::Relaxed))
    });
    trigger.fire();
    let summaries = relay.join().unwrap().unwrap();
    drop(collector);
    lines.stop();
    let dropped: u64 = summaries
        .iter()
        .flat_map(|s| &s.groups)
        .map(|g| g.duplicates)
        .sum();
    assert!(dropped > 0, "both lines delivered and copies were dropped");
    let per_message = (after - before) as f64 / FEED_MEASURED as f64;
    println!(
        "feed path: {} worker allocations for {FEED_MEASURED} forwarded messages ({per_message:.3} per message, {dropped} copies dropped in all)",
        after - before
    );
    assert!(
        per_message <= 0.01,
        "{per_message:.3} allocations per message"
    );
}
