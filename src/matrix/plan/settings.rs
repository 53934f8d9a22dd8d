//! The settings fixed for every cell, checked and typed: the raw `settings:` block becomes
//! [`Settings`], with each bad value named by its key and position.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::{Ctx, PlanError};
use super::{PortRange, HEARTBEAT_PERIOD};
use crate::matrix::config::{self, Seg};

/// Settings fixed for every cell, checked and typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub(crate) tcg_connections: u64,
    pub(crate) tcg_vcpus: u32,
    pub ports: PortRange,
    pub(crate) concurrency: u32,
    /// Connects per second per client (0 = unlimited), or paced by the server (`auto`).
    pub(crate) rate: config::Rate,
    /// The pace under TCG, when it differs from `rate`.
    pub(crate) tcg_rate: Option<config::Rate>,
    /// Frames the NIC's backend is given.
    pub frames: config::Frames,
    /// The passt of passt-mode cells: `system` or a recipe under passt/.
    pub(crate) passt: String,
    /// The order cells x repetitions run in.
    pub(crate) order: config::RunOrder,
    /// How each cell's lab comes up.
    pub(crate) lab_start: config::LabStart,
    /// The packet ring of the server's tap (not part of the cell id).
    pub capture: CaptureSettings,
    pub(crate) boot_timeout: Duration,
    pub(crate) ramp_timeout: Duration,
    pub(crate) ramp_stall: Duration,
    pub(crate) hold: Duration,
    pub observe: Duration,
    pub(crate) probe_interval: Duration,
    pub(crate) hang_gap: Duration,
    pub(crate) ssh_slow_factor: f64,
    pub(crate) ssh_slow_min: Duration,
    pub(crate) host_sysctls: BTreeMap<String, String>,
    pub(crate) guest_sysctls: BTreeMap<String, String>,
    /// QEMU's environment per `qemu` axis value: each variable with its values (more than
    /// one: a sweep, see [`Settings::qemu_env_points`]).
    pub(crate) qemu_env: BTreeMap<String, Vec<(String, Vec<String>)>>,
}

impl Settings {
    /// Every environment the cells of `qemu` value run with: the cartesian product of its
    /// variables' values, the first variable varying slowest. One empty environment when
    /// the value has no entry.
    pub(crate) fn qemu_env_points(&self, value: &str) -> Vec<Vec<(String, String)>> {
        let mut points = vec![vec![]];
        for (name, values) in self.qemu_env.get(value).into_iter().flatten() {
            points = points
                .into_iter()
                .flat_map(|p: Vec<(String, String)>| {
                    values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.push((name.clone(), v.clone()));
                        q
                    })
                })
                .collect();
        }
        points
    }

    /// The variables of `qemu` value that take more than one value (a sweep).
    pub(crate) fn swept_env(&self, value: &str) -> Vec<&str> {
        self.qemu_env
            .get(value)
            .into_iter()
            .flatten()
            .filter(|(_, values)| values.len() > 1)
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// The packet ring of the server's tap: when it is kept, and its sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureSettings {
    /// `settings.capture` as the matrix set it; None: the accelerator's default
    /// ([`CaptureSettings::when`]).
    pub set: Option<config::Capture>,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// The ring's size on disk, in bytes.
    pub ring_bytes: u64,
}

impl CaptureSettings {
    /// When the ring runs and is kept: as the matrix set it, or by default `on-loss` under KVM
    /// and `off` under TCG, where the ring cost a 30k ramp about 9% of its rate (28 pairs of
    /// cells, docs/measurements/2026-12-07-capture-cost-vm).
    pub fn when(&self, accel: super::Accel) -> config::Capture {
        self.set.unwrap_or(match accel {
            super::Accel::Kvm => config::Capture::OnLoss,
            super::Accel::Tcg => config::Capture::Off,
        })
    }
}

/// Snap lengths a ring may take: at least an Ethernet, IPv4 and TCP header without options
/// (54 bytes; 96 holds TCP's options too), at most tcpdump's own limit.
pub(crate) const SNAPLEN_RANGE: std::ops::RangeInclusive<u32> = 54..=262_144;

