//! Summary table made from cells.csv rows: rows NIC, columns network mode, like the seed's table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

use crate::plan::{NetMode, NicModel};
use crate::results::{or_dash, write_atomic, CellRow, ResultsStore, VERDICT_ERROR};

/// Markdown summary of `rows` (in file order; the latest row per cell id and
/// repetition wins). Cells sharing a NIC and mode are listed one per line, each
/// prefixed with the axis values that tell them apart.
pub fn summarize(rows: &[CellRow]) -> String {
    let mut latest: BTreeMap<(&str, u32), &CellRow> = BTreeMap::new();
    for r in rows {
        latest.insert((r.cell_id.as_str(), r.repetition), r);
    }
    if latest.is_empty() {
        return "No results yet.\n".to_owned();
    }

    let mut groups: BTreeMap<(Rank, Rank), Vec<&CellRow>> = BTreeMap::new();
    for r in latest.values() {
        groups
            .entry((rank::<NicModel>(&r.nic), rank::<NetMode>(&r.mode)))
            .or_default()
            .push(r);
    }
    let mut nics: Vec<Rank> = groups.keys().map(|k| k.0.clone()).collect();
    let mut modes: Vec<Rank> = groups.keys().map(|k| k.1.clone()).collect();
    nics.dedup();
    modes.sort();
    modes.dedup();

    let mut out = String::new();
    out.push_str("| NIC |");
    for m in &modes {
        out.push_str(&format!(" {} |", m.1));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(modes.len()));
    out.push('\n');
    for nic in &nics {
        out.push_str(&format!("| {} |", nic.1));
        for mode in &modes {
            let text = match groups.get_mut(&(nic.clone(), mode.clone())) {
                None => "-".to_owned(),
                Some(entries) => {
                    entries.sort_by_key(|r| sort_key(r));
                    group_text(entries)
                }
            };
            out.push_str(&format!(" {} |", text));
        }
        out.push('\n');
    }

    let mut runs: Vec<&str> = latest.values().map(|r| r.run_id.as_str()).collect();
    runs.sort();
    runs.dedup();
    out.push_str(&format!(
        "\n{} results (latest per cell and repetition) from run{} {}. \
         Entry: verdict, connections established at the peak / target (accelerator, seconds until the \
         disconnected connections drained or how many never did); for a failure also the seconds until \
         it recovered (`-` = never or not measured).\n",
        latest.len(),
        if runs.len() == 1 { "" } else { "s" },
        runs.join(", ")
    ));
    out
}

/// Writes results/<matrix>/summary.md from the store's rows; returns its path.
pub fn write_summary(store: &ResultsStore) -> Result<PathBuf> {
    let path = store.dir().join("summary.md");
    let text = format!(
        "# nicstorm results: {}\n\n{}",
        store.matrix_name(),
        summarize(store.rows())
    );
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Sort key placing known names in their enum order and unknown ones (rows written by
/// a newer nicstorm) after them, alphabetically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rank(usize, String);

trait Ordered: std::str::FromStr + PartialEq + 'static {
    fn all() -> &'static [Self]
    where
        Self: Sized;
}
impl Ordered for NicModel {
    fn all() -> &'static [Self] {
        NicModel::ALL
    }
}
impl Ordered for NetMode {
    fn all() -> &'static [Self] {
        NetMode::ALL
    }
}

fn rank<T: Ordered>(name: &str) -> Rank {
    let pos = name
        .parse::<T>()
        .ok()
        .and_then(|v| T::all().iter().position(|x| *x == v))
        .unwrap_or(usize::MAX);
    Rank(pos, name.to_owned())
}

/// Orders entries of one table cell: by the axes that may differ, then repetition.
fn sort_key(r: &CellRow) -> (String, String, String, u64, Option<u32>, Option<u64>, u32) {
    (
        r.vhost.clone(),
        r.disconnect.clone(),
        r.scope.clone(),
        r.connections,
        r.vcpus,
        r.server_memory_mib,
        r.repetition,
    )
}

/// The axis values of a row that can tell cells with the same NIC and mode apart.
fn axis_values(r: &CellRow) -> Vec<(&'static str, String)> {
    vec![
        ("vhost", r.vhost.clone()),
        ("disconnect", r.disconnect.clone()),
        ("scope", r.scope.clone()),
        ("connections", r.connections.to_string()),
        ("vcpus", or_dash(r.vcpus)),
        (
            "memory",
            r.server_memory_mib
                .map_or("-".into(), |m| format!("{m}MiB")),
        ),
    ]
}

