//! A publisher connection (`/pub`): every message it sends is checked against its
//! token's topic patterns and ingested on this worker.

use std::rc::Rc;
use std::sync::Arc;

use crate::io::driver::server::Service;
use crate::io::driver::Reply;
use crate::relay::access::rules::Access;
use crate::relay::core::topic::{TopicLookup, TopicReader};
use crate::relay::worker::ingest::Arrival;
use crate::relay::worker::state::WorkerCtx;
use crate::ws::{MessageKind, WsError};

/// A publisher connection's messages go into the relay.
pub(in crate::relay) struct Publisher {
    pub(in crate::relay) ctx: Rc<WorkerCtx>,
    pub(in crate::relay) topics: TopicReader,
    /// When the read being handled completed (start of the `ingress` hop).
    pub(in crate::relay) read_ns: u64,
    /// The access rules it was admitted under and its token's grant among them
    /// (`None`: no tokens, it may publish anything).
    pub(in crate::relay) grant: Option<(Arc<Access>, usize)>,
    /// The reload generation its `grant` is from: when a reload takes, the grant is
    /// looked up again in the new rules at its next message (a token narrowed to fewer
    /// topics is judged by them from then on; a removed one relays nothing more, and
    /// the worker closes the connection: see `worker::revoke`).
    pub(in crate::relay) rules_seen: u64,
    /// Its compressed messages are relayed as they came (see
    /// [`CompressionConfig::reuses`](crate::relay::core::compression::CompressionConfig::reuses)).
    pub(in crate::relay) reuse_compressed: bool,
}

impl Publisher {
    /// Follows a reload: its grant in the rules now in force. `false`: the rules no
    /// longer admit it.
    fn follow_rules(&mut self) -> bool {
        let now = self.ctx.settings.generation();
        if now == self.rules_seen {
            return true;
        }
        self.rules_seen = now;
        let access = self.ctx.settings.access();
        let token = self
            .grant
            .as_ref()
            .and_then(|(old, i)| old.grant_token(*i).cloned());
        if !access.publishers_need_tokens() {
            self.grant = None;
            return true;
        }
        match token.and_then(|t| access.grant_of(&t)) {
            Some(j) => {
                self.grant = Some((access, j));
                true
            }
            None => false,
        }
    }

    /// Whether its token lets it publish a message whose topic lookup gave `lookup`
    /// (a message without a topic goes to the default topic, if any, and is judged
    /// by that).
    fn may_publish(&mut self, payload: &[u8], lookup: &TopicLookup) -> bool {
        if !self.follow_rules() {
            // Revoked: nothing more is relayed; the worker closes it (1008).
            self.rules_seen = u64::MAX;
            return false;
        }
        let Some((access, i)) = &self.grant else {
            return true;
        };
        let topic: &[u8] = match lookup {
            TopicLookup::InPayload(r) => &payload[r.clone()],
            TopicLookup::Unescaped(t) => t.as_bytes(),
            TopicLookup::BadName(_) => return true, // dropped and counted as bad_topic
            TopicLookup::Missing | TopicLookup::NotJson => match &self.ctx.default_topic {
                Some(t) => &t[..],
                None => return true, // dropped and counted as no_topic
            },
        };
        let grant = &access.grants()[*i];
        let allowed = grant.allows(topic);
        if !allowed {
            self.ctx
                .access_counts
                .borrow_mut()
                .count_off_grant(&grant.name);
        }
        allowed
    }
}

impl Service for Publisher {
    fn on_message(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        compressed: Option<&[u8]>,
        _reply: &mut Reply,
    ) {
        let lookup = self.topics.lookup(payload);
        if self.may_publish(payload, &lookup) {
            let reuse = compressed.filter(|_| self.reuse_compressed);
            let local = Arrival::Local { compressed: reuse };
            self.ctx
                .ingest_with(kind, payload, lookup, self.read_ns, local);
        }
    }

    fn on_read(&mut self) {
        // When the ring took the read's completion: the hop's start as the metrics
        // define it, and no clock read of its own.
        self.read_ns = self.ctx.ring_ns(crate::io::rt::recent_now());
    }

    fn on_batch_end(&mut self) {
        self.ctx.flush();
    }

    fn on_protocol_error(&mut self, error: &WsError) {
        self.ctx.shard.borrow_mut().stats.count_limit(error);
    }
}
