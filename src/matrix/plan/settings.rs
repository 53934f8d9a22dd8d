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
    /// Connects per second per client; 0 = unlimited.
    pub(crate) rate: u32,
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
    /// QEMU's environment per `qemu` axis value.
    pub(crate) qemu_env: BTreeMap<String, Vec<(String, String)>>,
}

pub(super) fn check_settings(ctx: &Ctx, raw: &config::RawSettings) -> Result<Settings, PlanError> {
    let key = |k| [Seg::Key("settings"), Seg::Key(k)];
    if raw.tcg_connections == 0 {
        return Err(ctx.err(&key("tcg_connections"), "0 connections; must be >= 1"));
    }
    if raw.tcg_vcpus == 0 {
        return Err(ctx.err(&key("tcg_vcpus"), "0 vCPUs; must be >= 1"));
    }
    if raw.concurrency == 0 {
        return Err(ctx.err(&key("concurrency"), "0; must be >= 1"));
    }
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
    if !(raw.ssh_slow_factor.is_finite() && raw.ssh_slow_factor >= 1.0) {
        return Err(ctx.err(
            &key("ssh_slow_factor"),
            format!("{}; must be a number >= 1.0", raw.ssh_slow_factor),
        ));
    }
    for (key, name, value) in raw
        .host_sysctls
        .iter()
        .map(|(n, v)| ("host_sysctls", n, v))
        .chain(
            raw.guest_sysctls
                .iter()
                .map(|(n, v)| ("guest_sysctls", n, v)),
        )
    {
        let path = [Seg::Key("settings"), Seg::Key(key), Seg::Key(name)];
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !name_ok {
            return Err(ctx.err(
                &path,
                format!("bad sysctl name {name:?}; expected dotted name like net.netfilter.nf_conntrack_max"),
            ));
        }
        if value.0.trim().is_empty() || value.0.contains('\n') {
            return Err(ctx.err(
                &path,
                format!("bad sysctl value {:?}; expected one line of text", value.0),
            ));
        }
    }
    Ok(Settings {
        tcg_connections: raw.tcg_connections,
        tcg_vcpus: raw.tcg_vcpus,
        ports: raw.ports,
        concurrency: raw.concurrency,
        rate: raw.rate,
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
        guest_sysctls: raw
            .guest_sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.0.trim().to_owned()))
            .collect(),
        qemu_env: raw
            .qemu_env
            .iter()
            .map(|(value, env)| {
                (
                    value.clone(),
                    env.iter()
                        .map(|(k, v)| (k.clone(), v.0.trim().to_owned()))
                        .collect(),
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::matrix::plan::testing::{plan, BASE};

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
    }
}
