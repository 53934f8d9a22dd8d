//! The sweeps section: cells that differ only in QEMU's environment (a `qemu_env` sweep) drawn
//! as a phase diagram per NIC model: one swept variable down, one across, in each square a
//! verdict mark per repetition with the phase in which a network was lost (P provision,
//! R ramp, ...), so the region where the loss moves from the disconnect into the ramp, or
//! disappears, can be read off.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::text::{esc, verdict_class};
use crate::model::named::Named;
use crate::model::phase::Phase;
use crate::report::{Group, Results};
use crate::results::row::env_pairs;

/// One letter per phase of a loss, as the squares show it.
fn phase_letter(p: &Named<Phase>) -> &'static str {
    match p.known() {
        Some(Phase::Provision) => "P",
        Some(Phase::Prepare) => "p",
        Some(Phase::Ramp) => "R",
        Some(Phase::Hold) => "H",
        Some(Phase::Disconnect) => "D",
        Some(Phase::Observe) => "O",
        Some(_) => "·",
        None => "?",
    }
}

/// What a family of swept cells shares: every axis and fixed variable but the NIC model and
/// the swept variables.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FamilyKey {
    qemu: String,
    mode: String,
    rest: Vec<(&'static str, String)>,
    target: Option<u64>,
    env_names: Vec<String>,
}

/// A group with its QEMU environment.
type Member<'a> = (&'a Group, BTreeMap<String, String>);

/// A family's groups with their environments.
struct Family<'a> {
    key: FamilyKey,
    members: Vec<Member<'a>>,
}

impl Family<'_> {
    /// The variables that take more than one value in the family, in name order.
    fn swept(&self) -> Vec<String> {
        self.key
            .env_names
            .iter()
            .filter(|n| {
                let mut vs: Vec<&String> = self.members.iter().map(|(_, e)| &e[*n]).collect();
                vs.sort();
                vs.dedup();
                vs.len() > 1
            })
            .cloned()
            .collect()
    }

    /// The values `name` takes, numerically sorted where they are all numbers.
    fn values(&self, name: &str) -> Vec<String> {
        let mut vs: Vec<String> = self.members.iter().map(|(_, e)| e[name].clone()).collect();
        vs.sort();
        vs.dedup();
        if vs.iter().all(|v| v.parse::<f64>().is_ok()) {
            vs.sort_by(|a, b| {
                a.parse::<f64>()
                    .unwrap()
                    .total_cmp(&b.parse::<f64>().unwrap())
            });
        }
        vs
    }
}

/// The families of one host class: non-search groups with a QEMU environment, grouped by
/// everything but the NIC and the environment's values.
fn families<'a>(groups: &[&'a Group]) -> Vec<Family<'a>> {
    let mut by: BTreeMap<FamilyKey, Vec<Member<'a>>> = BTreeMap::new();
    for g in groups {
        let r = g.row();
        let env: BTreeMap<String, String> = env_pairs(r.qemu_env.as_deref()).into_iter().collect();
        if env.is_empty() {
            continue;
        }
        let rest: Vec<(&'static str, String)> = r
            .named_axes()
            .into_iter()
            // vhost is a property of the NIC model (n/a but for virtio-net): not a family.
            .filter(|(k, _)| *k != "qemu" && *k != "vhost")
            .chain([("connections", r.connections.to_string())])
            .collect();
        let key = FamilyKey {
            qemu: r.qemu.to_string(),
            mode: r.mode.to_string(),
            rest,
            target: r.target,
            env_names: env.keys().cloned().collect(),
        };
        by.entry(key).or_default().push((g, env));
    }
    by.into_iter()
        .map(|(key, members)| Family { key, members })
        .filter(|f| !f.swept().is_empty())
        .collect()
}

fn legend(h: &mut String) {
    h.push_str(
        "<p class=\"note\">A square per repetition, coloured by its verdict (legend in the \
        Overview); the letter is the phase in which the run first saw a network lost: \
        <b>P</b> provision, <b>p</b> prepare, <b>R</b> ramp, <b>H</b> hold, <b>D</b> \
        disconnect, <b>O</b> observe (after the disconnect); none: no network was lost. A thick \
        black border: the server's backend was refused by the vmnet model and never flushed (its \
        network lost to the model, whichever VM the run saw lost first). The seed's signature is \
        the server lost at <b>D</b> or <b>O</b> after a full ramp.</p>\n",
    );
}

pub(crate) fn section(h: &mut String, data: &Results) {
    let mut any = false;
    for class in &data.classes {
        let ci = data.class_index(class);
        let groups: Vec<&Group> = data.in_class(class).filter(|g| !g.is_search()).collect();
        for fam in families(&groups) {
            if !any {
                h.push_str("<section id=\"sweeps\"><h2>Sweeps</h2>\n");
                legend(h);
                any = true;
            }
            family(h, &fam, class, ci);
        }
    }
    if any {
        h.push_str("</section>\n");
    }
}