/// The smallest ring: 8 MiB, so each of its 8 files holds at least tcpdump's smallest file
/// (1,000,000 bytes) and the ring stays within the setting.
pub(crate) const MIN_RING_BYTES: u64 = 8 << 20;

/// The raw `settings:` block, checked, as [`Settings`].
pub(super) fn check_settings(ctx: &Ctx, raw: &config::RawSettings) -> Result<Settings, PlanError> {
    check_counts(ctx, raw)?;
    check_durations(ctx, raw)?;
    if !(raw.ssh_slow_factor.is_finite() && raw.ssh_slow_factor >= 1.0) {
        return Err(ctx.err(
            &key("ssh_slow_factor"),
            format!("{}; must be a number >= 1.0", raw.ssh_slow_factor),
        ));
    }
    if !SNAPLEN_RANGE.contains(&raw.capture_snaplen) {
        return Err(ctx.err(
            &key("capture_snaplen"),
            format!(
                "{} bytes; must be {} to {} (Ethernet, IPv4 and TCP headers need 54)",
                raw.capture_snaplen,
                SNAPLEN_RANGE.start(),
                SNAPLEN_RANGE.end()
            ),
        ));
    }
    if raw.capture_ring.0 < MIN_RING_BYTES {
        return Err(ctx.err(
            &key("capture_ring"),
            format!(
                "{}; must be at least 8MiB (8 files of at least 1,000,000 bytes each)",
                raw.capture_ring
            ),
        ));
    }
    for (name, value) in &raw.host_sysctls {
        check_sysctl(ctx, "host_sysctls", name, value)?;
        check_host_sysctl(ctx, name, value)?;
    }
    for (name, value) in &raw.guest_sysctls {
        check_sysctl(ctx, "guest_sysctls", name, value)?;
    }
    Ok(typed(raw))
}

/// The path of `settings.NAME`.
fn key(name: &str) -> [Seg<'_>; 2] {
    [Seg::Key("settings"), Seg::Key(name)]
}

/// Counts that must be at least 1.
fn check_counts(ctx: &Ctx, raw: &config::RawSettings) -> Result<(), PlanError> {
    if raw.tcg_connections == 0 {
        return Err(ctx.err(&key("tcg_connections"), "0 connections; must be >= 1"));
    }
    if raw.tcg_vcpus == 0 {
        return Err(ctx.err(&key("tcg_vcpus"), "0 vCPUs; must be >= 1"));
    }
    if raw.concurrency == 0 {
        return Err(ctx.err(&key("concurrency"), "0; must be >= 1"));
    }
    Ok(())
}

/// Durations: positive, and the hang gap and the probe interval such that a hang and a probe
/// can be seen inside the observe window.
fn check_durations(ctx: &Ctx, raw: &config::RawSettings) -> Result<(), PlanError> {
    let positive = [
        ("boot_timeout", raw.boot_timeout),
        ("ramp_timeout", raw.ramp_timeout),
        ("ramp_stall", raw.ramp_stall),
        ("hold", raw.hold),
        ("observe", raw.observe),
        ("probe_interval", raw.probe_interval),
    ];
    for (name, d) in positive {
        if d.0.is_zero() {
            return Err(ctx.err(&key(name), format!("{d}; must be > 0")));
        }
    }
    if raw.hang_gap.0 < 2 * HEARTBEAT_PERIOD {
        return Err(ctx.err(
            &key("hang_gap"),
            format!(
                "{}; must be at least 2 x the heartbeat period ({}ms), or every late heartbeat counts as a hang",
                raw.hang_gap,
                HEARTBEAT_PERIOD.as_millis()
            ),
        ));
    }
    if raw.hang_gap.0 >= raw.observe.0 {
        return Err(ctx.err(
            &key("hang_gap"),
            format!(
                "{} is not shorter than settings.observe ({}): a hang could never be seen",
                raw.hang_gap, raw.observe
            ),
        ));
    }
    if raw.probe_interval.0 >= raw.observe.0 {
        return Err(ctx.err(
            &key("probe_interval"),
            format!(
                "{} is not shorter than settings.observe ({}): no SSH probe would run",
                raw.probe_interval, raw.observe
            ),
        ));
    }
    Ok(())
}

