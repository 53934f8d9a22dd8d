//! Saved labs (`settings.lab_start: restore`): the four guests of a lab booted once to the
//! point where nicstorm-init holds (kernel up, sysctls and tcp_mem applied, the NIC's driver
//! loaded with eth0 down, nothing has used TCP yet, no identity), saved with libvirt
//! (`virDomainSaveFlags`), and restored for every later cell of the same kind instead of
//! booted. Booting four kernels under TCG is not part of the experiment; a cell needs four
//! guests in a known, fresh state.
//!
//! An entry is `<state>/saved/<key>/`: per role the saved state (`ROLE.save`, written by
//! libvirt) and the overlay as it was at the save (`ROLE.qcow2`, backed by the image), the
//! initrd the guests were booted with (`initrd.img`: the image's, with storm-load appended as
//! a second cpio archive, which the initrd copies into the root, so a restored guest has
//! storm-load without a push), plus `meta.json` (the key's text, the saved domains' UUIDs and
//! MACs, the NIC driver bound to eth0 and the kernel release, both read in the held guests,
//! how long the save took). The key covers what is known to make a saved state valid for a
//! lab: the entry format, the image (kernel and initrd by content, the root image by
//! identity), storm-load (by content), the QEMU binary (by content), the domain template and
//! the command line, the accelerator (under KVM the host's CPU and kernel), vCPUs and memory
//! per role, the NIC model and its driver options, the network mode. Not covered: QEMU's
//! firmware files (a QEMU upgrade changes its binary too), QEMU's environment (a restored
//! QEMU is a new process that reads its own), and anything per run (addresses, key, ports,
//! paths), which the host hands the guest after the restore.
//!
//! After a restore, each guest is released through the root shell on its ttyS2 (never the
//! NIC under test): the host writes one line into the FIFO that nicstorm-release (started
//! before the save, so a restored guest starts no program for it) waits on, and it sets the
//! wall clock, writes fresh host entropy into the random pool and forces the kernel's
//! generator to reseed (RNDRESEEDCRNG), so guests restored from one file draw different TCP
//! secrets (the kernel draws them at first use, after this), writes the run's identity and
//! answers; nicstorm-init then applies the identity and starts sshd.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{LabSpec, Role, Vm};
use crate::lab::image::Image;
use crate::support::trust;

/// Bumped whenever what a saved guest holds, or how it is released, changes.
/// 2: the NIC driver loaded before the hold, the release through nicstorm-release's FIFO.
/// 3: storm-load in the saved guests (from the initrd), the driver and kernel in meta.json.
const FORMAT: u32 = 3;

/// Entries kept; the least recently used beyond this are removed when a new one is saved.
const KEEP: usize = 8;

/// The kernel command line of a guest booted to be saved (and of its restored domains, which
/// must match what was saved): no identity, and `nicstorm.hold`.
pub(crate) const HOLD: &str = "nicstorm.hold";

/// What a saved guest needs to be restored as the same machine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct SavedGuest {
    pub(crate) role: String,
    pub(crate) uuid: String,
    pub(crate) mac: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Meta {
    format: u32,
    key: String,
    key_text: String,
    guests: Vec<SavedGuest>,
    /// storm-load's SHA-256, as the held guests' sha256sum read it before the save.
    storm_load_sha256: String,
    /// The driver bound to eth0 and the kernel release, read in the held guests.
    driver: String,
    kernel: String,
    /// The run id of the lab that was saved, and when.
    saved_by: String,
    saved_at: String,
    /// From the domains' start until all four were saved.
    save_seconds: f64,
}

/// A saved lab, found in the cache.
#[derive(Clone, Debug)]
pub(crate) struct Saved {
    pub(crate) dir: PathBuf,
    pub(crate) key: String,
    pub(crate) guests: Vec<SavedGuest>,
    /// The initrd the guests were booted with (a restored domain names the same).
    pub(crate) initrd: PathBuf,
    /// eth0's driver and the kernel release, as the held guests said.
    pub(crate) driver: String,
    pub(crate) kernel: String,
}

