//! The writer: each message as one JSON line, hand-rolled because the format is small and
//! fixed. Keys come in a fixed order per kind and role (convenient for grep; readers must not
//! depend on it), floats with fixed decimals, and a value that could not be measured is
//! `null`, never `0`.

use crate::{ErrnoCounts, Progress, Reached, Role, Signal, Start, Summary, VERSION};

/// Appends `"key":value` pairs to one JSON object.
struct Obj(String);

impl Obj {
    /// Starts a line with the fields every line has: `v`, `kind`, `role`, `t`.
    fn line(kind: &str, role: Role, t: f64) -> Obj {
        let mut o = Obj(String::with_capacity(256));
        o.0.push('{');
        o.num("v", u64::from(VERSION))
            .str("kind", kind)
            .str("role", role.as_str())
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

    fn num(mut self, k: &str, v: u64) -> Obj {
        self.key(k);
        self.0.push_str(&v.to_string());
        self
    }

    /// Fixed decimals keep lines stable for tests and readable for humans; non-finite values
    /// have no JSON spelling and become null.
    fn float(mut self, k: &str, v: f64, decimals: usize) -> Obj {
        self.key(k);
        if v.is_finite() {
            self.0.push_str(&format!("{v:.decimals$}"));
        } else {
            self.0.push_str("null");
        }
        self
    }

    fn str(mut self, k: &str, v: &str) -> Obj {
        self.key(k);
        self.quoted(v);
        self
    }

    fn quoted(&mut self, v: &str) {
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
    }

    /// A field one role has: written when set.
    fn opt_num(self, k: &str, v: Option<u64>) -> Obj {
        match v {
            Some(v) => self.num(k, v),
            None => self,
        }
    }

    fn opt_float(self, k: &str, v: Option<f64>, decimals: usize) -> Obj {
        match v {
            Some(v) => self.float(k, v, decimals),
            None => self,
        }
    }

    fn opt_str(self, k: &str, v: Option<&str>) -> Obj {
        match v {
            Some(v) => self.str(k, v),
            None => self,
        }
    }

    /// `errors` as an object keyed by errno name, in the counts' order.
    fn errors(mut self, counts: &ErrnoCounts) -> Obj {
        self.key("errors");
        self.0.push('{');
        for (i, (name, n)) in counts.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.quoted(name);
            self.0.push(':');
            self.0.push_str(&n.to_string());
        }
        self.0.push('}');
        self
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

impl Start {
    /// The line, without its newline.
    pub fn to_line(&self) -> String {
        Obj::line("start", self.role, self.t)
            .num("pid", u64::from(self.pid))
            .num("procs", u64::from(self.procs))
            .num("nofile_limit", self.nofile_limit)
            .opt_str("ports", self.ports.map(|p| p.to_string()).as_deref())
            .opt_num("bulk_out", self.bulk_out)
            .opt_str("target", self.target.as_deref())
            .opt_num("count", self.count)
            .opt_num("concurrency", self.concurrency)
            .opt_num("rate_limit", self.rate_limit)
            .opt_str("on_exit", self.on_exit.as_deref())
            .opt_num("bulk_in", self.bulk_in)
            .finish()
    }
}

impl Progress {
    /// The line, without its newline: the fields of `self.role`, the other role's left out.
    pub fn to_line(&self) -> String {
        let o = Obj::line("progress", self.role, self.t).num("established", self.established);
        let o = match self.role {
            Role::Client => o
                .opt_num("in_flight", self.in_flight)
                .opt_num("attempted", self.attempted)
                .num("failed", self.failed)
                .errors(&self.errors)
                .float("rate", self.rate, 1)
                .opt_num("target", self.target)
                .opt_num("closed", self.closed),
            Role::Server => o
                .opt_num("accepted", self.accepted)
                .opt_num("closed", self.closed)
                .num("failed", self.failed)
                .errors(&self.errors)
                .float("rate", self.rate, 1),
        };
        o.opt_num("resets", self.resets)
            .opt_num("bulk_tx_bytes", self.bulk_tx_bytes)
            .opt_num("bulk_rx_bytes", self.bulk_rx_bytes)
            .finish()
    }
}

impl Reached {
    /// The line, without its newline.
    pub fn to_line(&self) -> String {
        Obj::line("reached", self.role, self.t)
            .num("established", self.established)
            .float("elapsed", self.elapsed, 3)
            .opt_num("attempted", self.attempted)
            .opt_num("failed", self.failed)
            .opt_num("target", self.target)
            .finish()
    }
}

impl Signal {
    /// The line, without its newline.
    pub fn to_line(&self) -> String {
        Obj::line("signal", self.role, self.t)
            .str("signal", &self.signal)
            .num("established", self.established)
            .opt_str("on_exit", self.on_exit.as_deref())
            .finish()
    }
}

impl Summary {
    /// The line, without its newline: the fields of `self.role`, the other role's left out.
    /// A client's `ramp_elapsed` is always written, `null` when the ramp never ended.
    pub fn to_line(&self) -> String {
        let o = Obj::line("summary", self.role, self.t)
            .float("elapsed", self.elapsed, 3)
            .num("established", self.established);
        let o = match self.role {
            Role::Client => o
                .opt_num("attempted", self.attempted)
                .num("failed", self.failed)
                .errors(&self.errors)
                .opt_num("closed", self.closed)
                .opt_num("resets", self.resets)
                .num("peak_established", self.peak_established)
                .opt_num("target", self.target)
                .float("ramp_elapsed", self.ramp_elapsed.unwrap_or(f64::NAN), 3),
            Role::Server => o
                .opt_num("accepted", self.accepted)
                .opt_num("closed", self.closed)
                .num("failed", self.failed)
                .errors(&self.errors)
                .num("peak_established", self.peak_established)
                .opt_num("resets", self.resets),
        };
        o.opt_float("cpu_user", self.cpu_user, 3)
            .opt_float("cpu_sys", self.cpu_sys, 3)
            .opt_num("bulk_tx_bytes", self.bulk_tx_bytes)
            .opt_num("bulk_rx_bytes", self.bulk_rx_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortRange;

    fn errors(e: &[(&str, u64)]) -> ErrnoCounts {
        e.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    #[test]
    fn start_lines() {
        let server = Start {
            ports: Some(PortRange {
                first: 20000,
                last: 20019,
            }),
            bulk_out: Some(0),
            ..Start::new(Role::Server, 1732233600.123, 123, 2, 20000)
        };
        assert_eq!(
            server.to_line(),
            r#"{"v":1,"kind":"start","role":"server","t":1732233600.123,"pid":123,"procs":2,"nofile_limit":20000,"ports":"20000-20019","bulk_out":0}"#
        );
        let client = Start {
            target: Some("10.250.0.1:20000-20019".into()),
            count: Some(100000),
            concurrency: Some(512),
            rate_limit: Some(0),
            on_exit: Some("fin".into()),
            bulk_in: Some(0),
            ..Start::new(Role::Client, 1732233600.123, 124, 6, 20000)
        };
        assert_eq!(
            client.to_line(),
            r#"{"v":1,"kind":"start","role":"client","t":1732233600.123,"pid":124,"procs":6,"nofile_limit":20000,"target":"10.250.0.1:20000-20019","count":100000,"concurrency":512,"rate_limit":0,"on_exit":"fin","bulk_in":0}"#
        );
    }

    #[test]
    fn progress_lines_follow_each_roles_order() {
        let mut p = Progress {
            role: Role::Client,
            t: 1732233600.3734,
            established: 1200,
            failed: 38,
            errors: errors(&[("EMFILE", 2), ("ECONNREFUSED", 36)]),
            rate: 4800.04,
            in_flight: Some(64),
            attempted: Some(1300),
            target: Some(3000),
            accepted: None,
            closed: Some(36),
            resets: Some(0),
            bulk_tx_bytes: Some(0),
            bulk_rx_bytes: Some(0),
        };
        assert_eq!(
            p.to_line(),
            r#"{"v":1,"kind":"progress","role":"client","t":1732233600.373,"established":1200,"in_flight":64,"attempted":1300,"failed":38,"errors":{"EMFILE":2,"ECONNREFUSED":36},"rate":4800.0,"target":3000,"closed":36,"resets":0,"bulk_tx_bytes":0,"bulk_rx_bytes":0}"#
        );
        p.role = Role::Server;
        p.accepted = Some(1236);
        assert_eq!(
            p.to_line(),
            r#"{"v":1,"kind":"progress","role":"server","t":1732233600.373,"established":1200,"accepted":1236,"closed":36,"failed":38,"errors":{"EMFILE":2,"ECONNREFUSED":36},"rate":4800.0,"resets":0,"bulk_tx_bytes":0,"bulk_rx_bytes":0}"#,
            "a server line has no client fields"
        );
    }

    #[test]
    fn reached_and_signal_lines() {
        let r = Reached {
            role: Role::Client,
            t: 2.0,
            established: 3000,
            elapsed: 0.61,
            attempted: Some(3000),
            failed: Some(0),
            target: Some(3000),
        };
        assert_eq!(
            r.to_line(),
            r#"{"v":1,"kind":"reached","role":"client","t":2.000,"established":3000,"elapsed":0.610,"attempted":3000,"failed":0,"target":3000}"#
        );
        let s = Signal {
            on_exit: Some("fin".into()),
            ..Signal::new(Role::Client, 3.0, "SIGINT", 3000)
        };
        assert_eq!(
            s.to_line(),
            r#"{"v":1,"kind":"signal","role":"client","t":3.000,"signal":"SIGINT","established":3000,"on_exit":"fin"}"#
        );
        assert_eq!(
            Signal::new(Role::Server, 3.0, "SIGTERM", 5).to_line(),
            r#"{"v":1,"kind":"signal","role":"server","t":3.000,"signal":"SIGTERM","established":5}"#
        );
    }

    #[test]
    fn summary_lines_follow_each_roles_order() {
        let server = Summary {
            role: Role::Server,
            t: 4.0,
            elapsed: 12.3,
            established: 0,
            failed: 0,
            errors: ErrnoCounts::default(),
            peak_established: 3600,
            accepted: Some(3600),
            closed: Some(3600),
            attempted: None,
            resets: Some(0),
            target: None,
            ramp_elapsed: None,
            cpu_user: Some(0.041),
            cpu_sys: Some(0.838),
            bulk_tx_bytes: Some(0),
            bulk_rx_bytes: Some(0),
        };
        assert_eq!(
            server.to_line(),
            r#"{"v":1,"kind":"summary","role":"server","t":4.000,"elapsed":12.300,"established":0,"accepted":3600,"closed":3600,"failed":0,"errors":{},"peak_established":3600,"resets":0,"cpu_user":0.041,"cpu_sys":0.838,"bulk_tx_bytes":0,"bulk_rx_bytes":0}"#
        );
        let client = Summary {
            role: Role::Client,
            established: 3000,
            peak_established: 3000,
            accepted: None,
            closed: Some(0),
            attempted: Some(3000),
            target: Some(3000),
            ramp_elapsed: Some(0.096),
            ..server.clone()
        };
        assert_eq!(
            client.to_line(),
            r#"{"v":1,"kind":"summary","role":"client","t":4.000,"elapsed":12.300,"established":3000,"attempted":3000,"failed":0,"errors":{},"closed":0,"resets":0,"peak_established":3000,"target":3000,"ramp_elapsed":0.096,"cpu_user":0.041,"cpu_sys":0.838,"bulk_tx_bytes":0,"bulk_rx_bytes":0}"#
        );
        let never = Summary {
            ramp_elapsed: None,
            ..client
        };
        assert!(never.to_line().contains(r#""ramp_elapsed":null,"#));
    }

    #[test]
    fn strings_are_escaped_and_nan_is_null() {
        let s = Signal {
            on_exit: Some("f\"i\\n\nx".into()),
            ..Signal::new(Role::Server, f64::NAN, "SIG", 1)
        };
        assert_eq!(
            s.to_line(),
            r#"{"v":1,"kind":"signal","role":"server","t":null,"signal":"SIG","established":1,"on_exit":"f\"i\\n\u000ax"}"#
        );
    }
}
