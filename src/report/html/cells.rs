//! The cells section: per cell and target its repetitions (a table), the plots of its time
//! series overlaid, files that could not be read, and its counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;

use super::text::{cell_title, esc, opt, opt_secs, sig, verdict_class};
use crate::report::counters_file::CounterLine;
use crate::report::plots::{self, css, rep_color, Metric, RepTrace};
use crate::report::{Group, Rep, Results};
use crate::results::CellRow;

pub(crate) fn section(h: &mut String, data: &Results) -> Result<()> {
    h.push_str("<section id=\"cells\"><h2>Cells</h2>\n<p class=\"note\">Each cell's repetitions, \
        overlaid in the plots (one colour each). t = 0 is the disconnect; the grey band is the time \
        it took (kill_spread_seconds, the longest of the repetitions); the dashed line in a \
        repetition's colour is where its hold began. Axis units are in the axis titles.</p>\n");
    for g in &data.groups {
        cell(h, g, data.class_index(&g.class))?;
    }
    h.push_str("</section>\n");
    Ok(())
}

fn cell(h: &mut String, g: &Group, ci: usize) -> Result<()> {
    let r = g.row();
    let _ = write!(
        h,
        "<section class=\"cell\" id=\"{}\" data-cell=\"{}\"><h3>{}</h3>\n<p class=\"note\">cell \
         <code>{}</code> · {} · {} vCPU(s) · server {} MiB, clients {} MiB{}</p>\n",
        g.anchor(ci),
        esc(&r.cell_id),
        esc(&cell_title(r)),
        esc(&r.cell_id),
        esc(&g.class),
        opt(r.vcpus),
        opt(r.server_memory_mib),
        opt(r.client_memory_mib),
        match &r.vhost_effective {
            Some(e) if *e != r.vhost => format!(" · vhost as run: {}", esc(e.as_str())),
            _ => String::new(),
        }
    );
    reps_table(h, g);
    let rows: Vec<&CellRow> = g.reps.iter().map(|r| &r.row).collect();
    if let Some(table) = signature_table(&rows) {
        h.push_str(&table);
    }

    let traces: Vec<RepTrace> = g
        .reps
        .iter()
        .enumerate()
        .filter_map(|(i, rep)| {
            rep.series.as_ref().map(|ts| RepTrace {
                label: format!("rep {}", rep.row.repetition),
                color: rep_color(i),
                ts,
                kill_spread: rep.row.kill_spread_seconds,
            })
        })
        .collect();
    if traces.is_empty() {
        h.push_str(
            "<p class=\"note noplot\">No time series here: this results directory keeps \
            cells.csv only (or the cell ended before observing).</p>\n",
        );
    } else {
        if traces.len() < g.reps.len() {
            let _ = writeln!(
                h,
                "<p class=\"note\">{} of {} repetitions have a time series.</p>",
                traces.len(),
                g.reps.len()
            );
        }
        if !traces.iter().any(|t| t.ts.has_phases()) {
            h.push_str(
                "<p class=\"note\">These time series start at the disconnect: they were \
                written before the runner recorded the ramp and hold.</p>\n",
            );
        }
        h.push_str("<div class=\"plots\">\n");
        let mut absent = vec![];
        for m in Metric::ALL {
            match plots::render(m, &traces)? {
                Some(svg) => {
                    let _ = writeln!(
                        h,
                        "<figure class=\"plot\" data-metric=\"{}\">{svg}</figure>",
                        m.id()
                    );
                }
                None => absent.push(m.title()),
            }
        }
        h.push_str("</div>\n");
        if !absent.is_empty() {
            let _ = writeln!(
                h,
                "<p class=\"note\">Not in these time series (not recorded by the version that \
                 wrote them, or never measured): {}.</p>",
                esc(&absent.join("; "))
            );
        }
    }
    for rep in &g.reps {
        for p in &rep.problems {
            let _ = writeln!(
                h,
                "<p class=\"note\">rep {}: could not read: {}</p>",
                rep.row.repetition,
                esc(p)
            );
        }
    }
    counters(h, g);
    h.push_str("</section>\n");
    Ok(())
}

