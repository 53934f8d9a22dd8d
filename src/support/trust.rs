//! Paths that nicstorm, running as root, reads back or runs: the state directory, the image
//! and emulator caches (and, with the checkout's owner allowed, results directories). Such a
//! path is trusted only when nobody but root could have put it there: every directory on the
//! way and the file itself are owned by root and writable by no one else (group-writable only
//! with group root, as under umask 002; a sticky directory such as /var/tmp may be on the
//! way, not be the place itself), and the file is no symlink. Files are opened with
//! `O_NOFOLLOW`, and their owner and mode checked on the open descriptor, so a file swapped
//! in between the check and the open is still refused.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a path is not trusted, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}; nicstorm runs as root and reads back or runs what it finds there, so it only trusts a path that only root can write. {fix}", path.display())]
pub struct Untrusted {
    pub path: PathBuf,
    pub why: String,
    pub fix: String,
}

fn untrusted(path: &Path, why: String, fix: &str) -> anyhow::Error {
    Untrusted {
        path: path.to_path_buf(),
        why,
        fix: fix.to_owned(),
    }
    .into()
}

/// The owner every trusted path must have: the user nicstorm runs as (root in use; the
/// tests' own user in unit tests that run unprivileged).
fn owner() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The mode and owner of `meta` are those of a path only its owner can change.
fn check_meta(path: &Path, meta: &std::fs::Metadata, last: bool, fix: &str) -> anyhow::Result<()> {
    check_meta_by(path, meta, last, fix, &[])
}

/// [`check_meta`], also allowing the owners in `also`.
fn check_meta_by(
    path: &Path,
    meta: &std::fs::Metadata,
    last: bool,
    fix: &str,
    also: &[u32],
) -> anyhow::Result<()> {
    let me = owner();
    if meta.uid() != me && meta.uid() != 0 && !also.contains(&meta.uid()) {
        return Err(untrusted(
            path,
            format!("it is owned by uid {}, not by root", meta.uid()),
            fix,
        ));
    }
    let mode = meta.mode();
    // Group-writable is others only when the group is not root's (a checkout or cache made
    // under umask 002 by root is group root, which is no one else).
    let writable_by_others = mode & 0o002 != 0 || (mode & 0o020 != 0 && meta.gid() != 0);
    let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
    if writable_by_others && (last || !sticky_dir) {
        return Err(untrusted(
            path,
            format!(
                "it is writable by group or others (mode {:04o})",
                mode & 0o7777
            ),
            fix,
        ));
    }
    Ok(())
}

/// Checks that `path` exists and every directory from / down to it, and the path itself, is
/// owned by root and not writable by others (a sticky directory on the way is allowed), and
/// that `path` itself is not a symlink. Returns the path with every symlink on the way
/// resolved: what was checked. Use that one from then on: a symlink on the way that someone
/// else owns could point elsewhere later, the checked path cannot change under root's feet.
pub fn check_path(path: &Path, fix: &str) -> anyhow::Result<PathBuf> {
    check_path_by(path, fix, &[])
}

/// [`check_path`], also accepting the owners in `also` (e.g. the owner of the checkout, for
/// a results directory in it).
pub fn check_path_by(path: &Path, fix: &str, also: &[u32]) -> anyhow::Result<PathBuf> {
    let own = std::fs::symlink_metadata(path)
        .map_err(|e| untrusted(path, format!("cannot be read ({e})"), fix))?;
    if own.file_type().is_symlink() {
        return Err(untrusted(path, "it is a symlink".into(), fix));
    }
    let real = path
        .canonicalize()
        .map_err(|e| untrusted(path, format!("cannot be resolved ({e})"), fix))?;
    let mut at = PathBuf::from("/");
    check_meta_by(&at, &std::fs::metadata(&at)?, false, fix, also)?;
    let parts: Vec<_> = real.components().skip(1).collect();
    for (i, c) in parts.iter().enumerate() {
        at.push(c);
        let meta = std::fs::symlink_metadata(&at)
            .map_err(|e| untrusted(&at, format!("cannot be read ({e})"), fix))?;
        check_meta_by(&at, &meta, i + 1 == parts.len(), fix, also)?;
    }
    Ok(real)
}

