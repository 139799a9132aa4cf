//! One worker's share of the relay: its subscribers, their queues, its routing table.
//!
//! The IO layer calls a `Shard` with what happened (a message published here, a hop
//! from another worker, a control request) and then collects what to do: hops to send
//! to other workers ([`Shard::take_outbox`]) and subscribers whose queues need flushing
//! or who must be closed ([`Shard::take_dirty`]). A `Shard` does no IO and takes no
//! locks; each worker owns one.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::control::WILDCARD;
use super::queue::{Push, QueueLimits, SlowConsumerPolicy, SubscriberQueue};
use super::routing::{Interest, RoutingTable, SubId, WorkerMask};
pub use super::stats::ShardStats;
use crate::ws::CloseCode;

/// A relayed message: its topic (a slice of the frame when possible) and the server
/// frame encoded once, shared by every subscriber's queue.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// Topic name.
    pub topic: Bytes,
    /// The whole frame, header included.
    pub frame: Bytes,
    /// The same message compressed (RSV1 set), for subscribers that negotiated
    /// permessage-deflate with a window as large as the relay's; `None`: not compressed.
    pub deflated: Option<Bytes>,
    /// When it was routed (metrics clock, ns): the start of the `queue` hop.
    pub routed_ns: u64,
}

/// What travels between workers, on bounded channels.
#[derive(Debug)]
pub enum Hop {
    /// A message for the receiving worker's subscribers.
    Message(Relayed),
    /// Worker `from` gained (`on`) or lost interest. With `ack`, the receiver answers
    /// with [`Hop::InterestAck`] so the subscriber's reply waits until every worker
    /// routes the topic to it.
    Interest {
        /// The worker whose interest changed.
        from: usize,
        /// In what.
        interest: Interest,
        /// Gained or lost.
        on: bool,
        /// Acknowledge to subscriber `.0` on worker `from`, generation `.1`.
        ack: Option<(SubId, u64)>,
    },
    /// Answers an `Interest` with `ack`.
    InterestAck {
        /// The subscriber waiting.
        sub: SubId,
        /// Its subscription generation (stale acks are ignored).
        generation: u64,
    },
}

/// Settings a shard needs, from the config.
#[derive(Debug, Clone)]
pub struct ShardSettings {
    /// Queue bounds per subscriber.
    pub queue: QueueLimits,
    /// Default slow-consumer policy.
    pub policy: SlowConsumerPolicy,
    /// Per-topic policies.
    pub topic_policies: HashMap<Bytes, SlowConsumerPolicy>,
    /// Topics per subscriber.
    pub max_subscriptions: usize,
    /// Topics with their own drop counter.
    pub max_drop_topics: usize,
}

/// A subscriber as the relay sees it.
#[derive(Debug)]
pub struct Subscriber {
    /// Outgoing frames.
    pub queue: SubscriberQueue,
    /// It takes a message's compressed frame when there is one.
    deflate: bool,
    topics: HashSet<Interest>,
    wildcard: bool,
    /// Messages dropped for this subscriber.
    pub drops: u64,
    /// Set when the relay closes it (slow consumer): code and reason.
    pub close: Option<(CloseCode, String)>,
    /// Its close frame is queued: nothing more is queued after it.
    pub closing: bool,
    pending_acks: usize,
    generation: u64,
    pending_reply: Option<Bytes>,
}

/// One worker's relay state.
#[derive(Debug)]
pub struct Shard {
    worker: usize,
    workers: usize,
    settings: ShardSettings,
    routing: RoutingTable,
    subs: Vec<Option<Subscriber>>,
    free: Vec<SubId>,
    dirty: Vec<SubId>,
    outbox: Vec<(usize, Hop)>,
    /// Counters.
    pub stats: ShardStats,
}

fn interest_of(topic: &str) -> Interest {
    if topic == WILDCARD {
        Interest::All
    } else {
        Interest::Topic(Bytes::copy_from_slice(topic.as_bytes()))
    }
}

impl Shard {
    /// The topics subscriber `id` holds now (`*` for the wildcard).
    pub fn subscriber_topics(&self, id: SubId) -> Vec<String> {
        let sub = self.subs.get(id).and_then(Option::as_ref);
        sub.map_or_else(Vec::new, |s| s.topics.iter().map(Interest::name).collect())
    }

    /// Replaces the per-topic slow-consumer policies (a SIGHUP reload).
    pub fn set_topic_policies(&mut self, policies: HashMap<Bytes, SlowConsumerPolicy>) {
        self.settings.topic_policies = policies;
    }

