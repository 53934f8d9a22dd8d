//! Where the checkout is: images/, vm-templates/, emulators/ and load/ are read from it.

use std::path::PathBuf;

/// The checkout (`$NICSTORM_REPO` overrides the build-time path).
pub(crate) fn root() -> PathBuf {
    std::env::var_os("NICSTORM_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
