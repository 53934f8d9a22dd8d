//! Locates the guest image, building it with images/build.sh when its recipe changed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A built guest image directory (docs/ARCHITECTURE.md "Guest image").
#[derive(Clone, Debug)]
pub struct Image {
    pub(crate) dir: PathBuf,
    pub(crate) kernel: PathBuf,
    pub(crate) initrd: PathBuf,
    pub(crate) rootfs: PathBuf,
    /// Guest kernel release from manifest.json, when recorded.
    pub(crate) guest_kernel: Option<String>,
    pub(crate) recipe_hash: Option<String>,
}

impl Image {
    /// Runs the idempotent build script (a cache hit returns at once); its progress goes to
    /// our stderr, the image directory is the last line of its stdout.
    /// `$NICSTORM_IMAGE` names a prebuilt image directory and skips the build.
    pub fn ensure(repo_root: &Path) -> Result<Image> {
        if let Some(dir) = std::env::var_os("NICSTORM_IMAGE") {
            return Image::open(Path::new(&dir));
        }
        let dir = crate::support::cmd::build_dir(&repo_root.join("images/build.sh"), &[], "image")?;
        Image::open(&dir)
    }

    pub(crate) fn open(dir: &Path) -> Result<Image> {
        // Its files end up in domain XML, which libvirtd resolves from its own directory.
        let dir = &std::path::absolute(dir)
            .with_context(|| format!("making {} absolute", dir.display()))?;
        let img = Image {
            dir: dir.to_path_buf(),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            rootfs: dir.join("rootfs.qcow2"),
            guest_kernel: None,
            recipe_hash: None,
        };
        // QEMU boots these as root: only files nobody else could have written, at the
        // paths that were checked (symlinks on the way resolved).
        let fix = "Rebuild the image (remove the image directory; images/build.sh runs again) in a cache only root can write ($NICSTORM_CACHE, or root's ~/.cache/nicstorm).";
        let dir = &crate::support::trust::check_path(dir, fix)?;
        let img = Image {
            dir: dir.to_path_buf(),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            rootfs: dir.join("rootfs.qcow2"),
            ..img
        };
        for p in [&img.kernel, &img.initrd, &img.rootfs] {
            if !p.is_file() {
                bail!("image directory {} lacks {}", dir.display(), p.display());
            }
            crate::support::trust::check_path(p, fix)?;
        }
        let manifest: serde_json::Value = std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Image {
            guest_kernel: manifest["kernel"].as_str().map(String::from),
            recipe_hash: manifest["recipe_hash"].as_str().map(String::from),
            ..img
        })
    }
}
