//! The emulator recipes a matrix may name on its `qemu` axis: `system` (the host's own QEMU)
//! or a directory of emulators/ holding a README.md, optionally with a `/variant`. Building
//! and finding a recipe's binary is the lab's (lab/emulator.rs).

use std::path::Path;

/// The `qemu` axis value of the host's own QEMU.
pub(crate) const SYSTEM: &str = "system";

/// The recipe of an axis value: `vmnet-flow-control/burst64` is recipe `vmnet-flow-control`.
pub(crate) fn recipe_of(value: &str) -> &str {
    value.split_once('/').map_or(value, |(r, _)| r)
}

/// The recipes in emulators/ (directories holding a README.md), sorted.
pub fn recipes(repo_root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root.join("emulators"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("README.md").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_recipes() {
        assert_eq!(
            recipe_of("vmnet-flow-control/burst64"),
            "vmnet-flow-control"
        );
        assert_eq!(recipe_of("plain"), "plain");
        let found = recipes(Path::new(env!("CARGO_MANIFEST_DIR")));
        for r in ["plain", "virtio-rx-kick-stall", "vmnet-flow-control"] {
            assert!(found.contains(&r.to_owned()), "{found:?}");
        }
    }
}