fn reps_table(h: &mut String, g: &Group) {
    h.push_str(
        "<table class=\"reps\"><thead><tr><th>rep</th><th>run</th><th>verdict</th>\
        <th>peak / target</th><th>ramp</th><th>kill spread</th><th>drain</th><th>undrained</th>\
        <th>SSH baseline / slowest</th><th>probe failures</th><th>heartbeat max gap</th>\
        <th>peak softirq / vCPU</th><th>tap drops</th><th>recovery</th></tr></thead><tbody>\n",
    );
    for (i, rep) in g.reps.iter().enumerate() {
        let r = &rep.row;
        let _ = writeln!(
            h,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td>\
             <td><span class=\"mark {}\"></span>{}</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>",
            css(rep_color(i)),
            r.repetition,
            esc(&r.run_id),
            verdict_class(&r.verdict),
            esc(r.verdict.as_str()),
            opt(r.peak_established),
            opt(r.target),
            match (r.ramp_seconds, r.ramp_rate) {
                (Some(s), Some(rate)) => format!("{} s, {:.0}/s", sig(s), rate),
                (s, _) => opt_secs(s),
            },
            opt_secs(r.kill_spread_seconds),
            opt_secs(r.drain_seconds),
            opt(r.undrained_connections),
            opt_secs(r.ssh_baseline_seconds),
            opt_secs(r.ssh_max_seconds),
            opt(r.ssh_probe_failures),
            opt_secs(r.heartbeat_max_gap_seconds),
            r.peak_softirq_pct.map_or("–".into(), |v| format!("{v:.1} %")),
            r.peak_vcpu_pct.map_or("–".into(), |v| format!("{v:.0} %")),
            opt(r.server_tap_tx_dropped),
            opt_secs(r.recovery_seconds),
        );
        if let Some(e) = &r.error {
            let _ = writeln!(
                h,
                "<tr><td></td><td colspan=\"13\" class=\"note\">error{}: {}</td></tr>",
                r.error_phase
                    .as_ref()
                    .map_or(String::new(), |p| format!(" in {}", esc(p.as_str()))),
                esc(e)
            );
        }
        if let Some(line) = evidence(r) {
            let _ = writeln!(
                h,
                "<tr class=\"evidence\"><td></td><td colspan=\"13\" class=\"note\">{}</td></tr>",
                esc(&line)
            );
        }
    }
    h.push_str("</tbody></table>\n");
}

