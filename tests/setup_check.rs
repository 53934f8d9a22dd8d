//! scripts/setup-host.sh checks each tool by running it. Tested without touching the host's
//! packages: `--check-only` against a PATH made of this host's PATH minus one tool.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory of symlinks to every program on this PATH except `hidden`.
fn path_without(hidden: &str, dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let path = std::env::var_os("PATH").unwrap();
    for d in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let link = dir.join(&name);
            if name == hidden || link.exists() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), &link);
        }
    }
    dir.to_path_buf()
}

fn check_only(path: &Path) -> (Option<i32>, String) {
    let out = Command::new("/bin/bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/setup-host.sh"
        ))
        .arg("--check-only")
        .env("PATH", path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_hidden_tool_is_named_with_its_package() {
    let base = std::env::temp_dir().join(format!("nicstorm-setup-check-{}", std::process::id()));
    // Only meaningful where setup already ran (make test runs it first): the full PATH passes.
    let full = path_without("", &base.join("full"));
    let (code, said) = check_only(&full);
    if code != Some(0) {
        panic!("setup-host.sh --check-only fails on this host's own PATH; run scripts/setup-host.sh first:\n{said}");
    }
    for (tool, package) in [
        ("qemu-img", "qemu-utils"),
        ("virsh", "libvirt-clients"),
        ("mmdebstrap", "mmdebstrap"),
        ("conntrack", "conntrack"),
        ("ssh-keygen", "openssh-client"),
        ("tcpdump", "tcpdump"),
    ] {
        let dir = path_without(tool, &base.join(tool));
        let (code, said) = check_only(&dir);
        assert_eq!(code, Some(1), "exit code with {tool} hidden:\n{said}");
        assert_eq!(
            said.trim(),
            format!("setup-host: {tool} does not run (package {package})"),
            "with {tool} hidden"
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