fn group_text(entries: &[&CellRow]) -> String {
    let values: Vec<Vec<(&str, String)>> = entries.iter().map(|r| axis_values(r)).collect();
    let differing: Vec<usize> = (0..values[0].len())
        .filter(|&i| values.iter().any(|v| v[i].1 != values[0][i].1))
        .collect();
    let several_reps = entries.iter().any(|r| r.repetition > 1);
    entries
        .iter()
        .zip(&values)
        .map(|(r, v)| {
            let mut prefix: Vec<String> = differing
                .iter()
                .map(|&i| format!("{}={}", v[i].0, v[i].1))
                .collect();
            if several_reps {
                prefix.push(format!("rep {}", r.repetition));
            }
            if prefix.is_empty() {
                entry_text(r)
            } else {
                format!("{}: {}", prefix.join(" "), entry_text(r))
            }
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

/// "ok 30000/30000 (tcg, drain 6.7s)", "hung @ 2100/30000 (tcg, 434 undrained, rec 35s)", "error: ...".
fn entry_text(r: &CellRow) -> String {
    let accel = r.accel.as_deref().unwrap_or("-");
    let reached = format!("{}/{}", or_dash(r.peak_established), or_dash(r.target));
    // How the disconnected connections went away: in time, or how many never did.
    let drain = match (r.drain_seconds, r.undrained_connections) {
        (Some(d), _) => format!("drain {}", secs(Some(d))),
        (None, Some(n)) if n > 0 => format!("{n} undrained"),
        _ => "drain -".into(),
    };
    let text = match r.verdict.as_str() {
        "ok" => format!("ok {reached} ({accel}, {drain})"),
        VERDICT_ERROR => {
            let msg = r.error.as_deref().unwrap_or("no message");
            format!("error: {}", shorten(msg, 60))
        }
        v => format!(
            "{v} @ {reached} ({accel}, {drain}, rec {})",
            secs(r.recovery_seconds)
        ),
    };
    // Markdown table cells cannot hold a pipe or a line break.
    text.replace('|', "\\|").replace('\n', " ")
}

/// Seconds with at most one decimal: "35s", "2.5s"; "-" when missing.
fn secs(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) => {
            let t = format!("{s:.1}");
            format!("{}s", t.strip_suffix(".0").unwrap_or(&t))
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        format!("{}...", line.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, cell: &str, nic: &str, mode: &str, verdict: &str) -> CellRow {
        CellRow {
            run_id: run.into(),
            nic: nic.into(),
            mode: mode.into(),
            error: None,
            ..CellRow::example(cell, 1, verdict)
        }
    }

    fn handmade() -> Vec<CellRow> {
        let mut rows = vec![
            // Superseded by the later run of the same cell below.
            CellRow {
                error: Some("lab: libvirtd not reachable".into()),
                ..row("aaaaaa", "c-vmx-br", "vmxnet3", "bridge", "error")
            },
            row("aaaaaa", "c-vmx-nat", "vmxnet3", "nat", "ssh_dropped"),
            CellRow {
                vhost: "on".into(),
                ..row("aaaaaa", "c-vio-br-on", "virtio-net", "bridge", "ok")
            },
            CellRow {
                vhost: "off".into(),
                peak_established: Some(2100),
                drain_seconds: None,
                recovery_seconds: Some(35.0),
                ..row("aaaaaa", "c-vio-br-off", "virtio-net", "bridge", "hung")
            },
            CellRow {
                error: Some("guest: ssh root@10.77.0.2: connection | refused\nmore".into()),
                peak_established: None,
                ..row("bbbbbb", "c-e1000-user", "e1000", "user", "error")
            },
            row("bbbbbb", "c-vmx-br", "vmxnet3", "bridge", "ok"),
            CellRow {
                repetition: 2,
                ssh_max_seconds: Some(31.0),
                drain_seconds: Some(2.5),
                recovery_seconds: Some(31.04),
                ..row("bbbbbb", "c-vmx-br", "vmxnet3", "bridge", "ssh_slow")
            },
        ];
        rows[1].drain_seconds = Some(4.0);
        rows[1].recovery_seconds = None;
        // A hang that left part of the disconnected client's connections on the server.
        for r in rows.iter_mut().filter(|r| r.verdict == "hung") {
            r.undrained_connections = Some(434);
        }
        rows
    }

    #[test]
    fn summary_snapshot() {
        insta::assert_snapshot!(summarize(&handmade()));
    }

    #[test]
    fn latest_row_wins_and_empty_input() {
        let s = summarize(&handmade());
        assert!(!s.contains("libvirtd"), "superseded error row shown:\n{s}");
        assert!(s.contains("rep 1: ok 30000/30000 (tcg, drain -)"), "{s}");
        assert!(
            s.contains("hung @ 2100/30000 (tcg, 434 undrained, rec 35s)"),
            "{s}"
        );
        assert_eq!(summarize(&[]), "No results yet.\n");
        assert_eq!(secs(Some(35.0)), "35s");
        assert_eq!(secs(Some(2.54)), "2.5s");
    }
}
