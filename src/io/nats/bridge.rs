//! The NATS thread: the client's connection, the export loop and the import loop, on a
//! tokio current-thread runtime of their own.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event, HeaderMap, Subject};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::backoff::backoff;
use super::error::NatsError;
use super::handoff::{bump, Exporter, ImportQueue, Imported, NatsCounters, Outgoing, Position};
use super::history::Filled;
use super::ledger::{ExportLedger, ImportLedger, Ledgers, Seen, SubjectName};
use super::options::{
    NatsAuth, NatsOptions, KIND_HEADER, ORIGIN_HEADER, POSITION_HEADER, SEQ_HEADER,
};
use crate::io::idle::Parker;

/// Messages the client's own command channel holds (async-nats' default is 2,048):
/// small, so little waits inside the client while it reconnects.
const CLIENT_CAPACITY: usize = 1_024;

/// The longest subject exported: NATS documents a protocol line of at most 4 KiB
/// (`max_control_line`), and an `HPUB` line holds the subject and three numbers. A
/// topic escapes to up to three times its length, so a 4,096-byte topic could reach
/// 12 KiB. (nats-server 2.9.10 took a 4.5 KB subject in our test; the bound is kept
/// for servers that hold to the documented limit.)
const MAX_SUBJECT_BYTES: usize = 4_000;

/// Messages published before the export loop lets the import loop run.
const EXPORT_BATCH: usize = 256;

/// How long a stopping relay waits for what it exported to reach the server.
const FLUSH_ON_STOP: Duration = Duration::from_secs(1);

/// The running client: the workers' ends of the hand-offs, its counters, and its
/// thread, stopped (after a bounded flush) when this is dropped.
#[derive(Debug)]
pub struct NatsBridge {
    exporter: Option<Exporter>,
    imports: Vec<Option<ImportQueue>>,
    history: Vec<Vec<Imported>>,
    counters: Arc<NatsCounters>,
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NatsBridge {
    /// The export hand-off (`None` unless exporting).
    pub fn exporter(&self) -> Option<Exporter> {
        self.exporter.clone()
    }

    /// Worker `worker`'s import queue (`None` unless importing; once per worker).
    pub fn take_imports(&mut self, worker: usize) -> Option<ImportQueue> {
        self.imports.get_mut(worker)?.take()
    }

    /// What the stream's history held for worker `worker`, oldest first, to take
    /// before its first connection (`[nats] history`; empty otherwise; once per worker).
    pub fn take_history(&mut self, worker: usize) -> Vec<Imported> {
        self.history
            .get_mut(worker)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// What the client counted so far.
    pub fn counters(&self) -> Arc<NatsCounters> {
        Arc::clone(&self.counters)
    }
}

impl Drop for NatsBridge {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the client on a thread of its own, importing for `parkers.len()` workers;
/// `ledgers` name and number what it exports and judge what it imports.
/// Returns once the client is set up, connected or not: a relay that cannot reach NATS
/// still serves locally (and the thread says so). Unusable files and URLs are errors.
pub fn start(
    options: NatsOptions,
    parkers: Arc<Vec<Parker>>,
    ledgers: Ledgers,
) -> Result<NatsBridge, NatsError> {
    if let Some(core) = options.core {
        let online = core_affinity::get_core_ids().unwrap_or_default();
        if !online.iter().any(|c| c.id == core) {
            return Err(NatsError::Setup(format!(
                "core {core} is not one this process may run on"
            )));
        }
    }
    let core = options.core;
    let counters = Arc::new(NatsCounters::default());
    let connect = connect_options(&options, &counters)?;
    let notify = Arc::new(Notify::new());
    let (export_tx, export_rx) = bounded(options.export_queue.max(1));
    let exporter = options.export.then(|| Exporter {
        tx: export_tx,
        notify: Arc::clone(&notify),
        counters: Arc::clone(&counters),
    });
    let importing = !options.import.is_empty();
    let (import_txs, imports): (Vec<_>, Vec<_>) = (0..parkers.len())
        .map(|_| {
            let (tx, rx) = bounded(options.import_queue.max(1));
            (tx, importing.then_some(rx))
        })
        .unzip();
    let stop = Arc::new(Notify::new());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let urls = options.urls.clone();
    let thread = {
        let (counters, stop) = (Arc::clone(&counters), Arc::clone(&stop));
        let hand_off = ImportHandOff {
            txs: import_txs,
            parkers,
            counters: Arc::clone(&counters),
        };
        let work = move |client| ClientLoops {
            client,
            options,
            counters,
            notify,
            export_rx,
            hand_off,
        };
        let work = move |client| (work(client), ledgers);
        std::thread::Builder::new()
            .name("feedrelay-nats".into())
            .spawn(move || {
                if let Some(id) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                        tracing::warn!("nats: could not pin the NATS thread to core {id}");
                    }
                }
                run_thread(connect, urls, work, &stop, ready_tx)
            })
            .map_err(|e| NatsError::Setup(format!("thread: {e}")))?
    };
    let history = match ready_rx.recv() {
        Ok(Ok(filled)) => filled.per_worker,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(NatsError::Setup(
                "the client's thread ended at start".into(),
            ));
        }
    };
    Ok(NatsBridge {
        exporter,
        imports,
        history,
        counters,
        stop,
        thread: Some(thread),
    })
}

