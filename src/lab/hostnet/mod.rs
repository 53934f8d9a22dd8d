//! Host side of a lab's network: isolated Linux bridges, NAT rules, passt's network namespace,
//! and host sysctls, each held by a guard that undoes it. Nothing here touches the host's
//! uplink.
//!
//! Why plain bridges and not libvirt networks: libvirt's isolated networks add REJECT
//! rules to FORWARD that would block the NAT path between our two bridges, and its NAT
//! networks masquerade out of the host uplink. Our own bridges carry no uplink and only
//! the rules listed here, each tagged with the run's comment so leftovers can be found.
//! What a killed run left on the host is removed by sweep.rs.

mod sweep;

pub(crate) use sweep::sweep;
pub use sweep::Kept;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tracing::{info, warn};

use crate::host::metrics::{read_sysctl, write_sysctl};
use crate::matrix::plan::{NetMode, PortRange};
use crate::model::names::RunId;
use crate::support::cmd::run;
use sweep::flush_conntrack;

/// All lab subnets live in this /16; preflight refuses to run if the host routes any of it.
pub(crate) const LAB_NET: &str = "10.213.";

/// Where a VM sits and how the host and the other VMs reach it.
#[derive(Clone, Debug)]
pub(crate) struct Addr {
    /// Guest address with prefix, as given on the kernel command line.
    pub(crate) cidr: String,
    pub(crate) gw: Option<Ipv4Addr>,
    /// The bridge the VM's tap joins (bridge/nat modes).
    pub(crate) bridge: Option<String>,
    /// Host-side SSH endpoint.
    pub(crate) ssh_host: Ipv4Addr,
    pub(crate) ssh_port: u16,
}

/// Where the clients send their connections: the server itself (bridge), the host's
/// DNAT address (nat), or slirp's gateway with host-forwarded ports (user).
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: Ipv4Addr,
    pub(crate) ports: PortRange,
}

#[derive(Clone, Debug)]
struct Rule {
    table: &'static str,
    chain: &'static str,
    spec: Vec<String>,
}

/// passt mode: the host's end of the veth into the lab's namespace, its namespace end, and
/// the /30 between them. nicstorm's own SSH reaches each VM's passt forward there; the
/// namespace has no other route (no default route), and the host refuses every connection
/// the namespace opens towards it (`HostNet::up_passt`).
pub(crate) const PASST_HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 3, 1);
pub(crate) const PASST_NS_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 3, 2);
const PASST_LINK_PREFIX: u8 = 30;
/// passt mode: what every guest is given (each VM is alone behind its own passt, as behind
/// slirp): its address, and the gateway that its passt maps to the namespace's loopback.
pub(crate) const PASST_GUEST: Ipv4Addr = Ipv4Addr::new(10, 213, 4, 15);
pub(crate) const PASST_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 213, 4, 2);
pub(crate) const PASST_PREFIX: u8 = 24;
/// passt mode: VM i's SSH is forwarded from PASST_NS_ADDR:(PASST_SSH_BASE + i) to its port 22.
const PASST_SSH_BASE: u16 = 2200;

/// passt mode: the namespace every passt of the lab runs in, and what each VM's passt is told.
#[derive(Clone, Debug)]
pub(crate) struct PasstNet {
    /// `ip netns` name (`nstRIDns`).
    pub(crate) netns: String,
    /// passt's `-t` specs per VM (server first): the server's load ports on the namespace's
    /// loopback, and each VM's SSH on the veth's namespace end.
    pub(crate) forwards: Vec<Vec<String>>,
}

/// The host network of one lab. Dropping it undoes everything it did.
pub(crate) struct HostNet {
    pub(crate) mode: NetMode,
    run: RunId,
    /// Links to delete (bridges; passt's veth, whose peer goes with it).
    links: Vec<String>,
    /// passt mode: the namespace to delete (after its passt processes are gone).
    netns: Option<String>,
    rules: Vec<Rule>,
    sysctls: BTreeMap<String, String>,
    restore_file: PathBuf,
    /// Addresses of server (index 0) and clients 1..=3.
    pub(crate) vms: Vec<Addr>,
    pub(crate) target: Target,
    /// user mode: the host-forward specs per VM (`tcp:127.0.0.1:H-:G`).
    pub(crate) hostfwds: Vec<Vec<String>>,
    /// passt mode: its namespace and forwards.
    pub(crate) passt: Option<PasstNet>,
    /// Handed over (`lab up`): nothing is undone.
    detached: bool,
}

