//! One VM of a lab: how it is made (overlay, kernel command line, NIC, domain XML), its libvirt
//! domain (state, destroy, link), the root shell on its serial port, and what its QEMU process
//! really runs (read from /proc).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use virt::domain::{Domain, DomainState};
use virt::enumutil::Enum;

use super::domain::{self, BridgedNic, DomainSpec, EnvVar, QemuNet};
use super::{Lab, Role, Start};
use crate::lab::image::Image;
use crate::matrix::plan::{Accel, Frames, NetMode, NicModel, Vhost};
use crate::support::cmd::run;

/// The kernel command line every guest boots with, before its identity.
const BOOT_CMDLINE: &str = "console=ttyS0 root=/dev/vda rw init=/usr/local/sbin/nicstorm-init cryptomgr.notests net.ifnames=0 panic=0";

/// The kernel command line of a guest booted to be saved, and of its restores.
pub(crate) fn hold_cmdline() -> String {
    format!("{BOOT_CMDLINE} {}", super::saved::HOLD)
}

/// One VM of the lab.
pub(crate) struct Vm {
    pub(crate) role: Role,
    pub(crate) name: String,
    pub(crate) ssh_host: std::net::Ipv4Addr,
    pub(crate) ssh_port: u16,
    pub(crate) console_log: PathBuf,
    pub(crate) heartbeat_log: PathBuf,
    /// Host end (unix socket) of the root shell on the guest's ttyS2.
    pub(crate) shell_socket: PathBuf,
    /// How long libvirt's define+start call took, seconds.
    pub(crate) start_seconds: f64,
    /// The guest's identity as nicstorm-identity reads it (`nicstorm.hostname=... nicstorm.addr=...
    /// nicstorm.key=...`): on the kernel command line of a booted guest, handed to a restored one
    /// through ttyS2.
    pub(crate) identity: String,
    /// The bridged NIC as defined (None in user and passt modes), for live link updates.
    pub(super) nic: Option<BridgedNic>,
    pub(super) domain: Option<Domain>,
}

