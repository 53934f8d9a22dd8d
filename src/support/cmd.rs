//! Running host commands (ip, iptables, qemu-img, ssh-keygen, virsh) with errors that name
//! the command, and a time limit: a command stuck on a lock or a wedged QEMU is ended (by its
//! PID, which we started) and reported, instead of stalling a cell and its Ctrl-C.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long any host command may take (iptables waits at most 10 s for its lock by `-w 10`).
pub(crate) const LIMIT: Duration = Duration::from_secs(120);

/// Runs `prog args...`, returns stdout; a non-zero exit is an error quoting the command and stderr.
pub(crate) fn run(prog: &str, args: &[&str]) -> Result<String> {
    let out = output(prog, args)?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            prog,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`] but a failure is returned as `Ok(false)` (for "delete if present").
pub(crate) fn run_ok(prog: &str, args: &[&str]) -> Result<bool> {
    Ok(output(prog, args)?.status.success())
}

fn output(prog: &str, args: &[&str]) -> Result<Output> {
    output_within(prog, args, LIMIT)
}

/// Runs `prog args...` to its end or for at most `limit`, then kills it and says so.
pub(crate) fn output_within(prog: &str, args: &[&str], limit: Duration) -> Result<Output> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{prog}` (is it installed?)"))?;
    // Read both pipes while waiting, so a chatty command never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = vec![];
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{prog} {}` did not finish within {limit:?} and was ended",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Runs a cache build script (images/build.sh, emulators/build.sh, passt/build.sh: each finds
/// its product in the cache or builds it, progress on stderr, which goes to ours) with `args`,
/// and returns the directory it names on the last line of its stdout. `what` names the
/// product in errors. No time limit: a first build takes minutes to an hour.
pub(crate) fn build_dir(
    script: &std::path::Path,
    args: &[&str],
    what: &str,
) -> Result<std::path::PathBuf> {
    let out = std::process::Command::new(script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{what}: {} {} failed ({}); see its output above",
            script.display(),
            args.join(" "),
            out.status
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(dir) => Ok(std::path::PathBuf::from(dir.trim())),
        None => bail!("{what}: {} printed no directory", script.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_command() {
        assert_eq!(run("echo", &["hi"]).unwrap(), "hi\n");
        let e = run("sh", &["-c", "echo boom >&2; exit 3"])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("`sh -c echo boom >&2; exit 3` failed (exit status: 3): boom"),
            "{e}"
        );
        assert!(!run_ok("false", &[]).unwrap());
        let e = run("no-such-program-xyz", &[]).unwrap_err().to_string();
        assert!(e.contains("cannot run `no-such-program-xyz`"), "{e}");
    }

    #[test]
    fn a_stuck_command_is_ended() {
        let start = Instant::now();
        let e = output_within("sleep", &["30"], Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sleep 30` did not finish within 200ms"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
        // Output larger than a pipe's buffer does not block the wait.
        let big = output_within("head", &["-c", "1000000", "/dev/zero"], LIMIT).unwrap();
        assert_eq!(big.stdout.len(), 1_000_000);
    }
}
