//! What the NATS thread asks of the relay about each message, and carries out: the
//! subject and number an exported message goes out with ([`ExportLedger`]), and what
//! an imported message's origin and number say ([`ImportLedger`]). The relay keeps
//! both books (`relay::nats`: subject mapping, numbering per subject, gaps per origin,
//! origins as indexes); this module only names the questions, so the client knows
//! nothing of topics or of how relays number their streams.

/// An exported message's subject: one the ledger keeps (by index, stable for the
/// topic: the client builds its own form once) or one made for this message only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectName {
    /// Subject number `i` ([`ExportLedger::subject`] gives its text).
    Kept(usize),
    /// A subject for this message alone (the ledger keeps no more).
    Once(String),
}

/// The exporting side's book: called on the NATS thread for every exported message.
pub trait ExportLedger: Send {
    /// The subject and number (from 1 per subject; `None`: unnumbered) of the next
    /// message of `topic`.
    fn export(&mut self, topic: &[u8]) -> (SubjectName, Option<u64>);
    /// The text of kept subject `i`.
    fn subject(&self, i: usize) -> &str;
    /// Messages exported unnumbered so far (the book was full).
    fn untracked(&self) -> u64;
}

/// What the importer's book says of one message's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next one (or the first from this origin and subject).
    InOrder,
    /// This many numbers were skipped before it.
    AfterGap(u64),
    /// At or below one already seen (and not 1): late or a duplicate. Not relayed.
    Late,
    /// Number 1 after higher ones: the origin started again; counting starts over.
    Restarted,
    /// Not checked: the book is full.
    Untracked,
    /// Too far from the last number to believe (forged?): relayed, counted, and the
    /// last number stays.
    Implausible,
}

/// The importing side's book: called on the NATS thread for every imported message
/// that carries an origin.
pub trait ImportLedger: Send {
    /// Message `seq` from `origin` on `subject`.
    fn see(&mut self, origin: &str, subject: &str, seq: u64) -> Seen;
    /// `origin` as an index in the order origins were first seen (`None` past the
    /// ledger's bound): what [`Imported::origin`](super::Imported) carries.
    fn origin_index(&mut self, origin: &str) -> Option<usize>;
}

/// Both books, handed to [`start`](super::start).
pub struct Ledgers {
    /// The exporter's.
    pub export: Box<dyn ExportLedger>,
    /// The importer's.
    pub import: Box<dyn ImportLedger>,
}

impl std::fmt::Debug for Ledgers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledgers")
    }
}