/// One family: a diagram per NIC model (per value of any third swept variable).
fn family(h: &mut String, fam: &Family, class: &str, ci: usize) {
    let swept = fam.swept();
    let fixed: Vec<String> = fam
        .key
        .env_names
        .iter()
        .filter(|n| !swept.contains(n))
        .map(|n| format!("{n}={}", fam.members[0].1[n]))
        .collect();
    let rest: Vec<String> = fam
        .key
        .rest
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(
        h,
        "<h3>{} · {}</h3>\n<p class=\"note\">{}; {}{}{}</p>",
        esc(&fam.key.qemu),
        esc(&fam.key.mode),
        esc(class),
        esc(&rest.join(" ")),
        fam.key
            .target
            .map_or(String::new(), |t| format!(" · target {t}")),
        if fixed.is_empty() {
            String::new()
        } else {
            esc(&format!(" · fixed: {}", fixed.join(" ")))
        },
    );
    // Down: the first swept variable; across: the second; any further ones split panels.
    let y = &swept[0];
    let x = swept.get(1);
    let others: Vec<&String> = swept.iter().skip(2).collect();
    let mut nics: Vec<String> = vec![];
    for (g, _) in &fam.members {
        let nic = g.row().nic.to_string();
        if !nics.contains(&nic) {
            nics.push(nic);
        }
    }
    // A panel's title: the NIC model, with its vhost where it applies.
    let vhost_of = |nic: &str| {
        fam.members
            .iter()
            .map(|(g, _)| g.row())
            .find(|r| r.nic.to_string() == nic && r.vhost_applies())
            .map(|r| format!(" (vhost {})", r.vhost))
            .unwrap_or_default()
    };
    let mut panels: Vec<(String, Vec<(String, String)>)> = vec![];
    for nic in &nics {
        let mut combos: Vec<Vec<(String, String)>> = fam
            .members
            .iter()
            .filter(|(g, _)| g.row().nic.to_string() == *nic)
            .map(|(_, e)| {
                others
                    .iter()
                    .map(|o| ((*o).clone(), e[*o].clone()))
                    .collect()
            })
            .collect();
        combos.sort();
        combos.dedup();
        for c in combos {
            panels.push((nic.clone(), c));
        }
    }
    h.push_str("<div class=\"diagrams\">");
    for (nic, other) in panels {
        let title = if other.is_empty() {
            format!("{nic}{}", vhost_of(&nic))
        } else {
            let o: Vec<String> = other.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{nic}{} · {}", vhost_of(&nic), o.join(" "))
        };
        let _ = write!(
            h,
            "<table class=\"diagram\"><caption>{}</caption><tr><th>{} ↓ {}</th>",
            esc(&title),
            esc(y),
            x.map_or(String::new(), |x| format!("· {} →", esc(x)))
        );
        let xs = x.map_or(vec![String::new()], |x| fam.values(x));
        for xv in &xs {
            let _ = write!(h, "<th>{}</th>", esc(xv));
        }
        h.push_str("</tr>");
        for yv in fam.values(y) {
            let _ = write!(h, "<tr><th>{}</th>", esc(&yv));
            for xv in &xs {
                h.push_str("<td>");
                // Every group at the point: merged runs with settings the row does not show
                // (rate, sysctls) are separate cells, each drawn.
                let at: Vec<&Group> = fam
                    .members
                    .iter()
                    .filter(|(g, e)| {
                        g.row().nic.to_string() == nic
                            && e[y] == yv
                            && x.is_none_or(|x| e[x] == *xv)
                            && other.iter().all(|(k, v)| e[k] == *v)
                    })
                    .map(|(g, _)| *g)
                    .collect();
                if at.is_empty() {
                    h.push_str("<span class=\"note\">–</span>");
                }
                for g in at {
                    squares(h, g, ci);
                }
                h.push_str("</td>");
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    h.push_str("</div>\n");
}

/// A group's repetitions as squares with the loss phase, linking to the cell.
fn squares(h: &mut String, g: &Group, ci: usize) {
    let _ = write!(h, "<a href=\"#{}\" class=\"marks\">", g.anchor(ci));
    for rep in &g.reps {
        let r = &rep.row;
        let letter = r.lost_phase.as_ref().map_or("", phase_letter);
        let lost = match (&r.lost_phase, &r.lost_role) {
            (Some(p), Some(who)) => format!(", {who}'s network lost in {p}"),
            (Some(p), None) => format!(", a network lost in {p}"),
            _ => String::new(),
        };
        let refused = match (r.vmnet_refused_server, r.vmnet_refused_clients) {
            (Some(s), Some(c)) => format!(", refused server {s} clients {c}"),
            _ => String::new(),
        };
        // The server's backend refused and never flushed: its network lost to the model,
        // whoever the run saw lost first.
        let server_lost =
            r.vmnet_refused_server.is_some_and(|n| n > 0) && r.vmnet_flushes_server == Some(0);
        let _ = write!(
            h,
            "<span class=\"mark sq {}{}\" role=\"img\" aria-label=\"{v}{l}\" title=\"rep {}: {v}{l}{f}\">{letter}</span>",
            verdict_class(&r.verdict),
            if server_lost { " srv" } else { "" },
            r.repetition,
            v = esc(r.verdict.as_str()),
            l = esc(&lost),
            f = esc(&refused),
        );
    }
    h.push_str("</a>");
}

#[cfg(test)]
mod tests {
    use crate::report::Results;
    use crate::results::CellRow;

    /// A row of the sweep at (burst, ppms) for `nic`, with its verdict and loss phase.
    fn row(nic: &str, burst: u32, ppms: u32, verdict: &str, lost: Option<&str>) -> CellRow {
        CellRow {
            nic: nic.into(),
            qemu: "vmnet-flow-control/grid".into(),
            qemu_env: Some(format!(
                "NICSTORM_VMNET_BURST={burst};NICSTORM_VMNET_MODE=disable;NICSTORM_VMNET_PPMS={ppms}"
            )),
            lost_phase: lost.map(Into::into),
            lost_role: lost.map(|_| "server".into()),
            ..CellRow::example(&format!("{nic}-{burst}-{ppms}"), 1, verdict)
        }
    }

    #[test]
    fn a_two_variable_sweep_is_a_diagram_per_nic() {
        let rows = vec![
            row("virtio-net", 32, 1, "ssh_dropped", Some("ramp")),
            CellRow {
                vmnet_refused_server: Some(1),
                vmnet_flushes_server: Some(0),
                ..row("virtio-net", 32, 16, "ssh_dropped", Some("disconnect"))
            },
            row("virtio-net", 2048, 1, "ok", None),
            row("virtio-net", 2048, 16, "ok", None),
            row("vmxnet3", 32, 1, "hung", Some("observe")),
            row("vmxnet3", 32, 16, "ok", None),
            row("vmxnet3", 2048, 1, "ok", None),
            // One point missing for vmxnet3: drawn as a dash, not as ok.
        ];
        let data = Results::of_rows(std::path::Path::new("/nonexistent"), &rows);
        let mut h = String::new();
        super::section(&mut h, &data);
        assert!(h.contains("<h2>Sweeps</h2>"), "{h}");
        assert!(h.contains("fixed: NICSTORM_VMNET_MODE=disable"), "{h}");
        let tables: Vec<&str> = h.split("<table class=\"diagram\">").skip(1).collect();
        assert_eq!(tables.len(), 2, "one diagram per NIC: {h}");
        assert!(tables[0].starts_with("<caption>virtio-net</caption>"));
        assert!(tables[1].starts_with("<caption>vmxnet3</caption>"));
        assert!(tables[0].contains("NICSTORM_VMNET_BURST ↓ · NICSTORM_VMNET_PPMS →"));
        // Rows go down burst (32 then 2048), columns across ppms (1 then 16), numerically.
        let v = tables[0];
        let (r32, r2048) = (
            v.find("<th>32</th>").unwrap(),
            v.find("<th>2048</th>").unwrap(),
        );
        assert!(r32 < r2048);
        let row32 = &v[r32..r2048];
        let (ramp, disc) = (
            row32.find(">R</span>").unwrap(),
            row32.find(">D</span>").unwrap(),
        );
        assert!(
            ramp < disc,
            "ppms 1 lost in the ramp, ppms 16 at the disconnect: {row32}"
        );
        assert!(row32.contains("v-ssh_dropped"));
        // The server's backend refused and never flushed: outlined; the ramp loss is not.
        assert!(
            row32.contains("v-ssh_dropped srv\"") && row32.matches(" srv\"").count() == 1,
            "{row32}"
        );
        assert!(v[r2048..].contains("v-ok"));
        assert!(tables[1].contains(">O</span>") && tables[1].contains("v-hung"));
        assert!(
            tables[1].contains("<span class=\"note\">–</span>"),
            "missing point"
        );
        // Rows without an environment, or with one that does not vary, draw nothing.
        let plain = vec![CellRow::example("a", 1, "ok")];
        let mut h = String::new();
        super::section(
            &mut h,
            &Results::of_rows(std::path::Path::new("/x"), &plain),
        );
        assert!(h.is_empty());
    }
}
