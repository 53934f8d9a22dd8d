//! emulators/: every recipe's patches still apply to the current Debian source of the host's
//! QEMU (a dry run, no build). The first call fetches that source (apt-get source) into the
//! cache; later calls take a fraction of a second.

use std::process::Command;

#[test]
#[ignore = "fetches Debian's QEMU source as root; run by `make test`"]
fn every_recipe_applies_to_the_current_debian_source() {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/emulators/build.sh"))
        .arg("--check")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "emulators/build.sh --check failed:\n{said}"
    );
    let recipes =
        nicstorm::matrix::recipes::recipes(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(recipes.len() >= 3, "{recipes:?}");
    for r in recipes {
        assert!(
            said.lines()
                .any(|l| l.contains(&format!("recipe {r}:")) && l.ends_with(": ok")),
            "no ok line for recipe {r}:\n{said}"
        );
    }
}