impl HostNet {
    /// Builds the host side for `mode`. `state_dir` keeps the sysctl values to restore, so
    /// the sweep can undo them after a crash.
    pub(crate) fn up(
        mode: NetMode,
        run_id: &RunId,
        ports: &PortRange,
        state_dir: &Path,
    ) -> Result<HostNet> {
        let mut net = HostNet {
            mode,
            run: run_id.clone(),
            links: vec![],
            netns: None,
            rules: vec![],
            sysctls: BTreeMap::new(),
            restore_file: state_dir.join("sysctl-restore.json"),
            vms: vec![],
            target: Target {
                addr: Ipv4Addr::UNSPECIFIED,
                ports: *ports,
            },
            hostfwds: vec![],
            passt: None,
            detached: false,
        };
        match mode {
            NetMode::Bridge => net.up_bridge(ports)?,
            NetMode::Nat => net.up_nat(ports)?,
            NetMode::User => net.up_user(ports)?,
            NetMode::Passt => net.up_passt(ports)?,
        }
        Ok(net)
    }

    fn up_bridge(&mut self, ports: &PortRange) -> Result<()> {
        let br = self.run.link("b0");
        self.add_bridge(&br, &["10.213.0.1/24"])?;
        // br_netfilter passes bridged frames through FORWARD; accept ours explicitly in case
        // the host's policy is DROP (docker does that).
        self.add_rule("filter", "FORWARD", &["-i", &br, "-o", &br, "-j", "ACCEPT"])?;
        self.isolate()?;
        let ip = |i: u8| Ipv4Addr::new(10, 213, 0, 10 + i);
        self.vms = (0..4)
            .map(|i| Addr {
                cidr: format!("{}/24", ip(i)),
                gw: None,
                bridge: Some(br.clone()),
                ssh_host: ip(i),
                ssh_port: 22,
            })
            .collect();
        self.target = Target {
            addr: ip(0),
            ports: *ports,
        };
        Ok(())
    }

    /// Server on b0 (10.213.1.0/24), clients on b1 (10.213.2.0/24). Clients connect to the
    /// host's 10.213.2.1; the host DNATs to the server and SNATs to its own b0 addresses, so
    /// every flow crosses host conntrack and NAT, as in UTM/VMware "shared" mode.
    fn up_nat(&mut self, ports: &PortRange) -> Result<()> {
        let (bs, bc) = (self.run.link("b0"), self.run.link("b1"));
        // Four SNAT source addresses: 4 x 64k ports x ports-count tuples, ample for 1M flows.
        self.add_bridge(
            &bs,
            &[
                "10.213.1.1/24",
                "10.213.1.2/24",
                "10.213.1.3/24",
                "10.213.1.4/24",
            ],
        )?;
        self.add_bridge(&bc, &["10.213.2.1/24"])?;
        // Forwarding on the lab's two bridges only, never the host-wide ip_forward: IPv4
        // forwards by the input device's setting, and the setting goes with the bridge.
        for b in [&bs, &bc] {
            write_sysctl(&format!("net.ipv4.conf.{b}.forwarding"), "1")?;
        }
        self.isolate()?;
        let dports = format!("{}:{}", ports.first, ports.last);
        self.add_rule(
            "nat",
            "PREROUTING",
            &[
                "-i",
                &bc,
                "-d",
                "10.213.2.1",
                "-p",
                "tcp",
                "--dport",
                &dports,
                "-j",
                "DNAT",
                "--to-destination",
                "10.213.1.10",
            ],
        )?;
        self.add_rule(
            "nat",
            "POSTROUTING",
            &[
                "-o",
                &bs,
                "-s",
                "10.213.2.0/24",
                "-d",
                "10.213.1.10",
                "-j",
                "SNAT",
                "--to-source",
                "10.213.1.1-10.213.1.4",
            ],
        )?;
        self.add_rule("filter", "FORWARD", &["-i", &bc, "-o", &bs, "-j", "ACCEPT"])?;
        self.add_rule("filter", "FORWARD", &["-i", &bs, "-o", &bc, "-j", "ACCEPT"])?;
        let server = Ipv4Addr::new(10, 213, 1, 10);
        self.vms.push(Addr {
            cidr: format!("{server}/24"),
            gw: Some(Ipv4Addr::new(10, 213, 1, 1)),
            bridge: Some(bs.clone()),
            ssh_host: server,
            ssh_port: 22,
        });
        for i in 1..=3u8 {
            let ip = Ipv4Addr::new(10, 213, 2, 10 + i);
            self.vms.push(Addr {
                cidr: format!("{ip}/24"),
                gw: Some(Ipv4Addr::new(10, 213, 2, 1)),
                bridge: Some(bc.clone()),
                ssh_host: ip,
                ssh_port: 22,
            });
        }
        self.target = Target {
            addr: Ipv4Addr::new(10, 213, 2, 1),
            ports: *ports,
        };
        Ok(())
    }

