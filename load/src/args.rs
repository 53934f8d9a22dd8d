//! Command-line parsing into checked domain types (`PortRange`, `ServerArgs`, `ClientArgs`).
//!
//! Hand-rolled rather than clap: the binary is pushed into every guest and
//! should stay small with few dependencies.

use crate::capacity::MAX_PROCS;
use std::net::Ipv4Addr;
use std::path::PathBuf;

pub use crate::error::UsageError;

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// An inclusive range of TCP ports, written `20000-20019` or `20000` (storm-proto's, the
/// runner's too).
pub use storm_proto::PortRange;

/// `--ports` or the ports of `--target`.
fn port_range(s: &str) -> Result<PortRange, UsageError> {
    s.parse()
        .map_err(|e: storm_proto::PortRangeError| usage(e.to_string()))
}

/// What the client does to its sockets when told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// Just exit: the kernel closes every socket with a FIN.
    Fin,
    /// Every socket has SO_LINGER {1,0}, so the exit sends RSTs.
    Rst,
}

impl OnExit {
    pub fn as_str(self) -> &'static str {
        match self {
            OnExit::Fin => "fin",
            OnExit::Rst => "rst",
        }
    }
}

/// Options both roles share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Worker processes. Default: none here; the role resolves it once it
    /// knows the fd limit: one per CPU the process may run on, or more if
    /// the connections need them (`capacity::default_procs`).
    pub procs: Option<u32>,
    /// Progress cadence in milliseconds. Default: 250
    pub interval_ms: u64,
    /// File atomically rewritten with the latest progress line. Default: none
    pub status_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerArgs {
    pub ports: PortRange,
    /// Default: 0.0.0.0
    pub bind: Ipv4Addr,
    /// Connections the caller expects; only used for the up-front fd check. Default: none
    pub count: Option<u64>,
    /// Connections, the first accepted over all workers, the server writes
    /// to for as long as they are open (`--bulk-out`). Default: 0
    pub bulk_out: u64,
    pub common: Common,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientArgs {
    pub addr: Ipv4Addr,
    pub ports: PortRange,
    pub count: u64,
    /// Connects in flight at most, over all processes. Default: 512
    pub concurrency: u64,
    /// Connects started per second over all processes; 0 = unlimited. Default: 0
    pub rate: u64,
    /// Source addresses to spread over; empty = let the kernel choose. Default: empty
    pub sources: Vec<Ipv4Addr>,
    /// Default: fin
    pub on_exit: OnExit,
    /// Connections, the first established over all workers, the client
    /// writes to for as long as they are open (`--bulk-in`). Default: 0
    pub bulk_in: u64,
    pub common: Common,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Server(ServerArgs),
    Client(ClientArgs),
    Help,
    Version,
}

pub const USAGE: &str = "\
usage:
  storm-load server --ports FIRST-LAST [--bind ADDR] [--count N] [--bulk-out B]
                    [--procs N] [--interval MS] [--status-file PATH]
  storm-load client --target ADDR:FIRST-LAST --count N [--concurrency W] [--rate R]
                    [--source A,B,..] [--on-exit fin|rst] [--bulk-in B] [--procs P]
                    [--interval MS] [--status-file PATH]
  storm-load --help | --version

Prints one JSON object per line (protocol version 1, see PROTOCOL.md).
--procs defaults to one worker process per CPU storm-load may run on, or more
if the connections (--count) do not fit one process's RLIMIT_NOFILE each.
The server runs until SIGINT/SIGTERM; the client holds its connections until then.
--bulk-in B (client) and --bulk-out B (server): the first B connections up,
over all workers, are written to continuously in 64 KiB writes; both roles
read and discard whatever arrives on any connection.
";

/// Splits `--key value` / `--key=value` pairs; every option takes a value.
fn pairs(role: &str, args: &[String]) -> Result<Vec<(String, String)>, UsageError> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(key) = a.strip_prefix("--") else {
            return Err(usage(format!("{role}: unexpected argument {a:?}")));
        };
        let (k, v) = match key.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match it.next() {
                Some(v) => (key.to_string(), v.clone()),
                None => return Err(usage(format!("{role}: --{key} needs a value"))),
            },
        };
        if out.iter().any(|(seen, _): &(String, String)| *seen == k) {
            return Err(usage(format!("{role}: --{k} given twice")));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn number(role: &str, key: &str, v: &str, min: u64) -> Result<u64, UsageError> {
    match v.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(usage(format!(
            "{role}: --{key} {v:?}: expected a whole number >= {min}"
        ))),
    }
}

fn addr(role: &str, key: &str, v: &str) -> Result<Ipv4Addr, UsageError> {
    v.parse()
        .map_err(|_| usage(format!("{role}: --{key} {v:?}: expected an IPv4 address")))
}

