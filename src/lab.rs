//! The lab of one cell: 1 server + 3 client domains on the host network of the cell's mode.
//! `Lab` is the guard: dropping it destroys the domains, then the network, then the files.
//! libvirt's own `Drop` only frees the handle (the VM keeps running), hence the wrapper.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use tracing::{info, warn};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::enumutil::Enum;

use crate::cmd::run;
use crate::hostnet::{self, HostNet, Target};
use crate::image::Image;
use crate::names::{run_of_tag, RunId};
use crate::plan::{Accel, NetMode, NicModel, PortRange, Vhost};
use crate::template::{render, Value};

pub const LIBVIRT_URI: &str = "qemu:///system";
const DOMAIN_TEMPLATE: &str = include_str!("../vm-templates/domain.xml");
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
}

/// One VM of the lab.
pub struct Vm {
    pub role: Role,
    pub name: String,
    pub ssh_host: std::net::Ipv4Addr,
    pub ssh_port: u16,
    pub console_log: PathBuf,
    pub heartbeat_log: PathBuf,
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

    /// Sets the guest's link state (disconnect method "link-down"). libvirt finds the
    /// interface by MAC but validates the whole element: source bridge and model included
    /// (a missing model reads as rtl8139, which it refuses to change to).
    pub fn set_link(
        &self,
        bridge: &str,
        tap: &str,
        mac: &str,
        model: &str,
        up: bool,
    ) -> Result<()> {
        let dom = self
            .domain
            .as_ref()
            .with_context(|| format!("domain {} was destroyed", self.name))?;
        let xml = format!(
            "<interface type='bridge'><source bridge='{bridge}'/><mac address='{mac}'/><target dev='{tap}'/><model type='{model}'/><link state='{}'/></interface>",
            if up { "up" } else { "down" }
        );
        dom.update_device_flags(&xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
            .with_context(|| {
                format!(
                    "setting link of domain {} {}",
                    self.name,
                    if up { "up" } else { "down" }
                )
            })
    }
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
        for role in Role::ALL {
            lab.start_vm(role, image, &key_b64)?;
        }
        Ok(lab)
    }

    fn start_vm(&mut self, role: Role, image: &Image, key_b64: &str) -> Result<()> {
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
        let mut cmdline = format!(
            "console=ttyS0 root=/dev/vda rw init={GUEST_INIT} cryptomgr.notests net.ifnames=0 panic=0 nicstorm.hostname={role} nicstorm.addr={} nicstorm.key={key_b64}",
            addr.cidr
        );
        if let Some(gw) = addr.gw {
            cmdline.push_str(&format!(" nicstorm.gw={gw}"));
        }
        let mac = self.run.mac(role.index() as u8);
        let (interface, qemu_cl) = match &addr.bridge {
            Some(br) => (
                interface_xml(self.spec.nic, self.spec.vhost, br, &self.tap(role), &mac),
                String::new(),
            ),
            None => (
                String::new(),
                user_net_xml(self.spec.nic, &mac, &net.hostfwds[role.index()]),
            ),
        };
        let memory = match role {
            Role::Server => self.spec.server_mib,
            Role::Client(_) => self.spec.client_mib,
        };
        let (domain_type, cpu) = match self.spec.accel {
            Accel::Kvm => ("kvm", "  <cpu mode='host-passthrough'/>"),
            Accel::Tcg => ("qemu", ""),
        };
        let xml = render(
            DOMAIN_TEMPLATE,
            &[
                ("domain_type", Value::Text(domain_type)),
                ("name", Value::Text(&name)),
                ("memory_mib", Value::Text(&memory.to_string())),
                ("vcpus", Value::Text(&self.spec.vcpus.to_string())),
                ("kernel", Value::Text(&image.kernel.to_string_lossy())),
                ("initrd", Value::Text(&image.initrd.to_string_lossy())),
                ("cmdline", Value::Text(&cmdline)),
                ("cpu", Value::Fragment(cpu)),
                ("emulator", Value::Text("/usr/bin/qemu-system-x86_64")),
                ("overlay", Value::Text(&overlay.to_string_lossy())),
                ("interface", Value::Fragment(&interface)),
                ("console_log", Value::Text(&console_log.to_string_lossy())),
                (
                    "heartbeat_log",
                    Value::Text(&heartbeat_log.to_string_lossy()),
                ),
                ("qemu_commandline", Value::Fragment(&qemu_cl)),
            ],
        )?;
        std::fs::write(self.spec.log_dir.join(format!("{role}.domain.xml")), &xml)?;
        let conn = self
            .conn
            .as_ref()
            .expect("connection open while the lab lives");
        let domain = conn
            .create_domain_xml(&xml, 0)
            .with_context(|| format!("starting domain {name}"))?;
        info!(domain = %name, "domain started");
        self.vms.push(Vm {
            role,
            name,
            ssh_host: addr.ssh_host,
            ssh_port: addr.ssh_port,
            console_log,
            heartbeat_log,
            domain: Some(domain),
        });
        Ok(())
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
        let mut errors = vec![];
        for vm in &mut self.vms {
            if let Some(dom) = vm.domain.take() {
                // A domain that already stopped (crashed guest destroyed by libvirt) is fine.
                if dom.is_active().unwrap_or(false) {
                    if let Err(e) = dom.destroy() {
                        errors.push(format!("destroying {}: {e}", vm.name));
                    }
                }
            }
        }
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

fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))
}

