//! The run directories of a merge: found in every input, compared file by file where one is
//! in several (a difference is a conflict), and copied into OUT once each.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{MergeError, Source};
use crate::model::names::RunId;

/// The run directories of the sources, each once, and what is not a run directory.
pub(crate) struct RunDirs<'a> {
    /// Run id -> the first source that holds it.
    pub(crate) runs: BTreeMap<String, &'a Source>,
    /// Directories in inputs that are not run directories (name not a run id); not copied.
    pub(crate) skipped: Vec<PathBuf>,
}

/// Finds the run directories of `sources` and checks that every copy of one is identical,
/// file by file.
pub(crate) fn check(sources: &[Source]) -> Result<RunDirs<'_>, MergeError> {
    // One copy of each, identical wherever it appears.
    let mut runs: BTreeMap<String, &Source> = BTreeMap::new();
    let mut skipped = Vec::new();
    for src in sources {
        for (name, path) in subdirs(&src.dir)? {
            if RunId::parse(&name).is_none() {
                if !src.is_out {
                    skipped.push(path);
                }
                continue;
            }
            match runs.get(&name) {
                None => {
                    runs.insert(name, src);
                }
                Some(first) => {
                    let a = first.dir.join(&name);
                    if let Some((rel, what)) = first_difference(&a, &path, Path::new(""))? {
                        return Err(MergeError::RunDirConflict {
                            run_id: name,
                            path: rel,
                            what,
                            first: a,
                            second: path,
                        });
                    }
                }
            }
        }
    }
    Ok(RunDirs { runs, skipped })
}

/// Copies into `out` the run directories of `runs` it does not hold; returns their ids.
pub(crate) fn copy_missing(
    runs: &BTreeMap<String, &Source>,
    out: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut copied_runs = Vec::new();
    for (run_id, src) in runs {
        if !src.is_out && !out.join(run_id).exists() {
            copy_run_dir(&src.dir.join(run_id), out, run_id)?;
            copied_runs.push(run_id.clone());
        }
    }
    Ok(copied_runs)
}

/// Subdirectories of `dir` as (name, path), sorted by name.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, MergeError> {
    if !dir.exists() {
        return Ok(vec![]);
    }
    Ok(entries(dir)?
        .into_iter()
        .filter(|(_, ty)| ty.is_dir())
        .map(|(name, _)| (name.to_string_lossy().into_owned(), dir.join(&name)))
        .collect())
}

/// The entries of a directory, sorted by name.
fn entries(dir: &Path) -> anyhow::Result<Vec<(std::ffi::OsString, fs::FileType)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let ty = entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        out.push((entry.file_name(), ty));
    }
    out.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(out)
}

/// The first path (relative to the roots `a` and `b`) where two trees differ, and how.
fn first_difference(
    a: &Path,
    b: &Path,
    rel: &Path,
) -> anyhow::Result<Option<(PathBuf, &'static str)>> {
    let (ea, eb) = (entries(&a.join(rel))?, entries(&b.join(rel))?);
    let names: std::collections::BTreeSet<&std::ffi::OsString> =
        ea.iter().chain(&eb).map(|(n, _)| n).collect();
    for name in names {
        let path = rel.join(name);
        let ta = ea.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        let tb = eb.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        let (ta, tb) = match (ta, tb) {
            (Some(ta), Some(tb)) => (ta, tb),
            (Some(_), None) => return Ok(Some((path, "only in the first"))),
            _ => return Ok(Some((path, "only in the second"))),
        };
        let diff = if ta.is_dir() && tb.is_dir() {
            match first_difference(a, b, &path)? {
                Some(d) => return Ok(Some(d)),
                None => None,
            }
        } else if ta.is_file() && tb.is_file() {
            (!same_contents(&a.join(&path), &b.join(&path))?).then_some("contents differ")
        } else if ta.is_symlink() && tb.is_symlink() {
            let target = |p: PathBuf| {
                fs::read_link(&p).with_context(|| format!("reading link {}", p.display()))
            };
            (target(a.join(&path))? != target(b.join(&path))?).then_some("link targets differ")
        } else {
            Some("not the same kind of file")
        };
        if let Some(what) = diff {
            return Ok(Some((path, what)));
        }
    }
    Ok(None)
}