    /// The shard of worker `worker` out of `workers`.
    pub fn new(worker: usize, workers: usize, settings: ShardSettings) -> Self {
        Shard {
            worker,
            workers,
            settings,
            routing: RoutingTable::default(),
            subs: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            outbox: Vec::new(),
            stats: ShardStats::default(),
        }
    }

    /// This shard's worker index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// A new subscriber with no topics yet; with `deflate`, it is queued a message's
    /// compressed frame when there is one.
    pub fn add_subscriber(&mut self, deflate: bool) -> SubId {
        let sub = Subscriber {
            queue: SubscriberQueue::new(self.settings.queue),
            deflate,
            topics: HashSet::new(),
            wildcard: false,
            drops: 0,
            close: None,
            closing: false,
            pending_acks: 0,
            generation: 0,
            pending_reply: None,
        };
        match self.free.pop() {
            Some(id) => {
                self.subs[id] = Some(sub);
                id
            }
            None => {
                self.subs.push(Some(sub));
                self.subs.len() - 1
            }
        }
    }

    /// The subscriber, if it exists.
    pub fn subscriber(&mut self, id: SubId) -> Option<&mut Subscriber> {
        self.subs.get_mut(id)?.as_mut()
    }

    /// Bytes queued for all of this worker's subscribers (walks them: off the hot path).
    pub fn queued_bytes(&mut self) -> usize {
        self.subs.iter().flatten().map(|s| s.queue.bytes()).sum()
    }

    /// Live subscribers on this worker.
    pub fn subscriber_count(&self) -> usize {
        self.subs.len() - self.free.len()
    }

    /// Removes a subscriber and its subscriptions.
    pub fn remove_subscriber(&mut self, id: SubId) {
        let Some(sub) = self.subs.get_mut(id).and_then(Option::take) else {
            return;
        };
        for interest in sub.topics {
            if self.routing.unsubscribe(id, &interest) {
                self.outbox_interest(interest, false, None);
            }
        }
        self.free.push(id);
    }

    /// Subscribes `id` to `topics`; the reply (`{"event":"subscribed",..}` in `reply`)
    /// is queued once every worker routes the new topics here. `Err`: over the
    /// subscription limit, nothing changed. Linear in `topics`; a request that could
    /// never fit is refused before any work on its topics.
    pub fn subscribe(&mut self, id: SubId, topics: &[String], reply: Bytes) -> Result<(), String> {
        let max = self.settings.max_subscriptions;
        let over = || format!("at most {max} subscriptions per connection");
        let Some(sub) = self.subs.get_mut(id).and_then(Option::as_mut) else {
            return Ok(());
        };
        if topics.len() > max {
            self.stats.refused_subscriptions += 1;
            return Err(over());
        }
        let mut new: Vec<Interest> = Vec::new();
        let mut seen = HashSet::with_capacity(topics.len());
        for i in topics.iter().map(|t| interest_of(t)) {
            if !sub.topics.contains(&i) && seen.insert(i.clone()) {
                new.push(i);
            }
        }
        if sub.topics.len() + new.len() > max {
            self.stats.refused_subscriptions += 1;
            return Err(over());
        }
        sub.generation += 1;
        let generation = sub.generation;
        sub.wildcard |= seen.contains(&Interest::All);
        sub.topics.extend(new.iter().cloned());
        let mut acks = 0;
        for interest in new {
            if self.routing.subscribe(id, &interest) {
                acks += self.workers - 1;
                self.outbox_interest(interest, true, Some((id, generation)));
            }
        }
        let Some(sub) = self.subs.get_mut(id).and_then(Option::as_mut) else {
            return Ok(());
        };
        sub.pending_acks = acks;
        if acks == 0 {
            self.reply(id, reply);
        } else {
            sub.pending_reply = Some(reply);
        }
        Ok(())
    }

    /// Unsubscribes `id` from `topics` and queues `reply`.
    pub fn unsubscribe(&mut self, id: SubId, topics: &[String], reply: Bytes) {
        let Some(sub) = self.subs.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let mut lost = Vec::new();
        for t in topics {
            let interest = interest_of(t);
            if sub.topics.remove(&interest) {
                if interest == Interest::All {
                    sub.wildcard = false;
                }
                lost.push(interest);
            }
        }
        for interest in lost {
            if self.routing.unsubscribe(id, &interest) {
                self.outbox_interest(interest, false, None);
            }
        }
        self.reply(id, reply);
    }

    /// Queues frames that end with our close frame: the last thing `id` is sent.
    pub fn reply_closing(&mut self, id: SubId, frame: Bytes) {
        self.reply(id, frame);
        if let Some(sub) = self.subs.get_mut(id).and_then(Option::as_mut) {
            sub.closing = true;
        }
    }