/// The NATS thread: a current-thread runtime, the client set up on it, the import
/// subscriptions made and the stream's history read (reported on `ready`), then
/// [`ClientLoops::run`] with the ledgers until `stop`; the runtime is shut down within
/// [`FLUSH_ON_STOP`] (a host name still being resolved is not waited for).
fn run_thread(
    connect: ConnectOptions,
    urls: Vec<String>,
    work: impl FnOnce(Client) -> (ClientLoops, Ledgers),
    stop: &Notify,
    ready: std::sync::mpsc::Sender<Result<Filled, NatsError>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(NatsError::Setup(format!("runtime: {e}"))));
            return;
        }
    };
    rt.block_on(async move {
        match connect.connect(urls).await {
            Ok(client) => {
                let (loops, ledgers) = work(client);
                // Subscribed before the history is read: nothing falls between them.
                let subs = loops.subscribe().await;
                let filled = loops.read_history().await;
                bump(&loops.counters.history_read, filled.messages);
                let _ = ready.send(Ok(filled));
                loops.run(ledgers, subs, stop).await;
            }
            Err(e) => {
                let _ = ready.send(Err(NatsError::Setup(e.to_string())));
            }
        }
    });
    rt.shutdown_timeout(FLUSH_ON_STOP);
}

/// The client's options: credentials and CA read (and refused) now, reconnects without
/// end with [`backoff`], events logged and counted.
fn connect_options(
    o: &NatsOptions,
    counters: &Arc<NatsCounters>,
) -> Result<ConnectOptions, NatsError> {
    let file_error = |what: &'static str, path: &std::path::Path, reason: String| NatsError::File {
        what,
        path: path.display().to_string(),
        reason,
    };
    let mut c = ConnectOptions::new();
    c = match &o.auth {
        NatsAuth::None => c,
        NatsAuth::Token(t) => c.token(t.clone()),
        NatsAuth::UserPassword(u, p) => c.user_and_password(u.clone(), p.clone()),
        NatsAuth::CredsFile(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| file_error("creds_file", path, e.to_string()))?;
            c.credentials(&text)
                .map_err(|e| file_error("creds_file", path, e.to_string()))?
        }
    };
    if let Some(ca) = &o.ca_file {
        let certs = crate::io::transport::read_certs(ca)
            .map_err(|e| file_error("ca_file", ca, e.to_string()))?;
        if certs.is_empty() {
            return Err(file_error("ca_file", ca, "holds no certificate".into()));
        }
        c = c.add_root_certificates(ca.clone()).require_tls(true);
    }
    let (initial, max) = (o.reconnect_initial, o.reconnect_max);
    let events = Arc::clone(counters);
    Ok(c.name(format!("feedrelay {}", o.origin))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(o.connect_timeout)
        .client_capacity(CLIENT_CAPACITY)
        .reconnect_delay_callback(move |attempt| backoff(attempt, initial, max))
        .event_callback(move |event| {
            let c = Arc::clone(&events);
            async move { on_event(&c, event) }
        }))
}

