//! The process's resource limits that bound what the relay can hold: open files (one
//! per connection, and the size of a ring's registered file table) and locked memory
//! (rings on older kernels). Read by `feedrelay check`, raised at start.

/// What `getrlimit` takes to name a resource (its C type differs between libcs).
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// A resource limit (soft, hard); `None` if it cannot be read.
fn get(resource: Resource) -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill; checked.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return None;
    }
    Some((lim.rlim_cur, lim.rlim_max))
}

/// This process's open-file limits (soft, hard); (0, 0) if unknown.
pub fn fd_limits() -> (u64, u64) {
    get(libc::RLIMIT_NOFILE).unwrap_or((0, 0))
}

/// This process's locked-memory limit (soft) in bytes; `None` if unlimited or unknown.
pub fn memlock_limit() -> Option<u64> {
    get(libc::RLIMIT_MEMLOCK)
        .map(|(soft, _)| soft)
        .filter(|&soft| soft != libc::RLIM_INFINITY)
}

/// Raises this process's open-file limit (soft) towards `want`, up to the hard limit;
/// returns the soft limit now in force. Each connection is one descriptor.
pub fn raise_fd_limit(want: u64) -> u64 {
    let Some((soft, hard)) = get(libc::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft < want && soft < hard {
        let raised = libc::rlimit {
            rlim_cur: want.min(hard),
            rlim_max: hard,
        };
        // SAFETY: `raised` is a valid rlimit within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    soft
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_raises_the_open_file_limit_within_the_hard_one() {
        let (soft, hard) = fd_limits();
        assert!(soft > 0 && soft <= hard, "({soft}, {hard})");
        // Asking for no more than is in force changes nothing.
        assert_eq!(raise_fd_limit(1), soft);
        let now = raise_fd_limit(u64::MAX);
        assert!(
            now >= soft && now <= hard,
            "raised within the hard limit: {now}"
        );
        assert_eq!(fd_limits().0, now);
    }
}