    /// Queues a control frame of ours (reply, pong) for `id`.
    pub fn reply(&mut self, id: SubId, frame: Bytes) {
        let Some(sub) = self.subs.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if sub.closing {
            return;
        }
        let was_empty = sub.queue.is_empty();
        if !sub.queue.push_control(frame) {
            sub.queue.clear();
            sub.close = Some((
                CloseCode::POLICY_VIOLATION,
                "slow consumer: queue full".into(),
            ));
            self.stats.slow_disconnects += 1;
            self.dirty.push(id);
        } else if was_empty {
            self.dirty.push(id);
        }
    }

    /// A message published on this worker: delivered to local subscribers, and handed
    /// to every other worker that has subscribers for its topic.
    pub fn publish(&mut self, msg: Relayed, now_ns: u64) {
        self.stats.messages_in += 1;
        let mut remote: WorkerMask = self.routing.remote_workers(&msg.topic);
        while remote != 0 {
            let w = remote.trailing_zeros() as usize;
            remote &= remote - 1;
            self.outbox.push((w, Hop::Message(msg.clone())));
        }
        self.deliver(&msg, now_ns);
    }

    /// Whether any subscriber, here or on another worker, wants `topic`.
    pub fn is_wanted(&self, topic: &[u8]) -> bool {
        !self.routing.topic_subscribers(topic).is_empty()
            || !self.routing.wildcard_subscribers().is_empty()
            || self.routing.remote_workers(topic) != 0
    }

    /// A message with no topic and no default: counted and dropped.
    pub fn drop_no_topic(&mut self) {
        self.stats.messages_in += 1;
        self.stats.dropped_no_topic += 1;
    }

    /// A message whose topic broke the naming rules: counted and dropped.
    pub fn drop_bad_topic(&mut self) {
        self.stats.messages_in += 1;
        self.stats.dropped_bad_topic += 1;
    }

    /// A hop from another worker, taken off the channel at `now_ns`.
    pub fn handle_hop(&mut self, hop: Hop, now_ns: u64) {
        match hop {
            Hop::Message(msg) => self.deliver(&msg, now_ns),
            Hop::Interest {
                from,
                interest,
                on,
                ack,
            } => {
                self.routing.set_remote(from, &interest, on);
                if let Some((sub, generation)) = ack {
                    self.outbox
                        .push((from, Hop::InterestAck { sub, generation }));
                }
            }
            Hop::InterestAck { sub, generation } => {
                let Some(s) = self.subs.get_mut(sub).and_then(Option::as_mut) else {
                    return;
                };
                if s.generation != generation || s.pending_acks == 0 {
                    return;
                }
                s.pending_acks -= 1;
                if s.pending_acks == 0 {
                    if let Some(reply) = s.pending_reply.take() {
                        self.reply(sub, reply);
                    }
                }
            }
        }
    }

    /// A hop could not be sent (the peer's channel is full).
    pub fn count_channel_full(&mut self, hop: &Hop) {
        if let Hop::Message(m) = hop {
            self.stats.dropped_channel_full += 1;
            self.stats
                .count_drop(&m.topic, self.settings.max_drop_topics);
        }
    }

    /// Hops to send, as (worker, hop); the vector keeps its capacity.
    pub fn take_outbox(&mut self, into: &mut Vec<(usize, Hop)>) {
        into.append(&mut self.outbox);
    }

    /// Subscribers to flush or close; the vector keeps its capacity.
    pub fn take_dirty(&mut self, into: &mut Vec<SubId>) {
        into.append(&mut self.dirty);
    }

    fn outbox_interest(&mut self, interest: Interest, on: bool, ack: Option<(SubId, u64)>) {
        for w in (0..self.workers).filter(|&w| w != self.worker) {
            self.outbox.push((
                w,
                Hop::Interest {
                    from: self.worker,
                    interest: interest.clone(),
                    on,
                    ack,
                },
            ));
        }
    }