impl Vm {
    /// The overlay and the domain XML of one VM (written to the log dir for the record).
    pub(super) fn plan(
        lab: &Lab,
        role: Role,
        image: &Image,
        key_b64: &str,
        start: &Start,
    ) -> Result<(Vm, String)> {
        let name = lab.run.domain(&role.to_string());
        let net = lab.net.as_ref().expect("network is up before domains");
        let addr = net.vms[role.index()].clone();
        let overlay = lab.state_dir.join(format!("{role}.qcow2"));
        // A restored guest's disk is the saved overlay as it was at the save (kept read-only
        // in the cache), under a fresh overlay of the cell's own.
        let saved = match start {
            Start::Restore(saved) => Some((saved.guest(role)?, saved.overlay(role))),
            Start::Boot | Start::Hold(_) => None,
        };
        let backing = saved
            .as_ref()
            .map_or_else(|| image.rootfs.clone(), |(_, o)| o.clone());
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                &backing.to_string_lossy(),
                &overlay.to_string_lossy(),
            ],
        )?;
        let console_log = lab.spec.log_dir.join(format!("{role}.console.log"));
        let heartbeat_log = lab.spec.log_dir.join(format!("{role}.heartbeat.log"));
        // In the state dir, not the log dir: a unix socket path must stay under 108 bytes.
        let shell_socket = lab.state_dir.join(format!("{role}.shell.sock"));
        let mut identity = format!(
            "nicstorm.hostname={role} nicstorm.addr={} nicstorm.key={key_b64}",
            addr.cidr
        );
        if let Some(gw) = addr.gw {
            identity.push_str(&format!(" nicstorm.gw={gw}"));
        }
        let cmdline = match start {
            Start::Boot => format!("{BOOT_CMDLINE} {identity}"),
            // The same for the save and every restore: nothing of the run in it.
            Start::Hold(_) | Start::Restore(_) => hold_cmdline(),
        };
        // A restored domain keeps the MAC it was saved with (its device state carries it,
        // and libvirt refuses another).
        let mac = saved
            .as_ref()
            .map_or_else(|| lab.run.mac(role.index() as u8), |(g, _)| g.mac.clone());
        let nic = addr.bridge.as_ref().map(|br| BridgedNic {
            bridge: br.clone(),
            tap: lab.tap(role),
            mac: mac.clone(),
            model: lab.spec.nic.qemu_model().to_owned(),
            // vhost only exists for virtio-net; the plan gives other NICs `None`.
            driver: lab.spec.vhost.map(|v| match v {
                Vhost::On => "vhost",
                Vhost::Off => "qemu",
            }),
            mtu_frames: lab.spec.frames == Frames::Mtu && lab.spec.nic == NicModel::VirtioNet,
            link: None,
        });
        let qemu_net = match lab.spec.mode {
            NetMode::User => Some(user_net(
                lab.spec.nic,
                &mac,
                &net.hostfwds[role.index()],
                role == Role::Server,
            )),
            NetMode::Passt => Some(stream_net(
                lab.spec.nic,
                &mac,
                &super::passt::socket_path(&lab.state_dir, &role.to_string()),
            )),
            NetMode::Bridge | NetMode::Nat => None,
        };
        let spec = DomainSpec {
            name: name.clone(),
            uuid: saved.as_ref().map(|(g, _)| g.uuid.clone()),
            kvm: lab.spec.accel == Accel::Kvm,
            memory_mib: match role {
                Role::Server => lab.spec.server_mib,
                Role::Client(_) => lab.spec.client_mib,
            },
            vcpus: lab.spec.vcpus,
            kernel: image.kernel.to_string_lossy().into_owned(),
            // A held or restored guest: the image's initrd with storm-load appended (saved.rs).
            initrd: match start {
                Start::Boot => image.initrd.as_path(),
                Start::Hold(initrd) => initrd,
                Start::Restore(saved) => saved.initrd.as_path(),
            }
            .to_string_lossy()
            .into_owned(),
            cmdline,
            emulator: lab.spec.emulator.to_string_lossy().into_owned(),
            overlay: overlay.to_string_lossy().into_owned(),
            console_log: console_log.to_string_lossy().into_owned(),
            heartbeat_log: heartbeat_log.to_string_lossy().into_owned(),
            shell_socket: shell_socket.to_string_lossy().into_owned(),
            nic: nic.clone(),
            qemu_net,
            qemu_env: lab
                .spec
                .qemu_env
                .iter()
                .map(|(k, v)| EnvVar {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        };
        let xml = domain::domain_xml(&spec)?;
        std::fs::write(lab.spec.log_dir.join(format!("{role}.domain.xml")), &xml)?;
        let vm = Vm {
            role,
            name,
            ssh_host: addr.ssh_host,
            ssh_port: addr.ssh_port,
            console_log,
            heartbeat_log,
            shell_socket,
            start_seconds: 0.0,
            identity,
            nic,
            domain: None,
        };
        Ok((vm, xml))
    }

    /// The libvirt state as a word, or an error naming the domain.
    pub(crate) fn state(&self) -> Result<DomainState> {
        let dom = self
            .domain
            .as_ref()
            .with_context(|| format!("domain {} was destroyed", self.name))?;
        match dom
            .state()
            .with_context(|| format!("reading state of domain {}", self.name))?
            .0
        {
            Enum::Known(s) => Ok(s),
            // The binding hands virDomainGetState's failure (-1) through as a state.
            Enum::Unknown(n) if n as i32 == -1 => bail!(
                "libvirt could not report the state of domain {} (is libvirtd running?)",
                self.name
            ),
            Enum::Unknown(n) => bail!("domain {} is in unknown state {n}", self.name),
        }
    }

    /// Whether the domain left the running state (Ok(true)); an error means libvirt could not
    /// be asked (libvirtd gone), which says nothing about the guest.
    pub(crate) fn stopped(&self) -> Result<bool> {
        Ok(!matches!(
            self.state()?,
            DomainState::Running | DomainState::Blocked
        ))
    }

    /// Fails with a clear message if the domain is not running (used by every wait).
    pub(crate) fn check_running(&self) -> Result<()> {
        match self.state()? {
            DomainState::Running | DomainState::Blocked => Ok(()),
            s => bail!(
                "domain {} is no longer running (state {s:?}); see {}",
                self.name,
                self.console_log.display()
            ),
        }
    }

    /// QEMU's PID on the host (for vCPU thread CPU), from libvirt's pid file.
    pub(crate) fn qemu_pid(&self) -> Option<u32> {
        std::fs::read_to_string(format!("/run/libvirt/qemu/{}.pid", self.name))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Destroys the domain now (disconnect method "destroy"); the guard then has nothing left to do.
    pub(crate) fn destroy(&mut self) -> Result<()> {
        if let Some(dom) = self.domain.take() {
            dom.destroy()
                .with_context(|| format!("destroying domain {}", self.name))?;
        }
        Ok(())
    }

    /// Sets the guest's link state (disconnect method "link-down").
    pub(crate) fn set_link(&self, up: bool) -> Result<()> {
        let dom = self
            .domain
            .as_ref()
            .with_context(|| format!("domain {} was destroyed", self.name))?;
        let nic = self.nic.as_ref().with_context(|| {
            format!(
                "{} has no tap (user and passt modes have none): no link to set",
                self.name
            )
        })?;
        let xml = domain::interface_xml(&BridgedNic {
            link: Some(if up { "up" } else { "down" }),
            ..nic.clone()
        })?;
        dom.update_device_flags(&xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
            .with_context(|| {
                format!(
                    "setting link of domain {} {}",
                    self.name,
                    if up { "up" } else { "down" }
                )
            })
    }

    /// Runs `script` in the guest through the root shell on its ttyS2 (a channel that does
    /// not use the NIC under test) and returns its output; bounded by `limit`.
    pub(crate) async fn serial_shell(&self, script: &str, limit: Duration) -> Result<String> {
        self.serial_shell_as(script, &format!("`{script}`"), limit)
            .await
    }

    /// [`Vm::serial_shell`], its errors naming the script as `what` (a script that carries
    /// secrets is not repeated in an error, which ends up in rows and logs).
    pub(crate) async fn serial_shell_as(
        &self,
        script: &str,
        what: &str,
        limit: Duration,
    ) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let work = async {
            let mut s = tokio::net::UnixStream::connect(&self.shell_socket)
                .await
                .with_context(|| format!("connecting to {}", self.shell_socket.display()))?;
            // Markers of its own per call: a late reply to an earlier call (one that timed
            // out) is neither read as this one's output nor ends it.
            let n = SHELL_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = format!("{}x{n}", std::process::id());
            s.write_all(shell_line(script, &id).as_bytes()).await?;
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    bail!("the shell on {}'s ttyS2 closed", self.name);
                }
                out.extend_from_slice(&buf[..n]);
                if let Some((body, status)) = shell_reply(&String::from_utf8_lossy(&out), &id) {
                    if status != "0" {
                        bail!(
                            "{what} on {}'s serial shell exited {status}: {}",
                            self.name,
                            body.trim()
                        );
                    }
                    return Ok(body);
                }
            }
        };
        tokio::time::timeout(limit, work).await.with_context(|| {
            format!(
                "no answer from {}'s serial shell within {limit:?}",
                self.name
            )
        })?
    }

    /// What the running QEMU does for this VM's NIC, read from its process: whether its
    /// netdev uses vhost-net (None in user mode or when the process cannot be read), and the
    /// binary it runs.
    pub(crate) fn running(&self) -> Option<Running> {
        let pid = self.qemu_pid()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let fds: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        Some(Running {
            vhost: netdev_vhost(&args, &fds),
            exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
        })
    }
}

