//! The closed sets of names a matrix file uses (NIC model, network mode, vhost, disconnect
//! method, traffic, scope): one spelling each in YAML, plans and CSV rows, and an error that
//! lists what is allowed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// Error text for a closed set of names: `unknown NIC model "virtio"; allowed: a, b`.
fn unknown(what: &str, got: &str, allowed: &[&str]) -> String {
    format!("unknown {what} {got:?}; allowed: {}", allowed.join(", "))
}

/// Declares a closed enum whose YAML/CSV spelling is fixed, with FromStr, Display,
/// `ALL` (in the order the matrix expands and the summary sorts) and Deserialize.
macro_rules! closed_enum {
    ($(#[$m:meta])* $vis:vis $name:ident, $what:literal { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            #[allow(dead_code)]
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling used in matrix files, plans and CSV rows.
            pub(crate) fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(unknown($what, s, &[$($text),+])),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl crate::model::named::Vocabulary for $name {
            fn name(&self) -> &str {
                self.as_str()
            }
            fn from_name(name: &str) -> Option<Self> {
                name.parse().ok()
            }
        }

        deserialize_via_from_str!($name, $what);
    };
}

closed_enum!(
    /// Virtual NIC model of every VM in a cell.
    pub NicModel, "NIC model" {
        VirtioNet => "virtio-net",
        Vmxnet3 => "vmxnet3",
        E1000 => "e1000",
        E1000e => "e1000e",
        Rtl8139 => "rtl8139",
    }
);

impl NicModel {
    /// The libvirt `<model type=...>` value.
    pub(crate) fn qemu_model(&self) -> &str {
        match self {
            NicModel::VirtioNet => "virtio",
            NicModel::Vmxnet3 => "vmxnet3",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
            NicModel::Rtl8139 => "rtl8139",
        }
    }

    /// Guest kernel drivers any of which proves the guest really got this model.
    /// rtl8139 binds to 8139cp or 8139too depending on the chip revision QEMU reports.
    pub(crate) fn guest_drivers(&self) -> &[&str] {
        match self {
            NicModel::VirtioNet => &["virtio_net"],
            NicModel::Vmxnet3 => &["vmxnet3"],
            NicModel::E1000 => &["e1000"],
            NicModel::E1000e => &["e1000e"],
            NicModel::Rtl8139 => &["8139cp", "8139too"],
        }
    }
}

closed_enum!(
    /// How clients reach the server (docs/EXPERIMENT.md "Network modes").
    pub NetMode, "network mode" {
        Bridge => "bridge",
        Nat => "nat",
        User => "user",
        /// Each VM's NIC on its own passt process over a unix socket (QEMU's `-netdev
        /// stream`), every passt of a lab in a network namespace with no route out.
        Passt => "passt",
    }
);

impl NetMode {
    /// Whether each VM's NIC sits on a host tap (bridge, nat): what vhost-net, link-down,
    /// the packet ring, the tap counters and recipes patching QEMU's tap backend need.
    /// user (slirp inside QEMU) and passt (a stream socket to passt) have none.
    pub(crate) fn has_tap(&self) -> bool {
        matches!(self, NetMode::Bridge | NetMode::Nat)
    }
}

closed_enum!(
    /// virtio-net backend: in-kernel vhost-net or QEMU's user-space device.
    pub Vhost, "vhost setting" {
        On => "on",
        Off => "off",
    }
);

closed_enum!(
    /// How the connections are torn down.
    pub DisconnectMethod, "disconnect method" {
        /// storm-load exits normally: a FIN storm.
        Fin => "fin",
        /// SO_LINGER 0 before exit: an RST storm.
        Rst => "rst",
        /// The client VM is destroyed: the server sees silence, then timeouts.
        Destroy => "destroy",
        /// The client's link is set down: like destroy, but the guest survives.
        LinkDown => "link-down",
    }
);

closed_enum!(
    /// What flows besides the storm while it is disconnected (issue 12: each hypothesis about
    /// the seed's freeze needs its own traffic).
    pub Traffic, "traffic" {
        /// Only the storm's connections (and the runner's SSH probes).
        None => "none",
        /// An SSH session streaming output from the server (`top` refreshing), as the seed
        /// watched while disconnecting.
        SshStream => "ssh-stream",
        /// Bulk data into the server on a few of the clients' connections (64 KiB writes, so
        /// with offloads the server receives packets larger than one receive buffer).
        BulkIn => "bulk-in",
        /// Bulk data out of the server on a few of its accepted connections.
        BulkOut => "bulk-out",
    }
);

closed_enum!(
    /// Which frames the NIC's host backend is given.
    pub Frames, "frames setting" {
        /// As libvirt sets the NIC up: virtio-net's tap has a vnet header, so TSO/GSO
        /// super-frames of up to 64 KiB reach the backend as one packet.
        Tso => "tso",
        /// MTU-sized frames only, as behind macOS's vmnet (no vnet header there): virtio-net's
        /// host and guest offloads off; other models already segment in their device model.
        Mtu => "mtu",
    }
);

closed_enum!(
    /// The order a run takes its cells x repetitions in (not part of a cell's id).
    pub RunOrder, "run order" {
        /// Each cell's repetitions back to back, cells in plan order.
        Cells => "cells",
        /// Repetition 1 of every cell, then repetition 2 in reverse order, ... (A B, B A):
        /// cells that differ in one axis alternate, so drift of the host over the run
        /// falls on each alike.
        Interleaved => "interleaved",
    }
);

closed_enum!(
    /// How a cell's lab comes up (not part of a cell's id; the row's `lab_start` says which
    /// way it did).
    pub LabStart, "lab start" {
        /// The four guests boot from the image.
        Boot => "boot",
        /// The four guests are restored from a saved lab of the same kind (lab/saved.rs),
        /// saved by the first cell that needs it.
        Restore => "restore",
    }
);

closed_enum!(
    /// When the packet ring of the server's tap is kept (README "The packet ring").
    pub Capture, "capture setting" {
        /// Kept when the cell lost a network or was ssh_slow.
        OnLoss => "on-loss",
        /// Kept for every cell with a tap.
        Always => "always",
        /// No ring at all (no tcpdump runs).
        Off => "off",
    }
);

closed_enum!(
    /// Accelerator a cell actually runs under (decided by the probe boot in lab/accel.rs).
    pub Accel, "accelerator" {
        Kvm => "kvm",
        Tcg => "tcg",
    }
);

/// The `vhost` column: the setting, or "n/a" (`None`) where vhost does not apply (not
/// virtio-net, or user mode); plans, rows and `vhost_effective` spell it so.
impl crate::model::named::Vocabulary for Option<Vhost> {
    fn name(&self) -> &str {
        self.map_or("n/a", |v| v.as_str())
    }
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "n/a" => Some(None),
            _ => name.parse().ok().map(Some),
        }
    }
}

