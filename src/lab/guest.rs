//! SSH to the guests: one long-lived multiplexed session per VM (openssh crate), fresh
//! connections for probes, pushing storm-load with a checksum, and following guest files.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use openssh::{KnownHosts, Session, SessionBuilder};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::lab::{Role, Vm};
use crate::matrix::plan::NicModel;
use crate::support::wait::wait_until;

/// Where storm-load lives in the guest: pushed there after a boot, or copied there before the
/// hold by a saved lab's initrd (images/initrd/init names the same path).
pub(crate) const STORM_LOAD: &str = "/usr/local/bin/storm-load";

/// Asks a guest's shell (SSH, or the ttyS2 shell of a held guest) for eth0's driver and the
/// kernel release, one `driver=` and one `kernel=` line (read with [`said`]).
pub(crate) const ABOUT: &str =
    "echo \"driver=$(ethtool -i eth0 | sed -n 's/^driver: //p')\"; echo \"kernel=$(uname -r)\"";

/// The value of the line `name=VALUE` in a guest's answer, trimmed; None when the line is
/// missing or its value empty.
pub(crate) fn said<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix('='))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The NIC driver bound to eth0 must be the one of the lab's model, or a row would lie.
pub(crate) fn check_driver(vm: &str, nic: NicModel, driver: &str) -> Result<()> {
    let want = nic.guest_drivers();
    if !want.contains(&driver) {
        bail!(
            "{vm}: eth0 is driven by {driver:?}, but the lab is of {} (driver {})",
            nic.qemu_model(),
            want.join("/")
        );
    }
    Ok(())
}

/// How to reach one guest over SSH.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub(crate) port: u16,
    pub(crate) key: PathBuf,
}

impl Endpoint {
    pub(crate) fn of(vm: &Vm, key: &Path) -> Endpoint {
        Endpoint {
            name: vm.name.clone(),
            host: vm.ssh_host.to_string(),
            port: vm.ssh_port,
            key: key.to_path_buf(),
        }
    }

    /// Options shared by the mux master and the probes: key only, no host-key prompts (the
    /// lab's guests are created a minute ago on an isolated bridge).
    pub(crate) fn ssh_args(&self, connect_timeout: Duration) -> Vec<String> {
        [
            "-i",
            &self.key.to_string_lossy(),
            "-p",
            &self.port.to_string(),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            &format!("ConnectTimeout={}", connect_timeout.as_secs().max(1)),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// The long-lived session to one guest.
pub struct Guest {
    pub role: Role,
    pub ep: Endpoint,
    session: Arc<Session>,
}

/// When the guest's PID 1 and its sshd announced themselves on the serial console, in host
/// seconds since `t0` (the guest's own uptime is not host time under TCG: its TSC calibration
/// fails and its clock can jump). Resolution: the poll interval of `wait_ready`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ConsoleMarks {
    init: Option<f64>,
    sshd: Option<f64>,
}

impl ConsoleMarks {
    fn look(&mut self, console: &Path, t0: Instant) {
        if self.sshd.is_some() {
            return;
        }
        let Ok(text) = std::fs::read_to_string(console) else {
            return;
        };
        let now = t0.elapsed().as_secs_f64();
        if self.init.is_none() && text.contains("] kernel filesystems mounted") {
            self.init = Some(now);
        }
        if text.contains("] sshd started") {
            self.sshd = Some(now);
        }
    }
}

/// When a guest became reachable, in seconds since provisioning began.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ReadyTimes {
    /// nicstorm-init started / sshd was started, seen on the console (host clock).
    pub(crate) init_seen: Option<f64>,
    pub(crate) sshd_seen: Option<f64>,
    /// Port 22 first accepted a TCP connection (user mode: slirp accepts for the guest, so
    /// this is the host side of the forward).
    pub(crate) tcp: Option<f64>,
    /// The first login with the run's key.
    pub(crate) login: f64,
}

/// Result of one new-connection SSH probe.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProbeResult {
    pub(crate) ok: bool,
    pub(crate) latency: Duration,
}

