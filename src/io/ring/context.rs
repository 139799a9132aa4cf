//! The ring of the current thread: set while [`Ring::block_on`](super::Ring::block_on)
//! runs, so ops, timers and spawned tasks find it without threading it through every
//! call.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::Inner;

thread_local! {
    /// Owns the current ring (a reference count) while it is current.
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
    /// The same ring as a plain pointer (null: none), read on every ring operation:
    /// no borrow flag and no reference count to touch, which cost about 50
    /// instructions per call through `CURRENT` (callgrind, issue #24).
    static CURRENT_PTR: Cell<*const Inner> = const { Cell::new(std::ptr::null()) };
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
    let ring = CURRENT_PTR.try_with(Cell::get).ok()?;
    // SAFETY: a non-null `CURRENT_PTR` is the ring `CURRENT` holds a count of (`set`
    // changes both together), so it lives at least until `CURRENT` changes. Only
    // `enter` and its guard change it: `enter` moves the ring it replaces into the new
    // guard, and a guard made inside `f` is dropped inside `f`, restoring this ring
    // and dropping only the one it entered. So the ring outlives `f`'s borrow.
    unsafe { ring.as_ref() }.map(f)
}

/// Makes `ring` (or none) this thread's ring, in both thread locals; the one before.
fn set(ring: Option<Rc<Inner>>) -> Option<Rc<Inner>> {
    let ptr = ring.as_ref().map_or(std::ptr::null(), Rc::as_ptr);
    let (ptr, previous) = match CURRENT.try_with(|c| c.replace(ring)) {
        Ok(previous) => (ptr, previous),
        // The thread is going away: no ring from now on.
        Err(_) => (std::ptr::null(), None),
    };
    let _ = CURRENT_PTR.try_with(|c| c.set(ptr));
    previous
}

/// Makes `ring` this thread's ring until the guard is dropped (which restores the
/// previous one: rings do not nest in practice, but a test may make one inside
/// another's thread after it ended).
pub(super) fn enter(ring: Rc<Inner>) -> EnterGuard {
    EnterGuard {
        previous: set(Some(ring)),
    }
}

/// Restores the previous ring when dropped.
pub(super) struct EnterGuard {
    previous: Option<Rc<Inner>>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        // The ring this guard entered is dropped after the pointer moved off it.
        drop(set(self.previous.take()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::io::ring::Ring;
    use crate::io::rt;

    /// A ring made, run and dropped inside another's task is current only meanwhile:
    /// the outer one is current again after, its operations still work, and no ring
    /// is current once both are done.
    #[test]
    fn the_current_ring_is_restored_after_a_nested_one() {
        assert!(try_with_ring(|_| ()).is_none());
        let outer = Ring::new().unwrap();
        outer.block_on(async {
            let id = with_ring(|r| r.id);
            let nested = Ring::new().unwrap();
            let nested_id = nested.block_on(async {
                rt::sleep(Duration::from_millis(1)).await;
                with_ring(|r| r.id)
            });
            assert_ne!(nested_id, id);
            assert_eq!(with_ring(|r| r.id), id);
            drop(nested);
            assert_eq!(with_ring(|r| r.id), id);
            rt::sleep(Duration::from_millis(1)).await;
            assert_eq!(with_ring(|r| r.id), id);
        });
        assert!(try_with_ring(|_| ()).is_none());
        drop(outer);
        assert!(try_with_ring(|_| ()).is_none());
    }
}
