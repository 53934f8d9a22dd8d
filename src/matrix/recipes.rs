//! The emulator recipes a matrix may name on its `qemu` axis: `system` (the host's own QEMU)
//! or a directory of emulators/ holding a README.md, optionally with a `/variant`. Building
//! and finding a recipe's binary is the lab's (lab/emulator.rs).
//!
//! A recipe also declares the environment variables its patches read, in its README.md: the
//! table under the heading `## Environment`, one variable per row, its name in backticks in
//! the first column (emulators/README.md, "Adding a recipe"). settings.qemu_env may set only
//! those. A declared name must be nicstorm's own (`NICSTORM_` followed by capitals, digits and
//! `_`), so no README can open the door to `LD_PRELOAD` and the like. README.md is left out
//! of a recipe's build hash, so declaring a variable does not rebuild anything.

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

/// The heading of the section that declares a recipe's environment.
pub(crate) const ENV_HEADING: &str = "## Environment";

/// The environment variables `recipe` declares (sorted), or why its declaration is bad.
/// `system` and a recipe without the section declare none. `None`: no such recipe.
pub(crate) fn declared_env(repo_root: &Path, recipe: &str) -> Option<Result<Vec<String>, String>> {
    if recipe == SYSTEM {
        return Some(Ok(vec![]));
    }
    let readme = repo_root.join("emulators").join(recipe).join("README.md");
    let text = std::fs::read_to_string(readme).ok()?;
    Some(parse_env_section(&text).map_err(|e| format!("emulators/{recipe}/README.md: {e}")))
}

/// The variable names of the `## Environment` table in a recipe's README text.
fn parse_env_section(text: &str) -> Result<Vec<String>, String> {
    let mut lines = text.lines().skip_while(|l| l.trim_end() != ENV_HEADING);
    if lines.next().is_none() {
        return Ok(vec![]);
    }
    let mut names = vec![];
    for row in lines
        .take_while(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with("| `"))
    {
        let name = row["| `".len()..].split('`').next().unwrap_or_default();
        let own = name.strip_prefix("NICSTORM_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        if !own {
            return Err(format!(
                "{ENV_HEADING} declares {name:?}; a recipe may declare only NICSTORM_ names (capitals, digits, _)"
            ));
        }
        names.push(name.to_owned());
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The integer range `recipe`'s README gives variable `name` in its `## Environment` table
/// (the first `a…b` in the variable's row, e.g. "(1…1000000)"): None when the recipe or the
/// variable has no README row, or its row gives no range (the variable is not an integer, as
/// `NICSTORM_VMNET_MODE`).
pub(crate) fn declared_range(repo_root: &Path, recipe: &str, name: &str) -> Option<(u64, u64)> {
    let readme = repo_root.join("emulators").join(recipe).join("README.md");
    env_range(&std::fs::read_to_string(readme).ok()?, name)
}

fn env_range(text: &str, name: &str) -> Option<(u64, u64)> {
    let row = text
        .lines()
        .skip_while(|l| l.trim_end() != ENV_HEADING)
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&format!("| `{name}`")))?;
    let (left, right) = row.split_once('…')?;
    let digits = |s: &str| s.parse::<u64>().ok();
    let lo = left
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(digits)?;
    let hi = right
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(digits)?;
    Some((lo, hi))
}

/// The files a recipe's patches change (their `+++ b/PATH` lines), sorted; none for `system`
/// or a recipe without patches.
pub(crate) fn patched_files(repo_root: &Path, recipe: &str) -> Vec<String> {
    let mut files = vec![];
    let dir = repo_root.join("emulators").join(recipe).join("patches");
    for p in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(p.path()).unwrap_or_default();
        files.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("+++ b/"))
                .map(|f| f.split('\t').next().unwrap_or(f).trim().to_owned()),
        );
    }
    files.sort();
    files.dedup();
    files
}