fn same_contents(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let open = |p: &Path| {
        fs::File::open(p)
            .map(BufReader::new)
            .with_context(|| format!("opening {}", p.display()))
    };
    let (len_a, len_b) = (
        fs::metadata(a).with_context(|| format!("reading {}", a.display()))?,
        fs::metadata(b).with_context(|| format!("reading {}", b.display()))?,
    );
    if len_a.len() != len_b.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut ra, &mut ba).with_context(|| format!("reading {}", a.display()))?;
        let nb = read_full(&mut rb, &mut bb).with_context(|| format!("reading {}", b.display()))?;
        if ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Copies a run directory into `out` under a hidden temporary name, then renames it into
/// place, so an interrupted merge never leaves half a run directory behind.
fn copy_run_dir(src: &Path, out: &Path, run_id: &str) -> anyhow::Result<()> {
    let tmp = out.join(format!(".merge-{run_id}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    copy_tree(src, &tmp)?;
    let dst = out.join(run_id);
    fs::rename(&tmp, &dst)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dst.display()))
}

fn copy_tree(src: &Path, dst: &Path) -> anyhow::Result<()> {
    fs::create_dir(dst).with_context(|| format!("creating {}", dst.display()))?;
    for (name, ty) in entries(src)? {
        let (from, to) = (src.join(&name), dst.join(&name));
        if ty.is_dir() {
            copy_tree(&from, &to)?;
        } else if ty.is_symlink() {
            let target =
                fs::read_link(&from).with_context(|| format!("reading link {}", from.display()))?;
            std::os::unix::fs::symlink(&target, &to)
                .with_context(|| format!("creating link {}", to.display()))?;
        } else {
            fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::merge;
    use crate::merge::test_dirs::{run_dir, tree, TempDir, DEFAULT_ORPHANS, V1};

    #[test]
    fn run_dirs_are_copied_once_and_must_agree() {
        let tmp = TempDir::new("rundirs");
        let a = tmp.results_from("a", V1);
        let b = tmp.results_from("b", DEFAULT_ORPHANS);
        let a2 = tmp.results_from("a2", V1);
        run_dir(&a, "c1947c", "boot\nNSHB v=1 seq=1\n");
        run_dir(&a2, "c1947c", "boot\nNSHB v=1 seq=1\n");
        run_dir(&b, "19350d", "other\n");
        fs::create_dir_all(b.join("notes")).unwrap();
        let out = tmp.0.join("out");
        let r = merge(&out, &[a.clone(), b.clone(), a2.clone()]).unwrap();
        assert_eq!(r.copied_runs, ["19350d", "c1947c"]);
        assert_eq!(r.skipped, [b.join("notes")], "not a run id: not copied");
        assert_eq!(tree(&out.join("c1947c")), tree(&a.join("c1947c")));
        assert_eq!(tree(&out.join("19350d")), tree(&b.join("19350d")));
        assert!(!out.join("notes").exists());
        let leftovers: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // The same run directory with one file changed, and with one file more.
        let before = tree(&out);
        let c = tmp.results_from("c", V1);
        run_dir(&c, "c1947c", "boot\nNSHB v=1 seq=2\n");
        let err = merge(&out, std::slice::from_ref(&c)).unwrap_err();
        let MergeError::RunDirConflict {
            run_id,
            path,
            what,
            first,
            second,
        } = &err
        else {
            panic!("not a run dir conflict: {err}");
        };
        assert_eq!(run_id, "c1947c");
        assert_eq!(path, Path::new("ad8a7eda5994-r1/server.serial.log"));
        assert_eq!(*what, "contents differ");
        assert_eq!((first, second), (&out.join("c1947c"), &c.join("c1947c")));
        run_dir(&c, "c1947c", "boot\nNSHB v=1 seq=1\n");
        fs::write(c.join("c1947c/nicstorm.log"), "late\n").unwrap();
        let err = merge(&out, &[c]).unwrap_err();
        assert!(
            err.to_string()
                .contains("differs at nicstorm.log: only in the second"),
            "{err}"
        );
        assert_eq!(tree(&out), before, "nothing written");
    }
}