closed_enum!(
    /// Which clients disconnect.
    pub Scope, "scope" {
        /// One client, as in the seed experiment.
        One => "one",
        All => "all",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nic_models_map_to_libvirt_and_guest_drivers() {
        let table: &[(NicModel, &str, &[&str])] = &[
            (NicModel::VirtioNet, "virtio", &["virtio_net"]),
            (NicModel::Vmxnet3, "vmxnet3", &["vmxnet3"]),
            (NicModel::E1000, "e1000", &["e1000"]),
            (NicModel::E1000e, "e1000e", &["e1000e"]),
            (NicModel::Rtl8139, "rtl8139", &["8139cp", "8139too"]),
        ];
        assert_eq!(table.len(), NicModel::ALL.len());
        for (nic, qemu, drivers) in table {
            assert_eq!(nic.qemu_model(), *qemu);
            assert_eq!(nic.guest_drivers(), *drivers);
            assert_eq!(nic.to_string().parse::<NicModel>().unwrap(), *nic);
        }
    }

    #[test]
    fn unknown_names_list_what_is_allowed() {
        assert_eq!(
            "virtio".parse::<NicModel>().unwrap_err(),
            "unknown NIC model \"virtio\"; allowed: virtio-net, vmxnet3, e1000, e1000e, rtl8139"
        );
    }
}
