//! The state directory: overlays, run keys, serial sockets, sysctl restore files and the
//! accelerator probe's answer, all of which nicstorm reads back as root. It lives in
//! `/var/lib/nicstorm` (`$NICSTORM_STATE` moves it, for tests and hosts with another /var),
//! is made root's alone (0700), and is refused, with what to do, when it or anything on the
//! way to it could be written by someone else (support/trust.rs). The run lock is not in it:
//! it is host-wide, like the sweep it guards (cli/lock.rs).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::support::trust;

/// Where the state lives unless `$NICSTORM_STATE` says otherwise.
pub const DEFAULT_STATE: &str = "/var/lib/nicstorm";

/// Where versions before 0.2 kept it: world-writable /var/tmp, so taken over only if it
/// passes the same checks.
const OLD_STATE: &str = "/var/tmp/nicstorm";

/// The state directory's path (not checked: see [`checked_state_root`]).
pub fn state_root() -> PathBuf {
    std::env::var_os("NICSTORM_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE))
}

/// The state directory, made if missing and checked; an earlier version's /var/tmp/nicstorm
/// is moved here first when it is trusted, and left alone, with a message, when it is not.
pub fn checked_state_root() -> Result<PathBuf> {
    let root = state_root();
    if root == Path::new(DEFAULT_STATE) {
        if let Some(note) = migrate(Path::new(OLD_STATE), &root) {
            eprintln!("nicstorm: {note}");
        }
    }
    // The checked path, symlinks resolved: what was checked is what is used.
    let root = trust::private_dir(&root)?;
    trust::private_dir(&root.join("labs"))?;
    Ok(root)
}

/// The labs directory inside the checked state directory.
pub(crate) fn labs_dir() -> Result<PathBuf> {
    Ok(checked_state_root()?.join("labs"))
}

/// Moves `old` to `new` when `new` does not exist yet and `old` is trusted. Returns what
/// happened, when anything did.
fn migrate(old: &Path, new: &Path) -> Option<String> {
    if std::fs::symlink_metadata(old).is_err() || std::fs::symlink_metadata(new).is_ok() {
        return None;
    }
    if let Err(e) = trust::check_path(old, "").map(|_| ()) {
        let why = e
            .downcast_ref::<trust::Untrusted>()
            .map_or_else(|| format!("{e:#}"), |u| u.why.clone());
        return Some(format!(
            "{} (an earlier version's state directory) was left alone and not read: {why}. Remove it when no earlier version runs.",
            old.display()
        ));
    }
    if let Some(parent) = new.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    Some(match std::fs::rename(old, new) {
        Ok(()) => format!(
            "moved the state directory {} to {}",
            old.display(),
            new.display()
        ),
        Err(e) => format!(
            "could not move {} to {} ({e}); it was left alone",
            old.display(),
            new.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_trusted_old_directory_moves_and_a_planted_one_stays() {
        let base = std::env::temp_dir().join(format!("nicstorm-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        let (old, new) = (base.join("old"), base.join("lib/new"));
        assert_eq!(migrate(&old, &new), None);
        trust::private_dir(&old.join("labs")).unwrap();
        let note = migrate(&old, &new).unwrap();
        assert!(note.starts_with("moved the state directory"), "{note}");
        assert!(new.join("labs").is_dir() && !old.exists());
        // A loose one is not taken.
        trust::private_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::remove_dir_all(&new).unwrap();
        let note = migrate(&old, &new).unwrap();
        assert!(note.contains("was left alone and not read"), "{note}");
        assert!(note.contains("mode 0777"), "{note}");
        assert!(old.exists() && !new.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