/// Logs a client event and keeps `connected` and the connection counts.
fn on_event(c: &NatsCounters, event: Event) {
    match event {
        Event::Connected => {
            c.connected.store(true, Ordering::Relaxed);
            c.failed_attempts.store(0, Ordering::Relaxed);
            bump(&c.connects, 1);
            tracing::info!("nats: connected");
        }
        Event::Disconnected => {
            c.connected.store(false, Ordering::Relaxed);
            bump(&c.disconnects, 1);
            tracing::warn!("nats: disconnected; relaying locally, exports dropped and counted until it reconnects");
        }
        Event::ClientError(e) => {
            // Said on the 1st, 10th, 100th... failure in a row, not every attempt.
            let n = c.failed_attempts.fetch_add(1, Ordering::Relaxed) + 1;
            let e = e.to_string();
            let e = e.trim_start_matches("nats: ");
            if worth_saying(n) {
                tracing::warn!(
                    "nats: connection attempt {n} failed: {e} (FEEDRELAY_LOG=async_nats=debug says more)"
                );
            } else {
                tracing::debug!("nats: connection attempt {n} failed: {e}");
            }
        }
        Event::SlowConsumer(sid) => {
            // The client says so once per message it drops; what was lost is counted
            // exactly as `import_gap` when later messages arrive.
            let n = c.slow_consumer.fetch_add(1, Ordering::Relaxed) + 1;
            if worth_saying(n) {
                tracing::warn!(
                    "nats: subscription {sid} fell behind, the client dropped messages ({n} times so far; counted as import_gap)"
                );
            }
        }
        other => tracing::info!("nats: {other}"),
    }
}

/// Whether the `n`th time (from 1) something repeats is worth a log line: the 1st,
/// 10th, 100th, ...
fn worth_saying(n: u64) -> bool {
    let mut n = n;
    while n >= 10 && n % 10 == 0 {
        n /= 10;
    }
    n == 1
}

/// Hands imported messages to the workers.
struct ImportHandOff {
    txs: Vec<Sender<Imported>>,
    parkers: Arc<Vec<Parker>>,
    counters: Arc<NatsCounters>,
}

impl ImportHandOff {
    /// The worker `subject`'s messages go to (one subject, one worker: its order is
    /// kept).
    fn worker_for(&self, subject: &str) -> usize {
        (fnv1a(subject.as_bytes()) % self.txs.len().max(1) as u64) as usize
    }

