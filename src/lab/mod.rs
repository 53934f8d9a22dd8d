//! The lab of one cell: 1 server + 3 client domains on the host network of the cell's mode.
//! `Lab` is the guard: dropping it destroys the domains, then the network, then the files.
//! libvirt's own `Drop` only frees the handle (the VM keeps running), hence the wrapper.
//! One VM (its domain, serial shell and QEMU process) is in vm.rs, the domain XML in domain.rs,
//! the sweep of leftovers in sweep.rs, the packet ring of the server's tap in capture.rs, passt
//! mode's passt processes in passt.rs; also here: SSH to the guests (guest.rs), the host side
//! of the network (hostnet/), the guest image (image.rs), the QEMU binary (emulator.rs) and the
//! accelerator (accel.rs).

pub mod accel;
pub(crate) mod capture;
mod domain;
pub(crate) mod emulator;
pub mod guest;
pub mod hostnet;
pub mod image;
pub(crate) mod passt;
pub mod saved;
pub mod state;
mod sweep;
mod vm;

pub use state::{checked_state_root, state_root};

pub use sweep::survivors;
pub(crate) use sweep::{sweep, Swept};
pub(crate) use vm::Vm;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use tracing::{info, warn};
use virt::connect::Connect;
use virt::domain::Domain;

use crate::lab::hostnet::{HostNet, Target};
use crate::lab::image::Image;
use crate::matrix::plan::{Accel, Frames, LabStart, NetMode, NicModel, PortRange, Vhost};
use crate::model::names::RunId;
use crate::support::cmd::run;
use crate::support::procs;

pub(crate) const LIBVIRT_URI: &str = "qemu:///system";

/// libvirt prints every error to stderr by default; ours carry context and are reported once.
fn quiet_libvirt() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(virt::error::clear_error_callback);
}

/// A VM of the lab (and its storm-load stream): ordered server first, then the clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Server,
    Client(u8),
}