impl Saved {
    pub(crate) fn guest(&self, role: Role) -> Result<&SavedGuest> {
        let name = role.to_string();
        self.guests
            .iter()
            .find(|g| g.role == name)
            .with_context(|| format!("saved lab {} has no {name}", self.dir.display()))
    }

    pub(crate) fn save_file(&self, role: Role) -> PathBuf {
        self.dir.join(format!("{role}.save"))
    }

    pub(crate) fn overlay(&self, role: Role) -> PathBuf {
        self.dir.join(format!("{role}.qcow2"))
    }
}

/// A file's SHA-256, remembered per path and file identity (the QEMU binary is read for the
/// key of every cell).
fn file_sha256(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Mutex;
    // Path, inode, size, mtime and ctime: a file replaced under its name is read again, even
    // with its size and mtime kept (cp -p).
    type Seen = Vec<(PathBuf, [i64; 6], String)>;
    static SEEN: Mutex<Seen> = Mutex::new(Vec::new());
    let m = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let id = [
        m.ino() as i64,
        m.size() as i64,
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ];
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((.., h)) = seen.iter().find(|(p, i, _)| p == path && *i == id) {
        return Ok(h.clone());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let h = hex::encode(Sha256::digest(&bytes));
    seen.push((path.to_path_buf(), id, h.clone()));
    Ok(h)
}

/// Which file `path` is and when it last changed: device, inode, size, mtime (the root
/// image is too large to hash per cell; a rebuilt one is a new file).
fn file_identity(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!(
        "dev={} ino={} size={} mtime={}.{:09}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// What the key covers, one `name=value` per line (kept in meta.json for the reader).
pub(crate) fn key_text(spec: &LabSpec, image: &Image) -> Result<String> {
    let mut lines = vec![
        format!("format={FORMAT}"),
        format!("image={}", image.dir.display()),
        format!(
            "image_recipe={}",
            image.recipe_hash.as_deref().unwrap_or("unknown")
        ),
        // The saved memory holds this kernel and initrd; the saved overlay sits on this root
        // image (a rebuilt one under the same name would corrupt it).
        format!("kernel_sha256={}", file_sha256(&image.kernel)?),
        format!("initrd_sha256={}", file_sha256(&image.initrd)?),
        // In the saved guests' root (appended to their initrd).
        format!("storm_load_sha256={}", file_sha256(&spec.storm_load)?),
        format!("rootfs={}", file_identity(&image.rootfs)?),
        format!(
            "emulator={} sha256={}",
            spec.emulator.display(),
            file_sha256(&spec.emulator)?
        ),
        format!(
            "domain_template={}",
            hex::encode(Sha256::digest(super::domain::TEMPLATES.as_bytes()))
        ),
        // The command line the guest was saved with, and the NIC device user and passt
        // modes hand QEMU directly (not in the template).
        format!("cmdline={}", super::vm::hold_cmdline()),
        format!("qemu_nic_device={}", super::vm::nic_device(spec.nic, "MAC")),
        format!("accel={}", spec.accel),
        format!("vcpus={}", spec.vcpus),
        format!(
            "server_mib={} client_mib={}",
            spec.server_mib, spec.client_mib
        ),
        format!(
            "nic={} vhost={} frames={}",
            spec.nic,
            spec.vhost.map_or("n/a".to_owned(), |v| v.to_string()),
            spec.frames
        ),
        format!("mode={}", spec.mode),
    ];
    // Under KVM the guest saw the host's CPU (host-passthrough).
    if spec.accel == crate::matrix::plan::Accel::Kvm {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let flags = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .unwrap_or("");
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .unwrap_or("");
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        lines.push(format!(
            "host_cpu={} host_kernel={}",
            hex::encode(&Sha256::digest(format!("{model}\n{flags}").as_bytes())[..8]),
            release.trim()
        ));
    }
    Ok(lines.join("\n") + "\n")
}

/// The run id of every lab of `spec`'s kind saved or restored: the key's first 6 hex digits.
/// libvirt restores a domain only under the name it was saved with, and a lab's names carry
/// its run id (model/names.rs), so a restored lab's taps, bridges and state directory carry
/// it too and the sweep knows them as any lab's. One lab runs on a host at a time (the host
/// lock), so two labs never share it.
pub fn lab_id(spec: &LabSpec, image: &Image) -> Result<crate::model::names::RunId> {
    Ok(run_id_of(&key_of(&key_text(spec, image)?)))
}

/// The run id of the labs saved and restored under `key` (see [`lab_id`]).
pub(crate) fn run_id_of(key: &str) -> crate::model::names::RunId {
    crate::model::names::RunId::parse(&key[..6]).expect("6 hex digits are a run id")
}

/// The key of a key text: 16 hex digits of its SHA-256.
pub(crate) fn key_of(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The saved labs' directory, made and checked (root's alone, like the state directory).
fn saved_root() -> Result<PathBuf> {
    trust::private_dir(&super::state::checked_state_root()?.join("saved"))
}

/// The entry of `key`, if the cache has a complete one that nobody but root could have
/// written.
pub(crate) fn find(key: &str) -> Result<Option<Saved>> {
    let dir = saved_root()?.join(key);
    let fix = "Remove the saved lab's directory; the next cell saves a new one.";
    // A file someone else could have written is an error (root reads it back); an entry that
    // is merely incomplete or of another format is dropped and saved anew.
    let Some(bytes) = trust::read(&dir.join("meta.json"))? else {
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Ok(None);
    };
    let meta = match serde_json::from_slice::<Meta>(&bytes) {
        Ok(m)
            if m.format == FORMAT
                && m.key == key
                && key_of(&m.key_text) == key
                && key_line(&m.key_text, "storm_load_sha256") == Some(&m.storm_load_sha256) =>
        {
            m
        }
        _ => {
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(None);
        }
    };
    let saved = Saved {
        dir: trust::check_path(&dir, fix)?,
        key: key.to_owned(),
        guests: meta.guests,
        initrd: dir.join(INITRD),
        driver: meta.driver,
        kernel: meta.kernel,
    };
    if !saved.initrd.is_file() {
        forget(&saved);
        return Ok(None);
    }
    trust::check_path(&saved.initrd, fix)?;
    for role in Role::ALL {
        let complete = saved.guest(role).is_ok()
            && saved.save_file(role).is_file()
            && saved.overlay(role).is_file();
        if !complete {
            forget(&saved);
            return Ok(None);
        }
        for p in [saved.save_file(role), saved.overlay(role)] {
            trust::check_path(&p, fix)?;
        }
    }
    // Last used, for the eviction of the least recently used.
    let _ = std::fs::File::open(dir.join("meta.json"))
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    Ok(Some(saved))
}

/// Removes a saved lab that could not be restored, so the next cell saves a new one.
pub(crate) fn forget(saved: &Saved) {
    let _ = std::fs::remove_dir_all(&saved.dir);
}

/// The name prefix of a lab being saved (`.tmp-RUN`): an entry with it is incomplete.
pub const STAGING_PREFIX: &str = ".tmp-";

/// Where a lab being saved puts its files, complete or not at all: `.tmp-RUN`, renamed to the
/// key once everything is in it.
pub(crate) fn staging(run: &crate::model::names::RunId) -> Result<PathBuf> {
    let root = saved_root()?;
    // Leftovers of a save that was killed.
    if let Ok(rd) = std::fs::read_dir(&root) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    trust::private_dir(&root.join(format!("{STAGING_PREFIX}{run}")))
}

/// What the held guests said before the save (see [`held_facts`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Held {
    storm_load_sha256: String,
    driver: String,
    kernel: String,
}

/// Completes an entry: meta.json into the staging directory, renamed to the key, and the
/// least recently used entries beyond [`KEEP`] removed.
pub(crate) fn commit(
    staging: &Path,
    key_text: &str,
    guests: Vec<SavedGuest>,
    held: Held,
    saved_by: &str,
    save_seconds: f64,
) -> Result<Saved> {
    let key = key_of(key_text);
    let meta = Meta {
        format: FORMAT,
        key: key.clone(),
        key_text: key_text.to_owned(),
        guests,
        storm_load_sha256: held.storm_load_sha256,
        driver: held.driver,
        kernel: held.kernel,
        saved_by: saved_by.to_owned(),
        saved_at: chrono::Utc::now().to_rfc3339(),
        save_seconds,
    };
    trust::write(
        &staging.join("meta.json"),
        &serde_json::to_vec_pretty(&meta)?,
    )?;
    let root = saved_root()?;
    let dir = root.join(&key);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(staging, &dir)
        .with_context(|| format!("renaming {} to {}", staging.display(), dir.display()))?;
    evict(&root, KEEP);
    find(&key)?.with_context(|| format!("the saved lab {} just written", dir.display()))
}

/// Removes all but the `keep` most recently used entries of `root`.
fn evict(root: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            // An entry without meta.json counts as the oldest.
            let used = std::fs::metadata(e.path().join("meta.json"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (used, e.path())
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, p) in entries.into_iter().skip(keep) {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// Saves a running domain's state to `path` (libvirt stops the domain once it is saved).
pub(crate) fn save_domain(dom: &virt::domain::Domain, path: &Path) -> Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .context("a save path with a NUL byte")?;
    // SAFETY: the domain pointer is valid while `dom` lives; the path is a valid C string;
    // a null dxml keeps the domain's own XML.
    let rc =
        unsafe { virt::sys::virDomainSaveFlags(dom.as_ptr(), c.as_ptr(), std::ptr::null(), 0) };
    if rc < 0 {
        bail!("{}", virt::error::Error::last_error());
    }
    Ok(())
}

/// Boots a lab of `spec`'s kind to its hold point and saves it under the key of
/// `key_text`; its serial logs go to `log_dir`. Returns the entry and the seconds it took.
pub(crate) async fn make(
    spec: &LabSpec,
    image: &Image,
    key_text: &str,
    log_dir: &Path,
    run: &crate::model::names::RunId,
    limit: Duration,
) -> Result<(Saved, f64)> {
    let t0 = Instant::now();
    let spec = LabSpec {
        log_dir: log_dir.to_path_buf(),
        ..spec.clone()
    };
    // Nothing of a save that failed or was interrupted (a signal drops this future) stays:
    // the guard removes the staging directory unless the save was committed (renamed).
    let staging = Staging(staging(run)?);
    save_into(&spec, image, key_text, run, limit, &staging.0, t0).await
}

/// A staging directory, removed when dropped: after a commit it no longer exists (renamed
/// to the key), so only an incomplete save's files go.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// [`make`]'s work, its files in `staging`.
async fn save_into(
    spec: &LabSpec,
    image: &Image,
    key_text: &str,
    run: &crate::model::names::RunId,
    limit: Duration,
    staging: &Path,
    t0: Instant,
) -> Result<(Saved, f64)> {
    let initrd = staging.join(INITRD);
    let storm_load_sha256 = write_hold_initrd(&image.initrd, &spec.storm_load, &initrd)?;
    // The key was made from the file a while ago (before this boot): the saved lab must hold
    // what its key says.
    let keyed = key_line(key_text, "storm_load_sha256").unwrap_or_default();
    if keyed != storm_load_sha256 {
        bail!(
            "{} changed while its lab was being saved (the key has SHA-256 {keyed:?}, the file now {storm_load_sha256}); run again",
            spec.storm_load.display()
        );
    }
    let mut lab = super::Lab::create(run, spec, image, super::Start::Hold(&initrd))?;
    let said = futures_util::future::try_join_all(lab.vms.iter().map(|vm| async {
        wait_held(vm, limit).await?;
        vm.serial_shell(&held_facts_script(), SHELL_CALL).await
    }))
    .await?;
    // Every guest: storm-load as the host wrote it, the driver the cell's NIC needs, the
    // kernel of the others (the guests share one image).
    let mut held: Option<Held> = None;
    for (vm, said) in lab.vms.iter().zip(&said) {
        let h = held_facts(said).with_context(|| {
            format!(
                "{}: {said:?} (an image built before saved labs held storm-load? see {})",
                vm.name,
                vm.console_log.display()
            )
        })?;
        if h.storm_load_sha256 != storm_load_sha256 {
            bail!(
                "{}: storm-load's SHA-256 in the held guest is {}, the host wrote {storm_load_sha256}",
                vm.name,
                h.storm_load_sha256
            );
        }
        if let Some(first) = &held {
            if first.kernel != h.kernel {
                bail!(
                    "{}: kernel {}, but the first guest runs {}",
                    vm.name,
                    h.kernel,
                    first.kernel
                );
            }
        }
        super::guest::check_driver(&vm.name, spec.nic, &h.driver)?;
        held.get_or_insert(h);
    }
    let held = held.context("a lab without guests")?;
    let mut guests = vec![];
    for vm in &lab.vms {
        let dom = vm.domain.as_ref().context("a held domain")?;
        guests.push(SavedGuest {
            role: vm.role.to_string(),
            uuid: dom
                .uuid_string()
                .with_context(|| format!("reading the UUID of {}", vm.name))?,
            mac: lab.run.mac(vm.role.index() as u8),
        });
    }
    // All four at once, each on its own thread; a saved domain is gone (libvirt stops it).
    let saves: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = lab
            .vms
            .iter_mut()
            .map(|vm| {
                let file = staging.join(format!("{}.save", vm.role));
                scope.spawn(move || {
                    let dom = vm.domain.take().context("a held domain")?;
                    save_domain(&dom, &file)
                        .with_context(|| format!("saving {} to {}", vm.name, file.display()))
                        .inspect_err(|_| vm.domain = Some(dom))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("a save thread panicked")))
            .collect()
    });
    saves.into_iter().collect::<Result<Vec<()>>>()?;
    for role in Role::ALL {
        let to = staging.join(format!("{role}.qcow2"));
        std::fs::rename(lab.state_dir.join(format!("{role}.qcow2")), &to)
            .with_context(|| format!("moving {role}'s overlay to {}", to.display()))?;
        // Backing file of every restore from now on: never written again.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o400))?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    lab.teardown()?;
    let saved = commit(staging, key_text, guests, held, run.as_str(), seconds)?;
    Ok((saved, seconds))
}

/// The value of `name=` in a key text.
fn key_line<'a>(key_text: &'a str, name: &str) -> Option<&'a str> {
    key_text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

/// The initrd of a saved lab's guests, in its entry.
const INITRD: &str = "initrd.img";

/// Asked of each held guest before the save: storm-load's checksum, eth0's driver, the kernel.
/// `sync` first: the copy's pages go to the overlay before the save, so a restored guest does
/// not write them back during its cell.
fn held_facts_script() -> String {
    format!(
        "sync; echo \"sha256=$(sha256sum {})\"; {}",
        super::guest::STORM_LOAD,
        super::guest::ABOUT
    )
}

/// Reads [`held_facts_script`]'s answer.
fn held_facts(said: &str) -> Result<Held> {
    let get = |name: &str| {
        super::guest::said(said, name)
            .with_context(|| format!("no {name}= in the held guest's answer"))
    };
    let sha = get("sha256")?.split_whitespace().next().unwrap_or("");
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("storm-load's checksum in the held guest is {sha:?}");
    }
    Ok(Held {
        storm_load_sha256: sha.to_owned(),
        driver: get("driver")?.to_owned(),
        kernel: get("kernel")?.to_owned(),
    })
}

/// Writes the initrd of a lab to be saved to `to`: the image's `initrd`, zero-padded to four
/// bytes, then a second newc cpio archive holding `storm_load` as `/storm-load` (mode 0755),
/// which the kernel unpacks after the first (init/initramfs.c reads concatenated archives)
/// and the initrd's init copies into the root (images/initrd/init). Returns storm-load's
/// SHA-256.
fn write_hold_initrd(initrd: &Path, storm_load: &Path, to: &Path) -> Result<String> {
    let mut out = std::fs::read(initrd).with_context(|| format!("reading {}", initrd.display()))?;
    let bin =
        std::fs::read(storm_load).with_context(|| format!("reading {}", storm_load.display()))?;
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(&newc_archive("storm-load", 0o100755, &bin)?);
    trust::write(to, &out)?;
    Ok(hex::encode(Sha256::digest(&bin)))
}

/// One file in a newc ("070701") cpio archive, then its trailer: each header a 110-byte
/// line of 13 eight-digit hex fields, its name NUL-terminated and padded (with the header) to
/// four bytes, the data padded to four bytes.
fn newc_archive(name: &str, mode: u32, data: &[u8]) -> Result<Vec<u8>> {
    let size = u32::try_from(data.len()).context("a file over 4 GiB in a cpio archive")?;
    let mut out = Vec::with_capacity(data.len() + 512);
    let mut entry = |ino: u32, mode: u32, nlink: u32, name: &str, data: &[u8], size: u32| {
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    };
    entry(1, mode, 1, name, data, size);
    entry(0, 0, 1, "TRAILER!!!", &[], 0);
    Ok(out)
}

/// How long a held guest's shell gets to answer one call.
const SHELL_CALL: Duration = Duration::from_secs(30);

/// Waits until `vm` holds (nicstorm-release said so, and its FIFOs exist: every step before
/// them is done), bounded by `limit`.
pub(crate) async fn wait_held(vm: &Vm, limit: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        vm.check_running()?;
        let said = std::fs::read_to_string(&vm.console_log).unwrap_or_default();
        if said.contains("] holding for the host") {
            vm.serial_shell(
                "test -p /run/nicstorm.go && test -p /run/nicstorm.done",
                SHELL_CALL,
            )
            .await
            .with_context(|| {
                format!(
                    "{} said it holds, but a FIFO of its release is missing",
                    vm.name
                )
            })?;
            return Ok(());
        }
        if t0.elapsed() > limit {
            bail!(
                "{} did not reach its hold point within {limit:?}; see {}",
                vm.name,
                vm.console_log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The script that releases a restored guest (run by its ttyS2 shell): one line into the FIFO
/// nicstorm-release (images/rootfs/usr/local/sbin) has waited on since before the save, then
/// its answer. The line: the wall clock, host entropy for the pool and the reseed of the
/// kernel's generator (`RNDRESEEDCRNG`), or `-` for neither (a control, never the default),
/// and the identity words. The shell's builtins alone: a restored guest starts no program.
pub(crate) fn release_script(epoch: Duration, entropy: Option<&[u8]>, identity: &str) -> String {
    format!(
        "printf '%s\\n' '{}.{:09} {} {identity}' >/run/nicstorm.go && read -r st </run/nicstorm.done && printf '%s\\n' \"$st\" && [ \"$st\" = ok ]",
        epoch.as_secs(),
        epoch.subsec_nanos(),
        entropy.map_or("-".to_owned(), hex::encode),
    )
}

/// Releases a restored guest (see [`release_script`]).
pub(crate) async fn release(vm: &Vm) -> Result<()> {
    // For the demonstration that the reseed is what tells restored guests apart
    // (docs/measurements/2026-12-07-restore): the release without entropy and reseed.
    let control = std::env::var_os("NICSTORM_RESTORE_NO_RESEED").is_some();
    let entropy = if control {
        None
    } else {
        let mut e = [0u8; 64];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut e))
            .context("reading host entropy from /dev/urandom")?;
        Some(e)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // It goes into single quotes on a root shell's line.
    if vm.identity.contains(['\'', '\n']) {
        bail!("the identity of {} has a quote or a newline", vm.name);
    }
    let script = release_script(now, entropy.as_ref().map(|e| &e[..]), &vm.identity);
    // Its errors name the step, not the script: it carries the entropy and the key.
    vm.serial_shell_as(&script, "the release", SHELL_CALL)
        .await
        .with_context(|| format!("releasing restored {}", vm.name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_script_hands_clock_entropy_identity_to_the_fifo_and_reads_the_answer() {
        let s = release_script(
            Duration::new(1_765_000_000, 5),
            Some(&[0xab, 0x01]),
            "nicstorm.hostname=server nicstorm.addr=10.0.0.2/24 nicstorm.key=QUJD+/==",
        );
        assert_eq!(
            s,
            "printf '%s\\n' '1765000000.000000005 ab01 nicstorm.hostname=server nicstorm.addr=10.0.0.2/24 nicstorm.key=QUJD+/==' >/run/nicstorm.go && read -r st </run/nicstorm.done && printf '%s\\n' \"$st\" && [ \"$st\" = ok ]"
        );
        // One line: the serial shell reads line by line.
        assert!(!s.contains('\n'));
        // The control: no entropy, no reseed (`-`), the rest the same.
        let c = release_script(
            Duration::new(1_765_000_000, 5),
            None,
            "nicstorm.hostname=server",
        );
        assert!(
            c.starts_with("printf '%s\\n' '1765000000.000000005 - nicstorm.hostname=server' >/run/nicstorm.go && "),
            "{c}"
        );
    }

    #[test]
    fn a_newc_archive_holds_the_file_then_the_trailer_each_aligned_to_four_bytes() {
        let a = newc_archive("storm-load", 0o100755, b"abcde").unwrap();
        // Header: magic, then ino 1, mode 0100755, uid 0, gid 0, nlink 1, mtime 0, size 5,
        // devmajor, devminor, rdevmajor, rdevminor 0, name size 11 (with its NUL), check 0.
        let header = "070701\
            00000001000081ed000000000000000000000001000000000000000500000000\
            0000000000000000000000000000000b00000000";
        assert_eq!(&a[..110], header.as_bytes());
        // 110 + 11 = 121, padded to 124; the data, padded to 132.
        assert_eq!(&a[110..124], b"storm-load\0\0\0\0");
        assert_eq!(&a[124..132], b"abcde\0\0\0");
        let trailer = &a[132..];
        assert!(trailer.starts_with(b"070701"));
        assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
        // 110 + 11 = 121, padded to 124, no data.
        assert_eq!(trailer.len(), 124);
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn the_hold_initrd_is_the_images_padded_to_four_bytes_then_the_archive() {
        let dir = std::env::temp_dir().join(format!("nicstorm-initrd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("base"), b"12345").unwrap();
        std::fs::write(dir.join("bin"), b"\x7fELF").unwrap();
        let sha = write_hold_initrd(&dir.join("base"), &dir.join("bin"), &dir.join("out")).unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(b"\x7fELF")));
        let out = std::fs::read(dir.join("out")).unwrap();
        // The kernel reads an uncompressed archive only from a four-byte boundary.
        assert_eq!(&out[..8], b"12345\0\0\0");
        assert_eq!(
            &out[8..],
            &newc_archive("storm-load", 0o100755, b"\x7fELF").unwrap()[..]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_line_is_found_by_its_whole_name() {
        let text = "format=3\nstorm_load_sha256=ab\nstorm_load_sha256x=cd\n";
        assert_eq!(key_line(text, "storm_load_sha256"), Some("ab"));
        assert_eq!(key_line(text, "storm_load"), None);
        assert_eq!(key_line(text, "mode"), None);
    }

    #[test]
    fn the_held_guests_answer_is_read_and_a_bad_checksum_refused() {
        let said = "sha256=4f2c0b7ad1e0b9a9d6a5bd2c8a3f9f1e0d4c3b2a19080706050403020100ffee  /usr/local/bin/storm-load\r\n\
                    driver=vmxnet3\r\nkernel=6.1.0-57-amd64\r\n";
        assert_eq!(
            held_facts(said).unwrap(),
            Held {
                storm_load_sha256:
                    "4f2c0b7ad1e0b9a9d6a5bd2c8a3f9f1e0d4c3b2a19080706050403020100ffee".into(),
                driver: "vmxnet3".into(),
                kernel: "6.1.0-57-amd64".into(),
            }
        );
        // sha256sum of a missing file prints nothing on stdout.
        let e = held_facts("sha256=\ndriver=vmxnet3\nkernel=6.1.0-57-amd64\n").unwrap_err();
        assert!(e.to_string().contains("no sha256="), "{e}");
        let e = held_facts("sha256=abc  x\ndriver=e1000\nkernel=6.1\n").unwrap_err();
        assert!(e.to_string().contains("\"abc\""), "{e}");
        // No driver bound: ethtool prints nothing.
        let e = held_facts(&said.replace("vmxnet3", "")).unwrap_err();
        assert!(e.to_string().contains("no driver="), "{e}");
    }

    #[test]
    fn the_key_is_the_hash_of_its_text() {
        assert_eq!(key_of("format=1\n").len(), 16);
        assert_ne!(key_of("mode=bridge\n"), key_of("mode=nat\n"));
    }
}
