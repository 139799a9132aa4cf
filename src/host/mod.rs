//! What the host looks like to an operator: CPUs, kernel settings, limits — read from
//! `/sys` and `/proc` under a root directory, so tests can point it at captured trees.
//!
//! This module reads files and judges them; it opens no sockets and starts no ring
//! (the one live probe, io_uring, is passed in by the caller).

pub mod check;
pub mod topology;

use std::path::{Path, PathBuf};

/// A host's `/sys` and `/proc`, under `root` (`/` for this machine).
#[derive(Debug, Clone)]
pub struct HostFs {
    root: PathBuf,
}

impl HostFs {
    /// The tree under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostFs { root: root.into() }
    }

    /// This machine.
    pub fn live() -> Self {
        HostFs::new("/")
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// A file's contents, trimmed; `None` if it is not there or not readable.
    pub fn read(&self, p: &str) -> Option<String> {
        std::fs::read_to_string(self.path(p))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// The names in a directory matching `prefix` followed by digits (`cpu0`, `cpu12`).
    pub fn numbered(&self, dir: &str, prefix: &str) -> Vec<u32> {
        let mut out: Vec<u32> = std::fs::read_dir(self.path(dir))
            .map(|rd| {
                rd.filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    name.strip_prefix(prefix)?.parse().ok()
                })
                .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// Whether this is the live machine.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// Parses a kernel CPU list (`0-3,8,10-11`) into CPU numbers; `None` if malformed.
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// The bracketed choice of a kernel multiple-choice file (`always [madvise] never`).
pub fn selected(s: &str) -> Option<&str> {
    let start = s.find('[')? + 1;
    let end = s[start..].find(']')? + start;
    Some(&s[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_choices() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(selected("always [madvise] never"), Some("madvise"));
        assert_eq!(selected("never"), None);
    }
}