/// Checked raw settings as the plan's types (sysctl and environment values trimmed, as
/// they enter cell ids and commands).
fn typed(raw: &config::RawSettings) -> Settings {
    let trimmed = |m: &BTreeMap<String, config::SysctlValue>| -> Vec<(String, String)> {
        m.iter()
            .map(|(k, v)| (k.clone(), v.0.trim().to_owned()))
            .collect()
    };
    Settings {
        tcg_connections: raw.tcg_connections,
        tcg_vcpus: raw.tcg_vcpus,
        ports: raw.ports,
        concurrency: raw.concurrency,
        rate: raw.rate,
        frames: raw.frames,
        passt: raw.passt.trim().to_owned(),
        order: raw.order,
        lab_start: raw.lab_start,
        capture: CaptureSettings {
            set: raw.capture,
            snaplen: raw.capture_snaplen,
            ring_bytes: raw.capture_ring.0,
        },
        tcg_rate: raw.tcg_rate,
        boot_timeout: raw.boot_timeout.0,
        ramp_timeout: raw.ramp_timeout.0,
        ramp_stall: raw.ramp_stall.0,
        hold: raw.hold.0,
        observe: raw.observe.0,
        probe_interval: raw.probe_interval.0,
        hang_gap: raw.hang_gap.0,
        ssh_slow_factor: raw.ssh_slow_factor,
        ssh_slow_min: raw.ssh_slow_min.0,
        host_sysctls: raw
            .host_sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        guest_sysctls: trimmed(&raw.guest_sysctls).into_iter().collect(),
        qemu_env: raw
            .qemu_env
            .iter()
            .map(|(value, env)| {
                let vars = env
                    .iter()
                    .map(|(k, vs)| {
                        (
                            k.clone(),
                            vs.0.iter().map(|v| v.0.trim().to_owned()).collect(),
                        )
                    })
                    .collect();
                (value.clone(), vars)
            })
            .collect(),
    }
}

/// The host sysctls a matrix may set: the kernel's network tree, and the file limits the
/// seed's tuning raises. nicstorm runs as root and a matrix comes from a checkout, so it may
/// not reach the rest of the host (`kernel.core_pattern: "|/path"` runs a program as root).
pub(crate) const HOST_SYSCTL_PREFIXES: &[&str] = &["net."];
pub(crate) const HOST_SYSCTL_KEYS: &[&str] = &["fs.nr_open", "fs.file-max"];