fn common(role: &str, kv: &mut Vec<(String, String)>) -> Result<Common, UsageError> {
    let mut c = Common {
        procs: None,
        interval_ms: 250,
        status_file: None,
    };
    let mut rest = Vec::new();
    for (k, v) in kv.drain(..) {
        match k.as_str() {
            "procs" => {
                let n = number(role, &k, &v, 1)?;
                c.procs = Some(
                    u32::try_from(n)
                        .ok()
                        .filter(|n| *n <= MAX_PROCS)
                        .ok_or_else(|| {
                            usage(format!("{role}: --procs {v}: at most {MAX_PROCS}"))
                        })?,
                );
            }
            "interval" => c.interval_ms = number(role, &k, &v, 10)?,
            "status-file" => c.status_file = Some(PathBuf::from(v)),
            _ => rest.push((k, v)),
        }
    }
    *kv = rest;
    Ok(c)
}

fn unknown(role: &str, kv: &[(String, String)]) -> Result<(), UsageError> {
    match kv.first() {
        Some((k, _)) => Err(usage(format!("{role}: unknown option --{k}"))),
        None => Ok(()),
    }
}

fn parse_server(args: &[String]) -> Result<ServerArgs, UsageError> {
    let role = "server";
    let mut kv = pairs(role, args)?;
    let common = common(role, &mut kv)?;
    let (mut ports, mut bind, mut count) = (None, Ipv4Addr::UNSPECIFIED, None);
    let mut bulk_out = 0;
    let mut rest = Vec::new();
    for (k, v) in kv {
        match k.as_str() {
            "ports" => ports = Some(port_range(&v)?),
            "bind" => bind = addr(role, &k, &v)?,
            "count" => count = Some(number(role, &k, &v, 1)?),
            "bulk-out" => bulk_out = number(role, &k, &v, 0)?,
            _ => rest.push((k, v)),
        }
    }
    unknown(role, &rest)?;
    let ports = ports.ok_or_else(|| usage("server: --ports FIRST-LAST is required"))?;
    Ok(ServerArgs {
        ports,
        bind,
        count,
        bulk_out,
        common,
    })
}

