//! Chooses the accelerator by a probe boot: /dev/kvm existing is not proof that KVM boots a kernel
//! (nested PVM hosts expose one that hangs). Falls back to TCG and says why.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::info;

use crate::lab::image::Image;
use crate::matrix::plan::Accel;

#[derive(Clone, Debug)]
pub struct AccelChoice {
    pub accel: Accel,
    /// One line for the banner and run.json: why this accelerator.
    pub(crate) reason: String,
}

/// How long a KVM boot to the kernel's "no init" panic may take; a working KVM needs ~1-3 s.
const PROBE_LIMIT: Duration = Duration::from_secs(20);

/// Boots the image's kernel under KVM with an init that does not exist: a working KVM reaches
/// the kernel panic and, with `panic=-1 -no-reboot`, QEMU exits within seconds.
pub async fn choose(image: &Image, scratch: &Path) -> Result<AccelChoice> {
    if let Ok(v) = std::env::var("NICSTORM_ACCEL") {
        let accel = match v.as_str() {
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            other => anyhow::bail!("NICSTORM_ACCEL={other:?}: allowed values are kvm, tcg"),
        };
        return Ok(AccelChoice {
            accel,
            reason: format!("forced by NICSTORM_ACCEL={v}"),
        });
    }
    if !Path::new("/dev/kvm").exists() {
        return Ok(tcg("no /dev/kvm on this host"));
    }
    // The answer holds until the host reboots or QEMU/kernel change: cache it per boot id.
    let key = format!(
        "{}|{}|{}",
        crate::host::boot_id(),
        crate::support::cmd::run("qemu-system-x86_64", &["--version"])
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or(""),
        image.guest_kernel.as_deref().unwrap_or("")
    );
    let cache = crate::lab::checked_state_root()?.join("accel-probe.json");
    if let Some(bytes) = crate::support::trust::read(&cache)? {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            if v["key"] == key.as_str() {
                let accel = if v["accel"] == "kvm" {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                };
                let reason = format!(
                    "{} (probe cached for this host boot in {})",
                    v["reason"].as_str().unwrap_or(""),
                    cache.display()
                );
                return Ok(AccelChoice { accel, reason });
            }
        }
    }
    let choice = probe(image, scratch).await?;
    let _ = crate::support::trust::write(
        &cache,
        serde_json::json!({"key": key, "accel": choice.accel.to_string(), "reason": choice.reason})
            .to_string()
            .as_bytes(),
    );
    Ok(choice)
}

async fn probe(image: &Image, scratch: &Path) -> Result<AccelChoice> {
    let log = scratch.join("kvm-probe.log");
    let _ = std::fs::remove_file(&log);
    let start = Instant::now();
    let mut child = tokio::process::Command::new("qemu-system-x86_64")
        .args(["-machine", "pc,accel=kvm", "-cpu", "host", "-m", "256", "-display", "none", "-no-reboot", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(&image.kernel)
        .args(["-append", "console=ttyS0 panic=-1 rdinit=/nicstorm-probe-no-init init=/nicstorm-probe-no-init root=/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting qemu-system-x86_64 for the KVM probe")?;
    let status = tokio::time::timeout(PROBE_LIMIT, child.wait()).await;
    let serial = std::fs::read_to_string(&log).unwrap_or_default();
    let choice = match status {
        Ok(Ok(_)) if serial.contains("Kernel panic") => AccelChoice {
            accel: Accel::Kvm,
            reason: format!(
                "KVM probe boot reached the kernel in {:.1}s",
                start.elapsed().as_secs_f64()
            ),
        },
        Ok(Ok(st)) => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut err).await;
            }
            tcg(&format!(
                "KVM probe exited ({st}) without booting: {}",
                err.trim()
            ))
        }
        Ok(Err(e)) => tcg(&format!("KVM probe failed: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            tcg(&format!(
                "/dev/kvm is present but a KVM probe boot did not reach the kernel in {}s (nested or broken KVM)",
                PROBE_LIMIT.as_secs()
            ))
        }
    };
    info!(accel = %choice.accel, reason = %choice.reason, "accelerator chosen");
    Ok(choice)
}

fn tcg(why: &str) -> AccelChoice {
    AccelChoice {
        accel: Accel::Tcg,
        reason: format!("{why}; using TCG (software emulation)"),
    }
}
