//! Feed-line supervision: a line whose task panics (a bug on its message path) is
//! contained by its worker's ring and started again, and messages flow once more.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use feedrelay::io::ring::Ring;
use feedrelay::io::rt;
use feedrelay::mock_exchange::{self, Options, Stats};
use feedrelay::relay::config::Config;
use feedrelay::relay::core::topic::{JsonPointer, TopicLookup};
use feedrelay::relay::feed::line::{run_line_supervised, FeedSink};
use feedrelay::relay::feed::plan::{plan_feeds, start_group};
use feedrelay::ws::MessageKind;

/// Panics on its first message, then counts.
struct Flaky {
    seen: Cell<u64>,
}

impl FeedSink for Flaky {
    fn ingest(&self, _: MessageKind, _: &[u8], _: TopicLookup, _: u64) {
        self.seen.set(self.seen.get() + 1);
        assert!(self.seen.get() > 1, "a bug in the first message's path");
    }

    fn end_batch(&self) {}
}

#[test]
fn a_line_whose_task_panics_is_started_again() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (exchange_stop, exchange_shutdown) = feedrelay::io::shutdown::channel();
    let options = Arc::new(Options {
        tls: None,
        symbols: 2,
        rate: 200,
        ping: Duration::from_secs(5),
        max_connections: 8,
        require_header: None,
        faults: Default::default(),
    });
    let exchange = std::thread::spawn(move || {
        mock_exchange::serve(
            listener,
            options,
            Arc::new(Stats::default()),
            exchange_shutdown,
        )
    });
    let toml = format!(
        "[[feeds]]\nname = \"x\"\nurl = \"{}\"\nreconnect_initial_ms = 10\n\
         subscribe = ['{{\"method\":\"SUBSCRIBE\",\"params\":[\"*\"],\"id\":1}}']\n",
        mock_exchange::url(addr, false)
    );
    let config = Config::parse(&toml, "test.toml").unwrap();
    let plan = plan_feeds(&config, 1).unwrap().remove(0).remove(0);
    std::thread::spawn(move || {
        Ring::new().unwrap().block_on(async move {
            let pointer = JsonPointer::parse("/s").unwrap();
            let line = start_group(plan, &pointer, Default::default(), &config)
                .unwrap()
                .remove(0);
            let sink = Rc::new(Flaky { seen: Cell::new(0) });
            let (stop, shutdown) = feedrelay::io::shutdown::channel();
            let run = rt::spawn(run_line_supervised(
                Rc::clone(&sink),
                Rc::clone(&line),
                shutdown,
            ));
            let deadline = Instant::now() + Duration::from_secs(10);
            while sink.seen.get() < 20 && Instant::now() < deadline {
                rt::sleep(Duration::from_millis(20)).await;
            }
            let (seen, connects) = (sink.seen.get(), line.state.connects.get());
            assert_eq!(
                rt::panicked(),
                1,
                "one panic, contained: {seen} seen, {connects} connects"
            );
            assert!(
                sink.seen.get() >= 20,
                "messages flow again after the restart"
            );
            assert!(line.state.connects.get() >= 2, "a new session was made");
            assert!(line.state.reconnects.get() >= 1);
            stop.fire();
            assert!(run.await.is_some(), "the supervisor ends at shutdown");
        });
    })
    .join()
    .unwrap();
    exchange_stop.fire();
    exchange.join().unwrap().unwrap();
}