fn parse_client(args: &[String]) -> Result<ClientArgs, UsageError> {
    let role = "client";
    let mut kv = pairs(role, args)?;
    let common = common(role, &mut kv)?;
    let mut target = None;
    let mut count = None;
    let (mut concurrency, mut rate) = (512, 0);
    let mut sources = Vec::new();
    let mut on_exit = OnExit::Fin;
    let mut bulk_in = 0;
    let mut rest = Vec::new();
    for (k, v) in kv {
        match k.as_str() {
            "target" => {
                let (a, p) = v.rsplit_once(':').ok_or_else(|| {
                    usage(format!(
                        "client: --target {v:?}: expected ADDR:FIRST-LAST, e.g. 10.0.0.1:20000-20019"
                    ))
                })?;
                target = Some((addr(role, &k, a)?, port_range(p)?));
            }
            "count" => count = Some(number(role, &k, &v, 1)?),
            "concurrency" => concurrency = number(role, &k, &v, 1)?,
            "rate" => rate = number(role, &k, &v, 0)?,
            "source" => {
                sources = v
                    .split(',')
                    .map(|s| addr(role, &k, s.trim()))
                    .collect::<Result<_, _>>()?
            }
            "on-exit" => {
                on_exit = match v.as_str() {
                    "fin" => OnExit::Fin,
                    "rst" => OnExit::Rst,
                    _ => {
                        return Err(usage(format!(
                            "client: --on-exit {v:?}: expected fin or rst"
                        )))
                    }
                }
            }
            "bulk-in" => bulk_in = number(role, &k, &v, 0)?,
            _ => rest.push((k, v)),
        }
    }
    unknown(role, &rest)?;
    let (addr, ports) =
        target.ok_or_else(|| usage("client: --target ADDR:FIRST-LAST is required"))?;
    let count = count.ok_or_else(|| usage("client: --count N is required"))?;
    if bulk_in > count {
        return Err(usage(format!(
            "client: --bulk-in {bulk_in} is more than --count {count}"
        )));
    }
    Ok(ClientArgs {
        addr,
        ports,
        count,
        concurrency,
        rate,
        sources,
        on_exit,
        bulk_in,
        common,
    })
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    match args.first().map(String::as_str) {
        Some("server") => parse_server(&args[1..]).map(Command::Server),
        Some("client") => parse_client(&args[1..]).map(Command::Client),
        Some("-h" | "--help" | "help") => Ok(Command::Help),
        Some("-V" | "--version") => Ok(Command::Version),
        Some(other) => Err(usage(format!(
            "unknown command {other:?}: expected server or client"
        ))),
        None => Err(usage("missing command: expected server or client")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn err(s: &str) -> String {
        parse(&argv(s)).unwrap_err().0
    }

    /// The parsing is storm-proto's (tested there); here: its result, and its error as a
    /// usage error with the same text.
    #[test]
    fn port_ranges() {
        let r = port_range("20000-20019").unwrap();
        assert_eq!((r.first, r.last, r.count()), (20000, 20019, 20));
        assert_eq!(
            port_range("0-10").unwrap_err(),
            UsageError("bad port \"0\" in \"0-10\": expected a number 1-65535".into())
        );
    }

    #[test]
    fn ports_are_spread_round_robin() {
        let r = port_range("20000-20002").unwrap();
        let got: Vec<u16> = (0..7).map(|i| r.nth(i)).collect();
        assert_eq!(got, [20000, 20001, 20002, 20000, 20001, 20002, 20000]);
        assert_eq!(r.to_string(), "20000-20002");
    }

    #[test]
    fn server_defaults_and_options() {
        let Command::Server(s) = parse(&argv("server --ports 20000-20019")).unwrap() else {
            panic!("not a server")
        };
        assert_eq!(s.bind, Ipv4Addr::UNSPECIFIED);
        assert_eq!(s.common.procs, None);
        assert_eq!(s.common.interval_ms, 250);
        assert_eq!(s.count, None);
        assert_eq!(s.bulk_out, 0);
        let Command::Server(s) = parse(&argv(
            "server --ports=5000 --bind 127.0.0.1 --procs 20 --interval 100 --status-file /run/x --count 9 --bulk-out 2",
        ))
        .unwrap() else {
            panic!("not a server")
        };
        assert_eq!((s.ports.first, s.ports.last), (5000, 5000));
        assert_eq!(s.bind, Ipv4Addr::LOCALHOST);
        assert_eq!(s.common.procs, Some(20));
        assert_eq!(s.common.interval_ms, 100);
        assert_eq!(s.common.status_file, Some(PathBuf::from("/run/x")));
        assert_eq!(s.count, Some(9));
        assert_eq!(s.bulk_out, 2);
    }

    #[test]
    fn client_defaults_and_options() {
        let Command::Client(c) =
            parse(&argv("client --target 10.0.0.1:20000-20019 --count 1000")).unwrap()
        else {
            panic!("not a client")
        };
        assert_eq!(c.addr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(c.ports.count(), 20);
        assert_eq!(c.count, 1000);
        assert_eq!(c.concurrency, 512);
        assert_eq!(c.common.procs, None);
        assert_eq!(c.rate, 0);
        assert!(c.sources.is_empty());
        assert_eq!(c.on_exit, OnExit::Fin);
        assert_eq!(c.bulk_in, 0);
        let Command::Client(c) = parse(&argv(
            "client --target 10.0.0.1:7 --count 5 --concurrency 3 --rate 100 --source 10.0.0.2,10.0.0.3 --on-exit rst --procs 4 --bulk-in 5",
        ))
        .unwrap() else {
            panic!("not a client")
        };
        assert_eq!(
            c.sources,
            [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)]
        );
        assert_eq!((c.concurrency, c.rate, c.on_exit), (3, 100, OnExit::Rst));
        assert_eq!(c.common.procs, Some(4));
        assert_eq!(c.bulk_in, 5);
    }

    #[test]
    fn error_texts() {
        let table = [
            ("", "missing command: expected server or client"),
            ("serve", "unknown command \"serve\": expected server or client"),
            ("server", "server: --ports FIRST-LAST is required"),
            ("server --ports 1 --port 2", "server: unknown option --port"),
            ("server --ports", "server: --ports needs a value"),
            ("server --ports 1 --ports 2", "server: --ports given twice"),
            ("server --ports 1 extra", "server: unexpected argument \"extra\""),
            (
                "server --ports 1 --bind ::1",
                "server: --bind \"::1\": expected an IPv4 address",
            ),
            (
                "server --ports 1 --procs 0",
                "server: --procs \"0\": expected a whole number >= 1",
            ),
            ("server --ports 1 --procs 5000", "server: --procs 5000: at most 4096"),
            ("client --count 3", "client: --target ADDR:FIRST-LAST is required"),
            (
                "client --target 10.0.0.1 --count 3",
                "client: --target \"10.0.0.1\": expected ADDR:FIRST-LAST, e.g. 10.0.0.1:20000-20019",
            ),
            ("client --target 10.0.0.1:80", "client: --count N is required"),
            (
                "client --target 10.0.0.1:80 --count -1",
                "client: --count \"-1\": expected a whole number >= 1",
            ),
            (
                "client --target 10.0.0.1:80 --count 1 --on-exit kill",
                "client: --on-exit \"kill\": expected fin or rst",
            ),
            (
                "client --target 10.0.0.1:80 --count 1 --source 10.0.0.2,x",
                "client: --source \"x\": expected an IPv4 address",
            ),
            (
                "client --target 10.0.0.1:80 --count 1 --interval 5",
                "client: --interval \"5\": expected a whole number >= 10",
            ),
            (
                "client --target 10.0.0.1:80 --count 3 --bulk-in 4",
                "client: --bulk-in 4 is more than --count 3",
            ),
            (
                "client --target 10.0.0.1:80 --count 3 --bulk-in x",
                "client: --bulk-in \"x\": expected a whole number >= 0",
            ),
            (
                "server --ports 1 --bulk-out -2",
                "server: --bulk-out \"-2\": expected a whole number >= 0",
            ),
            ("server --ports 1 --bulk-in 2", "server: unknown option --bulk-in"),
        ];
        for (input, want) in table {
            assert_eq!(err(input), want, "input {input:?}");
        }
    }
}
