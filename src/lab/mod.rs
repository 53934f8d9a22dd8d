//! The lab of one cell: 1 server + 3 client domains on the host network of the cell's mode.
//! `Lab` is the guard: dropping it destroys the domains, then the network, then the files.
//! libvirt's own `Drop` only frees the handle (the VM keeps running), hence the wrapper.
//! The domain XML is in domain.rs, the sweep of leftovers in sweep.rs, `nicstorm lab up/down`
//! in manual.rs.

mod domain;
pub mod manual;
mod sweep;

pub use sweep::{survivors, sweep};

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use tracing::{info, warn};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::enumutil::Enum;

use crate::cmd::run;
use crate::hostnet::{HostNet, Target};
use crate::image::Image;
use crate::names::RunId;
use crate::plan::{Accel, NetMode, NicModel, PortRange, Vhost};
use domain::{BridgedNic, DomainSpec, EnvVar, UserNet};

pub const LIBVIRT_URI: &str = "qemu:///system";
/// The guest's PID 1 (images/rootfs/usr/local/sbin/nicstorm-init): under TCG it reaches SSH in
/// a fraction of systemd's time; images/README.md has the measurements.
const GUEST_INIT: &str = "/usr/local/sbin/nicstorm-init";

/// libvirt prints every error to stderr by default; ours carry context and are reported once.
fn quiet_libvirt() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(virt::error::clear_error_callback);
}

/// Default state root (`$NICSTORM_STATE` overrides): overlays, keys and the run lock.
pub fn state_root() -> PathBuf {
    quiet_libvirt();
    std::env::var_os("NICSTORM_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/nicstorm"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client(u8),
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Server,
        Role::Client(1),
        Role::Client(2),
        Role::Client(3),
    ];
    pub fn index(&self) -> usize {
        match self {
            Role::Server => 0,
            Role::Client(n) => *n as usize,
        }
    }
    /// Suffix of taps (IFNAMSIZ is tight).
    fn short(&self) -> String {
        match self {
            Role::Server => "s".into(),
            Role::Client(n) => format!("c{n}"),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Server => f.write_str("server"),
            Role::Client(n) => write!(f, "client{n}"),
        }
    }
}

/// What a lab is made of; sizes are already resolved for the accelerator.
#[derive(Clone, Debug)]
pub struct LabSpec {
    pub nic: NicModel,
    pub vhost: Option<Vhost>,
    pub mode: NetMode,
    pub accel: Accel,
    pub vcpus: u32,
    pub server_mib: u64,
    pub client_mib: u64,
    pub ports: PortRange,
    /// Where the serial logs go (the cell's results directory).
    pub log_dir: PathBuf,
    /// The QEMU binary the domains run on (the host's, or an emulators/ recipe's).
    pub emulator: PathBuf,
    /// Environment given to QEMU (a recipe's settings).
    pub qemu_env: Vec<(String, String)>,
}

/// The host's own QEMU.
pub const SYSTEM_EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

/// One VM of the lab.
pub struct Vm {
    pub role: Role,
    pub name: String,
    pub ssh_host: std::net::Ipv4Addr,
    pub ssh_port: u16,
    pub console_log: PathBuf,
    pub heartbeat_log: PathBuf,
    /// Host end (unix socket) of the root shell on the guest's ttyS2.
    pub shell_socket: PathBuf,
    /// How long libvirt's define+start call took, seconds.
    pub start_seconds: f64,
    /// The bridged NIC as defined (None in user mode), for live link updates.
    nic: Option<BridgedNic>,
    domain: Option<Domain>,
}

