//! Guest heartbeat: parses NSHB lines (docs/ARCHITECTURE.md), tails the serial log file QEMU
//! writes them to, and computes gap and peak statistics over a window of host time.
//!
//! Arrival times are host `Instant`s taken when a line is read, so a gap is measured on the
//! host clock and does not depend on the (possibly frozen) guest clock. The resolution of an
//! arrival time is the caller's poll interval; poll well below the heartbeat period (250 ms).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PREFIX: &str = "NSHB ";

/// The heartbeat format version this parser understands.
pub const HEARTBEAT_VERSION: &str = "1";

/// A partial line longer than this is handed out as a line anyway: the serial port carries
/// nothing that long, so it is garbage (e.g. NULs after a guest reset) and must not grow the
/// buffer without bound.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub seq: u64,
    /// Guest wall clock, UNIX seconds.
    pub t: f64,
    /// Guest uptime, seconds.
    pub up: f64,
    pub load1: f64,
    /// Over the interval since the previous line.
    pub softirq_pct: f64,
    /// Over the interval since the previous line.
    pub busy_pct: f64,
    pub tcp_inuse: u64,
    pub tcp_orphan: u64,
    pub tcp_tw: u64,
    pub tcp_alloc: u64,
    pub tcp_mem_pages: u64,
    pub memavail_kb: u64,
    /// storm-load's established count from its status file; `None` when the guest wrote `-`
    /// (no status file: storm-load not running there).
    pub est: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeartbeatError {
    #[error("heartbeat line lacks key {key:?}: {line:?}")]
    Missing { key: &'static str, line: String },
    #[error("heartbeat key {key:?} has bad value {value:?}: {line:?}")]
    BadValue {
        key: &'static str,
        value: String,
        line: String,
    },
    #[error("heartbeat token {token:?} is not key=value: {line:?}")]
    Token { token: String, line: String },
    #[error("heartbeat version v={found} is not v={HEARTBEAT_VERSION}: {line:?}")]
    Version { found: String, line: String },
}

/// Parses one serial line. `None` for lines that are not heartbeats (anything not starting
/// with "NSHB "); unknown keys are ignored; a missing or malformed known key is an error.
pub fn parse(line: &str) -> Option<Result<Heartbeat, HeartbeatError>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = line.strip_prefix(PREFIX)?;
    Some(parse_fields(line, rest))
}

fn parse_fields(line: &str, rest: &str) -> Result<Heartbeat, HeartbeatError> {
    let mut fields = std::collections::HashMap::new();
    for token in rest.split_ascii_whitespace() {
        let Some((k, v)) = token.split_once('=') else {
            return Err(HeartbeatError::Token {
                token: token.to_owned(),
                line: line.to_owned(),
            });
        };
        fields.insert(k, v);
    }
    let get = |key: &'static str| {
        fields.get(key).copied().ok_or(HeartbeatError::Missing {
            key,
            line: line.to_owned(),
        })
    };
    fn num<T: std::str::FromStr>(
        key: &'static str,
        value: &str,
        line: &str,
    ) -> Result<T, HeartbeatError> {
        value.parse().map_err(|_| HeartbeatError::BadValue {
            key,
            value: value.to_owned(),
            line: line.to_owned(),
        })
    }
    let u = |key| get(key).and_then(|v| num::<u64>(key, v, line));
    let f = |key| {
        get(key)
            .and_then(|v| num::<f64>(key, v, line))
            .and_then(|x| {
                // "nan"/"inf" parse as f64 but would poison every peak computed from them.
                if x.is_finite() {
                    Ok(x)
                } else {
                    Err(HeartbeatError::BadValue {
                        key,
                        value: x.to_string(),
                        line: line.to_owned(),
                    })
                }
            })
    };

    let version = get("v")?;
    if version != HEARTBEAT_VERSION {
        return Err(HeartbeatError::Version {
            found: version.to_owned(),
            line: line.to_owned(),
        });
    }
    let est = || match get("est")? {
        "-" => Ok(None),
        v => num::<u64>("est", v, line).map(Some),
    };
    // Fields in contract order, so the first missing key of a cut-off line is reported.
    Ok(Heartbeat {
        seq: u("seq")?,
        t: f("t")?,
        up: f("up")?,
        load1: f("load1")?,
        softirq_pct: f("softirq_pct")?,
        busy_pct: f("busy_pct")?,
        tcp_inuse: u("tcp_inuse")?,
        tcp_orphan: u("tcp_orphan")?,
        tcp_tw: u("tcp_tw")?,
        tcp_alloc: u("tcp_alloc")?,
        tcp_mem_pages: u("tcp_mem_pages")?,
        memavail_kb: u("memavail_kb")?,
        est: est()?,
    })
}