/// What `HOST_SYSCTL_PREFIXES` and `HOST_SYSCTL_KEYS` allow, for error messages.
fn host_sysctls_allowed() -> String {
    HOST_SYSCTL_PREFIXES
        .iter()
        .map(|p| format!("{p}*"))
        .chain(HOST_SYSCTL_KEYS.iter().map(|k| k.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A sysctl's name is dotted words, its value one line of text.
fn check_sysctl(
    ctx: &Ctx,
    key: &str,
    name: &str,
    value: &config::SysctlValue,
) -> Result<(), PlanError> {
    let path = [Seg::Key("settings"), Seg::Key(key), Seg::Key(name)];
    let name_ok = !name.is_empty()
        && name.split('.').all(|w| !w.is_empty())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !name_ok {
        return Err(ctx.err(
            &path,
            format!("bad sysctl name {name:?}; expected dotted name like net.netfilter.nf_conntrack_max"),
        ));
    }
    if value.0.trim().is_empty() || value.0.contains(['\n', '\r', '\0']) {
        return Err(ctx.err(
            &path,
            format!("bad sysctl value {:?}; expected one line of text", value.0),
        ));
    }
    Ok(())
}

/// A host sysctl must be in the network tree or one of the file limits.
fn check_host_sysctl(ctx: &Ctx, name: &str, value: &config::SysctlValue) -> Result<(), PlanError> {
    // Forwarding is what keeps guests off the host's uplink (lab/hostnet: per lab bridge,
    // never host-wide): a matrix may not turn it on for the whole host.
    let forwarding = name == "net.ipv4.ip_forward"
        || (name.starts_with("net.ipv4.conf.") || name.starts_with("net.ipv6.conf."))
            && name.ends_with(".forwarding");
    if forwarding {
        return Err(ctx.err(
            &[Seg::Key("settings"), Seg::Key("host_sysctls"), Seg::Key(name)],
            format!(
                "host sysctl {name} = {:?} refused: nicstorm turns forwarding on for its lab's bridges only, so that guests reach nothing but the lab; a matrix may not change it",
                value.0
            ),
        ));
    }
    let allowed = HOST_SYSCTL_PREFIXES.iter().any(|p| name.starts_with(p))
        || HOST_SYSCTL_KEYS.contains(&name);
    if allowed {
        return Ok(());
    }
    Err(ctx.err(
        &[Seg::Key("settings"), Seg::Key("host_sysctls"), Seg::Key(name)],
        format!(
            "host sysctl {name} = {:?} refused: nicstorm runs as root, so a matrix may set only the host's network and file-limit sysctls; allowed: {}",
            value.0,
            host_sysctls_allowed()
        ),
    ))
}

/// QEMU's environment: per `qemu` axis value, only the variables its recipe declares
/// (matrix/recipes.rs), each value one line without NUL. QEMU runs as root: `LD_PRELOAD`
/// would load any library into it. Runs after check.rs has checked that every entry names a
/// recipe on axes.qemu.
pub(super) fn check_qemu_env(
    ctx: &Ctx,
    qemu_env: &BTreeMap<String, BTreeMap<String, config::OneOrMany<config::SysctlValue>>>,
) -> Result<(), PlanError> {
    let root = crate::support::repo::root();
    for (value, env) in qemu_env {
        let recipe = crate::matrix::recipes::recipe_of(value);
        let entry = [Seg::Key("settings"), Seg::Key("qemu_env"), Seg::Key(value)];
        let declared = match crate::matrix::recipes::declared_env(&root, recipe) {
            // A recipe without a README declares nothing: every variable is refused.
            None => vec![],
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(ctx.err(&entry, e)),
        };
        for (name, values) in env {
            let path = [
                Seg::Key("settings"),
                Seg::Key("qemu_env"),
                Seg::Key(value),
                Seg::Key(name),
            ];
            if !declared.contains(name) {
                let whose = if recipe == crate::matrix::recipes::SYSTEM {
                    "the system QEMU takes none".to_owned()
                } else {
                    format!(
                        "only the variables its recipe declares (emulators/{recipe}/README.md, \"{}\") may be set",
                        crate::matrix::recipes::ENV_HEADING
                    )
                };
                let allowed = if declared.is_empty() {
                    "none".to_owned()
                } else {
                    declared.join(", ")
                };
                return Err(ctx.err(
                    &path,
                    format!(
                        "{name} = {:?} refused: QEMU runs as root, so {whose}; allowed: {allowed}",
                        values
                            .0
                            .iter()
                            .map(|v| v.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if values.0.is_empty() {
                return Err(ctx.err(
                    &path,
                    format!(
                        "{name} has an empty list; give one value, or a list of values to sweep"
                    ),
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for v in &values.0 {
                if !seen.insert(v.0.trim()) {
                    return Err(ctx.err(
                        &path,
                        format!("{name} lists {:?} twice; each swept value must differ", v.0),
                    ));
                }
                if v.0.contains(['\n', '\r', '\0']) {
                    return Err(ctx.err(
                        &path,
                        format!(
                            "{name} = {:?} refused: a value must be one line without NUL",
                            v.0
                        ),
                    ));
                }
                // The row's qemu_env column writes NAME=value;NAME=value.
                if v.0.contains([';', '=']) {
                    return Err(ctx.err(
                        &path,
                        format!(
                            "{name} = {:?} refused: a value may not contain ';' or '=' (the row's qemu_env column separates with them)",
                            v.0
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::matrix::plan::testing::{err, plan, BASE};

    #[test]
    fn settings_defaults_and_overrides() {
        let p = plan(BASE);
        let s = &p.settings;
        assert_eq!(s.tcg_connections, 30_000);
        assert_eq!(s.ports.to_string(), "20000-20019");
        assert_eq!(s.boot_timeout, Duration::from_secs(600));
        assert_eq!(s.ramp_timeout, Duration::from_secs(1800));
        assert_eq!(s.hang_gap, Duration::from_secs(5));
        assert_eq!(s.ssh_slow_factor, 5.0);
        assert!(s.host_sysctls.is_empty());
        assert_eq!(p.repetitions, 1);
        assert_eq!(p.name, "t");
        let p = plan(&format!(
            "{BASE}settings:\n  hold: 500ms\n  host_sysctls: {{net.netfilter.nf_conntrack_max: 2000000, net.core.somaxconn: \"4096\"}}\n"
        ));
        assert_eq!(p.settings.hold, Duration::from_millis(500));
        assert_eq!(
            p.settings.host_sysctls["net.netfilter.nf_conntrack_max"],
            "2000000"
        );
        assert_eq!(p.settings.host_sysctls["net.core.somaxconn"], "4096");
        // The packet ring: on-loss under KVM and off under TCG, 96 bytes a packet, 64MiB by
        // default; a setting holds under both.
        use crate::matrix::plan::{Accel, Capture};
        let c = plan(BASE).settings.capture;
        assert_eq!(
            (
                c.set,
                c.when(Accel::Kvm),
                c.when(Accel::Tcg),
                c.snaplen,
                c.ring_bytes
            ),
            (None, Capture::OnLoss, Capture::Off, 96, 64 << 20)
        );
        let c = plan(&format!("{BASE}settings:\n  capture: on-loss\n"))
            .settings
            .capture;
        assert_eq!(
            (c.when(Accel::Kvm), c.when(Accel::Tcg)),
            (Capture::OnLoss, Capture::OnLoss)
        );
        for (text, want) in [
            ("capture: sometimes", "settings.capture"),
            ("capture_snaplen: 40", "40 bytes; must be 54 to 262144"),
            ("capture_ring: 4MiB", "4MiB; must be at least 8MiB"),
            ("capture_ring: 64M", "settings.capture_ring"),
        ] {
            let e = err(&format!("{BASE}settings:\n  {text}\n"));
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    /// What a matrix may not do to the host it runs on as root: each refusal names the key
    /// (located), the value, and what is allowed.
    #[test]
    fn root_configuration_is_refused_outside_what_is_allowed() {
        let axes = "axes: {nic: [vmxnet3], mode: [bridge], connections: [3000], qemu: [system, plain, vmnet-flow-control/b32]}\n";
        let vmnet = "vmnet-flow-control/b32: {NICSTORM_VMNET_BURST: 32}";
        let cases: &[(&str, &[&str])] = &[
            (
                "host_sysctls: {kernel.core_pattern: \"|/tmp/x\"}",
                &[":4:", "settings.host_sysctls.kernel.core_pattern", "\"|/tmp/x\"", "allowed: net.*, fs.nr_open, fs.file-max"],
            ),
            (
                "host_sysctls: {net.ipv4.ip_forward: 1}",
                &["settings.host_sysctls.net.ipv4.ip_forward", "\"1\"", "forwarding on for its lab's bridges only"],
            ),
            (
                "host_sysctls: {net.ipv4.conf.all.forwarding: 1}",
                &["settings.host_sysctls.net.ipv4.conf.all.forwarding", "a matrix may not change it"],
            ),
            (
                "host_sysctls: {vm.overcommit_memory: 1}",
                &["settings.host_sysctls.vm.overcommit_memory", "\"1\"", "allowed: net.*"],
            ),
            (
                "host_sysctls: {fs.protected_symlinks: 0}",
                &["settings.host_sysctls.fs.protected_symlinks", "\"0\"", "fs.file-max"],
            ),
            (
                "host_sysctls: {network.x: 1}",
                &["settings.host_sysctls.network.x", "allowed: net.*"],
            ),
            (
                "host_sysctls: {net..ipv4: 1}",
                &["settings.host_sysctls.net..ipv4", "bad sysctl name"],
            ),
            (
                "host_sysctls: {net.core.somaxconn: \"1\\u0000\"}",
                &["settings.host_sysctls.net.core.somaxconn", "bad sysctl value"],
            ),
            (
                "host_sysctls: {net.core.somaxconn: \"1\\n2\"}",
                &["settings.host_sysctls.net.core.somaxconn", "one line"],
            ),
            (
                "guest_sysctls: {net.core.somaxconn: \"1\\r\\n2\"}",
                &["settings.guest_sysctls.net.core.somaxconn", "one line"],
            ),
            (
                "qemu_env: {vmnet-flow-control/b32: {LD_PRELOAD: /tmp/evil.so}}",
                &["settings.qemu_env.vmnet-flow-control/b32.LD_PRELOAD", "\"/tmp/evil.so\"", "emulators/vmnet-flow-control/README.md", "allowed: NICSTORM_VMNET_BURST, NICSTORM_VMNET_MODE, NICSTORM_VMNET_PPMS"],
            ),
            (
                "qemu_env: {vmnet-flow-control/b32: {NICSTORM_VMNET_BURST: 32, NICSTORM_VMNET_BOGUS: 1}}",
                &["settings.qemu_env.vmnet-flow-control/b32.NICSTORM_VMNET_BOGUS", "allowed: NICSTORM_VMNET_BURST"],
            ),
            (
                "qemu_env: {plain: {NICSTORM_VMNET_PPMS: 8}, vmnet-flow-control/b32: {NICSTORM_VMNET_BURST: 32}}",
                &["settings.qemu_env.plain.NICSTORM_VMNET_PPMS", "\"8\"", "emulators/plain/README.md", "allowed: none"],
            ),
            (
                "qemu_env: {system: {LD_LIBRARY_PATH: /tmp}, vmnet-flow-control/b32: {NICSTORM_VMNET_BURST: 32}}",
                &["settings.qemu_env.system.LD_LIBRARY_PATH", "\"/tmp\"", "system QEMU takes none", "allowed: none"],
            ),
            (
                "qemu_env: {vmnet-flow-control/b32: {NICSTORM_VMNET_MODE: \"drop\\nLD_PRELOAD=x\"}}",
                &["settings.qemu_env.vmnet-flow-control/b32.NICSTORM_VMNET_MODE", "one line without NUL"],
            ),
            (
                "qemu_env: {vmnet-flow-control/b32: {NICSTORM_VMNET_MODE: \"drop\\u0000\"}}",
                &["settings.qemu_env.vmnet-flow-control/b32.NICSTORM_VMNET_MODE", "one line without NUL"],
            ),
            (
                "qemu_env: {vmnet-flow-control/b32: {NICSTORM_VMNET_MODE: \"a;b\"}}",
                &["settings.qemu_env.vmnet-flow-control/b32.NICSTORM_VMNET_MODE", "';' or '='"],
            ),
            (
                "qemu_env: {vmnet-flow-control/b32: {NICSTORM_VMNET_PPMS: []}}",
                &["settings.qemu_env.vmnet-flow-control/b32.NICSTORM_VMNET_PPMS", "empty list", "a list of values to sweep"],
            ),
            (
                "qemu_env: {vmnet-flow-control/b32: {NICSTORM_VMNET_PPMS: [5, 20, 5]}}",
                &["settings.qemu_env.vmnet-flow-control/b32.NICSTORM_VMNET_PPMS", "\"5\" twice"],
            ),
            (
                "qemu_env: {vmnet-flow-control/b32: {NICSTORM_VMNET_MODE: [disable, \"x\\ny\"]}}",
                &["settings.qemu_env.vmnet-flow-control/b32.NICSTORM_VMNET_MODE", "one line without NUL"],
            ),
        ];
        for (settings, needles) in cases {
            let text = if settings.contains("vmnet-flow-control/b32") {
                format!("{axes}settings:\n  {settings}\n")
            } else {
                format!("{axes}settings:\n  qemu_env: {{{vmnet}}}\n  {settings}\n")
            };
            let e = err(&text);
            assert!(e.starts_with("matrix/t.yaml:"), "{e}");
            for n in *needles {
                assert!(e.contains(n), "{e:?} lacks {n:?}");
            }
        }
        // What stays allowed: the network tree, the file limits, the declared variables.
        let p = plan(&format!(
            "{axes}settings:\n  host_sysctls: {{net.netfilter.nf_conntrack_max: 2000000, fs.nr_open: 1048576, fs.file-max: 2097152}}\n  qemu_env: {{{vmnet}}}\n"
        ));
        assert_eq!(p.settings.host_sysctls.len(), 3);
        assert_eq!(
            p.settings.qemu_env["vmnet-flow-control/b32"],
            [("NICSTORM_VMNET_BURST".to_owned(), vec!["32".to_owned()])]
        );
    }
}