fn interface_xml(
    nic: NicModel,
    vhost: Option<Vhost>,
    bridge: &str,
    tap: &str,
    mac: &str,
) -> String {
    // vhost only exists for virtio-net; the plan gives other NICs `None`.
    let driver = match vhost {
        Some(Vhost::On) => "\n      <driver name='vhost'/>",
        Some(Vhost::Off) => "\n      <driver name='qemu'/>",
        None => "",
    };
    format!(
        "    <interface type='bridge'>\n      <source bridge='{bridge}'/>\n      <target dev='{tap}'/>\n      <mac address='{mac}'/>\n      <model type='{}'/>{driver}\n    </interface>",
        nic.qemu_model()
    )
}

/// User-mode networking with host forwards: libvirt's `<interface type='user'>` has no port
/// forwards for slirp, so the netdev and device are passed to QEMU directly.
// An explicit PCI slot for the NIC: libvirt assigns its own devices' addresses (the disk at
// 0x2) without seeing this one, which would otherwise take the first free slot and collide.
fn user_net_xml(nic: NicModel, mac: &str, hostfwds: &[String]) -> String {
    let device = match nic {
        NicModel::VirtioNet => "virtio-net-pci",
        _ => nic.qemu_model(),
    };
    let mut netdev = "user,id=nsnet0,net=10.0.2.0/24".to_string();
    for f in hostfwds {
        netdev.push_str(&format!(",hostfwd={f}"));
    }
    format!(
        "  <qemu:commandline>\n    <qemu:arg value='-netdev'/>\n    <qemu:arg value='{netdev}'/>\n    <qemu:arg value='-device'/>\n    <qemu:arg value='{device},netdev=nsnet0,mac={mac},bus=pci.0,addr=0x10'/>\n  </qemu:commandline>"
    )
}

/// Removes every domain, link, rule and lab directory of runs other than `keep`; returns
/// what was removed. Run at start (after taking the run lock) and by `nicstorm lab down`.
pub fn sweep(keep: Option<&RunId>) -> Result<Vec<String>> {
    let mut removed = vec![];
    let conn = Connect::open(Some(LIBVIRT_URI))
        .with_context(|| format!("connecting to libvirt at {LIBVIRT_URI}"))?;
    for dom in conn
        .list_all_domains(0)
        .context("listing libvirt domains")?
    {
        let name = dom.name().unwrap_or_default();
        if run_of_tag(&name).is_some_and(|r| Some(&r) != keep) {
            // Ask before destroying: a transient domain is gone once destroyed.
            let persistent = dom.is_persistent().unwrap_or(false);
            if dom.is_active().unwrap_or(false) {
                dom.destroy()
                    .with_context(|| format!("destroying leftover domain {name}"))?;
            }
            if persistent {
                dom.undefine()
                    .with_context(|| format!("undefining leftover domain {name}"))?;
            }
            removed.push(format!("domain {name}"));
        }
    }
    let root = state_root().join("labs");
    removed.extend(hostnet::sweep(&root, keep)?);
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if run_of_tag(&name).is_some_and(|r| Some(&r) != keep) {
                std::fs::remove_dir_all(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
                removed.push(format!("lab dir {}", e.path().display()));
            }
        }
    }
    Ok(removed)
}

