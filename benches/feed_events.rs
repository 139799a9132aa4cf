//! What a feed's `stale`/`live` event costs the worker that delivers it: one shard
//! with 5,000 subscribers, each holding 2 of the feed's 10,000 topics (and 10 `*`
//! subscribers), told that all 10,000 went stale. The worker does nothing else while
//! this runs, so it is the delay every other socket of the worker sees.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use feedrelay::relay::core::budget::SubscriptionBudget;
use feedrelay::relay::core::events::Notice;
use feedrelay::relay::core::queue::{QueueLimits, SlowConsumerPolicy};
use feedrelay::relay::core::shard::{Shard, ShardSettings};

const TOPICS: usize = 10_000;
const SUBSCRIBERS: usize = 5_000;

fn shard() -> Shard {
    let mut s = Shard::new(
        0,
        1,
        ShardSettings {
            queue: QueueLimits {
                max_messages: 1024,
                max_bytes: 16 << 20,
            },
            policy: SlowConsumerPolicy::Drop,
            topic_policies: Default::default(),
            max_subscriptions: 1024,
            subscription_budget: SubscriptionBudget::new(1 << 30),
            max_drop_topics: 16,
            last_value_max_topics: 0,
            last_value_max_bytes: 0,
            epoch_base: 0,
            history_per_topic: 0,
        },
    );
    for i in 0..SUBSCRIBERS {
        let id = s.add_subscriber(false, true);
        let topics = vec![
            format!("T{}", i % TOPICS),
            format!("T{}", (i * 7 + 1) % TOPICS),
        ];
        let _ = s.subscribe(id, &topics, Bytes::new(), false);
    }
    for _ in 0..10 {
        let id = s.add_subscriber(false, true);
        let _ = s.subscribe(id, &["*".to_owned()], Bytes::new(), false);
    }
    s
}

fn feed_events(c: &mut Criterion) {
    let topics: Vec<Bytes> = (0..TOPICS).map(|i| Bytes::from(format!("T{i}"))).collect();
    let mut group = c.benchmark_group("feed_events");
    group.sample_size(20);
    group.bench_function("stale_10k_topics_5k_subscribers", |b| {
        b.iter_batched(
            || {
                (
                    shard(),
                    Notice::health("stale", "nasdaq".into(), topics.clone()),
                )
            },
            |(mut s, notice)| {
                s.notify(&notice);
                s
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, feed_events);
criterion_main!(benches);