impl Guest {
    /// Waits (bounded) until the guest accepts SSH with the run's key; every poll first checks
    /// the domain is still running so a crashed boot fails fast. Returns the session and when,
    /// in seconds since `t0`, port 22 first accepted a connection and the first login worked.
    pub(crate) async fn wait_ready(
        vm: &Vm,
        key: &Path,
        limit: Duration,
        t0: Instant,
    ) -> Result<(Guest, ReadyTimes)> {
        let ep = Endpoint::of(vm, key);
        let tcp_at = std::sync::Mutex::new(None::<f64>);
        let console = std::sync::Mutex::new(ConsoleMarks::default());
        // What the last attempt ran into, for the error when none succeeds in time.
        let last_failure = std::sync::Mutex::new(None::<String>);
        let session = wait_until(
            &format!("SSH on {} ({}:{})", vm.name, ep.host, ep.port),
            limit,
            // A TCP connect is cheap for the guest; a full SSH attempt is only made once one
            // is accepted (under TCG a key exchange costs the guest a second of CPU).
            Duration::from_millis(250),
            || {
                let ep = ep.clone();
                let alive = vm.check_running();
                let (tcp_at, console, last_failure) = (&tcp_at, &console, &last_failure);
                console.lock().unwrap().look(&vm.console_log, t0);
                async move {
                    alive?;
                    let addr = format!("{}:{}", ep.host, ep.port);
                    // Short: before eth0 is up a SYN waits for an ARP answer that never comes.
                    match tokio::time::timeout(
                        Duration::from_millis(500),
                        tokio::net::TcpStream::connect(&addr),
                    )
                    .await
                    {
                        Ok(Ok(_)) => {
                            let mut at = tcp_at.lock().unwrap();
                            at.get_or_insert(t0.elapsed().as_secs_f64());
                        }
                        Ok(Err(e)) => {
                            *last_failure.lock().unwrap() = Some(format!("TCP connect: {e}"));
                            return Ok(None);
                        }
                        Err(_) => {
                            *last_failure.lock().unwrap() =
                                Some("TCP connect: no answer within 500 ms".into());
                            return Ok(None);
                        }
                    }
                    match connect(&ep).await {
                        Ok(s) => Ok(Some(s)),
                        Err(e) => {
                            tracing::debug!("ssh to {} not ready: {e:#}", ep.name);
                            *last_failure.lock().unwrap() = Some(format!("ssh: {e:#}"));
                            Ok(None)
                        }
                    }
                }
            },
        )
        .await
        .map_err(|e| match last_failure.lock().unwrap().take() {
            Some(last) => anyhow::anyhow!("{e:#}; its last attempt: {last}"),
            None => e,
        })?;
        let mut marks = console.into_inner().unwrap();
        marks.look(&vm.console_log, t0);
        let times = ReadyTimes {
            tcp: *tcp_at.lock().unwrap(),
            login: t0.elapsed().as_secs_f64(),
            init_seen: marks.init,
            sshd_seen: marks.sshd,
        };
        tracing::info!(vm = %vm.name, secs = times.login, "ssh ready");
        Ok((
            Guest {
                role: vm.role,
                ep,
                session: Arc::new(session),
            },
            times,
        ))
    }

    /// A new multiplexed session to the same guest, for when the old one broke while the guest
    /// stayed reachable (a 1-vCPU guest closing hundreds of thousands of sockets can miss the
    /// master's keepalives).
    pub(crate) async fn reconnect(&mut self) -> Result<()> {
        let session = connect(&self.ep)
            .await
            .with_context(|| format!("reconnecting to {}", self.ep.name))?;
        self.session = Arc::new(session);
        Ok(())
    }

