//! Cell ids: the text hashed into a cell's id (docs/ARCHITECTURE.md "Cell id"), and the hash.
//! An id must stay the same across YAML reformatting and releases, so every addition to the
//! text is appended only when it differs from what cells had before it existed.

use sha2::{Digest, Sha256};

use super::{Cell, Memory, Searched, Settings, Traffic};

/// 12 hex digits of sha256 over [`Cell::canonical`].
pub(super) fn cell_id(cell: &Cell, s: &Settings) -> String {
    let digest = Sha256::digest(cell.canonical(s).as_bytes());
    hex::encode(&digest[..6])
}

impl Cell {
    /// The text hashed into the id. Only resolved values enter it (memory in MiB, the
    /// port range as numbers), so reformatting or reordering the YAML keeps ids.
    /// Bump the leading version if the meaning of a field changes.
    fn canonical(&self, s: &Settings) -> String {
        let memory = match self.memory {
            Memory::Auto => "auto".to_owned(),
            Memory::Fixed(b) => format!("{}MiB", b.mib()),
        };
        // Guest sysctls change the guests under test; appended only when set, so the ids
        // of cells without them stay what they were.
        let guest_sysctls: String = s
            .guest_sysctls
            .iter()
            .map(|(k, v)| format!(";guest_sysctl.{k}={v}"))
            .collect();
        // The same for what was added later: only when not at the one value cells had before,
        // so every earlier id stays what it was.
        let mut later = String::new();
        if self.qemu.0 != crate::matrix::recipes::SYSTEM {
            later.push_str(&format!(";qemu={}", self.qemu));
            for (k, v) in &self.qemu_env {
                later.push_str(&format!(";qemu_env.{k}={v}"));
            }
        }
        if self.traffic != Traffic::None {
            later.push_str(&format!(";traffic={}", self.traffic));
        }
        if let Some(r) = s.tcg_rate {
            later.push_str(&format!(";tcg_rate={r}"));
        }
        if s.frames != super::Frames::Tso {
            later.push_str(&format!(";frames={}", s.frames));
        }
        if self.mode == super::NetMode::Passt && s.passt != crate::matrix::recipes::SYSTEM {
            later.push_str(&format!(";passt={}", s.passt));
        }
        // A searched cell is one cell whatever value a step runs: the search is its identity.
        // A search over connections stands in for the count; one over a variable of QEMU's
        // environment is appended (the step's value is not in the id).
        let connections = match &self.search {
            Some(sp) if sp.param == Searched::Connections => format!(
                "search:{}-{}:{}:{}",
                sp.from, sp.to, sp.resolution, sp.max_steps
            ),
            Some(sp) => {
                later.push_str(&format!(
                    ";search={}:{}-{}:{}:{}",
                    sp.param.column(),
                    sp.from,
                    sp.to,
                    sp.resolution,
                    sp.max_steps
                ));
                self.connections.to_string()
            }
            None => self.connections.to_string(),
        };
        format!(
            "nicstorm-cell-v1;nic={};mode={};vhost={};disconnect={};scope={};connections={connections};vcpus={};memory={memory};ports={};concurrency={};rate={}{guest_sysctls}{later}",
            self.nic,
            self.mode,
            self.vhost_text(),
            self.disconnect,
            self.scope,
            self.vcpus,
            s.ports,
            s.concurrency,
            s.rate
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::matrix::plan::testing::plan;
    use crate::matrix::plan::Plan;

    #[test]
    fn ids_are_stable_across_formatting_and_change_with_values() {
        let a = plan(
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings:\n  ports: 20000-20019\n",
        );
        // Same values: block style, keys reordered, defaults spelled out, size in MiB, comments.
        let b = plan(
            "# reformatted\nsettings: {concurrency: 2000, ports: \"20000-20019\"}\naxes:\n  memory:\n    - 6144MiB\n  connections: [30000]\n  vcpus: [2]\n  mode:\n    - bridge\n  nic: [e1000, vmxnet3]\n",
        );
        let ids = |p: &Plan| {
            let mut v: Vec<(String, String)> =
                p.cells.iter().map(|c| (c.label(), c.id.clone())).collect();
            v.sort();
            v
        };
        assert_eq!(ids(&a), ids(&b));
        assert!(a.cells.iter().all(|c| c.id.len() == 12
            && c.id
                .chars()
                .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())));

        let changes = [
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30001]\n  memory: [6GiB]\n",
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [auto]\n",
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\n  vcpus: [1]\n",
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings: {ports: 20000-20009}\n",
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings: {rate: 100}\n",
        ];
        let first = &a.cells[0];
        for text in changes {
            let p = plan(text);
            assert_ne!(p.cells[0].id, first.id, "{text}");
            assert_eq!(p.cells[0].nic, first.nic);
        }
        // Guest sysctls change the guests: another cell.
        let tuned = plan(
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings: {guest_sysctls: {net.ipv4.tcp_max_orphans: 262144}}\n",
        );
        assert_ne!(tuned.cells[0].id, first.id);
        assert_eq!(
            tuned.settings.guest_sysctls["net.ipv4.tcp_max_orphans"],
            "262144"
        );
        // Settings that do not shape the load keep the id (a longer observe is the same cell).
        let same = plan(
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings: {observe: 10m}\n",
        );
        assert_eq!(same.cells[0].id, first.id);
        // The packet ring only watches: any capture setting is the same cell.
        let captured = plan(
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings: {capture: always, capture_snaplen: 128, capture_ring: 16MiB}\n",
        );
        assert_eq!(captured.cells[0].id, first.id);
        assert_eq!(
            (
                captured.settings.capture.snaplen,
                captured.settings.capture.ring_bytes
            ),
            (128, 16 << 20)
        );
    }
}