    fn deliver(&mut self, msg: &Relayed, now_ns: u64) {
        let policy = if self.settings.topic_policies.is_empty() {
            self.settings.policy
        } else {
            self.settings
                .topic_policies
                .get(&msg.topic)
                .copied()
                .unwrap_or(self.settings.policy)
        };
        let max_drop_topics = self.settings.max_drop_topics;
        let Shard {
            routing,
            subs,
            dirty,
            stats,
            ..
        } = self;
        let by_topic = routing
            .topic_subscribers(&msg.topic)
            .iter()
            .map(|&id| (id, false));
        let wildcard = routing.wildcard_subscribers().iter().map(|&id| (id, true));
        for (id, via_wildcard) in by_topic.chain(wildcard) {
            let Some(sub) = subs.get_mut(id).and_then(Option::as_mut) else {
                continue;
            };
            // A `*` subscriber gets each message once: through the wildcard list.
            if sub.wildcard && !via_wildcard {
                continue;
            }
            if sub.close.is_some() || sub.closing {
                continue;
            }
            let was_empty = sub.queue.is_empty();
            let frame = match &msg.deflated {
                Some(deflated) if sub.deflate => deflated,
                _ => &msg.frame,
            };
            match sub.queue.push(&msg.topic, frame.clone(), policy, now_ns) {
                Push::Queued => {
                    stats.messages_queued += 1;
                    if was_empty {
                        dirty.push(id);
                    }
                }
                Push::Conflated => {
                    stats.dropped_conflated += 1;
                    sub.drops += 1;
                    stats.count_drop(&msg.topic, max_drop_topics);
                }
                Push::Dropped => {
                    stats.dropped_queue_full += 1;
                    sub.drops += 1;
                    stats.count_drop(&msg.topic, max_drop_topics);
                }
                Push::Disconnect => {
                    sub.queue.clear();
                    sub.close = Some((
                        CloseCode::POLICY_VIOLATION,
                        "slow consumer: queue full".into(),
                    ));
                    stats.slow_disconnects += 1;
                    dirty.push(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_messages: usize, policy: SlowConsumerPolicy) -> ShardSettings {
        ShardSettings {
            queue: QueueLimits {
                max_messages,
                max_bytes: 1 << 20,
            },
            policy,
            topic_policies: HashMap::new(),
            max_subscriptions: 3,
            max_drop_topics: 2,
        }
    }

    fn msg(topic: &'static str, body: &'static str) -> Relayed {
        Relayed {
            topic: Bytes::from_static(topic.as_bytes()),
            frame: Bytes::from_static(body.as_bytes()),
            deflated: None,
            routed_ns: 1,
        }
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
        let a = s.add_subscriber(false);
        let all = s.add_subscriber(false);
        s.subscribe(a, &strs(&["A"]), Bytes::from_static(b"ok-a"))
            .unwrap();
        s.subscribe(all, &strs(&["*", "A"]), Bytes::from_static(b"ok-all"))
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
        let a = s.add_subscriber(false);
        assert!(s
            .subscribe(a, &strs(&["A", "B", "C", "D"]), Bytes::new())
            .is_err());
        assert!(s
            .subscribe(a, &strs(&["A", "B", "C"]), Bytes::new())
            .is_ok());
        assert!(
            s.subscribe(a, &strs(&["A"]), Bytes::new()).is_ok(),
            "already held"
        );
    }

    #[test]
    fn slow_subscriber_policies_are_counted() {
        for (policy, dropped, conflated, disconnects) in [
            (SlowConsumerPolicy::Drop, 2, 0, 0),
            (SlowConsumerPolicy::Conflate, 0, 2, 0),
            (SlowConsumerPolicy::Disconnect, 0, 0, 1),
        ] {
            let mut s = Shard::new(0, 1, settings(2, policy));
            let slow = s.add_subscriber(false);
            let fast = s.add_subscriber(false);
            s.subscribe(slow, &strs(&["A"]), Bytes::from_static(b"r"))
                .unwrap();
            s.subscribe(fast, &strs(&["A"]), Bytes::from_static(b"r"))
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
        let sub = w1.add_subscriber(false);
        w1.subscribe(sub, &strs(&["A"]), Bytes::from_static(b"subscribed"))
            .unwrap();
        assert!(drain(&mut w1, sub).is_empty(), "reply waits for worker 0");
        let mut hops = Vec::new();
        w1.take_outbox(&mut hops);
        assert_eq!(hops.len(), 1);
        for (to, hop) in hops.drain(..) {
            assert_eq!(to, 0);
            w0.handle_hop(hop, 1);
        }
        w0.publish(msg("A", "m1"), 1);
        w0.publish(msg("B", "not wanted"), 1);
        w0.take_outbox(&mut hops);
        assert_eq!(hops.len(), 2, "the ack and one message");
        for (to, hop) in hops.drain(..) {
            assert_eq!(to, 1);
            w1.handle_hop(hop, 1);
        }
        assert_eq!(
            drain(&mut w1, sub),
            vec![Bytes::from_static(b"subscribed"), Bytes::from_static(b"m1")]
        );
        w1.remove_subscriber(sub);
        w1.take_outbox(&mut hops);
        for (_, hop) in hops.drain(..) {
            w0.handle_hop(hop, 1);
        }
        w0.publish(msg("A", "m2"), 1);
        w0.take_outbox(&mut hops);
        assert!(hops.is_empty(), "no interest left on worker 1");
    }
}
