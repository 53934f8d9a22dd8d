//! The machine a row was measured on: name, CPU model, online CPUs, memory. Rows from different
//! kinds of host are never pooled into one statistic without saying so (see `results::host_class`).

pub(crate) mod counters;
pub(crate) mod heartbeat;
pub(crate) mod kmsg;
pub mod metrics;
pub(crate) mod provenance;
pub(crate) mod signatures;
pub(crate) mod vmnet;

use crate::results::CellRow;

/// What identifies the measuring host in every row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HostInfo {
    pub(crate) name: Option<String>,
    /// `model name` of the first CPU in /proc/cpuinfo.
    pub(crate) cpu: Option<String>,
    /// CPUs this process may run on.
    pub(crate) cores: Option<u32>,
    /// MemTotal in MiB.
    pub(crate) memory_mib: Option<u64>,
}

impl HostInfo {
    pub(crate) fn read() -> HostInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        HostInfo {
            name: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            cpu: cpu_model(&cpuinfo),
            cores: std::thread::available_parallelism()
                .ok()
                .map(|n| n.get() as u32),
            memory_mib: mem_total_mib(&meminfo),
        }
    }

    /// Fills the row's host columns.
    pub(crate) fn stamp(&self, row: &mut CellRow) {
        row.host_name = self.name.clone();
        row.host_cpu = self.cpu.clone();
        row.host_cores = self.cores;
        row.host_memory_mib = self.memory_mib;
    }
}

/// The kernel's id of this boot (`/proc/sys/kernel/random/boot_id`), empty when it cannot be
/// read: what a restore file or a cached probe answer holds until the host reboots.
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
}

fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files_and_names_the_class() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)   Platinum 8375C CPU @ 2.90GHz\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
        assert_eq!(
            mem_total_mib("MemTotal:       24575932 kB\nMemFree: 1 kB\n"),
            Some(23999)
        );
        let mut row = CellRow::example("c1", 1, "ok");
        assert_eq!(crate::results::host_class(&row), "tcg, unknown host");
        HostInfo {
            name: Some("h1".into()),
            cpu: Some("EPYC".into()),
            cores: Some(2),
            memory_mib: Some(23999),
        }
        .stamp(&mut row);
        assert_eq!(
            crate::results::host_class(&row),
            "tcg, EPYC, 2 CPUs, 23 GiB"
        );
        assert_eq!(row.host_name.as_deref(), Some("h1"));
        // The host this test runs on can be read.
        let me = HostInfo::read();
        assert!(me.cores.is_some_and(|c| c >= 1) && me.memory_mib.is_some());
    }
}