/// Follows a file that QEMU appends serial output to (`<serial type='file'>`).
///
/// The file may not exist yet when the tail is created (QEMU creates it when the domain
/// starts). Bytes already handed out are never read again. If the file shrinks (QEMU
/// truncates it when the domain is restarted), reading starts over from its beginning,
/// because everything in it then is new.
#[derive(Debug)]
pub struct SerialTail {
    path: PathBuf,
    file: Option<File>,
    /// Offset of the next byte to read.
    pos: u64,
    partial: Vec<u8>,
}

impl SerialTail {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: None,
            pos: 0,
            partial: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the complete lines that appeared since the previous poll, each stamped with the
    /// host time of this read, without their line ending. A trailing partial line is kept for
    /// the next poll. A file that does not exist yet yields no lines.
    pub fn poll(&mut self) -> io::Result<Vec<(Instant, String)>> {
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

/// Heartbeats of one guest in arrival order, with window statistics. Windows are inclusive
/// `[from, until]` in host time.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatSeries {
    beats: Vec<(Instant, Heartbeat)>,
}

impl HeartbeatSeries {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a heartbeat. Arrivals must be pushed in the order they were read (which
    /// `SerialTail::poll` guarantees); an arrival earlier than the last one is clamped to it so
    /// the series stays sorted.
    pub fn push(&mut self, at: Instant, hb: Heartbeat) {
        let at = match self.beats.last() {
            Some((last, _)) if *last > at => *last,
            _ => at,
        };
        self.beats.push((at, hb));
    }

    pub fn len(&self) -> usize {
        self.beats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.beats.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Instant, Heartbeat)> {
        self.beats.iter()
    }

    fn window(&self, from: Instant, until: Instant) -> impl Iterator<Item = &(Instant, Heartbeat)> {
        self.beats
            .iter()
            .filter(move |(at, _)| *at >= from && *at <= until)
    }

    /// Arrival times as signed seconds relative to `origin` (e.g. the disconnect signal);
    /// arrivals before it are negative.
    pub fn arrivals_since(&self, origin: Instant) -> Vec<f64> {
        self.beats
            .iter()
            .map(|(at, _)| signed_seconds(origin, *at))
            .collect()
    }

    /// The largest silence inside `[from, until]`: between consecutive arrivals, from `from` to
    /// the first arrival, and from the last arrival to `until` (a silence still going on counts).
    /// If no heartbeat arrived in the window the silence is the whole window.
    ///
    /// `None` when no heartbeat has ever arrived up to `until`: then the heartbeat channel was
    /// never shown to work, and reporting the window as a gap would claim a hang we have no
    /// evidence for. Also `None` for an empty or inverted window.
    pub fn max_gap(&self, from: Instant, until: Instant) -> Option<Duration> {
        if until <= from || !self.beats.iter().any(|(at, _)| *at <= until) {
            return None;
        }
        let mut prev = from;
        let mut max = Duration::ZERO;
        for (at, _) in self.window(from, until) {
            max = max.max(*at - prev);
            prev = *at;
        }
        Some(max.max(until - prev))
    }

    pub fn peak_softirq(&self, from: Instant, until: Instant) -> Option<f64> {
        self.window(from, until)
            .map(|(_, hb)| hb.softirq_pct)
            .max_by(f64::total_cmp)
    }

    pub fn peak_busy(&self, from: Instant, until: Instant) -> Option<f64> {
        self.window(from, until)
            .map(|(_, hb)| hb.busy_pct)
            .max_by(f64::total_cmp)
    }

    pub fn peak_load1(&self, from: Instant, until: Instant) -> Option<f64> {
        self.window(from, until)
            .map(|(_, hb)| hb.load1)
            .max_by(f64::total_cmp)
    }

    pub fn min_memavail_kb(&self, from: Instant, until: Instant) -> Option<u64> {
        self.window(from, until).map(|(_, hb)| hb.memavail_kb).min()
    }

    /// storm-load's established count according to the most recent heartbeat. `None` when
    /// there is no heartbeat or the most recent one says `-` -- an older count would be stale
    /// once the status file is gone.
    pub fn last_est(&self) -> Option<u64> {
        self.beats.last().and_then(|(_, hb)| hb.est)
    }

    /// Established counts over time, skipping heartbeats without one.
    pub fn est_series(&self) -> Vec<(Instant, u64)> {
        self.beats
            .iter()
            .filter_map(|(at, hb)| hb.est.map(|e| (*at, e)))
            .collect()
    }

    /// The median interval between consecutive arrivals inside `[from, until]`: the cadence
    /// baseline a gap is compared with. `None` with fewer than two arrivals in the window.
    pub fn median_period(&self, from: Instant, until: Instant) -> Option<Duration> {
        let arrivals: Vec<Instant> = self.window(from, until).map(|(at, _)| *at).collect();
        let mut periods: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
        if periods.is_empty() {
            return None;
        }
        periods.sort();
        let mid = periods.len() / 2;
        Some(if periods.len() % 2 == 1 {
            periods[mid]
        } else {
            (periods[mid - 1] + periods[mid]) / 2
        })
    }
}

/// `at - origin` in seconds, negative when `at` is earlier.
pub fn signed_seconds(origin: Instant, at: Instant) -> f64 {
    if at >= origin {
        (at - origin).as_secs_f64()
    } else {
        -(origin - at).as_secs_f64()
    }
}

/// Follows a heartbeat log on its own OS thread, stamping lines within ~50 ms of QEMU writing
/// them. A dedicated thread keeps a busy or stalled async runtime from showing up as a gap.
pub struct Watcher {
    series: std::sync::Arc<std::sync::Mutex<HeartbeatSeries>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    pub fn start(path: impl Into<PathBuf>) -> Watcher {
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
    pub fn snapshot(&self) -> HeartbeatSeries {
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

    const LINE: &str = "NSHB v=1 seq=42 t=1732233600.123456 up=61.50 load1=0.25 softirq_pct=3.5 busy_pct=12.0 tcp_inuse=3004 tcp_orphan=2 tcp_tw=7 tcp_alloc=3010 tcp_mem_pages=812 memavail_kb=1843200 est=3000";

    fn hb(seq: u64, softirq: f64, load1: f64, memavail_kb: u64, est: Option<u64>) -> Heartbeat {
        Heartbeat {
            seq,
            t: 0.0,
            up: 0.0,
            load1,
            softirq_pct: softirq,
            busy_pct: softirq * 2.0,
            tcp_inuse: 0,
            tcp_orphan: 0,
            tcp_tw: 0,
            tcp_alloc: 0,
            tcp_mem_pages: 0,
            memavail_kb,
            est,
        }
    }

    #[test]
    fn parses_contract_line() {
        assert_eq!(
            parse(LINE),
            Some(Ok(Heartbeat {
                seq: 42,
                t: 1732233600.123456,
                up: 61.5,
                load1: 0.25,
                softirq_pct: 3.5,
                busy_pct: 12.0,
                tcp_inuse: 3004,
                tcp_orphan: 2,
                tcp_tw: 7,
                tcp_alloc: 3010,
                tcp_mem_pages: 812,
                memavail_kb: 1843200,
                est: Some(3000),
            }))
        );
    }

    #[test]
    fn parse_table() {
        let dash = LINE.replace("est=3000", "est=-");
        let extra = format!("{LINE} future_key=7 ");
        let crlf = format!("{LINE}\r");
        let reordered = {
            let mut toks: Vec<&str> = LINE.split(' ').skip(1).collect();
            toks.reverse();
            format!("NSHB {}", toks.join(" "))
        };
        /// None = not a heartbeat, Some(Ok(est)), or Some(Err(text the message contains)).
        type Want = Option<Result<Option<u64>, &'static str>>;
        let cases: Vec<(String, Want)> = vec![
            (LINE.into(), Some(Ok(Some(3000)))),
            (dash, Some(Ok(None))),
            (extra, Some(Ok(Some(3000)))),
            (crlf, Some(Ok(Some(3000)))),
            (reordered, Some(Ok(Some(3000)))),
            ("[   12.3] Kernel panic".into(), None),
            ("NSHBv=1".into(), None),
            (" NSHB v=1".into(), None),
            ("".into(), None),
            (
                LINE.replace(" memavail_kb=1843200", ""),
                Some(Err("lacks key \"memavail_kb\"")),
            ),
            (
                LINE.replace(" est=3000", ""),
                Some(Err("lacks key \"est\"")),
            ),
            (
                LINE.replace("v=1", "v=2"),
                Some(Err("version v=2 is not v=1")),
            ),
            (LINE.replace("v=1 ", ""), Some(Err("lacks key \"v\""))),
            (
                LINE.replace("seq=42", "seq=x"),
                Some(Err("key \"seq\" has bad value \"x\"")),
            ),
            (
                LINE.replace("est=3000", "est=-1"),
                Some(Err("key \"est\" has bad value \"-1\"")),
            ),
            (
                LINE.replace("load1=0.25", "load1=NaN"),
                Some(Err("key \"load1\" has bad value")),
            ),
            (
                LINE.replace("seq=42", "seq=42 garbage"),
                Some(Err("token \"garbage\"")),
            ),
            // A line cut short by a guest hang mid-write.
            (LINE[..55].into(), Some(Err("lacks key \"softirq_pct\""))),
            (LINE[..60].into(), Some(Err("token \"soft\""))),
        ];
        for (line, want) in cases {
            let got = parse(&line);
            match (&got, want) {
                (None, None) => {}
                (Some(Ok(h)), Some(Ok(est))) => assert_eq!(h.est, est, "{line:?}"),
                (Some(Err(e)), Some(Err(text))) => {
                    assert!(e.to_string().contains(text), "{line:?}: {e} lacks {text:?}")
                }
                (got, want) => panic!("{line:?}: got {got:?}, want {want:?}"),
            }
        }
    }

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

    fn series(t0: Instant, arrivals_ms: &[u64]) -> HeartbeatSeries {
        let mut s = HeartbeatSeries::new();
        for (i, ms) in arrivals_ms.iter().enumerate() {
            s.push(
                t0 + Duration::from_millis(*ms),
                hb(
                    i as u64,
                    i as f64,
                    10.0 - i as f64,
                    1000 - i as u64,
                    Some(i as u64 * 10),
                ),
            );
        }
        s
    }

    #[test]
    fn max_gap_table() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let d = Duration::from_millis;
        // (arrivals, from, until, expected)
        let cases: &[(&[u64], u64, u64, Option<Duration>)] = &[
            // Steady cadence: the largest of the between-arrival and edge gaps.
            (&[1000, 1250, 1500, 1750, 2000], 1000, 2000, Some(d(250))),
            // Gap from `from` to the first arrival counts.
            (&[1000, 1900, 2000], 1500, 2000, Some(d(400))),
            // Open gap at the end counts.
            (&[1000, 1250], 1000, 3000, Some(d(1750))),
            // A gap in the middle.
            (&[1000, 1250, 4250, 4500], 1000, 4500, Some(d(3000))),
            // Heartbeats before the window only: the whole window is silent.
            (&[100, 200], 1000, 3000, Some(d(2000))),
            // Arrivals after the window do not shorten the open gap inside it.
            (&[1000, 5000], 1000, 3000, Some(d(2000))),
            // Never any heartbeat up to `until`: no evidence either way.
            (&[], 0, 3000, None),
            (&[5000], 0, 3000, None),
            // Empty / inverted window.
            (&[1000], 2000, 2000, None),
            (&[1000], 3000, 2000, None),
        ];
        for (arrivals, from, until, want) in cases {
            let s = series(t0, arrivals);
            assert_eq!(
                s.max_gap(ms(*from), ms(*until)),
                *want,
                "{arrivals:?} in [{from},{until}]"
            );
        }
    }

    #[test]
    fn window_statistics() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // softirq = index, load1 = 10 - index, memavail = 1000 - index, est = 10 * index
        let s = series(t0, &[0, 250, 500, 750, 1000, 1300, 5000]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.peak_softirq(ms(250), ms(1000)), Some(4.0));
        assert_eq!(s.peak_busy(ms(250), ms(1000)), Some(8.0));
        assert_eq!(s.peak_load1(ms(250), ms(1000)), Some(9.0));
        assert_eq!(s.min_memavail_kb(ms(0), ms(1300)), Some(995));
        assert_eq!(s.peak_softirq(ms(2000), ms(3000)), None);
        assert_eq!(s.min_memavail_kb(ms(2000), ms(3000)), None);
        assert_eq!(s.last_est(), Some(60));

        // Periods in [0, 1300]: 250,250,250,250,300 -> median 250.
        assert_eq!(
            s.median_period(ms(0), ms(1300)),
            Some(Duration::from_millis(250))
        );
        // Even count: 250 and 300 -> 275.
        assert_eq!(
            s.median_period(ms(750), ms(1300)),
            Some(Duration::from_millis(275))
        );
        assert_eq!(s.median_period(ms(2000), ms(5000)), None);

        let arr = s.arrivals_since(ms(500));
        assert_eq!(arr.len(), 7);
        assert!((arr[0] + 0.5).abs() < 1e-9 && arr[2].abs() < 1e-9 && (arr[6] - 4.5).abs() < 1e-9);
    }

    #[test]
    fn est_series_and_last_est() {
        let t0 = Instant::now();
        let mut s = HeartbeatSeries::new();
        assert_eq!(s.last_est(), None);
        assert_eq!(s.max_gap(t0, t0 + Duration::from_secs(1)), None);
        s.push(t0, hb(0, 0.0, 0.0, 0, Some(300)));
        s.push(t0 + Duration::from_millis(250), hb(1, 0.0, 0.0, 0, None));
        s.push(t0 + Duration::from_millis(500), hb(2, 0.0, 0.0, 0, Some(0)));
        assert_eq!(s.last_est(), Some(0));
        assert_eq!(
            s.est_series(),
            vec![(t0, 300), (t0 + Duration::from_millis(500), 0)]
        );
        // The newest heartbeat says "-": the status file is gone, an older count is stale.
        s.push(t0 + Duration::from_millis(750), hb(3, 0.0, 0.0, 0, None));
        assert_eq!(s.last_est(), None);
        // An out-of-order push is clamped so the series stays sorted.
        s.push(t0, hb(4, 0.0, 0.0, 0, Some(1)));
        assert_eq!(s.iter().last().unwrap().0, t0 + Duration::from_millis(750));
    }
}
