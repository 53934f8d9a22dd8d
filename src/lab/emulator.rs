//! The emulator a cell runs on: the host's own QEMU (`system`), or an emulators/ recipe built
//! from Debian's source of the host's QEMU with the recipe's patches (emulators/README.md).
//! Recipes are built (or found in the cache) before any VM boots; a missing or failed build
//! is a named error then, not a cell error later.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::matrix::recipes::{recipe_of, SYSTEM};

/// The host's own QEMU binary.
pub const SYSTEM_EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Emulator {
    /// The axis value: `system`, a recipe name, or `recipe/variant`.
    pub(crate) name: String,
    pub(crate) binary: PathBuf,
    /// Environment for QEMU (settings.qemu_env of the value), e.g. the vmnet model's budget.
    pub(crate) env: Vec<(String, String)>,
    /// First line of `--version`, without "QEMU emulator version ".
    pub(crate) version: Option<String>,
    /// The recipe's hash (its cache key); None for the system QEMU.
    pub(crate) recipe_hash: Option<String>,
}

impl Emulator {
    pub(crate) fn system() -> Emulator {
        Emulator {
            name: SYSTEM.to_owned(),
            binary: PathBuf::from(SYSTEM_EMULATOR),
            env: vec![],
            version: crate::host::provenance::qemu_version(SYSTEM_EMULATOR),
            recipe_hash: None,
        }
    }

    /// The same emulator run with environment `env` (a cell's `qemu_env`).
    pub(crate) fn with_env(&self, env: Vec<(String, String)>) -> Emulator {
        Emulator {
            env,
            ..self.clone()
        }
    }

    /// The emulator of axis value `value` with environment `env`: the system QEMU, or the
    /// recipe's binary, built now if the cache lacks it (emulators/build.sh).
    pub(crate) fn ensure(
        repo_root: &Path,
        value: &str,
        env: Vec<(String, String)>,
    ) -> Result<Emulator> {
        let recipe = recipe_of(value);
        if recipe == SYSTEM {
            return Ok(Emulator {
                env,
                ..Emulator::system()
            });
        }
        let dir = crate::support::cmd::build_dir(
            &repo_root.join("emulators/build.sh"),
            &[recipe],
            &format!("emulator {value:?}"),
        )?;
        let binary = dir.join("bin/qemu-system-x86_64");
        if !binary.is_file() {
            bail!(
                "emulator {value:?}: {} has no bin/qemu-system-x86_64",
                dir.display()
            );
        }
        // libvirt runs it as root: only a binary nobody else could have written, at the
        // path that was checked (symlinks on the way resolved).
        let binary = crate::support::trust::check_path(
            &binary,
            "Rebuild the recipe (remove its directory; emulators/build.sh runs again) in a cache only root can write ($NICSTORM_CACHE, or root's ~/.cache/nicstorm).",
        )?;
        let manifest: serde_json::Value = std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .with_context(|| {
                format!(
                    "emulator {value:?}: reading {}/manifest.json",
                    dir.display()
                )
            })?;
        Ok(Emulator {
            name: value.to_owned(),
            version: crate::host::provenance::qemu_version(&binary.to_string_lossy()),
            binary,
            env,
            recipe_hash: manifest["recipe_hash"].as_str().map(String::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_emulator_is_the_hosts_qemu() {
        let sys = Emulator::ensure(Path::new("/nonexistent"), SYSTEM, vec![]).unwrap();
        assert_eq!(sys.binary, PathBuf::from("/usr/bin/qemu-system-x86_64"));
        assert!(sys.recipe_hash.is_none());
    }
}