/// Where a network was lost, what the vmnet model did and what the guests' kernels logged
/// (signatures.csv has the times), on one line; None when the row says none of it.
fn evidence(r: &CellRow) -> Option<String> {
    let mut parts = vec![];
    if let Some(p) = &r.lost_phase {
        parts.push(format!(
            "network lost in {}{}",
            p.as_str(),
            r.lost_role
                .as_deref()
                .map_or(String::new(), |role| format!(" ({role})"))
        ));
    }
    if r.vmnet_refused_server.is_some() || r.vmnet_refused_clients.is_some() {
        parts.push(format!(
            "vmnet model: refused {} on the server, {} on the clients, first in {}; server flushes {}; largest frame {} B",
            opt(r.vmnet_refused_server),
            opt(r.vmnet_refused_clients),
            r.vmnet_first_refusal_phase
                .as_ref()
                .map_or("–".into(), |p| p.as_str().to_owned()),
            opt(r.vmnet_flushes_server),
            opt(r.vmnet_largest_frame),
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The kernel log signatures of a cell's repetitions (the rows' `kernel_signatures`,
/// `role:signature=count`) as one table: a line per signature, a column per role (the
/// server, the clients, then the host), each count summed over the repetitions with each
/// repetition's own beside it (– where a repetition's logs were not read). None when no
/// repetition saw any.
fn signature_table(rows: &[&CellRow]) -> Option<String> {
    use crate::host::signatures::SIGNATURES;
    // Known signatures in their order, a newer build's names after them.
    let mut names: std::collections::BTreeSet<(usize, String)> = Default::default();
    let mut roles: Vec<String> = vec![];
    // (signature, role) -> lines per repetition.
    let mut counts: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        for part in r
            .kernel_signatures
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
        {
            let Some((role, (name, n))) = part
                .split_once(':')
                .and_then(|(role, rest)| Some((role, rest.split_once('=')?)))
            else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            let rank = SIGNATURES
                .iter()
                .position(|s| s.name == name)
                .unwrap_or(SIGNATURES.len());
            names.insert((rank, name.to_owned()));
            if !roles.iter().any(|x| x == role) {
                roles.push(role.to_owned());
            }
            counts
                .entry((name.to_owned(), role.to_owned()))
                .or_insert_with(|| vec![0; rows.len()])[i] += n;
        }
    }
    if names.is_empty() {
        return None;
    }
    roles.sort_by_key(|r| match r.as_str() {
        "server" => (0, String::new()),
        "host" => (2, String::new()),
        other => (1, other.to_owned()),
    });
    let reps: Vec<String> = rows.iter().map(|r| r.repetition.to_string()).collect();
    let mut h = format!(
        "<table class=\"small signatures\"><caption class=\"note\">Kernel log signatures: \
         lines per role, summed over the repetitions{} (signatures.csv has when each began)\
         </caption>\n<thead><tr><th>signature</th>",
        if rows.len() > 1 {
            format!(
                ", each repetition's in brackets (rep {}; – its logs were not read)",
                reps.join(", ")
            )
        } else {
            String::new()
        }
    );
    for role in &roles {
        let _ = write!(h, "<th>{}</th>", esc(role));
    }
    h.push_str("</tr></thead><tbody>\n");
    for (rank, name) in &names {
        let _ = write!(
            h,
            "<tr><td><code>{}</code> <span class=\"note\">{}</span></td>",
            esc(name),
            esc(SIGNATURES.get(*rank).map_or("", |s| s.meaning))
        );
        for role in &roles {
            let per = counts.get(&(name.clone(), role.clone()));
            let total: u64 = per.map_or(0, |p| p.iter().sum());
            let each: Vec<String> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| match (&r.kernel_signatures, per) {
                    (None, _) => "–".to_owned(),
                    (Some(_), Some(p)) => p[i].to_string(),
                    (Some(_), None) => "0".to_owned(),
                })
                .collect();
            let _ = write!(
                h,
                "<td class=\"num\">{total}{}</td>",
                if rows.len() > 1 {
                    format!(" <span class=\"note\">({})</span>", each.join(", "))
                } else {
                    String::new()
                }
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");
    Some(h)
}

/// Counters that explain a ramp or a drain, shown first.
const KEY_COUNTERS: &[(&str, &str)] = &[
    (
        "TcpExtTCPAbortOnMemory",
        "sockets killed with one RST (orphan or memory limit)",
    ),
    ("TcpExtListenOverflows", "accept queue full"),
    ("TcpExtListenDrops", "SYNs dropped at a listener"),
    (
        "TcpExtTCPAbortOnTimeout",
        "connections given up after retransmissions",
    ),
    ("TcpRetransSegs", "segments retransmitted"),
    (
        "tap.tx_dropped",
        "host dropped frames on the way into the VM",
    ),
    (
        "eth0.rx_dropped",
        "the guest's driver dropped frames on receive",
    ),
    ("conntrack.drop", "host conntrack drops"),
    ("conntrack.early_drop", "host conntrack early drops"),
    ("conntrack.insert_failed", "host conntrack insert failures"),
];

fn counters(h: &mut String, g: &Group) {
    let with: Vec<(usize, &Rep, &Vec<CounterLine>)> = g
        .reps
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.counters.as_ref().map(|c| (i, r, c)))
        .collect();
    if with.is_empty() {
        return;
    }
    // (window, scope, counter) -> delta per repetition with a file.
    type Key = (usize, String, String);
    let window_rank = |w: &str| match w {
        "ramp" => 0,
        "observe" => 1,
        _ => 2,
    };
    let mut table: BTreeMap<Key, (String, Vec<Option<i128>>)> = BTreeMap::new();
    // Scopes missing at an end of a window: message -> repetitions.
    let mut missing: Vec<(String, Vec<u32>)> = vec![];
    for (k, (_, rep, lines)) in with.iter().enumerate() {
        for l in lines.iter() {
            if l.counter.is_empty() {
                let msg = format!(
                    "{} in the {} window: {} at its start, {} at its end",
                    l.scope, l.window, l.before, l.after
                );
                match missing.iter_mut().find(|(m, _)| *m == msg) {
                    Some((_, reps)) => reps.push(rep.row.repetition),
                    None => missing.push((msg, vec![rep.row.repetition])),
                }
                continue;
            }
            let e = table
                .entry((window_rank(&l.window), l.scope.clone(), l.counter.clone()))
                .or_insert_with(|| (l.window.clone(), vec![None; with.len()]));
            e.1[k] = l.delta;
        }
    }
    let head = |h: &mut String| {
        h.push_str("<thead><tr><th>window</th><th>scope</th><th>counter</th>");
        for (i, rep, _) in &with {
            let _ = write!(
                h,
                "<th><span class=\"swatch\" style=\"background:{}\"></span>rep {}</th>",
                css(rep_color(*i)),
                rep.row.repetition
            );
        }
        h.push_str("</tr></thead><tbody>\n");
    };
    let row = |h: &mut String, k: &Key, window: &str, deltas: &[Option<i128>], what: &str| {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code>{}</td>",
            esc(window),
            esc(&k.1),
            esc(&k.2),
            if what.is_empty() {
                String::new()
            } else {
                format!(" <span class=\"note\">{}</span>", esc(what))
            }
        );
        for d in deltas {
            let _ = write!(h, "<td class=\"num\">{}</td>", opt(*d));
        }
        h.push_str("</tr>\n");
    };
    h.push_str("<details class=\"counters\"><summary>Counters (growth per window; counters.csv)</summary>\n");
    h.push_str(
        "<p class=\"note\">ramp = clients started until the end of hold; observe = end of \
        hold until the end of observe. Empty: the counter did not move in that repetition, or its \
        file lacks it.</p>\n<table class=\"small\">",
    );
    head(h);
    for (k, (window, deltas)) in &table {
        if let Some((_, what)) = KEY_COUNTERS.iter().find(|(c, _)| *c == k.2) {
            row(h, k, window, deltas, what);
        }
    }
    h.push_str("</tbody></table>\n<details><summary>every counter that moved</summary><table class=\"small\">");
    head(h);
    for (k, (window, deltas)) in &table {
        row(h, k, window, deltas, "");
    }
    h.push_str("</tbody></table></details>\n");
    for (msg, reps) in missing {
        let reps: Vec<String> = reps.iter().map(u32::to_string).collect();
        let _ = writeln!(
            h,
            "<p class=\"note\">Counters of {} (rep {}).</p>",
            esc(&msg),
            reps.join(", ")
        );
    }
    h.push_str("</details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_per_role_summed_over_repetitions_with_each_ones_count() {
        let row = |rep: u32, sigs: Option<&str>| CellRow {
            repetition: rep,
            kernel_signatures: sigs.map(String::from),
            ..CellRow::example("a", rep, "ssh_dropped")
        };
        let rows = [
            row(
                1,
                Some("server:virtio_tx_timeout=3 server:netdev_watchdog=1 host:conntrack_full=10"),
            ),
            row(2, Some("")),
            row(3, None),
            row(
                4,
                Some("client1:tcp_orphans=2 server:virtio_tx_timeout=4 host:net_ratelimit=1"),
            ),
        ];
        let refs: Vec<&CellRow> = rows.iter().collect();
        let t = signature_table(&refs).unwrap();
        assert!(
            t.contains("<th>signature</th><th>server</th><th>client1</th><th>host</th>"),
            "{t}"
        );
        // netdev_watchdog comes before virtio_tx_timeout (the set's order).
        let (w, v) = (
            t.find("netdev_watchdog").unwrap(),
            t.find("virtio_tx_timeout").unwrap(),
        );
        assert!(w < v, "{t}");
        let line = t
            .lines()
            .find(|l| l.contains("<code>virtio_tx_timeout"))
            .unwrap();
        assert!(
            line.contains("<td class=\"num\">7 <span class=\"note\">(3, 0, –, 4)</span></td>"),
            "{line}"
        );
        let line = t
            .lines()
            .find(|l| l.contains("<code>conntrack_full"))
            .unwrap();
        assert!(
            line.contains(">10 <span class=\"note\">(10, 0, –, 0)</span></td></tr>"),
            "{line}"
        );
        assert!(t.contains("rep 1, 2, 3, 4"), "{t}");
        // Nothing seen, or nothing read: no table.
        let quiet = [row(1, Some("")), row(2, None)];
        assert_eq!(signature_table(&quiet.iter().collect::<Vec<_>>()), None);
        // One repetition: the count alone.
        let one = [row(1, Some("host:tcp_oom=2"))];
        let t = signature_table(&one.iter().collect::<Vec<_>>()).unwrap();
        assert!(t.contains("<td class=\"num\">2</td>"), "{t}");
    }
}
