//! The ring of the current thread: set while [`Ring::block_on`](super::Ring::block_on)
//! runs, so ops, timers and spawned tasks find it without threading it through every
//! call.

use std::cell::RefCell;
use std::rc::Rc;

use super::Inner;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's ring. Panics outside a ring (a bug: every ring
/// operation, timer and task belongs to a worker's ring).
pub(super) fn with_ring<R>(f: impl FnOnce(&Inner) -> R) -> R {
    match try_with_ring(f) {
        Some(r) => r,
        None => panic!("no io ring on this thread: ring operations run inside Ring::block_on"),
    }
}

/// Runs `f` with this thread's ring, if there is one.
pub(super) fn try_with_ring<R>(f: impl FnOnce(&Inner) -> R) -> Option<R> {
    let ring = CURRENT
        .try_with(|c| c.borrow().as_ref().map(Rc::clone))
        .ok()
        .flatten()?;
    Some(f(&ring))
}

/// Makes `ring` this thread's ring until the guard is dropped (which restores the
/// previous one: rings do not nest in practice, but a test may make one inside
/// another's thread after it ended).
pub(super) fn enter(ring: Rc<Inner>) -> EnterGuard {
    let previous = CURRENT.with(|c| c.replace(Some(ring)));
    EnterGuard { previous }
}

/// Restores the previous ring when dropped.
pub(super) struct EnterGuard {
    previous: Option<Rc<Inner>>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = previous);
    }
}
