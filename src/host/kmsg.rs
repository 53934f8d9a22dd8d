//! The host's kernel log over one cell: `/dev/kmsg`, opened at the cell's start and positioned
//! after the last record, then read to its end once the cell is over, so exactly the records
//! the host's kernel printed meanwhile are seen (whatever `dmesg`'s buffer held before, and
//! without parsing `dmesg -T`'s wall-clock guesses). Each record becomes a line in the form
//! the console shows (`[  123.456789] message`), so host/signatures.rs reads both alike.
//!
//! The host's log is the whole host's: a line may come from something else that ran
//! meanwhile, which the signature's meaning cannot tell.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};

const KMSG: &str = "/dev/kmsg";

/// The host's kernel log from the moment it was opened.
#[derive(Debug)]
pub(crate) struct KernelLog {
    file: File,
}

/// What was read: the records as console lines, and whether the kernel's buffer overran the
/// reader (records printed meanwhile were lost before they were read).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Since {
    pub(crate) text: String,
    pub(crate) overrun: bool,
}

impl KernelLog {
    /// Opens the log after its last record.
    pub(crate) fn open_at_end() -> Result<KernelLog> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(KMSG)
            .with_context(|| format!("opening {KMSG}"))?;
        file.seek(SeekFrom::End(0))
            .with_context(|| format!("seeking to the end of {KMSG}"))?;
        Ok(KernelLog { file })
    }

    /// Every record printed since it was opened (or last read).
    pub(crate) fn read_new(&mut self) -> Result<Since> {
        let mut since = Since::default();
        // One record per read; a record is at most about 8 KiB (PRINTKRB_RECORD_MAX plus
        // its dictionary).
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(line) = record_line(&String::from_utf8_lossy(&buf[..n])) {
                        since.text.push_str(&line);
                        since.text.push('\n');
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten before they were read; the next read
                // goes on with the oldest one left.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => since.overrun = true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("reading {KMSG}")),
            }
        }
        Ok(since)
    }
}

/// A /dev/kmsg record (`PRI,SEQ,MICROS,FLAGS[,...];MESSAGE`, then ` KEY=VALUE` lines) as a
/// console line, `[SECONDS.MICROS] MESSAGE`; None when it is not a record.
pub(crate) fn record_line(record: &str) -> Option<String> {
    let first = record.lines().next()?;
    let (head, message) = first.split_once(';')?;
    let micros: u64 = head.split(',').nth(2)?.parse().ok()?;
    Some(format!(
        "[{:5}.{:06}] {message}",
        micros / 1_000_000,
        micros % 1_000_000
    ))
}

/// The host's wall clock minus its kernel log's clock (seconds), so a record's time can be
/// placed on the host's clock: /dev/kmsg stamps records with the kernel's local clock, which
/// runs with CLOCK_MONOTONIC since boot (apart from drift of microseconds).
pub(crate) fn wall_minus_kernel() -> f64 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    };
    read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn a_record_becomes_a_console_line() {
        assert_eq!(
            record_line(
                "4,31877,1203401000123,-;nf_conntrack: nf_conntrack: table full, dropping packet\n"
            )
            .as_deref(),
            Some("[1203401.000123] nf_conntrack: nf_conntrack: table full, dropping packet")
        );
        // Continuation lines (the record's dictionary) are not part of the message.
        assert_eq!(
            record_line(
                "6,12,8812004113,c;TCP: out of memory -- consider tuning tcp_mem\n SUBSYSTEM=net\n"
            )
            .as_deref(),
            Some("[ 8812.004113] TCP: out of memory -- consider tuning tcp_mem")
        );
        assert_eq!(record_line("garbage"), None);
        assert_eq!(record_line("6,12,notanumber,-;x"), None);
    }

    /// The real /dev/kmsg: what is printed after opening is read, what was there before is
    /// not. The test prints a neutral line of its own (it matches no signature).
    #[test]
    fn the_host_log_is_read_from_where_it_was_opened() {
        let marker = format!("nicstorm kmsg reader test {}", std::process::id());
        let mut log = KernelLog::open_at_end().unwrap();
        let before = log.read_new().unwrap();
        assert!(!before.text.contains(&marker), "{before:?}");
        std::fs::OpenOptions::new()
            .write(true)
            .open(KMSG)
            .unwrap()
            .write_all(format!("{marker}\n").as_bytes())
            .unwrap();
        let after = log.read_new().unwrap();
        let line = after
            .text
            .lines()
            .find(|l| l.contains(&marker))
            .unwrap_or_else(|| panic!("{marker} not read back: {after:?}"));
        assert!(line.starts_with('['), "{line}");
        assert!(!log.read_new().unwrap().text.contains(&marker), "read once");
        let off = wall_minus_kernel();
        assert!(off > 1.0e9, "wall clock minus uptime: {off}");
    }
}