/// Whether a recipe models something inside QEMU's tap backend (its patches change
/// `net/tap.c`): it applies only to modes whose NIC sits on a tap.
pub(crate) fn patches_tap(repo_root: &Path, recipe: &str) -> bool {
    recipe != SYSTEM
        && patched_files(repo_root, recipe)
            .iter()
            .any(|f| f == "net/tap.c")
}

/// The passt recipes (passt/NAME/ with a recipe.env), sorted.
pub fn passt_recipes(repo_root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root.join("passt"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("recipe.env").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_that_patches_the_tap_is_known_by_its_patches() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(patched_files(root, "vmnet-flow-control"), ["net/tap.c"]);
        assert!(patches_tap(root, "vmnet-flow-control"));
        assert_eq!(
            patched_files(root, "virtio-rx-kick-stall"),
            [
                "hw/net/virtio-net.c",
                "hw/virtio/virtio.c",
                "include/hw/virtio/virtio.h"
            ]
        );
        for r in ["virtio-rx-kick-stall", "plain", SYSTEM, "no-such-recipe"] {
            assert!(!patches_tap(root, r), "{r}");
        }
    }

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

    /// What each recipe declares is what its patches read: every NICSTORM_ name in its
    /// patches, and no other.
    #[test]
    fn every_recipe_declares_the_variables_its_patches_read() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for r in recipes(root) {
            let declared = declared_env(root, &r).unwrap().unwrap();
            let mut read = std::collections::BTreeSet::new();
            let patches = root.join("emulators").join(&r).join("patches");
            for p in std::fs::read_dir(patches).into_iter().flatten().flatten() {
                let text = std::fs::read_to_string(p.path()).unwrap();
                for (i, _) in text.match_indices("NICSTORM_") {
                    let name: String = text[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    read.insert(name);
                }
            }
            assert_eq!(declared, read.into_iter().collect::<Vec<_>>(), "recipe {r}");
        }
        assert_eq!(
            declared_env(root, "vmnet-flow-control").unwrap().unwrap(),
            [
                "NICSTORM_VMNET_BURST",
                "NICSTORM_VMNET_MODE",
                "NICSTORM_VMNET_PPMS",
                "NICSTORM_VMNET_RETRY_US"
            ]
        );
        assert_eq!(declared_env(root, SYSTEM), Some(Ok(vec![])));
        assert_eq!(declared_env(root, "no-such-recipe"), None);
    }

    /// The ranges of the vmnet model's integer variables, as its README gives them, and none
    /// for the mode, which is a word.
    #[test]
    fn integer_ranges_come_from_the_readme() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let r = |name| declared_range(root, "vmnet-flow-control", name);
        assert_eq!(r("NICSTORM_VMNET_PPMS"), Some((0, 1_000_000)));
        assert_eq!(r("NICSTORM_VMNET_BURST"), Some((1, 1_000_000)));
        assert_eq!(r("NICSTORM_VMNET_RETRY_US"), Some((1, 1_000_000)));
        assert_eq!(r("NICSTORM_VMNET_MODE"), None);
        assert_eq!(r("NICSTORM_VMNET_BOGUS"), None);
        assert_eq!(declared_range(root, SYSTEM, "NICSTORM_VMNET_PPMS"), None);
    }

    #[test]
    fn env_sections_parse_and_refuse_foreign_names() {
        let readme = |rows: &str| {
            format!("# r\n\ntext\n\n## Environment\n\n| variable | meaning |\n|---|---|\n{rows}\n## Next\n\n| `NICSTORM_NOT_HERE` | x |\n")
        };
        assert_eq!(
            parse_env_section(&readme("| `NICSTORM_B` | b |\n| `NICSTORM_A1` | a |\n")),
            Ok(vec!["NICSTORM_A1".to_owned(), "NICSTORM_B".to_owned()])
        );
        assert_eq!(parse_env_section("# r\n\nno section\n"), Ok(vec![]));
        for bad in ["LD_PRELOAD", "NICSTORM_", "NICSTORM_a", "PATH"] {
            let e = parse_env_section(&readme(&format!("| `{bad}` | x |\n"))).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