impl Vm {
    /// The libvirt state as a word, or an error naming the domain.
    pub fn state(&self) -> Result<DomainState> {
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
            Enum::Unknown(n) => bail!("domain {} is in unknown state {n}", self.name),
        }
    }

    /// Whether the domain left the running state (Ok(true)); an error means libvirt could not
    /// be asked (libvirtd gone), which says nothing about the guest.
    pub fn stopped(&self) -> Result<bool> {
        Ok(!matches!(
            self.state()?,
            DomainState::Running | DomainState::Blocked
        ))
    }

    /// Fails with a clear message if the domain is not running (used by every wait).
    pub fn check_running(&self) -> Result<()> {
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
    pub fn qemu_pid(&self) -> Option<u32> {
        std::fs::read_to_string(format!("/run/libvirt/qemu/{}.pid", self.name))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Destroys the domain now (disconnect method "destroy"); the guard then has nothing left to do.
    pub fn destroy(&mut self) -> Result<()> {
        if let Some(dom) = self.domain.take() {
            dom.destroy()
                .with_context(|| format!("destroying domain {}", self.name))?;
        }
        Ok(())
    }

    /// Sets the guest's link state (disconnect method "link-down").
    pub fn set_link(&self, up: bool) -> Result<()> {
        let dom = self
            .domain
            .as_ref()
            .with_context(|| format!("domain {} was destroyed", self.name))?;
        let nic = self.nic.as_ref().with_context(|| {
            format!(
                "{} has no tap (user-mode networking): no link to set",
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
    pub async fn serial_shell(&self, script: &str, limit: Duration) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let work = async {
            let mut s = tokio::net::UnixStream::connect(&self.shell_socket)
                .await
                .with_context(|| format!("connecting to {}", self.shell_socket.display()))?;
            let mark = format!("__nicstorm_done_{}", std::process::id());
            // One line: the shell reads line by line; the marker ends the output.
            let line = format!(
                "{{ {}; }} 2>&1; echo {mark} $?\n",
                script.replace('\n', "; ")
            );
            s.write_all(line.as_bytes()).await?;
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    bail!("the shell on {}'s ttyS2 closed", self.name);
                }
                out.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&out);
                if let Some(i) = text.find(&format!("{mark} ")) {
                    let status = text[i + mark.len() + 1..]
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_owned();
                    if text[i..].contains('\n') {
                        let body = text[..i].to_owned();
                        if status != "0" {
                            bail!(
                                "`{script}` on {}'s serial shell exited {status}: {}",
                                self.name,
                                body.trim()
                            );
                        }
                        return Ok(body);
                    }
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
    pub fn running(&self) -> Option<Running> {
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

/// What a VM's QEMU process runs, read from /proc.
#[derive(Clone, Debug, PartialEq)]
pub struct Running {
    /// Some(true) when the tap netdev uses vhost-net; None when there is no tap netdev.
    pub vhost: Option<bool>,
    pub exe: Option<PathBuf>,
}

/// Whether QEMU's tap `-netdev` uses vhost-net, from its arguments (JSON or key=value form)
/// and its open files (a /dev/vhost-net fd). None when it has no tap netdev (user mode).
pub fn netdev_vhost(args: &[String], fds: &[PathBuf]) -> Option<bool> {
    let netdev = args
        .windows(2)
        .filter(|w| w[0] == "-netdev")
        .map(|w| w[1].as_str())
        .find(|n| n.contains("\"type\":\"tap\"") || n.starts_with("tap,"))?;
    let asked = netdev.contains("\"vhost\":true") || netdev.split(',').any(|kv| kv == "vhost=on");
    let holds = fds.iter().any(|f| f == Path::new("/dev/vhost-net"));
    Some(asked && holds)
}

/// A running lab. Drop tears it down; `teardown()` does the same and reports errors.
pub struct Lab {
    pub run: RunId,
    pub spec: LabSpec,
    pub vms: Vec<Vm>,
    pub key: PathBuf,
    pub state_dir: PathBuf,
    net: Option<HostNet>,
    conn: Option<Connect>,
}

impl Lab {
    /// Creates the network, overlays, key and the four domains, and starts them. Every
    /// resource is owned by the returned guard as soon as it exists, so an error half-way
    /// tears down what was made.
    pub fn create(run_id: &RunId, spec: &LabSpec, image: &Image) -> Result<Lab> {
        // Every path in the domain XML is opened by libvirtd, whose working directory is not
        // ours: make them absolute here, once, whatever the caller passed.
        let spec = &LabSpec {
            log_dir: absolute(&spec.log_dir)?,
            ..spec.clone()
        };
        let state_dir = absolute(&state_root().join("labs").join(run_id.tag()))?;
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        std::fs::create_dir_all(&spec.log_dir)
            .with_context(|| format!("creating {}", spec.log_dir.display()))?;
        let conn = Connect::open(Some(LIBVIRT_URI)).with_context(|| {
            format!("connecting to libvirt at {LIBVIRT_URI} (is libvirtd running?)")
        })?;
        let mut lab = Lab {
            run: run_id.clone(),
            spec: spec.clone(),
            vms: vec![],
            key: state_dir.join("id_ed25519"),
            state_dir,
            net: None,
            conn: Some(conn),
        };
        lab.net = Some(HostNet::up(spec.mode, run_id, &spec.ports, &lab.state_dir)?);
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &run_id.tag(),
                "-f",
                &lab.key.to_string_lossy(),
            ],
        )?;
        let pubkey = std::fs::read_to_string(lab.key.with_extension("pub"))?;
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(pubkey.trim());
        let planned = Role::ALL
            .iter()
            .map(|&role| lab.plan_vm(role, image, &key_b64))
            .collect::<Result<Vec<_>>>()?;
        lab.start_all(planned)?;
        Ok(lab)
    }

    /// The overlay and the domain XML of one VM (written to the log dir for the record).
    fn plan_vm(&self, role: Role, image: &Image, key_b64: &str) -> Result<(Vm, String)> {
        let name = self.run.domain(&role.to_string());
        let net = self.net.as_ref().expect("network is up before domains");
        let addr = net.vms[role.index()].clone();
        let overlay = self.state_dir.join(format!("{role}.qcow2"));
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
                &image.rootfs.to_string_lossy(),
                &overlay.to_string_lossy(),
            ],
        )?;
        let console_log = self.spec.log_dir.join(format!("{role}.console.log"));
        let heartbeat_log = self.spec.log_dir.join(format!("{role}.heartbeat.log"));
        // In the state dir, not the log dir: a unix socket path must stay under 108 bytes.
        let shell_socket = self.state_dir.join(format!("{role}.shell.sock"));
        let mut cmdline = format!(
            "console=ttyS0 root=/dev/vda rw init={GUEST_INIT} cryptomgr.notests net.ifnames=0 panic=0 nicstorm.hostname={role} nicstorm.addr={} nicstorm.key={key_b64}",
            addr.cidr
        );
        if let Some(gw) = addr.gw {
            cmdline.push_str(&format!(" nicstorm.gw={gw}"));
        }
        let mac = self.run.mac(role.index() as u8);
        let nic = addr.bridge.as_ref().map(|br| BridgedNic {
            bridge: br.clone(),
            tap: self.tap(role),
            mac: mac.clone(),
            model: self.spec.nic.qemu_model().to_owned(),
            // vhost only exists for virtio-net; the plan gives other NICs `None`.
            driver: self.spec.vhost.map(|v| match v {
                Vhost::On => "vhost",
                Vhost::Off => "qemu",
            }),
            link: None,
        });
        let user_net = addr
            .bridge
            .is_none()
            .then(|| user_net(self.spec.nic, &mac, &net.hostfwds[role.index()]));
        let spec = DomainSpec {
            name: name.clone(),
            kvm: self.spec.accel == Accel::Kvm,
            memory_mib: match role {
                Role::Server => self.spec.server_mib,
                Role::Client(_) => self.spec.client_mib,
            },
            vcpus: self.spec.vcpus,
            kernel: image.kernel.to_string_lossy().into_owned(),
            initrd: image.initrd.to_string_lossy().into_owned(),
            cmdline,
            emulator: self.spec.emulator.to_string_lossy().into_owned(),
            overlay: overlay.to_string_lossy().into_owned(),
            console_log: console_log.to_string_lossy().into_owned(),
            heartbeat_log: heartbeat_log.to_string_lossy().into_owned(),
            shell_socket: shell_socket.to_string_lossy().into_owned(),
            nic: nic.clone(),
            user_net,
            qemu_env: self
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
        std::fs::write(self.spec.log_dir.join(format!("{role}.domain.xml")), &xml)?;
        let vm = Vm {
            role,
            name,
            ssh_host: addr.ssh_host,
            ssh_port: addr.ssh_port,
            console_log,
            heartbeat_log,
            shell_socket,
            start_seconds: 0.0,
            nic,
            domain: None,
        };
        Ok((vm, xml))
    }

    /// Starts every planned domain at once, each libvirt call on its own thread (one
    /// connection serves them all: libvirt's RPC client is thread-safe). Every domain that
    /// started joins the guard even when another failed, so nothing escapes teardown.
    fn start_all(&mut self, planned: Vec<(Vm, String)>) -> Result<()> {
        let conn = self
            .conn
            .as_ref()
            .expect("connection open while the lab lives");
        let started: Vec<(Vm, Result<Domain>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = planned
                .into_iter()
                .map(|(mut vm, xml)| {
                    scope.spawn(move || {
                        let t = std::time::Instant::now();
                        let dom = conn
                            .create_domain_xml(&xml, 0)
                            .with_context(|| format!("starting domain {}", vm.name));
                        vm.start_seconds = t.elapsed().as_secs_f64();
                        (vm, dom)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a domain start thread panicked"))
                .collect()
        });
        let mut first_error = None;
        for (mut vm, dom) in started {
            match dom {
                Ok(d) => {
                    info!(domain = %vm.name, secs = vm.start_seconds, "domain started");
                    vm.domain = Some(d);
                    self.vms.push(vm);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn tap(&self, role: Role) -> String {
        self.run.link(&role.short())
    }

    /// The bridge the VM's tap joins (None in user mode).
    pub fn bridge(&self, role: Role) -> Option<String> {
        self.net.as_ref()?.vms.get(role.index())?.bridge.clone()
    }

    pub fn mac(&self, role: Role) -> String {
        self.run.mac(role.index() as u8)
    }

    pub fn server(&self) -> &Vm {
        &self.vms[0]
    }

    pub fn clients(&self) -> &[Vm] {
        &self.vms[1..]
    }

    pub fn vm_mut(&mut self, role: Role) -> &mut Vm {
        &mut self.vms[role.index()]
    }

    pub fn vm(&self, role: Role) -> &Vm {
        &self.vms[role.index()]
    }

    /// Where clients connect to reach the server's ports in this mode.
    pub fn target(&self) -> &Target {
        &self
            .net
            .as_ref()
            .expect("network lives as long as the lab")
            .target
    }

    /// Host sysctls the matrix asks for, set for the lab's lifetime and restored after.
    pub fn set_host_sysctl(&mut self, name: &str, value: &str) -> Result<()> {
        self.net
            .as_mut()
            .expect("network lives as long as the lab")
            .set_sysctl(name, value)
    }

    /// Leaves the lab running after this process exits (`nicstorm lab up`); the next
    /// `nicstorm lab down` or run sweeps it by name.
    pub fn detach(mut self) {
        self.vms.iter_mut().for_each(|vm| drop(vm.domain.take()));
        if let Some(net) = self.net.take() {
            net.detach();
        }
        self.state_dir = PathBuf::new();
    }

    /// Destroys domains, then the host network, then overlays and keys. Goes on past
    /// failures and reports all of them.
    pub fn teardown(&mut self) -> Result<()> {
        // All at once: libvirt takes about 2 s to see a TCG QEMU exit after SIGTERM.
        let mut errors: Vec<String> = std::thread::scope(|scope| {
            let destroys: Vec<_> = self
                .vms
                .iter_mut()
                .filter_map(|vm| vm.domain.take().map(|d| (vm.name.clone(), d)))
                .map(|(name, dom)| {
                    scope.spawn(move || {
                        // A domain that already stopped (crashed guest destroyed by libvirt)
                        // is fine.
                        if dom.is_active().unwrap_or(false) {
                            if let Err(e) = dom.destroy() {
                                return Some(format!("destroying {name}: {e}"));
                            }
                        }
                        None
                    })
                })
                .collect();
            destroys
                .into_iter()
                .filter_map(|h| h.join().unwrap_or(Some("a destroy thread panicked".into())))
                .collect()
        });
        if let Some(mut net) = self.net.take() {
            if let Err(e) = net.teardown() {
                errors.push(format!("{e:#}"));
            }
        }
        if !self.state_dir.as_os_str().is_empty() && self.state_dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.state_dir) {
                errors.push(format!("removing {}: {e}", self.state_dir.display()));
            }
        }
        // Connect's Drop closes the connection.
        self.conn = None;
        if !errors.is_empty() {
            bail!("lab {} teardown: {}", self.run.tag(), errors.join("; "));
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            warn!("{e:#}");
        }
    }
}

/// user mode: libvirt's `<interface type='user'>` has no port forwards for slirp, so the
/// netdev and device are passed to QEMU directly. An explicit PCI slot for the NIC: libvirt
/// assigns its own devices' addresses (the disk at 0x2) without seeing this one, which would
/// otherwise take the first free slot and collide.
fn user_net(nic: NicModel, mac: &str, hostfwds: &[String]) -> UserNet {
    let device = match nic {
        NicModel::VirtioNet => "virtio-net-pci",
        _ => nic.qemu_model(),
    };
    let mut netdev = "user,id=nsnet0,net=10.0.2.0/24".to_string();
    for f in hostfwds {
        netdev.push_str(&format!(",hostfwd={f}"));
    }
    UserNet {
        netdev,
        device: format!("{device},netdev=nsnet0,mac={mac},bus=pci.0,addr=0x10"),
    }
}

fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))
}

/// How long to wait for a freshly started domain to become reachable, per accelerator.
pub fn default_boot_timeout(accel: Accel) -> Duration {
    match accel {
        Accel::Kvm => Duration::from_secs(180),
        Accel::Tcg => Duration::from_secs(600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_net_args() {
        let u = user_net(
            NicModel::VirtioNet,
            "52:54:00:00:00:01",
            &["tcp:127.0.0.1:30004-:22".into()],
        );
        assert_eq!(
            u.netdev,
            "user,id=nsnet0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:30004-:22"
        );
        assert_eq!(
            u.device,
            "virtio-net-pci,netdev=nsnet0,mac=52:54:00:00:00:01,bus=pci.0,addr=0x10"
        );
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
