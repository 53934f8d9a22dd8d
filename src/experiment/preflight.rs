//! Preflight: what must hold before anything boots (a pure check over the host's measured
//! facts, so every refusal is testable), and what must hold once the lab runs (the NIC backend
//! and the emulator that QEMU really uses are the ones the cell names).

use crate::experiment::provision::Ready;
use crate::lab::emulator::Emulator;
use crate::matrix::plan::{
    Cell, DisconnectMethod, NetMode, Settings, Sizes, Vhost, CLIENTS, SOURCE_PORTS,
};

/// What preflight needs to know about the host, read once per cell.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostFacts {
    pub(crate) mem_available_mib: Option<u64>,
    /// CPUs this process may use.
    pub(crate) cores: Option<u32>,
    /// (count, max) of the host's conntrack table, when nf_conntrack is loaded.
    pub(crate) conntrack: Option<(u64, u64)>,
    /// br_netfilter hands bridged frames to iptables (and conntrack).
    pub(crate) bridged_tracked: bool,
    /// The host's ephemeral port range: user-mode flows are host loopback connections.
    pub(crate) port_range: Option<(u64, u64)>,
    /// RLIMIT_NOFILE of libvirtd, which QEMU inherits (libvirt's qemu.conf max_files unset).
    pub(crate) qemu_nofile: Option<u64>,
    /// `ip -o -4 route show`, to refuse a host that routes the lab range itself.
    pub(crate) routes: String,
    /// The open-file limit a passt started now gets (lab/passt.rs `nofile`).
    pub(crate) passt_nofile: Option<u64>,
    /// fs.file-nr: files open host-wide, and fs.file-max.
    pub(crate) files: Option<(u64, u64)>,
}

impl HostFacts {
    pub(crate) fn read() -> HostFacts {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_available_mib = meminfo
            .lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb / 1024);
        let port_range = crate::host::metrics::read_sysctl("net.ipv4.ip_local_port_range")
            .ok()
            .and_then(|v| {
                let mut it = v.split_whitespace().map(|n| n.parse::<u64>().ok());
                Some((it.next()??, it.next()??))
            });
        let qemu_nofile = std::fs::read_to_string("/run/libvirtd.pid")
            .ok()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{}/limits", pid.trim())).ok())
            .and_then(|limits| hard_nofile(&limits));
        HostFacts {
            mem_available_mib,
            cores: std::thread::available_parallelism()
                .ok()
                .map(|n| n.get() as u32),
            conntrack: crate::host::metrics::conntrack(),
            bridged_tracked: crate::host::metrics::read_sysctl(
                "net.bridge.bridge-nf-call-iptables",
            )
            .map(|v| v.trim() == "1")
            .unwrap_or(false),
            port_range,
            qemu_nofile,
            routes: crate::support::cmd::run("ip", &["-o", "-4", "route", "show"])
                .unwrap_or_default(),
            passt_nofile: Some(crate::lab::passt::nofile_now()),
            files: crate::host::metrics::read_sysctl("fs.file-nr")
                .ok()
                .and_then(|v| {
                    let f: Vec<u64> = v
                        .split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect();
                    Some((*f.first()?, *f.get(2)?))
                }),
        }
    }
}

