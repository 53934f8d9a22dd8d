//! A cell's counters.csv (counters.rs writes it): `window,scope,counter,before,after,delta`,
//! or without `window` in files older than the ramp window, whose lines are all `observe`.
//! A line with an empty counter says a scope could not be read at one end.

use std::path::Path;

use anyhow::{Context, Result};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CounterLine {
    pub(crate) window: String,
    pub(crate) scope: String,
    /// Empty for a scope that was missing at either end.
    pub(crate) counter: String,
    pub(crate) delta: Option<i128>,
    /// "missing"/"read" at the start and end of the window, for a scope line.
    pub(crate) before: String,
    pub(crate) after: String,
}

/// Reads `path`; None when it does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<CounterLine>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    parse(&text)
        .map(Some)
        .with_context(|| format!("reading {}", path.display()))
}

pub(crate) fn parse(text: &str) -> Result<Vec<CounterLine>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .context("no header line")?
        .iter()
        .map(str::to_owned)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (scope, counter) = (
        col("scope").context("no column `scope`")?,
        col("counter").context("no column `counter`")?,
    );
    let (window, before, after, delta) = (col("window"), col("before"), col("after"), col("delta"));
    let mut out = vec![];
    for rec in reader.records() {
        let Ok(rec) = rec else { continue };
        let get = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("").to_owned();
        out.push(CounterLine {
            window: window.map_or("observe".into(), |_| get(window)),
            scope: get(Some(scope)),
            counter: get(Some(counter)),
            delta: get(delta).parse().ok(),
            before: get(before),
            after: get(after),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions() {
        let new = parse(
            "window,scope,counter,before,after,delta\n\
             ramp,client1,,missing,read,\n\
             observe,host.server,tap.tx_dropped,5,9,4\n",
        )
        .unwrap();
        assert_eq!(new[0].counter, "");
        assert_eq!(new[0].delta, None);
        assert_eq!(new[0].before, "missing");
        assert_eq!(
            (new[1].window.as_str(), new[1].scope.as_str(), new[1].delta),
            ("observe", "host.server", Some(4))
        );
        let old =
            parse("scope,counter,before,after,delta\nclient1,TcpExtTCPAbortOnMemory,0,304,304\n")
                .unwrap();
        assert_eq!(old[0].window, "observe");
        assert_eq!(old[0].delta, Some(304));
        assert!(parse("a,b\n1,2\n").is_err());
    }
}
