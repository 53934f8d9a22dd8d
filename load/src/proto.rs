//! The JSON-lines output of protocol version 1: one object per line (see PROTOCOL.md).
//!
//! Hand-rolled because the format is small and fixed; every line is built by
//! a function here so the exact text is unit-tested in one place.

use crate::errno;
use crate::shm::Totals;

pub const VERSION: u32 = 1;

/// Appends `"key":value` pairs to one JSON object.
pub struct Obj(String);

impl Obj {
    /// Starts a line with the fields every line has: `v`, `kind`, `role`, `t`.
    pub fn line(kind: &str, role: &str, t: f64) -> Obj {
        let mut o = Obj(String::with_capacity(256));
        o.0.push('{');
        o.num("v", VERSION as u64)
            .str("kind", kind)
            .str("role", role)
            .float("t", t, 3)
    }

    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(k);
        self.0.push_str("\":");
    }

    pub fn num(mut self, k: &str, v: u64) -> Obj {
        self.key(k);
        self.0.push_str(&v.to_string());
        self
    }

    /// Fixed decimals keep lines stable for tests and readable for humans;
    /// non-finite values have no JSON spelling and become null.
    pub fn float(mut self, k: &str, v: f64, decimals: usize) -> Obj {
        self.key(k);
        if v.is_finite() {
            self.0.push_str(&format!("{v:.decimals$}"));
        } else {
            self.0.push_str("null");
        }
        self
    }

    pub fn str(mut self, k: &str, v: &str) -> Obj {
        self.key(k);
        self.0.push('"');
        for c in v.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x20 => self.0.push_str(&format!("\\u{:04x}", c as u32)),
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    /// `errors` as an object keyed by errno name, in errno order.
    pub fn errors(mut self, counts: &[u64]) -> Obj {
        self.key("errors");
        self.0.push('{');
        let mut first = true;
        for (e, n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            if !first {
                self.0.push(',');
            }
            first = false;
            self.0.push_str(&format!("\"{}\":{n}", errno::name(e)));
        }
        self.0.push('}');
        self
    }

    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// Client progress: `established` is held now, the rest cumulative except `in_flight`.
pub fn client_progress(t: f64, tot: &Totals, rate: f64, target: u64) -> String {
    Obj::line("progress", "client", t)
        .num("established", tot.established())
        .num("in_flight", tot.in_flight)
        .num("attempted", tot.attempted)
        .num("failed", tot.failed())
        .errors(&tot.errors)
        .float("rate", rate, 1)
        .num("target", target)
        .num("closed", tot.closed)
        .num("resets", tot.resets)
        .num("bulk_tx_bytes", tot.tx_bytes)
        .num("bulk_rx_bytes", tot.rx_bytes)
        .finish()
}

/// Server progress: `established` is held now, `accepted` and `closed` cumulative.
pub fn server_progress(t: f64, tot: &Totals, rate: f64) -> String {
    Obj::line("progress", "server", t)
        .num("established", tot.established())
        .num("accepted", tot.connected)
        .num("closed", tot.closed)
        .num("failed", tot.failed())
        .errors(&tot.errors)
        .float("rate", rate, 1)
        .num("resets", tot.resets)
        .num("bulk_tx_bytes", tot.tx_bytes)
        .num("bulk_rx_bytes", tot.rx_bytes)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals() -> Totals {
        let mut t = Totals {
            attempted: 1300,
            connected: 1236,
            closed: 36,
            in_flight: 64,
            ..Totals::default()
        };
        t.errors[libc::ECONNREFUSED as usize] = 36;
        t.errors[libc::EMFILE as usize] = 2;
        t
    }

    #[test]
    fn client_progress_line() {
        assert_eq!(
            client_progress(1732233600.3734, &totals(), 4800.04, 3000),
            r#"{"v":1,"kind":"progress","role":"client","t":1732233600.373,"established":1200,"in_flight":64,"attempted":1300,"failed":38,"errors":{"EMFILE":2,"ECONNREFUSED":36},"rate":4800.0,"target":3000,"closed":36,"resets":0,"bulk_tx_bytes":0,"bulk_rx_bytes":0}"#
        );
    }

    #[test]
    fn server_progress_line() {
        let t = Totals {
            connected: 3600,
            closed: 100,
            resets: 40,
            rx_bytes: 65536,
            tx_bytes: 131072,
            ..Totals::default()
        };
        assert_eq!(
            server_progress(12.0, &t, 0.0),
            r#"{"v":1,"kind":"progress","role":"server","t":12.000,"established":3500,"accepted":3600,"closed":100,"failed":0,"errors":{},"rate":0.0,"resets":40,"bulk_tx_bytes":131072,"bulk_rx_bytes":65536}"#
        );
    }

    #[test]
    fn strings_are_escaped_and_nan_is_null() {
        let l = Obj::line("start", "se\"r\\v\ner", 1.0)
            .float("x", f64::NAN, 1)
            .finish();
        assert_eq!(
            l,
            r#"{"v":1,"kind":"start","role":"se\"r\\v\u000aer","t":1.000,"x":null}"#
        );
    }
}
