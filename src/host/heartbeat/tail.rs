//! Following the serial log QEMU writes heartbeats to: [`SerialTail`] reads what was appended
//! since the last poll, and [`Watcher`] polls it on its own thread, stamping each line with
//! the host time it arrived.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{parse, HeartbeatSeries};

/// A partial line longer than this is handed out as a line anyway: the serial port carries
/// nothing that long, so it is garbage (e.g. NULs after a guest reset) and must not grow the
/// buffer without bound.
const MAX_LINE: usize = 64 * 1024;

/// Follows a file that QEMU appends serial output to (`<serial type='file'>`).
///
/// The file may not exist yet when the tail is created (QEMU creates it when the domain
/// starts). Bytes already handed out are never read again. If the file shrinks (QEMU
/// truncates it when the domain is restarted), reading starts over from its beginning,
/// because everything in it then is new.
#[derive(Debug)]
pub(crate) struct SerialTail {
    path: PathBuf,
    file: Option<File>,
    /// Offset of the next byte to read.
    pos: u64,
    partial: Vec<u8>,
}

impl SerialTail {
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: None,
            pos: 0,
            partial: Vec::new(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the complete lines that appeared since the previous poll, each stamped with the
    /// host time of this read, without their line ending. A trailing partial line is kept for
    /// the next poll. A file that does not exist yet yields no lines.
    pub(crate) fn poll(&mut self) -> io::Result<Vec<(Instant, String)>> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        let file = self.file.as_mut().expect("opened above");
        let len = file.metadata()?.len();
        if len < self.pos {
            self.pos = 0;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(self.pos))?;
        let mut fresh = Vec::new();
        let n = file.read_to_end(&mut fresh)?;
        let now = Instant::now();
        self.pos += n as u64;

        self.partial.extend_from_slice(&fresh);
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            lines.push((now, line_text(&self.partial[start..end])));
            start = end + 1;
        }
        self.partial.drain(..start);
        if self.partial.len() > MAX_LINE {
            lines.push((now, line_text(&self.partial)));
            self.partial.clear();
        }
        Ok(lines)
    }
}

fn line_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// Follows a heartbeat log on its own OS thread, stamping lines within ~50 ms of QEMU writing
/// them. A dedicated thread keeps a busy or stalled async runtime from showing up as a gap.
pub(crate) struct Watcher {
    series: std::sync::Arc<std::sync::Mutex<HeartbeatSeries>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    pub(crate) fn start(path: impl Into<PathBuf>) -> Watcher {
        use std::sync::atomic::Ordering;
        let series = std::sync::Arc::new(std::sync::Mutex::new(HeartbeatSeries::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tail = SerialTail::new(path);
        let (s, st) = (series.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    match tail.poll() {
                        Ok(lines) => {
                            for (at, line) in lines {
                                match parse(&line) {
                                    Some(Ok(hb)) => s.lock().unwrap().push(at, hb),
                                    Some(Err(e)) => {
                                        tracing::debug!("bad heartbeat line {line:?}: {e}")
                                    }
                                    None => {}
                                }
                            }
                        }
                        Err(e) => tracing::debug!("heartbeat tail {}: {e}", tail.path().display()),
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .expect("spawning the heartbeat thread");
        Watcher {
            series,
            stop,
            thread: Some(thread),
        }
    }

    /// A consistent copy of what has arrived so far.
    pub(crate) fn snapshot(&self) -> HeartbeatSeries {
        self.series.lock().unwrap().clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A fresh path in the system temp dir, removed when dropped.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("nicstorm-hb-{}-{tag}-{n}", std::process::id()));
            let _ = std::fs::remove_file(&p);
            Self(p)
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn texts(lines: &[(Instant, String)]) -> Vec<&str> {
        lines.iter().map(|(_, s)| s.as_str()).collect()
    }

    #[test]
    fn serial_tail_follows_a_growing_file() {
        let tmp = TempPath::new("tail");
        let mut tail = SerialTail::new(&tmp.0);
        assert_eq!(tail.path(), tmp.0.as_path());

        // Created late: polling before the file exists is quiet, not an error.
        assert!(tail.poll().unwrap().is_empty());
        assert!(tail.poll().unwrap().is_empty());

        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&tmp.0)
            .unwrap();
        assert!(tail.poll().unwrap().is_empty());

        f.write_all(b"NSHB v=1 seq=1").unwrap();
        f.flush().unwrap();
        let before = Instant::now();
        assert!(tail.poll().unwrap().is_empty(), "partial line must wait");

        f.write_all(b" t=1\r\nsecond\n\nthi").unwrap();
        let lines = tail.poll().unwrap();
        let after = Instant::now();
        assert_eq!(texts(&lines), ["NSHB v=1 seq=1 t=1", "second", ""]);
        for (at, _) in &lines {
            assert!(*at >= before && *at <= after, "stamped at read time");
        }

        // Nothing new: nothing returned, old bytes are not re-read.
        assert!(tail.poll().unwrap().is_empty());

        f.write_all(b"rd\nfourth\nfif").unwrap();
        assert_eq!(texts(&tail.poll().unwrap()), ["third", "fourth"]);
        f.write_all("\u{e9}-utf8\n".as_bytes()).unwrap();
        f.write_all(&[b'a', 0xff, b'\n']).unwrap();
        assert_eq!(
            texts(&tail.poll().unwrap()),
            ["fif\u{e9}-utf8", "a\u{fffd}"]
        );
    }

    #[test]
    fn serial_tail_restarts_on_truncation_and_caps_garbage() {
        let tmp = TempPath::new("trunc");
        std::fs::write(&tmp.0, b"one\ntwo\npart").unwrap();
        let mut tail = SerialTail::new(&tmp.0);
        assert_eq!(texts(&tail.poll().unwrap()), ["one", "two"]);

        // QEMU restarted the domain and truncated the log: the new content is all new.
        std::fs::write(&tmp.0, b"new\n").unwrap();
        assert_eq!(texts(&tail.poll().unwrap()), ["new"]);

        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&tmp.0)
            .unwrap();
        f.write_all(&vec![0u8; MAX_LINE + 1]).unwrap();
        let lines = tail.poll().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].1.len(), MAX_LINE + 1);
        f.write_all(b"after\n").unwrap();
        assert_eq!(texts(&tail.poll().unwrap()), ["after"]);
    }
}
