//! The relay's books for the NATS thread ([`ExportBook`], [`ImportBook`]): each
//! exported topic's subject (escaped once, [`subject`](super::subject)) and number
//! ([`Numbering`]), each imported origin's numbers per subject ([`GapCounter`]), and
//! origins as indexes for arbitration across exporting relays.

use super::sequence::{GapCounter, Numbering};
use super::subject::subject;
use crate::io::nats::{ExportLedger, ImportLedger, Ledgers, Seen, SubjectName};

/// Exporting relays an importer tells apart (for arbitration across them).
pub const MAX_ORIGINS: usize = 64;

/// What the exporter keeps: subjects by index, numbers by topic.
#[derive(Debug)]
pub struct ExportBook {
    prefix: String,
    numbering: Numbering<usize>,
    subjects: Vec<String>,
}

impl ExportBook {
    /// A book for subjects `<prefix>.<topic>`.
    pub fn new(prefix: &str) -> ExportBook {
        ExportBook {
            prefix: prefix.to_owned(),
            numbering: Numbering::default(),
            subjects: Vec::new(),
        }
    }
}

impl ExportLedger for ExportBook {
    fn export(&mut self, topic: &[u8]) -> (SubjectName, Option<u64>) {
        let (prefix, subjects) = (&self.prefix, &mut self.subjects);
        let (i, seq) = self.numbering.next(topic, || {
            subjects.push(subject(prefix, topic));
            subjects.len() - 1
        });
        // A topic past the bound made its subject for this message alone.
        match (seq, seq.is_none().then(|| subjects.pop()).flatten()) {
            (None, Some(once)) => (SubjectName::Once(once), None),
            _ => (SubjectName::Kept(i), seq),
        }
    }

    fn subject(&self, i: usize) -> &str {
        self.subjects.get(i).map_or("", String::as_str)
    }

    fn untracked(&self) -> u64 {
        self.numbering.untracked
    }
}

/// What the importer keeps: the last number per origin and subject, and the origins in
/// the order first seen.
#[derive(Debug, Default)]
pub struct ImportBook {
    gaps: GapCounter,
    origins: Vec<String>,
}

impl ImportLedger for ImportBook {
    fn see(&mut self, origin: &str, subject: &str, seq: u64) -> Seen {
        self.gaps.see(origin, subject, seq)
    }

    /// `origin`'s index, added if new and there is room ([`MAX_ORIGINS`]).
    fn origin_index(&mut self, origin: &str) -> Option<usize> {
        if let Some(i) = self.origins.iter().position(|o| o == origin) {
            return Some(i);
        }
        if self.origins.len() >= MAX_ORIGINS {
            return None;
        }
        self.origins.push(origin.to_owned());
        Some(self.origins.len() - 1)
    }
}

/// Both books for a relay exporting under `prefix`.
pub fn relay_ledgers(prefix: &str) -> Ledgers {
    Ledgers {
        export: Box::new(ExportBook::new(prefix)),
        import: Box::new(ImportBook::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_get_stable_indexes_up_to_the_bound() {
        let mut o = ImportBook::default();
        assert_eq!(o.origin_index("a"), Some(0));
        assert_eq!(o.origin_index("b"), Some(1));
        assert_eq!(o.origin_index("a"), Some(0));
        for i in 2..MAX_ORIGINS {
            assert_eq!(o.origin_index(&i.to_string()), Some(i));
        }
        assert_eq!(o.origin_index("one too many"), None);
        assert_eq!(o.origin_index("b"), Some(1));
    }

    #[test]
    fn each_topic_keeps_one_escaped_subject_and_its_numbers() {
        let mut b = ExportBook::new("feedrelay");
        assert_eq!(b.export(b"book.BTC/USD"), (SubjectName::Kept(0), Some(1)));
        assert_eq!(b.export(b"ETH"), (SubjectName::Kept(1), Some(1)));
        assert_eq!(b.export(b"book.BTC/USD"), (SubjectName::Kept(0), Some(2)));
        assert_eq!(b.subject(0), "feedrelay.book%2EBTC%2FUSD");
        assert_eq!(b.subject(1), "feedrelay.ETH");
    }
}