    /// Runs `sh -c script`; a non-zero exit is an error naming the guest and quoting stderr.
    pub async fn sh(&self, script: &str) -> Result<String> {
        let out = self
            .session
            .command("sh")
            .arg("-c")
            .arg(script)
            .output()
            .await
            .with_context(|| format!("running a command on {}", self.ep.name))?;
        if !out.status.success() {
            bail!(
                "on {}: `{}` failed ({}): {}",
                self.ep.name,
                script,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A command over the long-lived session, as a future that owns what it needs (so the
    /// caller can spawn it and its loop never waits on a slow guest): the latency, or why the
    /// session failed.
    pub(crate) fn session_probe(
        &self,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<Duration>> + Send + use<> {
        let (session, name) = (self.session.clone(), self.ep.name.clone());
        async move {
            let t = Instant::now();
            match tokio::time::timeout(limit, session.command("true").status()).await {
                Ok(Ok(st)) if st.success() => Ok(t.elapsed()),
                Ok(Ok(st)) => bail!("`true` over the session to {name} exited {st}"),
                Ok(Err(e)) => bail!("session to {name} broke: {e}"),
                Err(_) => bail!("session to {name} did not answer within {limit:?}"),
            }
        }
    }

    /// Copies `local` to `remote` (mode 0755): one command, which writes a temporary file,
    /// checks its SHA-256 inside the guest and only then moves it into place.
    pub(crate) async fn push(&self, local: &Path, remote: &str) -> Result<String> {
        let bytes = tokio::fs::read(local)
            .await
            .with_context(|| format!("reading {}", local.display()))?;
        let want = hex::encode(Sha256::digest(&bytes));
        let mut child = self
            .session
            .command("sh")
            .arg("-c")
            .arg(push_script(remote, &want))
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
            .with_context(|| format!("starting the upload to {}", self.ep.name))?;
        let mut stdin = child.stdin().take().expect("stdin was piped");
        stdin
            .write_all(&bytes)
            .await
            .with_context(|| format!("uploading {} to {}", local.display(), self.ep.name))?;
        stdin.shutdown().await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            let got = String::from_utf8_lossy(&out.stdout);
            bail!(
                "upload of {} to {}:{remote} failed: sha256 {:?} != {want} ({})",
                local.display(),
                self.ep.name,
                got.split_whitespace().next().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(want)
    }

    /// Follows a guest file from its start (`tail -F`), sending each line with its host
    /// arrival time. The reader is a task of `tasks`, so it ends when the set is dropped; the
    /// channel closes when the session or the tail ends.
    pub(crate) async fn follow(
        &self,
        path: &str,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Result<mpsc::UnboundedReceiver<(Instant, String)>> {
        let mut child = self
            .session
            .clone()
            .arc_command("tail")
            .args(["-n", "+1", "-F", path])
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::null())
            .spawn()
            .await
            .with_context(|| format!("following {path} on {}", self.ep.name))?;
        let stdout = child.stdout().take().expect("stdout was piped");
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
            let _ = child.disconnect().await;
        });
        Ok(rx)
    }
}

/// The guest's side of [`Guest::push`]: stdin into `REMOTE.part`, its SHA-256 printed and
/// compared with `want`, then renamed to `remote` (a failed check leaves `remote` as it was).
fn push_script(remote: &str, want: &str) -> String {
    let tmp = format!("{remote}.part");
    format!(
        "cat > {tmp} && chmod 0755 {tmp} && s=$(sha256sum {tmp}) && echo \"$s\" && [ \"${{s%% *}}\" = {want} ] && mv {tmp} {remote}"
    )
}

async fn connect(ep: &Endpoint) -> Result<Session> {
    let mut b = SessionBuilder::default();
    b.user("root".into())
        .port(ep.port)
        .keyfile(&ep.key)
        .known_hosts_check(KnownHosts::Accept)
        .user_known_hosts_file("/dev/null")
        .connect_timeout(Duration::from_secs(20))
        .server_alive_interval(Duration::from_secs(5));
    Ok(b.connect_mux(&ep.host).await?)
}

/// One probe over a NEW SSH connection (no multiplexing): what a user typing `ssh` sees.
pub(crate) async fn probe_new_connection(ep: &Endpoint, limit: Duration) -> ProbeResult {
    let t = Instant::now();
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(ep.ssh_args(limit))
        .args(["-o", "ControlMaster=no", "-o", "ControlPath=none"])
        .arg(format!("root@{}", ep.host))
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let ok = match cmd.spawn() {
        Ok(mut child) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(st)) => st.success(),
            _ => {
                let _ = child.kill().await;
                false
            }
        },
        Err(_) => false,
    };
    ProbeResult {
        ok,
        latency: t.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guests_answer_is_read_by_whole_name_and_an_empty_value_is_none() {
        let a = "driver=vmxnet3\r\nkernel=\r\n  driverx=e1000\n";
        assert_eq!(said(a, "driver"), Some("vmxnet3"));
        assert_eq!(said(a, "kernel"), None);
        assert_eq!(said(a, "driv"), None);
        assert_eq!(said(a, "sha256"), None);
    }

    #[test]
    fn a_driver_other_than_the_models_is_refused_naming_both() {
        check_driver("s", NicModel::Rtl8139, "8139too").unwrap();
        let e = check_driver("s", NicModel::Vmxnet3, "e1000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"e1000\"") && e.contains("driver vmxnet3"),
            "{e}"
        );
        assert!(check_driver("s", NicModel::VirtioNet, "").is_err());
    }

    /// The guest's side of a push, run by a real `sh` here: the file lands only when its
    /// SHA-256 is the one asked for.
    #[test]
    fn a_push_moves_the_file_into_place_only_when_its_hash_matches() {
        let dir = crate::support::testing::TempDir::new("push");
        let remote = dir.0.join("storm-load");
        let remote = remote.to_str().unwrap();
        let body = b"#!/bin/sh\necho hello\n";
        let want = hex::encode(Sha256::digest(body));
        let run = |script: String| {
            let mut child = std::process::Command::new("sh")
                .args(["-c", &script])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), body).unwrap();
            child.wait_with_output().unwrap()
        };
        let bad = run(push_script(remote, &"0".repeat(64)));
        assert!(!bad.status.success());
        assert!(
            !Path::new(remote).exists(),
            "a failed check left the file in place"
        );
        let good = run(push_script(remote, &want));
        assert!(good.status.success());
        assert!(String::from_utf8_lossy(&good.stdout).starts_with(&want));
        assert_eq!(std::fs::read(remote).unwrap(), body);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(remote).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(!Path::new(&format!("{remote}.part")).exists());
    }
}