impl Vm {
    /// Whether this VM's NIC backend is given MTU-sized frames only, read from what runs:
    /// virtio-net's `-device` with its host TSO off (its tap has a vnet header, through which
    /// super-frames pass otherwise); another model's tap without a vnet header (`tun_flags`
    /// without IFF_VNET_HDR), so its device model segments in software. None in user mode
    /// or when the process cannot be read.
    pub(crate) fn mtu_frames(&self) -> Option<bool> {
        let nic = self.nic.as_ref()?;
        if nic.model == "virtio" {
            let pid = self.qemu_pid()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            return Some(virtio_offloads_off(&args));
        }
        let flags =
            std::fs::read_to_string(format!("/sys/class/net/{}/tun_flags", nic.tap)).ok()?;
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
        Some(flags & IFF_VNET_HDR == 0)
    }
}

impl Vm {
    /// What the running QEMU's monitor says of its network (HMP `info network`, through
    /// libvirt; QEMU 7.2 has no QMP query of a netdev), bounded as every monitor query is.
    pub(crate) fn info_network(&self) -> Result<String> {
        let out = crate::support::cmd::output_within(
            "virsh",
            &[
                "-c",
                super::LIBVIRT_URI,
                "qemu-monitor-command",
                &self.name,
                "--hmp",
                "info network",
            ],
            Duration::from_secs(20),
        )?;
        if !out.status.success() {
            bail!(
                "`info network` on {}'s monitor failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A NIC and the netdev behind it, as `info network` prints them (net/net.c
/// `hmp_info_network`: the NIC's line, then ` \ ` and its peer's line, each
/// `NAME: index=N,type=TYPE,INFO`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NetdevPeer {
    /// The NIC's device model (`model=` of its line).
    pub(crate) model: String,
    /// The netdev's type (`stream`, `user`, `tap`).
    pub(crate) kind: String,
    /// The rest of its line: for a stream netdev its peer's address (`unix:PATH`, or
    /// `connection error` when the connect failed; empty before it completed).
    pub(crate) info: String,
}

/// The NIC whose peer is `netdev` in an `info network` reply.
pub(crate) fn netdev_peer(info: &str, netdev: &str) -> Option<NetdevPeer> {
    let lines: Vec<&str> = info.lines().collect();
    let i = lines.iter().position(|l| {
        l.trim_start()
            .strip_prefix("\\ ")
            .is_some_and(|p| p.starts_with(&format!("{netdev}: ")))
    })?;
    let peer = lines[i].trim_start()["\\ ".len() + netdev.len() + 2..].trim_end();
    let mut fields = peer.splitn(3, ',');
    let (_index, kind) = (fields.next()?, fields.next()?.strip_prefix("type=")?);
    let info = fields.next().unwrap_or("").to_owned();
    let nic = lines[..i].last()?;
    let model = nic
        .split(',')
        .find_map(|f| f.strip_prefix("model="))?
        .to_owned();
    Some(NetdevPeer {
        model,
        kind: kind.to_owned(),
        info,
    })
}

/// linux/if_tun.h: the tap carries a virtio-net header before each frame.
const IFF_VNET_HDR: u32 = 0x4000;

/// Whether the virtio-net `-device` in QEMU's arguments has its host TSO and UFO off (libvirt
/// 9 writes devices as JSON: `"host_tso4":false`; older ones as `host_tso4=off`).
fn virtio_offloads_off(args: &[String]) -> bool {
    args.iter().any(|a| {
        a.contains("virtio-net")
            && ["host_tso4", "host_tso6", "host_ufo"]
                .iter()
                .all(|k| a.contains(&format!("\"{k}\":false")) || a.contains(&format!("{k}=off")))
    })
}

/// user mode: libvirt's `<interface type='user'>` has no port forwards for slirp, so the
/// netdev and device are passed to QEMU directly. An explicit PCI slot for the NIC: libvirt
/// assigns its own devices' addresses (the disk at 0x2) without seeing this one, which would
/// otherwise take the first free slot and collide.
///
/// `restrict`: slirp refuses every connection the guest opens (its host forwards still
/// work), so the guest cannot reach anything through the host. Only the server can have it:
/// a client's connections to the server are guest-initiated (to slirp's gateway, which
/// slirp turns into connections to the host's loopback, where the server's forwards
/// listen), and libslirp drops every guest-initiated connection under restrict that is not
/// a guestfwd (which carries one connection at a time).
fn user_net(nic: NicModel, mac: &str, hostfwds: &[String], restrict: bool) -> QemuNet {
    let mut netdev = "user,id=nsnet0,net=10.0.2.0/24".to_string();
    if restrict {
        netdev.push_str(",restrict=on");
    }
    for f in hostfwds {
        netdev.push_str(&format!(",hostfwd={f}"));
    }
    QemuNet {
        netdev,
        device: nic_device(nic, mac),
        kind: "user",
    }
}

/// passt mode: QEMU 7.2's stream netdev, a client of the unix socket nicstorm listens on and
/// hands to the VM's passt (lab/passt.rs), with the same device as user mode. A comma in the
/// path is doubled, as QEMU's option syntax escapes it.
fn stream_net(nic: NicModel, mac: &str, socket: &Path) -> QemuNet {
    QemuNet {
        netdev: format!(
            "stream,id={NETDEV},server=off,addr.type=unix,addr.path={}",
            socket.to_string_lossy().replace(',', ",,")
        ),
        device: nic_device(nic, mac),
        kind: "passt",
    }
}

/// The id of the netdev of user and passt modes (`info network` names it).
pub(crate) const NETDEV: &str = "nsnet0";

/// The NIC's `-device` for a netdev given on QEMU's command line (user and passt modes).
pub(crate) fn nic_device(nic: NicModel, mac: &str) -> String {
    format!(
        "{},netdev={NETDEV},mac={mac},bus=pci.0,addr=0x10",
        nic_device_model(nic)
    )
}

/// QEMU's device name of a NIC model (virtio-net's libvirt model is `virtio`).
pub(crate) fn nic_device_model(nic: NicModel) -> &'static str {
    match nic {
        NicModel::VirtioNet => "virtio-net-pci",
        NicModel::Vmxnet3 => "vmxnet3",
        NicModel::E1000 => "e1000",
        NicModel::E1000e => "e1000e",
        NicModel::Rtl8139 => "rtl8139",
    }
}

/// The one line the serial shell is sent for `script` (the shell reads line by line):
/// a start marker, the script, an end marker with its exit status. printf builds the
/// markers, so an echo of the line itself never contains one.
fn shell_line(script: &str, id: &str) -> String {
    format!(
        "printf '%s_%s\\n' __nicstorm_start {id}; {{ {}; }} 2>&1; printf '%s_%s %s\\n' __nicstorm_done {id} $?\n",
        script.replace('\n', "; ")
    )
}

/// The output and exit status of call `id` in what the shell sent so far; None until its
/// end marker's line is complete. What came before its start marker is not its output.
fn shell_reply(text: &str, id: &str) -> Option<(String, String)> {
    let start = format!("__nicstorm_start_{id}\n");
    let done = format!("__nicstorm_done_{id} ");
    let from = text.find(&start).map_or(0, |i| i + start.len());
    let rest = &text[from..];
    let i = rest.find(&done)?;
    let status = rest[i + done.len()..].split_once('\n')?.0;
    Some((rest[..i].to_owned(), status.trim().to_owned()))
}

/// Calls of `Vm::serial_shell` so far in this process (each gets its own markers).
static SHELL_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What a VM's QEMU process runs, read from /proc.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Running {
    /// Some(true) when the tap netdev uses vhost-net; None when there is no tap netdev.
    pub(crate) vhost: Option<bool>,
    pub(crate) exe: Option<PathBuf>,
}

/// Whether QEMU's tap `-netdev` uses vhost-net, from its arguments (JSON or key=value form)
/// and its open files (a /dev/vhost-net fd). None when it has no tap netdev (user mode).
pub(crate) fn netdev_vhost(args: &[String], fds: &[PathBuf]) -> Option<bool> {
    let netdev = args
        .windows(2)
        .filter(|w| w[0] == "-netdev")
        .map(|w| w[1].as_str())
        .find(|n| n.contains("\"type\":\"tap\"") || n.starts_with("tap,"))?;
    let asked = netdev.contains("\"vhost\":true") || netdev.split(',').any(|kv| kv == "vhost=on");
    let holds = fds.iter().any(|f| f == Path::new("/dev/vhost-net"));
    Some(asked && holds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_reply_is_not_read_as_the_next_calls() {
        let line = shell_line("cat /proc/loadavg\nuptime", "7x2");
        assert_eq!(
            line,
            "printf '%s_%s\\n' __nicstorm_start 7x2; { cat /proc/loadavg; uptime; } 2>&1; printf '%s_%s %s\\n' __nicstorm_done 7x2 $?\n"
        );
        assert!(!line.contains("__nicstorm_done_7x2"));
        // Call 7x1 timed out; its output and marker arrive while 7x2 waits.
        let text = "late output\n__nicstorm_done_7x1 0\n__nicstorm_start_7x2\n0.1 0.2\n";
        assert_eq!(shell_reply(text, "7x2"), None);
        let text = format!("{text}__nicstorm_done_7x2 0");
        assert_eq!(
            shell_reply(&text, "7x2"),
            None,
            "the status line is not complete"
        );
        let text = format!("{text}\n");
        assert_eq!(
            shell_reply(&text, "7x2"),
            Some(("0.1 0.2\n".to_owned(), "0".to_owned()))
        );
        assert_eq!(
            shell_reply("__nicstorm_start_9x0\nboom\n__nicstorm_done_9x0 3\n", "9x0"),
            Some(("boom\n".to_owned(), "3".to_owned()))
        );
    }

    #[test]
    fn virtio_offloads_are_read_from_the_device() {
        let on = vec![
            "-device".to_string(),
            r#"{"driver":"virtio-net-pci","netdev":"hostnet0","id":"net0"}"#.to_string(),
        ];
        assert!(!virtio_offloads_off(&on));
        let off = vec![
            "-device".to_string(),
            r#"{"driver":"virtio-net-pci","host_tso4":false,"host_tso6":false,"host_ecn":false,"host_ufo":false,"guest_tso4":false,"netdev":"hostnet0"}"#.to_string(),
        ];
        assert!(virtio_offloads_off(&off));
    }

    #[test]
    fn user_net_args() {
        let u = user_net(
            NicModel::VirtioNet,
            "52:54:00:00:00:01",
            &["tcp:127.0.0.1:30004-:22".into()],
            false,
        );
        assert_eq!(
            u.netdev,
            "user,id=nsnet0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:30004-:22"
        );
        let server = user_net(
            NicModel::VirtioNet,
            "52:54:00:00:00:00",
            &["tcp:127.0.0.1:30004-:22".into()],
            true,
        );
        assert_eq!(
            server.netdev,
            "user,id=nsnet0,net=10.0.2.0/24,restrict=on,hostfwd=tcp:127.0.0.1:30004-:22"
        );
        assert_eq!(
            u.device,
            "virtio-net-pci,netdev=nsnet0,mac=52:54:00:00:00:01,bus=pci.0,addr=0x10"
        );
    }

    #[test]
    fn the_nics_netdev_is_read_from_info_network() {
        // The shape QEMU 7.2 prints (net/net.c hmp_info_network and print_net_client; a NIC's
        // info is `model=...,macaddr=...`, a connected stream's its peer's address).
        let info = "virtio-net-pci.0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:a1:b2:c3:00\r\n \\ nsnet0: index=0,type=stream,unix:/var/lib/nicstorm/labs/nicstorm-a1b2c3/server.net.sock\r\n";
        assert_eq!(
            netdev_peer(info, "nsnet0"),
            Some(NetdevPeer {
                model: "virtio-net-pci".into(),
                kind: "stream".into(),
                info: "unix:/var/lib/nicstorm/labs/nicstorm-a1b2c3/server.net.sock".into(),
            })
        );
        let failed = "vmxnet3.0: index=0,type=nic,model=vmxnet3,macaddr=52:54:a1:b2:c3:01\n \\ nsnet0: index=0,type=stream,connection error\n";
        let p = netdev_peer(failed, "nsnet0").unwrap();
        assert_eq!(
            (p.model.as_str(), p.info.as_str()),
            ("vmxnet3", "connection error")
        );
        let user = "e1000.0: index=0,type=nic,model=e1000,macaddr=52:54:00:00:00:01\n \\ nsnet0: index=0,type=user,net=10.0.2.0,restrict=off\n";
        assert_eq!(netdev_peer(user, "nsnet0").unwrap().kind, "user");
        assert_eq!(netdev_peer(user, "hostnet0"), None);
        assert_eq!(netdev_peer("", "nsnet0"), None);
    }

    #[test]
    fn stream_net_args() {
        let p = stream_net(
            NicModel::Vmxnet3,
            "52:54:a1:b2:c3:01",
            Path::new("/var/lib/nicstorm/labs/nicstorm-a1b2c3/client1.net.sock"),
        );
        assert_eq!(
            p.netdev,
            "stream,id=nsnet0,server=off,addr.type=unix,addr.path=/var/lib/nicstorm/labs/nicstorm-a1b2c3/client1.net.sock"
        );
        assert_eq!(
            p.device,
            "vmxnet3,netdev=nsnet0,mac=52:54:a1:b2:c3:01,bus=pci.0,addr=0x10"
        );
        let odd = stream_net(NicModel::VirtioNet, "m", Path::new("/a,b/s.sock"));
        assert!(
            odd.netdev.ends_with("addr.path=/a,,b/s.sock"),
            "{}",
            odd.netdev
        );
        assert!(odd.device.starts_with("virtio-net-pci,"));
    }

    #[test]
    fn vhost_is_read_from_the_running_qemu() {
        let args = |netdev: &str| -> Vec<String> {
            [
                "qemu-system-x86_64",
                "-netdev",
                netdev,
                "-device",
                "virtio-net-pci",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let vhost_fd = [PathBuf::from("/dev/vhost-net"), PathBuf::from("/dev/null")];
        // What this TCG host ran for a `vhost=on` cell: no vhost in the netdev, no fd.
        let tcg = args(r#"{"type":"tap","fd":"32","id":"hostnet0"}"#);
        assert_eq!(netdev_vhost(&tcg, &[]), Some(false));
        let kvm = args(r#"{"type":"tap","fd":"32","vhost":true,"vhostfd":"33","id":"hostnet0"}"#);
        assert_eq!(netdev_vhost(&kvm, &vhost_fd), Some(true));
        assert_eq!(
            netdev_vhost(&kvm, &[]),
            Some(false),
            "asked but no vhost-net fd held"
        );
        assert_eq!(
            netdev_vhost(&args("tap,id=h,fd=3,vhost=on,vhostfd=4"), &vhost_fd),
            Some(true)
        );
        assert_eq!(
            netdev_vhost(&args("user,id=nsnet0,net=10.0.2.0/24"), &[]),
            None
        );
    }
}
