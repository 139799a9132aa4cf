//! One worker's share of the relay: its subscribers, their queues, its routing table.
//!
//! The IO layer calls a `Shard` with what happened (a message published here, a handoff
//! from another worker, a control request) and then collects what to do: hand-offs to send
//! to other workers ([`Shard::take_outbox`]) and subscribers whose queues need flushing
//! or who must be closed ([`Shard::take_dirty`]). A `Shard` does no IO and takes no
//! locks; each worker owns one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::relay::core::budget::SubscriptionBudget;
use crate::relay::core::control::WILDCARD;
use crate::relay::core::events::Notice;
use crate::relay::core::last_value::LastValues;
use crate::relay::core::queue::{Push, QueueLimits, SlowConsumerPolicy, SubscriberQueue};
use crate::relay::core::routing::{Interest, RoutingTable, SubId, WorkerMask};
use crate::relay::core::sequence::{Numbered, Positions};
use crate::relay::core::snapshot::{Offered, PendingSnapshot};
use crate::ws::CloseCode;
use backlog::Backlog;

mod backlog;
pub mod handoff;
mod snapshots;
pub mod stats;

pub use handoff::{Handoff, Relayed};
pub use stats::ShardStats;

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
    /// Subscription state over all workers (shared by their shards).
    pub subscription_budget: Arc<SubscriptionBudget>,
    /// Topics with their own drop counter.
    pub max_drop_topics: usize,
    /// Topics the last-value cache holds at most (0: no cache, no snapshots).
    pub last_value_max_topics: usize,
    /// Bytes of frames the last-value cache holds at most.
    pub last_value_max_bytes: usize,
    /// Where this worker's topic epochs start (random per worker and start).
    pub epoch_base: u64,
    /// Text messages each topic keeps to resume from (0: none).
    pub history_per_topic: usize,
}

/// A subscriber as the relay sees it.
#[derive(Debug)]
pub struct Subscriber {
    /// Outgoing frames.
    pub queue: SubscriberQueue,
    /// It takes a message's compressed frame when there is one.
    deflate: bool,
    /// It gets the relay's events (`events=0` in its URL turns them off).
    events: bool,
    /// It gets text messages in their sequence envelope (`seq=1`).
    sequenced: bool,
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
    /// A subscription with a snapshot being put together.
    snapshot: Option<Box<PendingSnapshot>>,
    /// A snapshot's tail (and what came after it) waiting for room in the queue.
    backlog: Option<Box<Backlog>>,
}

impl Subscriber {
    /// Whether it gets the relay's events (not `events=0`).
    pub fn events(&self) -> bool {
        self.events
    }

    /// Moves frames waiting behind a streamed snapshot into the queue as far as they
    /// fit (the writer calls this after taking what was queued).
    pub fn refill(&mut self) {
        if let Some(b) = self.backlog.as_mut() {
            self.drops += b.refill(&mut self.queue);
            if b.is_empty() {
                self.backlog = None;
            }
        }
    }
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
    outbox: Vec<(usize, Handoff)>,
    /// The last message of each topic ingested here.
    cache: LastValues,
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

    /// The default slow-consumer policy.
    pub fn policy(&self) -> SlowConsumerPolicy {
        self.settings.policy
    }

    /// Replaces the per-topic slow-consumer policies (a SIGHUP reload).
    pub fn set_topic_policies(&mut self, policies: HashMap<Bytes, SlowConsumerPolicy>) {
        self.settings.topic_policies = policies;
    }

    /// The shard of worker `worker` out of `workers`.
    pub fn new(worker: usize, workers: usize, settings: ShardSettings) -> Self {
        let cache = LastValues::new(
            settings.last_value_max_topics,
            settings.last_value_max_bytes,
        )
        .with_epoch_base(settings.epoch_base)
        .with_history(settings.history_per_topic);
        Shard {
            worker,
            workers,
            settings,
            routing: RoutingTable::default(),
            subs: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            outbox: Vec::new(),
            cache,
            stats: ShardStats::default(),
        }
    }