    /// Gives `m` to the worker its subject maps to and wakes that worker; full or
    /// stopped: dropped and counted.
    fn hand(&self, subject: &str, m: Imported) {
        if self.txs.is_empty() {
            return;
        }
        let w = self.worker_for(subject);
        match self.txs[w].try_send(m) {
            Ok(()) => {
                bump(&self.counters.imported, 1);
                if let Some(p) = self.parkers.get(w) {
                    p.unpark();
                }
            }
            Err(TrySendError::Full(_)) => bump(&self.counters.import_dropped_full, 1),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// FNV-1a: a stable, cheap hash to spread subjects over workers.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the thread runs once the client is set up.
struct ClientLoops {
    client: Client,
    options: NatsOptions,
    counters: Arc<NatsCounters>,
    notify: Arc<Notify>,
    export_rx: Receiver<Outgoing>,
    hand_off: ImportHandOff,
}

impl ClientLoops {
    /// Subscribes to every import pattern (none unless importing).
    async fn subscribe(&self) -> Vec<async_nats::Subscriber> {
        let mut subs = Vec::new();
        for pattern in &self.options.import {
            match self.client.subscribe(pattern.clone()).await {
                Ok(s) => subs.push(s),
                Err(e) => tracing::error!("nats: subscribe to {pattern:?}: {e}; not importing it"),
            }
        }
        subs
    }

    /// The stream's history for each worker (`[nats] history`; nothing otherwise).
    async fn read_history(&self) -> Filled {
        let Some(h) = &self.options.history else {
            return Filled::default();
        };
        // No server reached within the connect timeout (none up at start): the relay
        // starts then, without the stream, as it starts without NATS.
        let until = Instant::now() + self.options.connect_timeout;
        while !self.counters.connected() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !self.counters.connected() {
            tracing::warn!("nats: history: no server reached within connect_timeout_ms; starting without it (subscribers that resume get reset)");
            return Filled::default();
        }
        let workers = self.hand_off.txs.len();
        super::history::prepare(&self.client, h, &self.options.import, workers, |s| {
            self.hand_off.worker_for(s)
        })
        .await
    }

    /// Export and import (from `subs`) until `stop`, then a bounded flush of what was
    /// exported.
    async fn run(self, ledgers: Ledgers, subs: Vec<async_nats::Subscriber>, stop: &Notify) {
        let Ledgers { export, import } = ledgers;
        let w = &self;
        let said = say_if_unreachable(&w.counters, w.options.connect_timeout);
        let export = export_loop(w, export);
        let import = import_loop(w, import, subs);
        tokio::select! {
            () = stop.notified() => {}
            () = async { tokio::join!(said, export, import); } => {}
        }
        if w.options.export && w.counters.connected() {
            let _ = tokio::time::timeout(FLUSH_ON_STOP, w.client.flush()).await;
        }
    }
}

/// Says, once, that NATS was not reached within the connect timeout of start.
async fn say_if_unreachable(counters: &NatsCounters, within: Duration) {
    tokio::time::sleep(within).await;
    if counters.get("connects") == Some(0) {
        tracing::warn!(
            "nats: no server reachable at start; relaying locally and retrying in the background"
        );
    }
}

/// Publishes what the workers offer, in the order offered, until the channel closes.
async fn export_loop(w: &ClientLoops, mut ledger: Box<dyn ExportLedger>) {
    let (client, o, counters, notify, rx) = (
        &w.client,
        &w.options,
        &*w.counters,
        &*w.notify,
        &w.export_rx,
    );
    if !o.export {
        return std::future::pending().await;
    }
    // The client's form of each subject the ledger keeps, made once.
    let mut subjects: Vec<Option<Subject>> = Vec::new();
    // The server's max_payload, read again after each (re)connection; 0: none yet.
    let (mut max_payload, mut read_at) = (0, 0);
    loop {
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let mut sent = 0;
        // The server closes a connection that publishes more than max_payload (the
        // client does not check it for messages with headers): such a message is
        // refused here instead.
        let connects = counters.connects.load(Ordering::Relaxed);
        // (The connection event can come before the server's INFO is in place: 0 is
        // read again.)
        if connects != read_at || max_payload == 0 {
            (max_payload, read_at) = (client.server_info().max_payload, connects);
        }
        while let Ok(m) = rx.try_recv() {
            let (name, seq) = ledger.export(&m.topic);
            let to = match name {
                SubjectName::Kept(i) => {
                    if subjects.len() <= i {
                        subjects.resize(i + 1, None);
                    }
                    let kept = &mut subjects[i];
                    kept.get_or_insert_with(|| Subject::from(ledger.subject(i)))
                        .clone()
                }
                SubjectName::Once(s) => Subject::from(s),
            };
            if seq.is_none() {
                counters
                    .untracked
                    .store(ledger.untracked(), Ordering::Relaxed);
            }
            let headers = headers(&o.origin, seq, m.binary, m.position);
            let size = header_bytes(&headers) + m.payload.len();
            let sent_ok = if max_payload > 0 && size > max_payload {
                Err(format!(
                    "{size} bytes with headers, over the server's max_payload of {max_payload}"
                ))
            } else if to.len() > MAX_SUBJECT_BYTES {
                Err(format!(
                    "its subject is {} bytes, over {MAX_SUBJECT_BYTES}",
                    to.len()
                ))
            } else {
                let publish = client.publish_with_headers(to, headers, m.payload);
                publish.await.map_err(|e| e.to_string())
            };
            match sent_ok {
                Ok(()) => bump(&counters.exported, 1),
                Err(e) => {
                    let n = counters.export_errors.fetch_add(1, Ordering::Relaxed) + 1;
                    if worth_saying(n) {
                        tracing::warn!("nats: a message was not exported: {e} ({n} so far)");
                    }
                }
            }
            sent += 1;
            if sent % EXPORT_BATCH == 0 {
                tokio::task::yield_now().await;
            }
        }
        woken.await;
    }
}

/// What `h` takes on the wire in an `HPUB` (`NATS/1.0`, each `Name: value`, the blank
/// line), counted with the payload against the server's `max_payload`.
fn header_bytes(h: &HeaderMap) -> usize {
    let fields: usize = h
        .iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|v| AsRef::<[u8]>::as_ref(name).len() + 2 + v.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum();
    "NATS/1.0\r\n".len() + fields + 2
}

/// The headers of an exported message.
fn headers(origin: &str, seq: Option<u64>, binary: bool, at: Option<Position>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ORIGIN_HEADER, origin);
    if let Some(n) = seq {
        h.insert(SEQ_HEADER, n.to_string());
    }
    if let Some(at) = at {
        h.insert(POSITION_HEADER, at.to_header());
    }
    if binary {
        h.insert(KIND_HEADER, "binary");
    }
    h
}

/// Hands what comes on the import subscriptions to the workers.
async fn import_loop(
    w: &ClientLoops,
    mut ledger: Box<dyn ImportLedger>,
    subs: Vec<async_nats::Subscriber>,
) {
    let (o, counters, hand_off) = (&w.options, &*w.counters, &w.hand_off);
    if subs.is_empty() {
        return std::future::pending().await;
    }
    let mut all = futures_util::stream::select_all(subs);
    while let Some(msg) = all.next().await {
        let received = Instant::now();
        let headers = msg.headers.as_ref();
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        let origin = header(ORIGIN_HEADER);
        if origin == Some(o.origin.as_str()) {
            bump(&counters.import_skipped_own, 1);
            continue;
        }
        if let (Some(origin), Some(seq)) = (origin, header(SEQ_HEADER).and_then(|s| s.parse().ok()))
        {
            match ledger.see(origin, msg.subject.as_str(), seq) {
                Seen::InOrder | Seen::Untracked | Seen::Restarted => {}
                Seen::Implausible => {
                    bump(&counters.import_implausible, 1);
                    tracing::warn!(subject = %msg.subject, seq, "nats: a sequence number too far from the last to believe; relayed, not counted in order");
                }
                Seen::AfterGap(n) => {
                    bump(&counters.import_gap, n);
                    tracing::warn!(subject = %msg.subject, missed = n, "nats: messages never arrived");
                }
                // A second copy (overlapping import patterns deliver one per
                // subscription) or an old one: not relayed.
                Seen::Late => {
                    bump(&counters.import_late, 1);
                    continue;
                }
            }
        }
        let origin = origin.and_then(|name| ledger.origin_index(name));
        let m = Imported::from_nats(msg.payload, headers, received, origin);
        hand_off.hand(msg.subject.as_str(), m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subject_always_goes_to_one_worker() {
        let parkers = Arc::new(vec![
            Parker::default(),
            Parker::default(),
            Parker::default(),
        ]);
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| bounded(4)).unzip();
        let counters = Arc::new(NatsCounters::default());
        let h = ImportHandOff {
            txs,
            parkers,
            counters: Arc::clone(&counters),
        };
        let m = || Imported {
            payload: bytes::Bytes::new(),
            binary: false,
            received: Instant::now(),
            origin: None,
            position: None,
        };
        for _ in 0..4 {
            h.hand("feedrelay.A", m());
        }
        let lens: Vec<usize> = rxs.iter().map(|r| r.len()).collect();
        assert_eq!(lens.iter().sum::<usize>(), 4);
        assert!(lens.contains(&4), "{lens:?}");
        h.hand("feedrelay.A", m());
        assert_eq!(counters.get("imported"), Some(4));
        assert_eq!(counters.get("import_dropped_full"), Some(1));
    }

    #[test]
    fn repeats_are_said_at_powers_of_ten() {
        let said: Vec<u64> = (1..=1_000).filter(|&n| worth_saying(n)).collect();
        assert_eq!(said, [1, 10, 100, 1_000]);
    }

    #[test]
    fn header_bytes_are_what_goes_on_the_wire() {
        // NATS/1.0\r\n + Feedrelay-Origin: box-a\r\n + Feedrelay-Seq: 7\r\n + \r\n
        let h = headers("box-a", Some(7), false, None);
        assert_eq!(header_bytes(&h), 10 + 25 + 18 + 2);
        let at = Position { epoch: 1, seq: 2 };
        let h = headers("box-a", Some(7), false, Some(at));
        // + Feedrelay-Position: 0000000000000001:2\r\n
        assert_eq!(header_bytes(&h), 10 + 25 + 18 + 40 + 2);
    }

    #[test]
    fn headers_say_origin_number_and_binary() {
        let h = headers("box-a", Some(7), true, None);
        assert_eq!(h.get(ORIGIN_HEADER).map(|v| v.as_str()), Some("box-a"));
        assert_eq!(h.get(SEQ_HEADER).map(|v| v.as_str()), Some("7"));
        assert_eq!(h.get(KIND_HEADER).map(|v| v.as_str()), Some("binary"));
        let h = headers("box-a", None, false, None);
        assert!(h.get(SEQ_HEADER).is_none() && h.get(KIND_HEADER).is_none());
    }
}
