//! The worker's fan-out list: the parked subscribers with output waiting, in the order
//! they got it, and the fan-out's writes in flight (see [`fanout`](super::fanout)).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use slab::Slab;

use super::sub_writer::SubWriter;
use crate::io::ring::port::Port;
use crate::relay::core::routing::SubId;

/// A worker's fan-out: who has output, and the writes in flight.
#[derive(Default)]
pub(in crate::relay) struct FanoutList {
    pub(super) port: Port,
    /// Parked subscribers with output, in the order they got it.
    pub(super) ready: RefCell<VecDeque<(SubId, Rc<SubWriter>)>>,
    /// Writes in flight, by the token their completion comes back with.
    pub(super) in_flight: RefCell<Slab<(SubId, Rc<SubWriter>)>>,
}

impl FanoutList {
    /// Takes subscriber `id`'s changed queue if its writer task is parked (it will be
    /// written by the fan-out); `false`: the writer task must be woken.
    pub(in crate::relay) fn offer(&self, id: SubId, writer: &Rc<SubWriter>) -> bool {
        let d = &writer.direct;
        if !d.parked.get() || writer.gone.get() {
            return false;
        }
        if !d.listed.replace(true) {
            self.ready.borrow_mut().push_back((id, Rc::clone(writer)));
            self.port.raise();
        }
        true
    }
}