/// The hard "Max open files" of a /proc/PID/limits text.
fn hard_nofile(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// Capacity check before anything boots; the error says what does not fit and what to change.
pub(crate) fn check(
    cell: &Cell,
    sizes: &Sizes,
    s: &Settings,
    host: &HostFacts,
) -> Result<(), String> {
    let target = sizes.target;
    if let Some(line) = lab_range_conflict(&host.routes) {
        return Err(format!(
            "the host already routes {line:?}, which overlaps nicstorm's lab range {}0.0/16",
            crate::lab::hostnet::LAB_NET
        ));
    }
    if let Some(cores) = host.cores {
        if sizes.vcpus > cores {
            return Err(format!(
                "axes.vcpus: {} vCPUs per VM, but this host has {cores} CPUs; at most {cores}",
                sizes.vcpus
            ));
        }
    }
    let ports = u64::from(s.ports.count());
    match cell.mode {
        NetMode::User => {
            // Every flow is a host loopback connection from a client's QEMU (127.0.0.1,
            // ephemeral port) to a forwarded port: all three clients share one port range.
            if let Some((lo, hi)) = host.port_range {
                let tuples = (hi - lo + 1) * ports;
                if tuples < target {
                    return Err(format!(
                        "user mode: {target} connections need more than {tuples} host loopback tuples ({} ephemeral ports {lo}-{hi} x {ports} forwarded ports); lower connections or add ports",
                        hi - lo + 1
                    ));
                }
            }
            // ...and each holds a host socket in the server's QEMU (and one in a client's).
            if let Some(nofile) = host.qemu_nofile {
                if target + 1000 > nofile {
                    return Err(format!(
                        "user mode: the server's QEMU holds one host socket per connection, but it may open {nofile} files (libvirtd's RLIMIT_NOFILE, which QEMU inherits); at most {} connections here, or set max_files in /etc/libvirt/qemu.conf",
                        nofile.saturating_sub(1000)
                    ));
                }
            }
        }
        NetMode::Passt => passt_fits(target, ports, host)?,
        NetMode::Bridge | NetMode::Nat => {
            let tuples = ports * SOURCE_PORTS * CLIENTS;
            if tuples < target {
                return Err(format!("{target} connections need more than {tuples} (ports x 64512 source ports x 3 clients) tuples; add ports"));
            }
        }
    }
    let need_mib = 256 + target * 4 / 1024;
    if sizes.server_mib < need_mib {
        return Err(format!(
            "server memory {} MiB < {need_mib} MiB needed (256 MiB + 4 KiB per connection)",
            sizes.server_mib
        ));
    }
    let total_mib = sizes.server_mib + 3 * sizes.client_mib;
    let passt_mib = if cell.mode == NetMode::Passt {
        (target * PASST_KIB_PER_CONNECTION).div_ceil(1024)
    } else {
        0
    };
    if let Some(avail) = host.mem_available_mib {
        if total_mib + passt_mib + 1024 > avail {
            return Err(if passt_mib > 0 {
                format!("the four VMs need {total_mib} MiB and passt's sockets about {passt_mib} MiB ({PASST_KIB_PER_CONNECTION} KiB per connection), but the host has {avail} MiB available (keeping 1 GiB for itself)")
            } else {
                format!("the four VMs need {total_mib} MiB but the host has {avail} MiB available (keeping 1 GiB for itself)")
            });
        }
    }
    // NAT flows are conntracked on the host; so are bridged ones when br_netfilter hands
    // bridged frames to iptables. Either way a full table drops new flows silently.
    if cell.mode == NetMode::Nat || (cell.mode == NetMode::Bridge && host.bridged_tracked) {
        if let Some((count, max)) = host.conntrack {
            let max = s
                .host_sysctls
                .get("net.netfilter.nf_conntrack_max")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(max);
            // ~100 flows of headroom for SSH probes and whatever else the host tracks.
            if count + target + 100 > max {
                return Err(format!(
                    "host conntrack table holds {max} entries ({count} in use) but this {} cell needs {target}{}; set settings.host_sysctls.net.netfilter.nf_conntrack_max",
                    cell.mode,
                    if cell.mode == NetMode::Bridge { " (bridged traffic is tracked: net.bridge.bridge-nf-call-iptables=1)" } else { "" }
                ));
            }
        }
    }
    if !cell.mode.has_tap() && cell.disconnect == DisconnectMethod::LinkDown {
        return Err(format!(
            "link-down needs a tap; {} mode has none",
            cell.mode
        ));
    }
    Ok(())
}

/// Host kernel memory a passt-mode connection costs: its two flows (one in a client's passt,
/// one in the server's) each hold a TCP socket and a timerfd on the host. Measured with
/// bookworm's passt in a namespace: 5,000 forwarded flows (a socket pair and a timerfd each)
/// added 11.9 KiB of slab per flow (2026-12-07, this host; /proc/meminfo Slab before and
/// after).
const PASST_KIB_PER_CONNECTION: u64 = 12;

/// The ephemeral ports of a new network namespace (the kernel's default,
/// `inet_init_net()`: 32768-60999): the clients' passts connect from the lab namespace's
/// loopback, whatever the host's own range is.
const NETNS_PORT_RANGE: (u64, u64) = (32768, 60999);

/// passt mode: what one passt can hold, and what the host must give them. Every connection
/// is a flow in a client's passt and one in the server's; the server's passt holds them all.
fn passt_fits(target: u64, ports: u64, host: &HostFacts) -> Result<(), String> {
    use crate::lab::passt::{own_fds, FDS_PER_FLOW, NOFILE, SSH_FLOWS as PASST_SSH_FLOWS};
    // More connections than one passt can hold at all is refused by the plan
    // (matrix::plan::check::check_passt_flows), before any cell runs.
    let (lo, hi) = NETNS_PORT_RANGE;
    let tuples = (hi - lo + 1) * ports;
    if tuples < target {
        return Err(format!(
            "passt mode: {target} connections need more than {tuples} loopback tuples in the lab's namespace ({} ephemeral ports {lo}-{hi} x {ports} forwarded ports); lower connections or add ports",
            hi - lo + 1
        ));
    }
    if let Some(nofile) = host.passt_nofile {
        let own = own_fds(ports);
        let flows = nofile.saturating_sub(own) / FDS_PER_FLOW;
        if target + PASST_SSH_FLOWS > flows {
            return Err(format!(
                "passt mode: each passt may open {nofile} files ({NOFILE} where nicstorm may raise its hard RLIMIT_NOFILE, CAP_SYS_RESOURCE, up to fs.nr_open; else its own hard limit), {FDS_PER_FLOW} per flow (a socket and a timerfd) besides its own {own}: the server's passt holds {flows} flows, at most {} connections; run nicstorm with CAP_SYS_RESOURCE, or raise its hard limit (ulimit -Hn) or fs.nr_open",
                flows.saturating_sub(PASST_SSH_FLOWS)
            ));
        }
    }
    if let Some((open, max)) = host.files {
        // Two flows per connection, a socket and a timerfd each.
        let need = target * 2 * FDS_PER_FLOW + 1000;
        if open + need > max {
            return Err(format!(
                "passt mode: the passts open {need} files for {target} connections ({FDS_PER_FLOW} per flow, two flows each), but the host has {open} of fs.file-max {max} open; set settings.host_sysctls.fs.file-max"
            ));
        }
    }
    Ok(())
}

/// A host route into the lab range that is not one of our own bridges.
fn lab_range_conflict(routes: &str) -> Option<String> {
    routes
        .lines()
        .find(|line| {
            line.starts_with(crate::lab::hostnet::LAB_NET)
                && !line
                    .split_whitespace()
                    .any(|w| crate::model::names::run_of_link(w).is_some())
        })
        .map(str::to_owned)
}

/// Once the lab runs: the server's QEMU must use the vhost setting and the emulator the cell
/// names, or the row would describe another system. Returns `vhost_effective` (`None`: vhost
/// does not apply).
pub(crate) fn verify_running(
    cell: &Cell,
    ready: &Ready,
    emulator: &Emulator,
) -> Result<Option<Vhost>, String> {
    let server = ready.lab.server();
    let Some(running) = server.running() else {
        return Err(format!(
            "cannot read the QEMU process of {} (/proc)",
            server.name
        ));
    };
    if let Some(exe) = &running.exe {
        let want = std::fs::canonicalize(&emulator.binary).unwrap_or(emulator.binary.clone());
        if *exe != want {
            return Err(format!(
                "{} runs {}, but the cell asks for emulator {} ({})",
                server.name,
                exe.display(),
                emulator.name,
                want.display()
            ));
        }
    }
    // vhost exists only for virtio-net on a tap (the plan gives other cells `None`).
    let effective = cell
        .vhost
        .and(running.vhost)
        .map(|v| if v { Vhost::On } else { Vhost::Off });
    match (cell.vhost, effective) {
        (Some(Vhost::On), Some(Vhost::Off)) => Err(format!(
            "the cell asks for vhost on, but {}'s QEMU runs user-space virtio-net (no vhost in its -netdev, no /dev/vhost-net fd)",
            server.name
        )),
        (Some(Vhost::Off), Some(Vhost::On)) => Err(format!(
            "the cell asks for vhost off, but {}'s QEMU uses vhost-net",
            server.name
        )),
        _ => Ok(effective),
    }
}

/// A `frames: mtu` cell checks, in what runs, that each VM's backend is given MTU-sized frames
/// (lab/vm.rs `mtu_frames`); a `tso` cell is what libvirt sets up and is not checked. Returns
/// the VMs whose tap has a vnet header under a device model other than virtio-net (libvirt
/// 9.0 opens vmxnet3's that way, and vmxnet3 then hands TSO super-frames to the tap whole):
/// their guests must turn segmentation offloads off (`prepare::segmentation_off`), so that
/// the guest's own stack sends MTU-sized frames, as behind vmnet, where the guest is offered
/// no TSO.
pub(crate) fn verify_frames(
    frames: crate::matrix::plan::Frames,
    ready: &Ready,
) -> Result<Vec<String>, String> {
    if frames != crate::matrix::plan::Frames::Mtu {
        return Ok(vec![]);
    }
    let mut guest_side = vec![];
    for vm in &ready.lab.vms {
        let virtio = ready.lab.spec.nic == crate::matrix::plan::NicModel::VirtioNet;
        match vm.mtu_frames() {
            Some(true) => {}
            // user and passt modes have no tap: slirp and a stream netdev give virtio-net no
            // vnet header, hence no offloads to turn off; frames leave the guest MTU-sized.
            None if !ready.lab.spec.mode.has_tap() => {}
            None => {
                return Err(format!(
                    "the cell asks for MTU-sized frames, but what {}'s QEMU runs could not be read (/proc, or its tap's tun_flags)",
                    vm.name
                ))
            }
            Some(false) if !virtio => guest_side.push(vm.name.clone()),
            Some(false) => {
                return Err(format!(
                    "the cell asks for MTU-sized frames, but {}'s NIC backend can be given super-frames (virtio-net with host TSO on)",
                    vm.name
                ))
            }
        }
    }
    Ok(guest_side)
}

/// Why a cell cannot run as asked on this host at all (it is recorded `not_applicable`, not
/// run): vhost-net exists only under KVM with /dev/vhost-net (libvirt silently runs
/// user-space virtio for a non-KVM domain).
pub(crate) fn not_applicable(
    cell: &Cell,
    accel: crate::matrix::plan::Accel,
    vhost_net: bool,
) -> Option<String> {
    if cell.vhost == Some(Vhost::On) {
        if accel == crate::matrix::plan::Accel::Tcg {
            return Some("vhost on: under TCG libvirt gives a domain no vhost-net (only type='kvm' domains get it); the cell would measure user-space virtio-net".into());
        }
        if !vhost_net {
            return Some("vhost on: this host has no /dev/vhost-net (modprobe vhost_net); the cell would measure user-space virtio-net".into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::plan::{parse_plan, Accel};

    fn cell(axes: &str) -> (Cell, Settings) {
        let p = parse_plan(
            &format!("axes: {{nic: [vmxnet3], {axes}}}\n"),
            std::path::Path::new("m.yaml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (p.cells[0].clone(), p.settings)
    }

    fn roomy() -> HostFacts {
        HostFacts {
            mem_available_mib: Some(24_000),
            cores: Some(2),
            conntrack: Some((10, 262_144)),
            bridged_tracked: true,
            port_range: Some((32768, 60999)),
            qemu_nofile: Some(20_000),
            routes: "default via 172.16.0.1 dev eth0\n10.213.0.0/24 dev nsta1b2c3b0 proto kernel scope link src 10.213.0.1\n".into(),
            passt_nofile: Some(263_166),
            files: Some((1264, 2_466_239)),
        }
    }

    /// (axes, accelerator, how the host differs from a roomy one, the refusal or None).
    type Case = (
        &'static str,
        Accel,
        fn(&mut HostFacts),
        Option<&'static str>,
    );

    #[test]
    fn refusals_name_what_to_change() {
        let cases: &[Case] = &[
            ("mode: [bridge], connections: [3000]", Accel::Tcg, |_| {}, None),
            ("mode: [bridge], connections: [3000], vcpus: [4]", Accel::Kvm, |_| {}, Some("4 vCPUs per VM, but this host has 2 CPUs")),
            ("mode: [bridge], connections: [3000], vcpus: [1024]", Accel::Kvm, |_| {}, Some("axes.vcpus: 1024 vCPUs")),
            ("mode: [user], connections: [30000]", Accel::Tcg, |_| {}, Some("the server's QEMU holds one host socket per connection, but it may open 20000 files")),
            ("mode: [user], connections: [3000]", Accel::Tcg, |_| {}, None),
            ("mode: [user], connections: [3000]", Accel::Tcg, |h| h.port_range = Some((60000, 60099)), Some("2000 host loopback tuples (100 ephemeral ports 60000-60099 x 20 forwarded ports)")),
            ("mode: [nat], connections: [1000000]", Accel::Kvm, |_| {}, Some("host conntrack table holds 262144 entries")),
            ("mode: [bridge], connections: [1000000]", Accel::Kvm, |h| { h.bridged_tracked = false; h.mem_available_mib = Some(8000) }, Some("the four VMs need")),
            ("mode: [bridge], connections: [3000]", Accel::Tcg, |h| h.routes.push_str("10.213.5.0/24 via 192.168.1.1 dev eth0\n"), Some("the host already routes \"10.213.5.0/24 via 192.168.1.1 dev eth0\"")),
            // passt: 131,071 flows per process, less 100 for SSH, in the server's passt.
            ("mode: [passt], connections: [130971]", Accel::Kvm, |_| {}, None),
            ("mode: [passt], connections: [9850]", Accel::Kvm, |h| h.passt_nofile = Some(20_000), None),
            ("mode: [passt], connections: [9900]", Accel::Kvm, |h| h.passt_nofile = Some(20_000), Some("each passt may open 20000 files (263166 where nicstorm may raise its hard RLIMIT_NOFILE")),
            ("mode: [passt], connections: [9900]", Accel::Kvm, |h| h.passt_nofile = Some(20_000), Some("besides its own 84: the server's passt holds 9958 flows, at most 9858 connections")),
            ("mode: [passt], connections: [100000]", Accel::Kvm, |h| h.files = Some((1000, 300_000)), Some("the passts open 401000 files for 100000 connections")),
            ("mode: [bridge], connections: [30000]", Accel::Kvm, |h| h.mem_available_mib = Some(4500), None),
            ("mode: [passt], connections: [30000]", Accel::Kvm, |h| h.mem_available_mib = Some(4500), Some("passt's sockets about 352 MiB (12 KiB per connection)")),
        ];
        for (axes, accel, edit, want) in cases {
            let (c, s) = cell(axes);
            let mut host = roomy();
            edit(&mut host);
            let got = check(&c, &c.resolve(*accel, &s), &s, &host);
            match want {
                None => assert_eq!(got, Ok(()), "{axes}"),
                Some(w) => {
                    let e = got.expect_err(axes);
                    assert!(e.contains(w), "{axes}: {e}");
                }
            }
        }
    }

    #[test]
    fn limits_and_vhost_applicability() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 20000                files     \n";
        assert_eq!(hard_nofile(limits), Some(20000));
        assert_eq!(hard_nofile("Max processes 1 2 processes\n"), None);
        let p = parse_plan(
            "axes: {nic: [virtio-net], mode: [bridge], vhost: [on, off], connections: [10]}\n",
            std::path::Path::new("m.yaml"),
        )
        .unwrap();
        let (on, off) = (&p.cells[0], &p.cells[1]);
        assert!(not_applicable(on, Accel::Tcg, true)
            .unwrap()
            .contains("under TCG"));
        assert!(not_applicable(on, Accel::Kvm, false)
            .unwrap()
            .contains("no /dev/vhost-net"));
        assert_eq!(not_applicable(on, Accel::Kvm, true), None);
        assert_eq!(not_applicable(off, Accel::Tcg, false), None);
    }
}