/// Makes `dir` (mode 0700, parents as needed) if it is missing, then checks it as
/// [`check_path`] does and returns the path it checked. An existing directory is never
/// loosened or taken over: a wrong one is an error that says how to fix it.
pub fn private_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                untrusted(
                    dir,
                    format!("cannot be created ({e})"),
                    "Create it as root.",
                )
            })?;
        // DirBuilder's mode is masked by the umask; say exactly what we want.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    check_path(
        dir,
        &format!(
            "Remove it, or make it root's alone (chown root:root {0}; chmod 0700 {0}), then rerun.",
            dir.display()
        ),
    )
}

fn check_file(path: &Path, f: &File) -> anyhow::Result<()> {
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(untrusted(
            path,
            "it is not a regular file".into(),
            "Remove it.",
        ));
    }
    check_meta(path, &meta, true, "Remove it; nicstorm writes it anew.")
}

/// Opens `path` for reading without following a symlink, and only if root owns it and
/// nobody else can write it. `Ok(None)` when it does not exist.
pub fn open_read(path: &Path) -> anyhow::Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => {
            check_file(path, &f)?;
            Ok(Some(f))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            Err(untrusted(path, "it is a symlink".into(), "Remove it."))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("opening {}", path.display()))),
    }
}

/// Reads all of a trusted file (see [`open_read`]); `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(mut f) = open_read(path)? else {
        return Ok(None);
    };
    let mut bytes = vec![];
    std::io::Read::read_to_end(&mut f, &mut bytes)
        .map_err(|e| anyhow::Error::new(e).context(format!("reading {}", path.display())))?;
    Ok(Some(bytes))
}

/// Opens (creating, mode 0600) `path` for reading and writing without following a symlink;
/// an existing file must be trusted (see [`open_read`]). Not truncated.
pub fn open_rw(path: &Path) -> anyhow::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                untrusted(path, "it is a symlink".into(), "Remove it.")
            } else {
                anyhow::Error::new(e).context(format!("opening {}", path.display()))
            }
        })?;
    check_file(path, &f)?;
    Ok(f)
}

/// Writes `bytes` to `path` (mode 0600) whole, through a fresh temp file in the same
/// directory and a rename (support/atomic.rs), so a reader sees the old or the new file
/// whole, and nothing planted at `path` is followed or written through.
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    super::atomic::write(path, bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nicstorm-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_private_dir_is_made_0700_and_a_loose_one_refused() {
        let base = tmp("dir");
        let d = base.join("state");
        private_dir(&d).unwrap();
        let mode = std::fs::metadata(&d).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        // /tmp is sticky and world-writable: allowed on the way, not as the place itself.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&d).unwrap_err().to_string();
        assert!(e.contains("writable by group or others (mode 0777)"), "{e}");
        assert!(e.contains("chmod 0700"), "{e}");
        // Group-writable by group root is root's alone (a umask 002 checkout made by root).
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o770)).unwrap();
        if std::fs::metadata(&d).unwrap().gid() == 0 {
            private_dir(&d).unwrap();
            std::os::unix::fs::chown(&d, None, Some(65534)).unwrap();
            let e = private_dir(&d).unwrap_err().to_string();
            assert!(e.contains("writable by group or others (mode 0770)"), "{e}");
            std::os::unix::fs::chown(&d, None, Some(0)).unwrap();
        }
        // A world-writable, non-sticky directory on the way is refused too.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = private_dir(&d).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{}: it is writable", base.display())),
            "{e}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn symlinks_are_not_followed() {
        let d = tmp("link");
        private_dir(&d).unwrap();
        let target = d.join("target");
        std::fs::write(&target, "CANARY").unwrap();
        let link = d.join("run.lock");
        symlink(&target, &link).unwrap();
        let e = open_rw(&link).unwrap_err().to_string();
        assert!(e.contains("it is a symlink"), "{e}");
        let e = read(&link).unwrap_err().to_string();
        assert!(e.contains("it is a symlink"), "{e}");
        // write() replaces the link itself, never the file it points at.
        write(&link, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "CANARY");
        assert_eq!(read(&link).unwrap().unwrap(), b"new");
        let loose = d.join("loose");
        std::fs::write(&loose, "x").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = read(&loose).unwrap_err().to_string();
        assert!(e.contains("mode 0666"), "{e}");
        assert!(read(&d.join("absent")).unwrap().is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_path_owned_by_another_user_is_refused() {
        if owner() != 0 {
            return; // only root can give a file away; the suite runs as root
        }
        let d = tmp("owner");
        private_dir(&d).unwrap();
        let f = d.join("sysctl-restore.json");
        std::fs::write(&f, "{}").unwrap();
        std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap();
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534, not by root"), "{e}");
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        let e = check_path(&d, "fix").unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
