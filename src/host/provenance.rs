//! What a run ran on, for run.json and every row: software versions, the git revision, and the
//! host settings a result depends on.

use std::collections::BTreeMap;

/// Software versions recorded in every row.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Versions {
    pub(crate) nicstorm: String,
    /// The host's qemu-system-x86_64 (a cell on an emulators/ recipe records its own).
    pub(crate) qemu: Option<String>,
    pub(crate) libvirt: Option<String>,
    pub(crate) host_kernel: Option<String>,
}

/// The first line a program prints for `arg`, if it runs.
pub(crate) fn first_line(prog: &str, arg: &str) -> Option<String> {
    std::process::Command::new(prog)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty())
}

/// `QEMU emulator version 7.2.22 (Debian ...)` -> `7.2.22 (Debian ...)`.
pub(crate) fn qemu_version(binary: &str) -> Option<String> {
    first_line(binary, "--version")
        .map(|s| s.trim_start_matches("QEMU emulator version ").to_string())
}

/// Versions of the parts that can change a result.
pub(crate) fn versions() -> Versions {
    let libvirt = virt::connect::Connect::version()
        .ok()
        .map(|v| format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000));
    Versions {
        // The revision this binary was built from (build.rs), as `--version` says it: the
        // checkout's HEAD can have moved since, and a copy without .git (fan-out) has none.
        nicstorm: format!(
            "{}+{}",
            env!("CARGO_PKG_VERSION"),
            env!("NICSTORM_GIT_REVISION")
        ),
        qemu: qemu_version("qemu-system-x86_64"),
        libvirt,
        host_kernel: first_line("uname", "-r"),
    }
}

pub(crate) fn git_rev() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(crate::support::repo::root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Host settings a result depends on, for run.json.
pub(crate) fn host_settings() -> BTreeMap<String, Option<String>> {
    [
        "net.netfilter.nf_conntrack_max",
        "net.netfilter.nf_conntrack_count",
        "net.bridge.bridge-nf-call-iptables",
        "net.ipv4.ip_forward",
        "fs.nr_open",
    ]
    .iter()
    .map(|k| {
        (
            k.to_string(),
            crate::host::metrics::read_sysctl(k)
                .ok()
                .map(|v| v.trim().to_string()),
        )
    })
    .collect()
}
