//! The worker's fan-out list: the parked subscribers with output waiting, in the order
//! they got it, and the port the fan-out's writes go through, which holds each write's
//! subscriber until the write ends (see [`fanout`](super::fanout)).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::sub_writer::SubWriter;
use crate::io::driver::port_write::{OwnsWriter, PortWriter};
use crate::io::ring::port::Port;
use crate::relay::core::routing::SubId;

/// A worker's fan-out: who has output, and the writes in flight.
#[derive(Default)]
pub(in crate::relay) struct FanoutList {
    /// The fan-out's writes in flight, each holding its subscriber until it ends.
    pub(super) port: Port<Writing>,
    /// Parked subscribers with output, in the order they got it.
    pub(super) ready: RefCell<VecDeque<(SubId, Rc<SubWriter>)>>,
}

/// A write of the fan-out's in flight: whose it is. The port holds it until the write
/// ends, and with it the subscriber's writer, whose batch the kernel reads.
pub(super) struct Writing {
    pub(super) id: SubId,
    pub(super) writer: Rc<SubWriter>,
}

impl OwnsWriter for Writing {
    fn writer(&self) -> &PortWriter {
        &self.writer.direct.port
    }
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
