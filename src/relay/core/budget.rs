//! The relay-wide budget of subscription state: every subscription (one topic held
//! by one connection) costs its topic's length plus [`SUBSCRIPTION_OVERHEAD`], over
//! all workers, so many connections each at their own `max_subscriptions` cannot
//! together grow the relay's memory without bound. Taken and given back with one
//! atomic operation per subscribe or unsubscribe request, never per message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::routing::Interest;

/// What one subscription costs beyond its topic's name: its place in the
/// connection's set and in the worker's routing table (an estimate, fixed so that the
/// budget means the same on every build).
pub const SUBSCRIPTION_OVERHEAD: usize = 64;

/// Bytes of subscription state in use over all workers, and the most allowed.
#[derive(Debug)]
pub struct SubscriptionBudget {
    used: AtomicUsize,
    max: usize,
}

impl SubscriptionBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<SubscriptionBudget> {
        Arc::new(SubscriptionBudget {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// What `interests` cost.
    pub fn cost<'i>(interests: impl IntoIterator<Item = &'i Interest>) -> usize {
        interests
            .into_iter()
            .map(|i| match i {
                Interest::Topic(t) => t.len() + SUBSCRIPTION_OVERHEAD,
                Interest::All => 1 + SUBSCRIPTION_OVERHEAD,
            })
            .sum()
    }

    /// Takes `bytes` if they fit; false (nothing taken) if not.
    pub fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.max)
            })
            .is_ok()
    }

    /// Gives `bytes` back.
    pub fn give_back(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Bytes in use now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The most allowed.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn takes_what_fits_and_nothing_else() {
        let b = SubscriptionBudget::new(200);
        let topic = Interest::Topic(Bytes::from_static(b"BTC-USD"));
        let one = SubscriptionBudget::cost([&topic]);
        assert_eq!(one, 7 + SUBSCRIPTION_OVERHEAD);
        assert!(b.try_take(one) && b.try_take(one));
        assert!(!b.try_take(one), "a third does not fit in 200");
        assert_eq!(b.used(), 2 * one);
        b.give_back(one);
        assert!(b.try_take(one));
        b.give_back(10_000);
        assert_eq!(b.used(), 0, "never below zero");
    }
}