impl Role {
    pub(crate) const ALL: [Role; 4] = [
        Role::Server,
        Role::Client(1),
        Role::Client(2),
        Role::Client(3),
    ];
    pub(crate) fn index(&self) -> usize {
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
    /// Frames the NIC's backend is given (`settings.frames`).
    pub frames: Frames,
    /// passt mode: the passt each VM's NIC is on (`settings.passt`); None in other modes
    /// (and in passt mode: the host's own).
    pub passt: Option<PasstProgram>,
    /// How the lab comes up (`settings.lab_start`).
    pub lab_start: LabStart,
    /// The static storm-load the guests run (pushed after a boot; a saved lab holds it).
    pub storm_load: PathBuf,
}

/// How a lab's domains come up.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Start<'a> {
    /// Booted from the image, the identity on the kernel command line.
    Boot,
    /// Booted to nicstorm-init's hold point, to be saved (saved.rs), from this initrd (the
    /// image's with storm-load appended).
    Hold(&'a Path),
    /// Restored from a saved lab; released with the run's identity once running.
    Restore(&'a saved::Saved),
}

pub use crate::lab::emulator::SYSTEM_EMULATOR;
pub use crate::lab::passt::Program as PasstProgram;

/// A running lab. Drop tears it down; `teardown()` does the same and reports errors.
pub struct Lab {
    pub(crate) run: RunId,
    pub(crate) spec: LabSpec,
    pub(crate) vms: Vec<Vm>,
    pub key: PathBuf,
    pub(crate) state_dir: PathBuf,
    net: Option<HostNet>,
    /// passt mode: each VM's passt, in role order.
    pub(crate) passt: Vec<passt::Passt>,
    conn: Option<Connect>,
}

impl Lab {
    /// Creates the network, overlays, key and the four domains, and starts them. Every
    /// resource is owned by the returned guard as soon as it exists, so an error half-way
    /// tears down what was made.
    pub(crate) fn create(
        run_id: &RunId,
        spec: &LabSpec,
        image: &Image,
        start: Start<'_>,
    ) -> Result<Lab> {
        // Every path in the domain XML is opened by libvirtd, whose working directory is not
        // ours: make them absolute here, once, whatever the caller passed.
        let spec = &LabSpec {
            log_dir: absolute(&spec.log_dir)?,
            ..spec.clone()
        };
        quiet_libvirt();
        let state_dir = absolute(&state::labs_dir()?.join(run_id.tag()))?;
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
            passt: vec![],
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
        // passt mode: the socket each QEMU connects to, bound before its domain starts
        // (QEMU 7.2's stream netdev connects once, and never again).
        let listeners = if spec.mode == NetMode::Passt {
            Role::ALL
                .iter()
                .map(|r| passt::listen(&passt::socket_path(&lab.state_dir, &r.to_string())))
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![]
        };
        let planned = Role::ALL
            .iter()
            .map(|&role| Vm::plan(&lab, role, image, &key_b64, &start))
            .collect::<Result<Vec<_>>>()?;
        lab.start_all(planned, start)?;
        if !listeners.is_empty() {
            lab.start_passt(listeners)?;
        }
        Ok(lab)
    }

    /// passt mode: takes each QEMU's connection (it must come from that domain's QEMU) and
    /// starts the VM's passt on it in the lab's namespace; each joins the guard as it starts.
    fn start_passt(&mut self, listeners: Vec<std::os::unix::net::UnixListener>) -> Result<()> {
        let net = self
            .net
            .as_ref()
            .and_then(|n| n.passt.clone())
            .expect("passt mode's network has its namespace");
        for (vm, listener) in self.vms.iter().zip(listeners) {
            let role = vm.role.to_string();
            let (tap, peer) = passt::accept_qemu(&listener, &vm.name)?;
            // Connected: nothing else may connect to it now.
            drop(listener);
            let qemu = vm.qemu_pid();
            if qemu != Some(peer) {
                bail!(
                    "the socket of {}'s passt was connected by pid {peer}, not by its QEMU ({})",
                    vm.name,
                    qemu.map_or("pid unknown".into(), |p| format!("pid {p}"))
                );
            }
            let spec = passt::PasstSpec {
                program: self
                    .spec
                    .passt
                    .as_ref()
                    .map_or_else(|| PasstProgram::SYSTEM_PATH.into(), |p| p.path.clone()),
                netns: net.netns.clone(),
                mac: self.run.mac(0x80 + vm.role.index() as u8),
                guest: hostnet::PASST_GUEST,
                prefix: hostnet::PASST_PREFIX,
                gateway: hostnet::PASST_GATEWAY,
                forwards: net.forwards[vm.role.index()].clone(),
                log: passt::log_path(&self.state_dir, &role),
            };
            let p = passt::Passt::start(&spec, tap, peer, &self.state_dir, &role)?;
            info!(vm = %vm.name, pid = p.pid, qemu = peer, "passt started");
            self.passt.push(p);
        }
        Ok(())
    }

    /// passt mode: that each VM's NIC runs on a stream netdev to the socket its passt was
    /// given, from the running QEMU (`info network`), with the passt that holds the other end
    /// and the QEMU that connected it; written to `<role>.netdev.txt` in the log directory.
    /// Called once the guests answered SSH (QEMU fills the netdev's line when its connect has
    /// completed, in its main loop).
    pub(crate) fn verify_passt(&self) -> Result<()> {
        for (vm, p) in self.vms.iter().zip(&self.passt) {
            let role = vm.role.to_string();
            let info = vm.info_network()?;
            let socket = passt::socket_path(&self.state_dir, &role);
            let want_model = vm::nic_device_model(self.spec.nic);
            let peer = vm::netdev_peer(&info, vm::NETDEV);
            // The socket's other end: passt, alive, holding it as fd 3 (passt's --fd).
            let holder = std::fs::read_link(format!("/proc/{}/fd/3", p.pid))
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let verdict = match (&peer, p.exit_text()) {
                (_, Some(how)) => Err(format!(
                    "{}'s passt (pid {}) has exited ({how})",
                    vm.name, p.pid
                )),
                _ if !holder.starts_with("socket:") => Err(format!(
                    "{}'s passt (pid {}) holds no socket as fd 3 ({holder:?})",
                    vm.name, p.pid
                )),
                (Some(n), _)
                    if n.kind == "stream"
                        && n.info == format!("unix:{}", socket.display())
                        && n.model == want_model =>
                {
                    Ok(format!(
                        "verified: {want_model} on a stream netdev to unix:{}; passt pid {} (network namespace {}, running) holds as fd 3 ({holder}) the socket QEMU pid {} connected (SO_PEERCRED)",
                        socket.display(),
                        p.pid,
                        self.run.netns(),
                        p.qemu_pid
                    ))
                }
                (Some(n), _) => Err(format!(
                    "{}'s NIC is {} on a {} netdev ({:?}), not {want_model} on a stream netdev to unix:{}",
                    vm.name,
                    n.model,
                    n.kind,
                    n.info,
                    socket.display()
                )),
                (None, _) => Err(format!(
                    "{}'s QEMU lists no NIC on netdev {}",
                    vm.name,
                    vm::NETDEV
                )),
            };
            let line = verdict.as_ref().unwrap_or_else(|e| e);
            let _ = std::fs::write(
                self.spec.log_dir.join(format!("{role}.netdev.txt")),
                format!("{}\n# {line}\n", info.trim_end()),
            );
            verdict.map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    /// passt mode: the first VM whose passt has exited, said with passt's last log lines
    /// (its guest's network went with it: QEMU's stream netdev never reconnects).
    /// A passt whose QEMU is gone followed it (one-off) and is not named: the domain's own
    /// check (`Vm::check_running`) says what happened to it.
    pub(crate) fn passt_gone(&self) -> Option<String> {
        self.vms.iter().zip(&self.passt).find_map(|(vm, p)| {
            let how = p.exit_text().filter(|_| !procs::gone(p.qemu_pid))?;
            let said = p.said();
            let lines: Vec<&str> = said.lines().collect();
            Some(format!(
                "{}'s passt (pid {}) exited ({how}); its log ends: {}",
                vm.name,
                p.pid,
                lines[lines.len().saturating_sub(3)..].join(" | ")
            ))
        })
    }

    /// passt mode: how `role`'s passt ended, if it has exited ("killed by signal 9", "exit
    /// status 1", or "status unknown" once reaped).
    pub(crate) fn passt_exit(&self, role: Role) -> Option<String> {
        self.passt.get(role.index())?.exit_text()
    }

    /// Starts every planned domain at once (or restores it from its saved state), each
    /// libvirt call on its own thread (one connection serves them all: libvirt's RPC client
    /// is thread-safe). Every domain that started joins the guard even when another failed,
    /// so nothing escapes teardown.
    fn start_all(&mut self, planned: Vec<(Vm, String)>, start: Start<'_>) -> Result<()> {
        let conn = self
            .conn
            .as_ref()
            .expect("connection open while the lab lives");
        let restore_failed = std::sync::atomic::AtomicBool::new(false);
        let restore_failed = &restore_failed;
        let started: Vec<(Vm, Result<Domain>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = planned
                .into_iter()
                .map(|(mut vm, xml)| {
                    scope.spawn(move || {
                        let t = std::time::Instant::now();
                        let dom = match start {
                            Start::Boot | Start::Hold(_) => conn
                                .create_domain_xml(&xml, 0)
                                .with_context(|| format!("starting domain {}", vm.name)),
                            Start::Restore(saved) => {
                                let file = saved.save_file(vm.role);
                                conn.restore_domain_flags(
                                    &file.to_string_lossy(),
                                    Some(&xml),
                                    virt::sys::VIR_DOMAIN_SAVE_RUNNING,
                                )
                                .map_err(|e| {
                                    restore_failed
                                        .store(true, std::sync::atomic::Ordering::Relaxed);
                                    anyhow::anyhow!(
                                        "restoring domain {} from {} (the saved lab is removed): {e}",
                                        vm.name,
                                        file.display()
                                    )
                                })
                                .and_then(|()| {
                                    conn.lookup_domain_by_name(&vm.name).with_context(|| {
                                        format!("finding restored domain {}", vm.name)
                                    })
                                })
                            }
                        };
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
        // A saved lab libvirt would not restore is of no use to the next cell either: removed
        // (once every restore has ended; the others still read it), so the next one saves anew.
        if let Start::Restore(saved) = start {
            if restore_failed.load(std::sync::atomic::Ordering::Relaxed) {
                saved::forget(saved);
            }
        }
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

    pub(crate) fn tap(&self, role: Role) -> String {
        self.run.link(&role.short())
    }

    /// The bridge the VM's tap joins (None in user mode).
    pub(crate) fn bridge(&self, role: Role) -> Option<String> {
        self.net.as_ref()?.vms.get(role.index())?.bridge.clone()
    }

    pub(crate) fn server(&self) -> &Vm {
        &self.vms[0]
    }

    pub(crate) fn vm_mut(&mut self, role: Role) -> &mut Vm {
        &mut self.vms[role.index()]
    }

    pub(crate) fn vm(&self, role: Role) -> &Vm {
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
    pub(crate) fn set_host_sysctl(&mut self, name: &str, value: &str) -> Result<()> {
        self.net
            .as_mut()
            .expect("network lives as long as the lab")
            .set_sysctl(name, value)
    }

    /// Leaves the lab running after this process exits (`nicstorm lab up`); the next
    /// `nicstorm lab down` or run sweeps it by name.
    pub(crate) fn detach(mut self) {
        self.vms.iter_mut().for_each(|vm| drop(vm.domain.take()));
        self.passt.drain(..).for_each(passt::Passt::detach);
        if let Some(net) = self.net.take() {
            net.detach();
        }
        self.state_dir = PathBuf::new();
    }

    /// Destroys domains, then the host network, then overlays and keys. Goes on past
    /// failures and reports all of them.
    pub fn teardown(&mut self) -> Result<()> {
        // Before any domain goes: which passt had exited already, and whether its QEMU still
        // ran then (a passt that exited under a running QEMU took its guest's network with
        // it; one whose QEMU had gone, e.g. a `destroy` disconnect, followed it, one-off).
        let early: Vec<Option<bool>> = self
            .passt
            .iter()
            .map(|p| p.exited().then(|| !procs::gone(p.qemu_pid)))
            .collect();
        // All at once: libvirt takes about 2 s to see a TCG QEMU exit after SIGTERM.
        let mut errors: Vec<String> = std::thread::scope(|scope| {
            let destroys: Vec<_> = self
                .vms
                .iter_mut()
                .filter_map(|vm| vm.domain.take().map(|d| (vm.name.clone(), d)))
                .map(|(name, dom)| scope.spawn(move || destroy(&dom, &name).err()))
                .collect();
            destroys
                .into_iter()
                .filter_map(|h| h.join().unwrap_or(Some("a destroy thread panicked".into())))
                .collect()
        });
        if !errors.is_empty() {
            // A QEMU that may still run keeps its taps, bridges, passt and overlays: pulling
            // them from under it helps nothing. `nicstorm lab down` (or the next run) sweeps
            // all.
            if let Some(net) = self.net.take() {
                net.detach();
            }
            self.passt.drain(..).for_each(passt::Passt::detach);
            // Kept for the sweep, also by the second call of this from Drop.
            self.state_dir = PathBuf::new();
            self.conn = None;
            bail!(
                "lab {} teardown: {}; its network and files were left for `nicstorm lab down`",
                self.run.tag(),
                errors.join("; ")
            );
        }
        // Each passt exits once its QEMU is gone (one-off); what is left is stopped, and its
        // log kept beside the VM's other logs, with how it ended.
        if !self.passt.is_empty() {
            let mut ended = String::new();
            for (i, mut p) in self.passt.drain(..).enumerate() {
                let role = Role::ALL[i];
                let how = match (p.stop(), early[i]) {
                    (Ok(ended), Some(qemu_ran)) => {
                        let status = match ended {
                            passt::Ended::ByItself(status) => status,
                            passt::Ended::Stopped => "status not seen".into(),
                        };
                        if qemu_ran {
                            format!("exited ({status}) before teardown, while its QEMU ran: the guest's network ended with it (see its log)")
                        } else if status == "exit status 0" {
                            format!("exited ({status}) before teardown, its QEMU gone too: it followed its QEMU (one-off: QEMU closed its socket)")
                        } else {
                            format!("exited ({status}) before teardown, its QEMU gone too: which went first is not known (a one-off exit is status 0; see its log)")
                        }
                    }
                    (Ok(passt::Ended::Stopped), None) => "ran until teardown".to_owned(),
                    (Ok(passt::Ended::ByItself(status)), None) => {
                        format!("ran until teardown; exited by itself ({status}) once its QEMU was destroyed")
                    }
                    (Err(e), _) => {
                        errors.push(format!("{e:#}"));
                        format!("{e:#}")
                    }
                };
                ended.push_str(&format!(
                    "{role}: passt pid {}, its socket connected by QEMU pid {}: {how}\n",
                    p.pid, p.qemu_pid
                ));
                let _ = std::fs::copy(&p.log, self.spec.log_dir.join(format!("{role}.passt.log")));
            }
            let _ = std::fs::write(self.spec.log_dir.join("passt.txt"), ended);
        }
        let mut keep_state = false;
        if let Some(mut net) = self.net.take() {
            if let Err(e) = net.teardown() {
                errors.push(format!("{e:#}"));
                // The restore file is what would undo a host setting that could not be put
                // back now: keep the lab's directory for the sweep.
                keep_state = net.restore_pending();
            }
        }
        if keep_state {
            self.state_dir = PathBuf::new();
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

/// Destroys `dom` unless it is off already. An error only when libvirt neither says it is
/// off nor manages to destroy it: then its QEMU may still run.
pub(crate) fn destroy(dom: &Domain, name: &str) -> Result<(), String> {
    use virt::error::ErrorNumber;
    match dom.is_active() {
        Ok(false) => Ok(()),
        Ok(true) | Err(_) => match dom.destroy() {
            Ok(()) => Ok(()),
            // "domain is not running": it stopped between the two calls (or had stopped).
            Err(e) if e.code().known() == Some(ErrorNumber::OperationInvalid) => Ok(()),
            Err(e) => Err(format!("destroying {name}: {e}")),
        },
    }
}

fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))
}

/// How long to wait for a freshly started domain to become reachable, per accelerator.
pub(crate) fn default_boot_timeout(accel: Accel) -> Duration {
    match accel {
        Accel::Kvm => Duration::from_secs(180),
        Accel::Tcg => Duration::from_secs(600),
    }
}
