//! scripts/recipe-hash.sh, the key of the cached guest image (images/build.sh) and of each QEMU
//! recipe (emulators/build.sh): two checkouts of one commit hash the same whatever the umask
//! they were made under and whatever their files' times; a file's content or its executable bit
//! changes the hash. Runs only the hash script, never a build.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// What images/build.sh leaves out of the image's hash.
const IMAGE_SKIPS: &[&str] = &["*.md", "boot-test.sh", "bench-boot.sh"];
/// What emulators/build.sh leaves out of a recipe's hash.
const EMULATOR_SKIPS: &[&str] = &["*.md"];
/// A recipe with files below its top directory (patches/).
const RECIPE: &str = "emulators/virtio-rx-kick-stall";

fn hash(dir: &Path, skips: &[&str]) -> String {
    let out = Command::new(common::repo().join("scripts/recipe-hash.sh"))
        .arg(dir)
        .args(skips)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "recipe-hash.sh {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let h = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    assert!(
        h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a sha256: {h:?}"
    );
    h
}

/// Copies `src` to `dst` the way a checkout under `umask` writes it (git and tar create files
/// 0666 or 0777 and directories 0777, less the umask), with fresh file times.
fn checkout(src: &Path, dst: &Path, umask: u32) {
    fs::create_dir_all(dst).unwrap();
    fs::set_permissions(dst, fs::Permissions::from_mode(0o777 & !umask)).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let meta = fs::symlink_metadata(&from).unwrap();
        if meta.is_dir() {
            checkout(&from, &to, umask);
        } else if meta.is_file() {
            fs::copy(&from, &to).unwrap();
            let exec = meta.permissions().mode() & 0o100 != 0;
            let mode = if exec { 0o777 } else { 0o666 } & !umask;
            fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// For one recipe directory (relative to the repository): `file` is a plain file that shapes
/// the build, `exe` an executable one (if the recipe has one), `doc` one that is left out.
fn check(rel: &str, skips: &[&str], file: &str, exe: Option<&str>, doc: &str) {
    let scratch = common::scratch(&format!("recipe-hash-{}", rel.replace('/', "-")));
    let (strict, loose) = (scratch.join("umask022"), scratch.join("umask002"));
    let src = common::repo().join(rel);
    checkout(&src, &strict, 0o022);
    checkout(&src, &loose, 0o002);
    assert_eq!(mode(&strict.join(file)), 0o644);
    assert_eq!(mode(&loose.join(file)), 0o664, "the umask took effect");
    if let Some(exe) = exe {
        assert_eq!(
            (mode(&strict.join(exe)), mode(&loose.join(exe))),
            (0o755, 0o775)
        );
    }
    // Another time on one file, as after a touch or an extraction on another day.
    fs::File::options()
        .write(true)
        .open(loose.join(file))
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();

    let want = hash(&strict, skips);
    assert_eq!(hash(&loose, skips), want, "{rel}: umask 002 vs 022");
    assert_eq!(
        hash(&src, skips),
        want,
        "{rel}: this checkout vs its copies"
    );

    // What is left out does not count.
    fs::write(loose.join(doc), "edited\n").unwrap();
    assert_eq!(hash(&loose, skips), want, "{rel}: {doc} is left out");

    // The executable bit counts, both ways.
    chmod(&loose.join(file), 0o775);
    assert_ne!(hash(&loose, skips), want, "{rel}: {file} made executable");
    chmod(&loose.join(file), 0o664);
    assert_eq!(hash(&loose, skips), want);
    if let Some(exe) = exe {
        chmod(&loose.join(exe), 0o664);
        assert_ne!(hash(&loose, skips), want, "{rel}: {exe} not executable");
        chmod(&loose.join(exe), 0o775);
        assert_eq!(hash(&loose, skips), want);
    }

    // So does the content, and the file's name.
    let mut text = fs::read(loose.join(file)).unwrap();
    text.push(b'\n');
    fs::write(loose.join(file), &text).unwrap();
    assert_ne!(hash(&loose, skips), want, "{rel}: {file} edited");
    text.pop();
    fs::write(loose.join(file), &text).unwrap();
    assert_eq!(hash(&loose, skips), want);
    let renamed = loose.join(format!("{file}.renamed"));
    fs::rename(loose.join(file), &renamed).unwrap();
    assert_ne!(hash(&loose, skips), want, "{rel}: {file} renamed");

    fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn the_image_recipe_hashes_alike_under_any_umask() {
    check(
        "images",
        IMAGE_SKIPS,
        "packages.txt",
        Some("hooks/customize.sh"),
        "README.md",
    );
}

#[test]
fn an_emulator_recipe_hashes_alike_under_any_umask() {
    let patches = fs::read_dir(common::repo().join(RECIPE).join("patches"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .min()
        .expect("the recipe has a patch");
    check(
        RECIPE,
        EMULATOR_SKIPS,
        &format!("patches/{patches}"),
        None,
        "README.md",
    );
}

#[test]
fn the_build_scripts_hash_with_the_script_and_these_skips() {
    // The skips above are the build scripts' own: a test of other skips would prove nothing.
    let image = fs::read_to_string(common::repo().join("images/build.sh")).unwrap();
    assert!(
        image.contains(r#"scripts/recipe-hash.sh" "$1" '*.md' boot-test.sh bench-boot.sh"#),
        "images/build.sh does not hash with recipe-hash.sh and {IMAGE_SKIPS:?}"
    );
    let emulators = fs::read_to_string(common::repo().join("emulators/build.sh")).unwrap();
    assert!(
        emulators.contains(r#"scripts/recipe-hash.sh" "$dir" '*.md')"#),
        "emulators/build.sh does not hash with recipe-hash.sh and {EMULATOR_SKIPS:?}"
    );
}
