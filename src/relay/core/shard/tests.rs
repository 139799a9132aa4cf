//! Shard tests: routing, limits, slow-consumer policies, interest and snapshots across
//! two shards with the hand-offs carried by hand.

use super::*;
use crate::relay::core::events::Notice;

fn settings(max_messages: usize, policy: SlowConsumerPolicy) -> ShardSettings {
    ShardSettings {
        queue: QueueLimits {
            max_messages,
            max_bytes: 1 << 20,
        },
        policy,
        topic_policies: HashMap::new(),
        max_subscriptions: 3,
        subscription_budget: crate::relay::core::budget::SubscriptionBudget::new(1 << 20),
        max_drop_topics: 2,
        last_value_max_topics: 16,
        last_value_max_bytes: 1 << 16,
        epoch_base: 0,
        history_per_topic: 0,
    }
}

fn msg(topic: &'static str, body: &'static str) -> Relayed {
    at_topic(topic, body)
}

fn drain(shard: &mut Shard, id: SubId) -> Vec<Bytes> {
    let mut out = Vec::new();
    shard
        .subscriber(id)
        .unwrap()
        .queue
        .drain_into(&mut out, usize::MAX);
    out
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn routes_by_topic_and_wildcard_once_each() {
    let mut s = Shard::new(0, 1, settings(100, SlowConsumerPolicy::Drop));
    let a = s.add_subscriber(false, true);
    let all = s.add_subscriber(false, true);
    s.subscribe(a, &strs(&["A"]), Bytes::from_static(b"ok-a"), false)
        .unwrap();
    s.subscribe(
        all,
        &strs(&["*", "A"]),
        Bytes::from_static(b"ok-all"),
        false,
    )
    .unwrap();
    s.publish(msg("A", "a1"), 1);
    s.publish(msg("B", "b1"), 1);
    assert_eq!(
        drain(&mut s, a),
        vec![Bytes::from_static(b"ok-a"), Bytes::from_static(b"a1")]
    );
    assert_eq!(
        drain(&mut s, all),
        vec![
            Bytes::from_static(b"ok-all"),
            Bytes::from_static(b"a1"),
            Bytes::from_static(b"b1")
        ]
    );
    s.unsubscribe(a, &strs(&["A"]), Bytes::from_static(b"bye"));
    s.publish(msg("A", "a2"), 1);
    assert_eq!(drain(&mut s, a), vec![Bytes::from_static(b"bye")]);
    assert_eq!(s.stats.messages_in, 3);
}

#[test]
fn subscription_limit_is_enforced() {
    let mut s = Shard::new(0, 1, settings(100, SlowConsumerPolicy::Drop));
    let a = s.add_subscriber(false, true);
    assert!(s
        .subscribe(a, &strs(&["A", "B", "C", "D"]), Bytes::new(), false)
        .is_err());
    assert!(s
        .subscribe(a, &strs(&["A", "B", "C"]), Bytes::new(), false)
        .is_ok());
    assert!(
        s.subscribe(a, &strs(&["A"]), Bytes::new(), false).is_ok(),
        "already held"
    );
}

/// The relay-wide budget is shared by every shard holding it: two subscribers on two
/// shards fill it, a third request is refused (counted) and changes nothing, and what
/// an unsubscribe or a departure gives back can be taken again.
#[test]
fn the_relay_wide_subscription_budget_holds_over_shards() {
    use crate::relay::core::budget::{SubscriptionBudget, SUBSCRIPTION_OVERHEAD};
    let one = 1 + SUBSCRIPTION_OVERHEAD;
    let budget = SubscriptionBudget::new(4 * one);
    let with_budget = || ShardSettings {
        subscription_budget: Arc::clone(&budget),
        ..settings(100, SlowConsumerPolicy::Drop)
    };
    let (mut s0, mut s1) = (
        Shard::new(0, 2, with_budget()),
        Shard::new(1, 2, with_budget()),
    );
    let (a, b) = (
        s0.add_subscriber(false, true),
        s1.add_subscriber(false, true),
    );
    assert!(s0
        .subscribe(a, &strs(&["A", "B"]), Bytes::new(), false)
        .is_ok());
    assert!(s1
        .subscribe(b, &strs(&["C", "D"]), Bytes::new(), false)
        .is_ok());
    let refused = s1.subscribe(b, &strs(&["E"]), Bytes::new(), false);
    assert!(refused.unwrap_err().contains("budget"));
    assert_eq!(s1.stats.subscription_budget_refused, 1);
    assert_eq!(s1.subscriber_topics(b).len(), 2, "nothing changed");
    s0.unsubscribe(a, &strs(&["A"]), Bytes::new());
    assert!(s1.subscribe(b, &strs(&["E"]), Bytes::new(), false).is_ok());
    s0.remove_subscriber(a);
    assert_eq!(budget.used(), 3 * one);
    s1.remove_subscriber(b);
    assert_eq!(budget.used(), 0);
}

#[test]
fn slow_subscriber_policies_are_counted() {
    for (policy, dropped, conflated, disconnects) in [
        (SlowConsumerPolicy::Drop, 2, 0, 0),
        (SlowConsumerPolicy::Conflate, 0, 2, 0),
        (SlowConsumerPolicy::Disconnect, 0, 0, 1),
    ] {
        let mut s = Shard::new(0, 1, settings(2, policy));
        let slow = s.add_subscriber(false, true);
        let fast = s.add_subscriber(false, true);
        s.subscribe(slow, &strs(&["A"]), Bytes::from_static(b"r"), false)
            .unwrap();
        s.subscribe(fast, &strs(&["A"]), Bytes::from_static(b"r"), false)
            .unwrap();
        drain(&mut s, fast);
        for body in ["1", "2", "3"] {
            s.publish(msg("A", body), 1);
            drain(&mut s, fast);
        }
        assert_eq!(s.stats.dropped_queue_full, dropped, "{policy:?}");
        assert_eq!(s.stats.dropped_conflated, conflated, "{policy:?}");
        assert_eq!(s.stats.slow_disconnects, disconnects, "{policy:?}");
        let sub = s.subscriber(slow).unwrap();
        assert_eq!(sub.close.is_some(), disconnects == 1);
        assert_eq!(
            s.stats
                .drops_by_topic
                .get(&Bytes::from_static(b"A"))
                .copied()
                .unwrap_or(0),
            dropped + conflated
        );
    }
}

#[test]
fn interest_crosses_workers_and_reply_waits_for_acks() {
    let mut w0 = Shard::new(0, 2, settings(100, SlowConsumerPolicy::Drop));
    let mut w1 = Shard::new(1, 2, settings(100, SlowConsumerPolicy::Drop));
    let sub = w1.add_subscriber(false, true);
    w1.subscribe(sub, &strs(&["A"]), Bytes::from_static(b"subscribed"), false)
        .unwrap();
    assert!(drain(&mut w1, sub).is_empty(), "reply waits for worker 0");
    let mut handoffs = Vec::new();
    w1.take_outbox(&mut handoffs);
    assert_eq!(handoffs.len(), 1);
    for (to, handoff) in handoffs.drain(..) {
        assert_eq!(to, 0);
        w0.handle_handoff(handoff, 1);
    }
    w0.publish(msg("A", "m1"), 1);
    w0.publish(msg("B", "not wanted"), 1);
    w0.take_outbox(&mut handoffs);
    assert_eq!(handoffs.len(), 2, "the ack and one message");
    for (to, handoff) in handoffs.drain(..) {
        assert_eq!(to, 1);
        w1.handle_handoff(handoff, 1);
    }
    assert_eq!(
        drain(&mut w1, sub),
        vec![Bytes::from_static(b"subscribed"), Bytes::from_static(b"m1")]
    );
    w1.remove_subscriber(sub);
    w1.take_outbox(&mut handoffs);
    for (_, handoff) in handoffs.drain(..) {
        w0.handle_handoff(handoff, 1);
    }
    w0.publish(msg("A", "m2"), 1);
    w0.take_outbox(&mut handoffs);
    assert!(handoffs.is_empty(), "no interest left on worker 1");
}

/// Carries every handoff in `from`'s outbox to `to` (the only other worker).
fn carry(from: &mut Shard, to: &mut Shard) {
    let mut handoffs = Vec::new();
    from.take_outbox(&mut handoffs);
    for (_, handoff) in handoffs {
        to.handle_handoff(handoff, 1);
    }
}

fn at(topic: &'static str, body: &'static str, origin: usize) -> Relayed {
    Relayed {
        origin,
        ..msg(topic, body)
    }
}

#[test]
fn a_snapshot_comes_after_the_reply_and_before_the_live_stream_without_gap_or_copy() {
    let mut w0 = Shard::new(0, 2, settings(100, SlowConsumerPolicy::Drop));
    let mut w1 = Shard::new(1, 2, settings(100, SlowConsumerPolicy::Drop));
    w0.publish(at("A", "a1", 0), 1);
    w1.publish(at("B", "b1", 1), 1);
    let sub = w1.add_subscriber(false, true);
    w1.subscribe(sub, &strs(&["A", "B"]), Bytes::from_static(b"ok"), true)
        .unwrap();
    // Worker 1's own topic moves on at once: held until the snapshot is complete.
    w1.publish(at("B", "b2", 1), 1);
    assert!(
        drain(&mut w1, sub).is_empty(),
        "nothing before every worker answered"
    );
    // Worker 0 learns of the interest, then routes a2 before it answers the request:
    // a2 is older than its answer (which holds a2 itself).
    let mut handoffs = Vec::new();
    w1.take_outbox(&mut handoffs);
    let mut to_w0 = handoffs.into_iter().map(|(_, h)| h);
    w0.handle_handoff(to_w0.next().unwrap(), 1); // the interest in A
    w0.handle_handoff(to_w0.next().unwrap(), 1); // the interest in B
    w0.publish(at("A", "a2", 0), 1);
    for handoff in to_w0 {
        w0.handle_handoff(handoff, 1); // the snapshot request
    }
    w0.publish(at("A", "a3", 0), 1);
    carry(&mut w0, &mut w1); // a2, the answer [a2], a3 (in the order sent)
    assert_eq!(
        drain(&mut w1, sub),
        ["ok", "b1", "a2", "b2", "a3"].map(|s| Bytes::from(s.as_bytes())),
        "reply, this worker's snapshot, the other's, then live; a2 once"
    );
    w0.publish(at("A", "a4", 0), 1);
    carry(&mut w0, &mut w1);
    assert_eq!(drain(&mut w1, sub), vec![Bytes::from_static(b"a4")]);
    assert_eq!(w1.stats.snapshots, 1);
}

#[test]
fn one_snapshot_at_a_time_and_none_when_the_cache_is_off() {
    let mut w = Shard::new(0, 2, settings(100, SlowConsumerPolicy::Drop));
    let sub = w.add_subscriber(false, true);
    w.subscribe(sub, &strs(&["*"]), Bytes::new(), true).unwrap();
    let again = w.subscribe(sub, &strs(&["A"]), Bytes::new(), false);
    assert!(again.unwrap_err().contains("still being answered"));
    let mut off = settings(100, SlowConsumerPolicy::Drop);
    off.last_value_max_topics = 0;
    let mut w = Shard::new(0, 1, off);
    let sub = w.add_subscriber(false, true);
    let refused = w.subscribe(sub, &strs(&["A"]), Bytes::new(), true);
    assert!(refused.unwrap_err().contains("snapshots are off"));
}

#[test]
fn events_go_once_to_each_subscriber_of_their_topics_that_wants_them() {
    let mut s = Shard::new(0, 1, settings(100, SlowConsumerPolicy::Drop));
    let both = s.add_subscriber(false, true);
    let other = s.add_subscriber(false, true);
    let all = s.add_subscriber(false, true);
    let off = s.add_subscriber(false, false);
    s.subscribe(both, &strs(&["A", "B"]), Bytes::new(), false)
        .unwrap();
    s.subscribe(other, &strs(&["C"]), Bytes::new(), false)
        .unwrap();
    s.subscribe(all, &strs(&["*"]), Bytes::new(), false)
        .unwrap();
    s.subscribe(off, &strs(&["A"]), Bytes::new(), false)
        .unwrap();
    for id in [both, other, all, off] {
        drain(&mut s, id);
    }
    let topics = vec![Bytes::from_static(b"A"), Bytes::from_static(b"B")];
    let notice = Notice::health("stale", "f".into(), topics);
    s.notify(&notice);
    let named = |m: &Bytes| String::from_utf8_lossy(&m[2..]).into_owned();
    let got: Vec<String> = drain(&mut s, both).iter().map(named).collect();
    assert_eq!(
        got,
        vec![r#"{"event":"stale","feed":"f","topics":["A","B"]}"#],
        "once, not per topic"
    );
    assert_eq!(drain(&mut s, all), vec![notice.frame.clone()]);
    assert!(drain(&mut s, other).is_empty());
    assert!(drain(&mut s, off).is_empty(), "events=0");
    assert_eq!(s.stats.events, 2);
    // A subscriber of only some of the topics hears of those alone.
    let notice = Notice::health(
        "live",
        "f".into(),
        strs(&["A", "C", "D"])
            .into_iter()
            .map(Bytes::from)
            .collect(),
    );
    s.notify(&notice);
    let got: Vec<String> = drain(&mut s, both).iter().map(named).collect();
    assert_eq!(got, vec![r#"{"event":"live","feed":"f","topics":["A"]}"#]);
    let got: Vec<String> = drain(&mut s, other).iter().map(named).collect();
    assert_eq!(got, vec![r#"{"event":"live","feed":"f","topics":["C"]}"#]);
    let got: Vec<String> = drain(&mut s, all).iter().map(named).collect();
    assert_eq!(
        got,
        vec![r#"{"event":"live","feed":"f","topics":["A","C","D"]}"#]
    );
    assert_eq!(s.stats.events, 5);
}

fn at_topic(topic: &str, body: &str) -> Relayed {
    Relayed {
        topic: Bytes::from(topic.to_owned()),
        frame: Bytes::from(body.to_owned()),
        deflated: None,
        sequenced: None,
        number: None,
        routed_ns: 1,
        origin: 0,
    }
}

/// A `*` snapshot larger than the subscriber's queue is streamed as the queue drains,
/// not a 1008: the reply, every cached frame, then the live messages that came
/// meanwhile, in order, none lost within the bound.
#[test]
fn a_snapshot_larger_than_the_queue_is_streamed() {
    let mut s = Shard::new(0, 1, settings(4, SlowConsumerPolicy::Disconnect));
    for i in 0..10 {
        s.publish(at_topic(&format!("T{i}"), &format!("v{i}")), 0);
    }
    let id = s.add_subscriber(false, true);
    s.subscribe(id, &strs(&["*"]), Bytes::from_static(b"ok"), true)
        .unwrap();
    s.publish(at_topic("T3", "live1"), 0);
    s.publish(at_topic("T4", "live2"), 0);
    let mut got: Vec<Bytes> = Vec::new();
    for _ in 0..10 {
        let sub = s.subscriber(id).unwrap();
        assert!(sub.close.is_none(), "not closed: {:?}", sub.close);
        sub.queue.drain_into(&mut got, 100);
        sub.refill();
    }
    assert_eq!(got.len(), 13, "{got:?}");
    assert_eq!(got[0], Bytes::from_static(b"ok"));
    let mut snapshot: Vec<Bytes> = got[1..11].to_vec();
    snapshot.sort();
    let want: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("v{i}"))).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(snapshot, want_sorted);
    assert_eq!(
        &got[11..],
        &[Bytes::from_static(b"live1"), Bytes::from_static(b"live2")]
    );
}
