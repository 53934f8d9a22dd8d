//! This host's processes as /proc shows them: every process's command line, whether one is
//! gone, when it started, and a signal by PID. Used to find and stop what nicstorm started
//! (the ring's tcpdump, a VM's passt) and nothing else: callers match a process to their own
//! record before they signal it.

/// Every process's (PID, argv), from /proc/PID/cmdline; kernel threads (empty) left out.
pub(crate) fn processes() -> Vec<(u32, Vec<String>)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, cmdline(pid)?)))
        .filter(|(_, argv)| !argv.is_empty())
        .collect()
}

/// A process's argv, from /proc/PID/cmdline; None when it is gone.
pub(crate) fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The fields of /proc/PID/stat after the command name (which may contain spaces): the first
/// is field 3, the state.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// Gone, or a zombie its parent has not reaped yet.
pub(crate) fn gone(pid: u32) -> bool {
    stat_fields(pid).is_none_or(|f| f.first().is_some_and(|state| state == "Z"))
}

/// How a zombie (a child that exited, not reaped yet) ended, from field 52 of
/// /proc/PID/stat (its wait status): "exit status N" or "killed by signal N". None while it
/// runs, or once it is gone.
pub(crate) fn zombie_status(pid: u32) -> Option<String> {
    let f = stat_fields(pid)?;
    if f.first()? != "Z" {
        return None;
    }
    let code: i32 = f.get(52 - 3)?.parse().ok()?;
    Some(describe_wait_status(code))
}

/// A wait status (waitpid's, or /proc/PID/stat field 52) in words: "exit status N" or
/// "killed by signal N".
pub(crate) fn describe_wait_status(code: i32) -> String {
    match code & 0x7f {
        0 => format!("exit status {}", (code >> 8) & 0xff),
        sig => format!("killed by signal {sig}"),
    }
}

/// When the process started, in clock ticks after boot (field 22 of /proc/PID/stat): with the
/// PID, what tells a process from a later one that reuses its PID.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(22 - 3)?.parse().ok()
}

/// Sends `sig` to `pid` (the caller has matched the PID to what it started).
pub(crate) fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Stops a process that is not our child (so only /proc can tell it is gone): SIGTERM, up to
/// `limit` for it to go, then SIGKILL and up to `limit` again. Whether it is gone.
pub(crate) fn terminate(pid: u32, limit: std::time::Duration) -> bool {
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        signal(pid, sig);
        let asked = std::time::Instant::now();
        while asked.elapsed() < limit {
            if gone(pid) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    gone(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombies_wait_status_is_told() {
        assert_eq!(describe_wait_status(0), "exit status 0");
        assert_eq!(describe_wait_status(1 << 8), "exit status 1");
        assert_eq!(describe_wait_status(9), "killed by signal 9");
        assert_eq!(describe_wait_status(31 | 0x80), "killed by signal 31");
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let t = std::time::Instant::now();
        while zombie_status(pid).is_none() && t.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(zombie_status(pid).as_deref(), Some("exit status 3"));
        child.wait().unwrap();
        assert_eq!(zombie_status(pid), None, "reaped: gone");
    }

    /// This test's own process: found with its argv, not gone, started after boot; a PID
    /// that does not exist is gone and has no start.
    #[test]
    fn this_process_is_found() {
        let me = std::process::id();
        let found = processes();
        let (_, argv) = found
            .iter()
            .find(|(pid, _)| *pid == me)
            .expect("self in /proc");
        assert_eq!(Some(argv.clone()), cmdline(me));
        assert!(!gone(me));
        assert!(start_ticks(me).is_some_and(|t| t > 0));
        let none = u32::MAX - 1;
        assert!(gone(none) && start_ticks(none).is_none() && cmdline(none).is_none());
    }
}