    /// Each VM gets its own slirp stack. SSH is forwarded from a free loopback port; the
    /// server's load ports are forwarded from a free loopback range, which clients reach
    /// through slirp's gateway 10.0.2.2 -- every flow costs host sockets in two QEMUs.
    fn up_user(&mut self, ports: &PortRange) -> Result<()> {
        let n = ports.count() as u16;
        let load_base = free_port_range(n + 4)?;
        let host_ports = PortRange {
            first: load_base,
            last: load_base + n - 1,
        };
        for i in 0..4u16 {
            let ssh = load_base + n + i;
            let mut fwds = vec![format!("tcp:127.0.0.1:{ssh}-:22")];
            if i == 0 {
                for (h, g) in (host_ports.first..=host_ports.last).zip(ports.first..=ports.last) {
                    fwds.push(format!("tcp:127.0.0.1:{h}-:{g}"));
                }
            }
            self.hostfwds.push(fwds);
            self.vms.push(Addr {
                cidr: "10.0.2.15/24".into(),
                gw: Some(Ipv4Addr::new(10, 0, 2, 2)),
                bridge: None,
                ssh_host: Ipv4Addr::LOCALHOST,
                ssh_port: ssh,
            });
        }
        self.target = Target {
            addr: Ipv4Addr::new(10, 0, 2, 2),
            ports: host_ports,
        };
        Ok(())
    }