    /// This shard's worker index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// A new subscriber with no topics yet; with `deflate`, it is queued a message's
    /// compressed frame when there is one; with `events`, the relay's events.
    pub fn add_subscriber(&mut self, deflate: bool, events: bool) -> SubId {
        let sub = Subscriber {
            queue: SubscriberQueue::new(self.settings.queue),
            deflate,
            events,
            sequenced: false,
            topics: HashSet::new(),
            wildcard: false,
            drops: 0,
            close: None,
            closing: false,
            pending_acks: 0,
            generation: 0,
            pending_reply: None,
            snapshot: None,
            backlog: None,
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

    /// `id` gets text messages in their sequence envelope from now on (`seq=1`).
    pub fn set_sequenced(&mut self, id: SubId) {
        if let Some(s) = self.subs.get_mut(id).and_then(Option::as_mut) {
            s.sequenced = true;
        }
    }

    /// The subscriber, if it exists.
    pub fn subscriber(&mut self, id: SubId) -> Option<&mut Subscriber> {
        self.subs.get_mut(id)?.as_mut()
    }

    /// Subscriber `id`'s lag now (`now_ns` on the metrics clock).
    pub fn lag(&self, id: SubId, now_ns: u64) -> Option<crate::relay::core::control::Lag> {
        let sub = self.subs.get(id)?.as_ref()?;
        Some(crate::relay::core::control::Lag {
            queued: sub.queue.len(),
            queued_bytes: sub.queue.bytes(),
            oldest_us: sub
                .queue
                .oldest_ns()
                .map_or(0, |t| now_ns.saturating_sub(t) / 1_000),
            drops: sub.drops,
        })
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
        let budget = &self.settings.subscription_budget;
        budget.give_back(SubscriptionBudget::cost(&sub.topics));
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
    pub fn subscribe(
        &mut self,
        id: SubId,
        topics: &[String],
        reply: Bytes,
        snapshot: bool,
    ) -> Result<(), String> {
        self.subscribe_from(id, topics, reply, snapshot.then(Default::default))
    }

    /// [`subscribe`](Self::subscribe) of a subscriber that resumes: for each topic in
    /// `positions`, what came after it (or a `reset` event and the last message), for
    /// the others a snapshot; then the live stream.
    pub fn resume(
        &mut self,
        id: SubId,
        topics: &[String],
        reply: Bytes,
        positions: Positions,
    ) -> Result<(), String> {
        self.subscribe_from(id, topics, reply, Some(positions))
    }

    /// With `from`: a snapshot, resumed where `from` says.
    fn subscribe_from(
        &mut self,
        id: SubId,
        topics: &[String],
        reply: Bytes,
        from: Option<Positions>,
    ) -> Result<(), String> {
        let snapshot = from.is_some();
        let max = self.settings.max_subscriptions;
        let over = || format!("at most {max} subscriptions per connection");
        let Some(sub) = self.subs.get_mut(id).and_then(Option::as_mut) else {
            return Ok(());
        };
        if sub.snapshot.is_some() {
            return Err("a subscription with a snapshot is still being answered; send the next request after its reply".into());
        }
        if snapshot && !self.cache.enabled() {
            return Err("snapshots are off on this relay (last_value_max_topics = 0)".into());
        }
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
        let budget = &self.settings.subscription_budget;
        if !budget.try_take(SubscriptionBudget::cost(&new)) {
            self.stats.subscription_budget_refused += 1;
            return Err(format!(
                "the relay's subscription state is at its budget ({} bytes); try later",
                budget.max()
            ));
        }
        sub.generation += 1;
        let generation = sub.generation;
        sub.wildcard |= seen.contains(&Interest::All);
        sub.topics.extend(new.iter().cloned());
        if let Some(from) = from {
            self.subscribe_with_snapshot(id, new, generation, reply, from);
            return Ok(());
        }
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
                let cost = SubscriptionBudget::cost([&interest]);
                self.settings.subscription_budget.give_back(cost);
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
        if let Some(b) = sub.backlog.as_mut() {
            // Behind a streamed snapshot: in order, after it.
            b.push_control(frame);
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
        self.record_last_value(&msg.topic, &msg.frame, None);
        self.publish_recorded(msg, now_ns);
    }

    /// Keeps `frame` as `topic`'s last value, at `at` when its origin gave it a place
    /// (else counted here); its place in the topic's sequence (`None`: not cached, so
    /// not numbered).
    pub fn record_last_value(
        &mut self,
        topic: &Bytes,
        frame: &[u8],
        at: Option<Numbered>,
    ) -> Option<Numbered> {
        let n = match at {
            Some(at) => self.cache.update_at(topic, frame, at),
            None => self.cache.update(topic, frame),
        };
        self.stats.last_value_refused = self.cache.refused;
        self.stats.last_value_evicted = self.cache.evicted;
        n
    }

    /// Whether this worker already has `topic` at or past `at` (in the same epoch).
    pub fn last_value_is_behind(&self, topic: &[u8], at: Numbered) -> bool {
        self.cache.is_behind(topic, at)
    }

    /// [`publish`](Self::publish) of a message whose last value is already recorded.
    pub fn publish_recorded(&mut self, msg: Relayed, now_ns: u64) {
        self.stats.messages_in += 1;
        let mut remote: WorkerMask = self.routing.remote_workers(&msg.topic);
        while remote != 0 {
            let w = remote.trailing_zeros() as usize;
            remote &= remote - 1;
            self.outbox.push((w, Handoff::Message(msg.clone())));
        }
        self.deliver(&msg, now_ns);
    }

    /// Whether any subscriber, here or on another worker, wants `topic`.
    pub fn is_wanted(&self, topic: &[u8]) -> bool {
        !self.routing.topic_subscribers(topic).is_empty()
            || !self.routing.wildcard_subscribers().is_empty()
            || self.routing.remote_workers(topic) != 0
    }

    /// Queues the notice once for every subscriber (with events on) of any of its
    /// topics, and every `*` subscriber. Found through the routing table: the work is
    /// the topics plus the (subscriber, topic) pairs that match, never subscribers ×
    /// topics.
    pub fn notify(&mut self, notice: &Notice) {
        let mut held: HashMap<SubId, Vec<u32>> = HashMap::new();
        for (i, t) in notice.topics.iter().enumerate() {
            for &id in self.routing.topic_subscribers(t) {
                held.entry(id).or_default().push(i as u32);
            }
        }
        let wildcard: Vec<SubId> = self.routing.wildcard_subscribers().to_vec();
        let wants = |s: &Option<Subscriber>| s.as_ref().is_some_and(|s| s.events);
        for id in wildcard {
            held.remove(&id);
            if self.subs.get(id).is_some_and(wants) {
                self.stats.events += 1;
                self.reply(id, notice.frame.clone());
            }
        }
        for (id, topics) in held {
            if self.subs.get(id).is_some_and(wants) {
                self.stats.events += 1;
                self.reply(id, notice.frame_for(&topics));
            }
        }
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

    /// A handoff from another worker, taken off the channel at `now_ns`.
    pub fn handle_handoff(&mut self, handoff: Handoff, now_ns: u64) {
        match handoff {
            Handoff::Message(msg) => self.deliver(&msg, now_ns),
            Handoff::Interest {
                from,
                interest,
                on,
                ack,
            } => {
                self.routing.set_remote(from, &interest, on);
                if let Some((sub, generation)) = ack {
                    self.outbox
                        .push((from, Handoff::InterestAck { sub, generation }));
                }
            }
            Handoff::Event(notice) => self.notify(&notice),
            Handoff::SnapshotRequest {
                from,
                sub,
                generation,
                interests,
                sequenced,
                positions,
            } => self
                .answer_snapshot_request(from, sub, generation, &interests, sequenced, &positions),
            Handoff::Snapshot {
                sub,
                generation,
                origin,
                frames,
            } => self.snapshot_answered(sub, generation, origin, frames),
            Handoff::InterestAck { sub, generation } => {
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

    /// A handoff could not be sent (the peer's channel is full).
    pub fn count_channel_full(&mut self, handoff: &Handoff) {
        if let Handoff::Message(m) = handoff {
            self.stats.dropped_channel_full += 1;
            self.stats
                .count_drop(&m.topic, self.settings.max_drop_topics);
        }
    }

    /// Hand-offs to send, as (worker, handoff); the vector keeps its capacity.
    pub fn take_outbox(&mut self, into: &mut Vec<(usize, Handoff)>) {
        into.append(&mut self.outbox);
    }

    /// Subscribers to flush or close; the vector keeps its capacity.
    pub fn take_dirty(&mut self, into: &mut Vec<SubId>) {
        into.append(&mut self.dirty);
    }

    /// Queues the handoff `make` gives for every other worker.
    pub fn broadcast(&mut self, make: impl Fn() -> Handoff) {
        for w in (0..self.workers).filter(|&w| w != self.worker) {
            self.outbox.push((w, make()));
        }
    }

    fn outbox_interest(&mut self, interest: Interest, on: bool, ack: Option<(SubId, u64)>) {
        for w in (0..self.workers).filter(|&w| w != self.worker) {
            self.outbox.push((
                w,
                Handoff::Interest {
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
        // Its envelope, made here at most once, if the ingesting worker did not (see below).
        let mut late_envelope: Option<Bytes> = None;
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
            let frame = match (&msg.sequenced, &msg.deflated) {
                (Some(enveloped), _) if sub.sequenced => enveloped,
                (None, _) if sub.sequenced && msg.number.is_some() => {
                    // Ingested before the first seq=1 subscriber was counted: wrapped
                    // here, once per such message, so the subscriber never sees it bare.
                    late_envelope.get_or_insert_with(|| {
                        crate::relay::core::sequence::enveloped_frame(
                            &msg.topic, &msg.frame, msg.number,
                        )
                    })
                }
                (_, Some(deflated)) if sub.deflate && !sub.sequenced => deflated,
                _ => &msg.frame,
            };
            if let Some(p) = sub.snapshot.as_mut() {
                // Held as this subscriber takes it (its envelope, its compression).
                match p.offer(msg.origin, &msg.topic, frame) {
                    Offered::NotCovered => {}
                    Offered::Skipped | Offered::Held => continue,
                    Offered::Dropped => {
                        stats.dropped_queue_full += 1;
                        sub.drops += 1;
                        stats.count_drop(&msg.topic, max_drop_topics);
                        continue;
                    }
                }
            }
            let was_empty = sub.queue.is_empty();
            if let Some(b) = sub.backlog.as_mut() {
                // Behind a streamed snapshot: waits its turn, bounded.
                if b.push_live(frame.clone()) {
                    stats.messages_queued += 1;
                } else {
                    stats.dropped_queue_full += 1;
                    sub.drops += 1;
                    stats.count_drop(&msg.topic, max_drop_topics);
                }
                continue;
            }
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
mod tests;