/// Everything with `run`'s prefix that still exists (should be nothing after teardown).
pub fn survivors(run_id: &RunId) -> Result<Vec<String>> {
    let mut left = vec![];
    let conn = Connect::open(Some(LIBVIRT_URI))
        .with_context(|| format!("connecting to libvirt at {LIBVIRT_URI}"))?;
    for dom in conn.list_all_domains(0)? {
        let name = dom.name().unwrap_or_default();
        if run_of_tag(&name).as_ref() == Some(run_id) {
            left.push(format!("domain {name}"));
        }
    }
    for line in run("ip", &["-o", "link", "show"])?.lines() {
        if let Some(name) = line.split(": ").nth(1) {
            if name.starts_with(&run_id.link("")) {
                left.push(format!("link {name}"));
            }
        }
    }
    for table in ["filter", "nat"] {
        for line in run("iptables", &["-w", "-t", table, "-S"])?.lines() {
            if line.contains(&run_id.tag()) {
                left.push(format!("iptables -t {table} {line}"));
            }
        }
    }
    let dir = state_root().join("labs").join(run_id.tag());
    if dir.exists() {
        left.push(format!("lab dir {}", dir.display()));
    }
    Ok(left)
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
    fn interface_fragments() {
        let x = interface_xml(
            NicModel::VirtioNet,
            Some(Vhost::Off),
            "nsta1b2c3b0",
            "nsta1b2c3s",
            "52:54:a1:b2:c3:00",
        );
        assert!(
            x.contains("<model type='virtio'/>") && x.contains("<driver name='qemu'/>"),
            "{x}"
        );
        let x = interface_xml(NicModel::Vmxnet3, None, "b", "t", "m");
        assert!(
            x.contains("<model type='vmxnet3'/>") && !x.contains("driver"),
            "{x}"
        );
        let u = user_net_xml(
            NicModel::VirtioNet,
            "52:54:00:00:00:01",
            &["tcp:127.0.0.1:30004-:22".into()],
        );
        assert!(
            u.contains("user,id=nsnet0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:30004-:22"),
            "{u}"
        );
        assert!(
            u.contains("virtio-net-pci,netdev=nsnet0,mac=52:54:00:00:00:01,bus=pci.0,addr=0x10"),
            "{u}"
        );
    }

    #[test]
    fn template_renders_to_valid_domain() {
        let xml = render(
            DOMAIN_TEMPLATE,
            &[
                ("domain_type", Value::Text("qemu")),
                ("name", Value::Text("nicstorm-a1b2c3-server")),
                ("memory_mib", Value::Text("1024")),
                ("vcpus", Value::Text("1")),
                ("kernel", Value::Text("/k")),
                ("initrd", Value::Text("/i")),
                (
                    "cmdline",
                    Value::Text("console=ttyS0 nicstorm.key=QUJD+/=="),
                ),
                ("cpu", Value::Fragment("")),
                ("emulator", Value::Text("/usr/bin/qemu-system-x86_64")),
                ("overlay", Value::Text("/o.qcow2")),
                (
                    "interface",
                    Value::Fragment(&interface_xml(NicModel::E1000, None, "b", "t", "m")),
                ),
                ("console_log", Value::Text("/c.log")),
                ("heartbeat_log", Value::Text("/h.log")),
                ("qemu_commandline", Value::Fragment("")),
            ],
        )
        .unwrap();
        assert!(xml.contains("<name>nicstorm-a1b2c3-server</name>"));
        assert!(xml.contains("<target port='1'/>"));
        assert!(!xml.contains("{{"));
    }
}