    /// Each VM gets its own passt (lab/passt.rs starts them), all of them in one network
    /// namespace made here with no route out: its loopback, and a veth to the host whose /30
    /// is its only route. passt gives guests the namespace's network, so a guest reaches
    /// nothing beyond it (a connection anywhere else fails with ENETUNREACH, and passt resets
    /// it). Clients connect to passt's gateway, which their passt maps to the namespace's
    /// loopback, where the server's passt forwards the load ports: every flow is a loopback
    /// connection between two passt processes, as every user-mode flow is one between two
    /// QEMUs. Each VM's SSH is forwarded from the veth's namespace end, which the host alone
    /// reaches; the host refuses every connection the namespace opens towards it (INPUT), so
    /// the veth carries nicstorm's SSH and nothing a guest starts.
    fn up_passt(&mut self, ports: &PortRange) -> Result<()> {
        let ns = self.run.netns();
        run("ip", &["netns", "add", &ns])
            .with_context(|| format!("creating network namespace {ns}"))?;
        self.netns = Some(ns.clone());
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        let (host_end, ns_end) = (self.run.link("p0"), self.run.link("p1"));
        run(
            "ip",
            &[
                "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end, "netns", &ns,
            ],
        )
        .with_context(|| format!("creating veth {host_end} into {ns}"))?;
        self.links.push(host_end.clone());
        // IPv4 only (passt runs with -4): no IPv6 link-local address on either end.
        run("ip", &["link", "set", &host_end, "addrgenmode", "none"])?;
        run(
            "ip",
            &["-n", &ns, "link", "set", &ns_end, "addrgenmode", "none"],
        )?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{PASST_HOST_ADDR}/{PASST_LINK_PREFIX}"),
                "dev",
                &host_end,
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{PASST_NS_ADDR}/{PASST_LINK_PREFIX}"),
                "dev",
                &ns_end,
            ],
        )?;
        run("ip", &["link", "set", &host_end, "up"])?;
        run("ip", &["-n", &ns, "link", "set", &ns_end, "up"])?;
        info!(netns = ns, veth = host_end, "passt namespace up");
        self.isolate()?;
        // Nothing the namespace starts reaches the host: a guest's connection to the veth's
        // host end (or any host service on 0.0.0.0 behind it) is reset at once, and nothing
        // but TCP is let in; what the host starts (SSH to the forwards) comes back.
        self.add_rule(
            "filter",
            "INPUT",
            &[
                "-i",
                &host_end,
                "-p",
                "tcp",
                "--syn",
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ],
        )?;
        self.add_rule(
            "filter",
            "INPUT",
            &["-i", &host_end, "!", "-p", "tcp", "-j", "DROP"],
        )?;
        let (forwards, vms) = passt_layout(ports);
        self.vms = vms;
        self.passt = Some(PasstNet {
            netns: ns,
            forwards,
        });
        self.target = Target {
            addr: PASST_GATEWAY,
            ports: *ports,
        };
        Ok(())
    }

    /// Nothing crosses between the lab's links and any other link of the host, whatever
    /// the host forwards for others: the guests reach the lab only, and nothing from
    /// outside reaches them through the host.
    fn isolate(&mut self) -> Result<()> {
        let lab = format!("{}+", self.run.link(""));
        self.add_rule(
            "filter",
            "FORWARD",
            &["-i", &lab, "!", "-o", &lab, "-j", "DROP"],
        )?;
        self.add_rule(
            "filter",
            "FORWARD",
            &["!", "-i", &lab, "-o", &lab, "-j", "DROP"],
        )
    }

    fn add_bridge(&mut self, name: &str, addrs: &[&str]) -> Result<()> {
        run("ip", &["link", "add", name, "type", "bridge"])
            .with_context(|| format!("creating bridge {name}"))?;
        self.links.push(name.to_string());
        for a in addrs {
            run("ip", &["addr", "add", a, "dev", name])?;
        }
        run("ip", &["link", "set", name, "up"])?;
        info!(bridge = name, "bridge up");
        Ok(())
    }

    fn add_rule(&mut self, table: &'static str, chain: &'static str, spec: &[&str]) -> Result<()> {
        let mut spec: Vec<String> = spec.iter().map(|s| s.to_string()).collect();
        spec.extend([
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            self.run.tag(),
        ]);
        let mut args = vec!["-w", "10", "-t", table, "-I", chain, "1"];
        args.extend(spec.iter().map(String::as_str));
        run("iptables", &args)
            .with_context(|| format!("adding iptables rule to {table}/{chain}"))?;
        self.rules.push(Rule { table, chain, spec });
        Ok(())
    }

    /// Sets a host sysctl for the lifetime of this guard; the old value is written to the
    /// restore file first so a killed run can be undone by the next start.
    pub(crate) fn set_sysctl(&mut self, name: &str, value: &str) -> Result<()> {
        let old = read_sysctl(name)?;
        if old.trim() == value.trim() {
            return Ok(());
        }
        self.sysctls.entry(name.to_string()).or_insert(old);
        let restore = Restore {
            boot_id: crate::host::boot_id(),
            sysctls: self.sysctls.clone(),
        };
        crate::support::trust::write(&self.restore_file, &serde_json::to_vec(&restore)?)?;
        write_sysctl(name, value)?;
        info!(sysctl = name, value, "host sysctl set for this lab");
        Ok(())
    }

    /// Whether a host sysctl could not be put back at teardown (its restore file is kept).
    pub(crate) fn restore_pending(&self) -> bool {
        !self.sysctls.is_empty()
    }

    /// Keeps everything in place after this guard is gone (the restore file stays for the sweep).
    pub(crate) fn detach(mut self) {
        self.rules.clear();
        self.links.clear();
        self.netns = None;
        self.sysctls.clear();
        self.restore_file = PathBuf::new();
        // Nothing to undo any more, the lab's conntrack entries included: they are live.
        self.detached = true;
    }

    /// Undoes everything; keeps going past failures and reports them all.
    pub(crate) fn teardown(&mut self) -> Result<()> {
        if self.detached {
            return Ok(());
        }
        let mut errors = vec![];
        for r in self.rules.drain(..).rev() {
            let mut args = vec!["-w", "10", "-t", r.table, "-D", r.chain];
            args.extend(r.spec.iter().map(String::as_str));
            if let Err(e) = run("iptables", &args) {
                errors.push(format!("{e:#}"));
            }
        }
        for b in self.links.drain(..).rev() {
            if let Err(e) = run("ip", &["link", "del", &b]) {
                errors.push(format!("{e:#}"));
            }
        }
        // After its passt processes (the lab stops them first): a namespace a process still
        // holds would outlive its name.
        if let Some(ns) = self.netns.take() {
            if let Err(e) = run("ip", &["netns", "del", &ns]) {
                errors.push(format!("{e:#}"));
            }
        }
        if self.mode != NetMode::User {
            if let Err(e) = flush_conntrack() {
                errors.push(format!("{e:#}"));
            }
        }
        let mut unrestored = BTreeMap::new();
        for (k, v) in std::mem::take(&mut self.sysctls) {
            if let Err(e) = write_sysctl(&k, &v) {
                errors.push(format!("restoring {k}={}: {e:#}", v.trim()));
                unrestored.insert(k, v);
            }
        }
        if !self.restore_file.as_os_str().is_empty() {
            if unrestored.is_empty() {
                let _ = std::fs::remove_file(&self.restore_file);
            } else {
                // Kept for the sweep, which tries again and names it until it succeeds; with
                // only what is still to restore.
                let left = Restore {
                    boot_id: crate::host::boot_id(),
                    sysctls: unrestored.clone(),
                };
                if let Ok(bytes) = serde_json::to_vec(&left) {
                    let _ = crate::support::trust::write(&self.restore_file, &bytes);
                }
                errors.push(format!(
                    "the values to restore stay in {}",
                    self.restore_file.display()
                ));
                self.sysctls = unrestored;
            }
        }
        if !errors.is_empty() {
            bail!("host network teardown: {}", errors.join("; "));
        }
        Ok(())
    }
}

