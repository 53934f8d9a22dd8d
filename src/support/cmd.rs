//! Running host commands (ip, iptables, qemu-img, ssh-keygen) with errors that name the command.

use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

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
    Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{prog}` (is it installed?)"))
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
}