impl Drop for HostNet {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            warn!("{e:#}");
        }
    }
}

/// A lab's restore file: the host sysctls it changed and their values before, and the boot
/// it was written in (after a reboot the kernel's values are its boot values again, and
/// writing the old ones back would be a guess).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Restore {
    pub(crate) boot_id: String,
    pub(crate) sysctls: BTreeMap<String, String>,
}

/// passt mode's forwards and addresses per VM (server first): the server's passt forwards the
/// load ports on the namespace's loopback (where the clients' passts connect, mapping
/// passt's gateway), and each VM's passt forwards its SSH from the veth's namespace end.
/// Loopback and the veth address are distinct local addresses, so no load port range can
/// collide with the SSH forwards.
fn passt_layout(ports: &PortRange) -> (Vec<Vec<String>>, Vec<Addr>) {
    let mut forwards = vec![];
    let mut vms = vec![];
    for i in 0..4u16 {
        let ssh = PASST_SSH_BASE + i;
        let mut f = vec![];
        if i == 0 {
            f.push(format!("127.0.0.1/{}-{}", ports.first, ports.last));
        }
        f.push(format!("{PASST_NS_ADDR}/{ssh}:22"));
        forwards.push(f);
        vms.push(Addr {
            cidr: format!("{PASST_GUEST}/{PASST_PREFIX}"),
            gw: Some(PASST_GATEWAY),
            bridge: None,
            ssh_host: PASST_NS_ADDR,
            ssh_port: ssh,
        });
    }
    (forwards, vms)
}

/// A run of `n` consecutive free TCP ports on loopback (checked by binding them).
fn free_port_range(n: u16) -> Result<u16> {
    'base: for base in (30000u16..60000).step_by(n as usize + 16) {
        for p in base..base + n {
            if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_err() {
                continue 'base;
            }
        }
        return Ok(base);
    }
    bail!("no {n} consecutive free loopback ports between 30000 and 60000")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// passt mode: the server's passt forwards the load ports on the namespace's loopback and
    /// every VM's SSH from the veth's namespace end; every guest has the same address behind
    /// its own passt, and reaches the server through passt's gateway.
    #[test]
    fn passt_forwards_and_addresses() {
        let (forwards, vms) = passt_layout(&PortRange {
            first: 20000,
            last: 20019,
        });
        assert_eq!(
            forwards,
            [
                vec!["127.0.0.1/20000-20019", "10.213.3.2/2200:22"],
                vec!["10.213.3.2/2201:22"],
                vec!["10.213.3.2/2202:22"],
                vec!["10.213.3.2/2203:22"],
            ]
        );
        for (i, a) in vms.iter().enumerate() {
            assert_eq!(a.cidr, "10.213.4.15/24");
            assert_eq!(a.gw, Some(PASST_GATEWAY));
            assert_eq!(a.bridge, None);
            assert_eq!((a.ssh_host, a.ssh_port), (PASST_NS_ADDR, 2200 + i as u16));
        }
        // Every address is nicstorm's lab range; the guests' subnet holds the gateway.
        for a in [PASST_HOST_ADDR, PASST_NS_ADDR, PASST_GUEST, PASST_GATEWAY] {
            assert!(a.to_string().starts_with(LAB_NET), "{a}");
        }
        // A load range that takes the SSH ports' numbers still does not collide: another
        // local address.
        let (f, _) = passt_layout(&PortRange {
            first: 2200,
            last: 2203,
        });
        assert_eq!(f[0], ["127.0.0.1/2200-2203", "10.213.3.2/2200:22"]);
    }
}
