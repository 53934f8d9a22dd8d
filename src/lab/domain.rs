//! libvirt domain XML of a lab VM, from vm-templates/ rendered with minijinja: every value is
//! XML-escaped (auto-escape by the templates' .xml names) and an undefined variable is an
//! error, so a renamed field cannot silently produce broken XML.

use anyhow::{Context, Result};
use minijinja::{context, Environment, UndefinedBehavior};
use serde::Serialize;

const DOMAIN: &str = include_str!("../../vm-templates/domain.xml");
const INTERFACE: &str = include_str!("../../vm-templates/interface.xml");
/// Both templates, for the key of a saved lab (a changed device list changes the machine).
pub(crate) const TEMPLATES: &str = concat!(
    include_str!("../../vm-templates/domain.xml"),
    include_str!("../../vm-templates/interface.xml")
);

/// A bridged NIC (bridge and nat modes).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct BridgedNic {
    pub(crate) bridge: String,
    pub(crate) tap: String,
    pub(crate) mac: String,
    /// libvirt `<model type>`.
    pub(crate) model: String,
    /// `vhost` or `qemu` for virtio-net; none for other models.
    pub(crate) driver: Option<&'static str>,
    /// virtio-net with its host and guest offloads off, so the backend sees MTU-sized frames
    /// (`settings.frames: mtu`); other models need nothing (their taps have no vnet header).
    pub(crate) mtu_frames: bool,
    /// `up`/`down` for a live link update; none in the domain definition.
    pub(crate) link: Option<&'static str>,
}

/// user and passt modes: a netdev and device passed to QEMU directly, where libvirt's own
/// interface cannot say it (slirp's port forwards; a stream netdev to a passt of ours).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct QemuNet {
    pub(crate) netdev: String,
    pub(crate) device: String,
    /// `user` or `passt`: which comment the template writes beside the arguments.
    pub(crate) kind: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct EnvVar {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// Everything that differs between domains.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct DomainSpec {
    pub(crate) name: String,
    /// A restored domain's UUID, the saved one's; None lets libvirt choose.
    pub(crate) uuid: Option<String>,
    pub(crate) kvm: bool,
    pub(crate) memory_mib: u64,
    pub(crate) vcpus: u32,
    pub(crate) kernel: String,
    pub(crate) initrd: String,
    pub(crate) cmdline: String,
    pub(crate) emulator: String,
    pub(crate) overlay: String,
    pub(crate) console_log: String,
    pub(crate) heartbeat_log: String,
    /// Host end of the guest's ttyS2 root shell.
    pub(crate) shell_socket: String,
    pub(crate) nic: Option<BridgedNic>,
    pub(crate) qemu_net: Option<QemuNet>,
    /// Environment for QEMU (`<qemu:env>`), e.g. an emulator recipe's settings.
    pub(crate) qemu_env: Vec<EnvVar>,
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Every value is escaped (XML's five characters only: HTML escaping would also turn
    // every `/` of a path into `&#x2f;`); none of ours is ever meant as markup.
    env.set_formatter(|out, _state, value| {
        out.write_str(&crate::support::markup::escape(&value.to_string()))
            .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "writing"))
    });
    env.add_template("domain.xml", DOMAIN)
        .expect("vm-templates/domain.xml parses");
    env.add_template("interface.xml", INTERFACE)
        .expect("vm-templates/interface.xml parses");
    env
}

pub(crate) fn domain_xml(spec: &DomainSpec) -> Result<String> {
    env()
        .get_template("domain.xml")?
        .render(context! {
            domain_type => if spec.kvm { "kvm" } else { "qemu" },
            ..minijinja::Value::from_serialize(spec)
        })
        .with_context(|| format!("rendering the domain XML of {}", spec.name))
}

/// The `<interface>` element for a live update (link up or down). libvirt finds the interface
/// by MAC but validates the whole element: source bridge and model included (a missing model
/// reads as rtl8139, which it refuses to change to).
pub(crate) fn interface_xml(nic: &BridgedNic) -> Result<String> {
    env()
        .get_template("interface.xml")?
        .render(context! { nic => nic })
        .context("rendering an interface element")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DomainSpec {
        DomainSpec {
            name: "nicstorm-a1b2c3-server".into(),
            uuid: None,
            kvm: false,
            memory_mib: 1024,
            vcpus: 1,
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: "console=ttyS0 nicstorm.key=QUJD+/== a<b & 'c'".into(),
            emulator: "/usr/bin/qemu-system-x86_64".into(),
            overlay: "/o.qcow2".into(),
            console_log: "/c.log".into(),
            heartbeat_log: "/h.log".into(),
            shell_socket: "/s.sock".into(),
            nic: Some(BridgedNic {
                bridge: "nsta1b2c3b0".into(),
                tap: "nsta1b2c3s".into(),
                mac: "52:54:a1:b2:c3:00".into(),
                model: "virtio".into(),
                driver: Some("qemu"),
                mtu_frames: false,
                link: None,
            }),
            qemu_net: None,
            qemu_env: vec![],
        }
    }

    #[test]
    fn mtu_frames_turn_virtio_offloads_off() {
        let mut s = spec();
        assert!(!domain_xml(&s).unwrap().contains("<host "));
        s.nic.as_mut().unwrap().mtu_frames = true;
        let xml = domain_xml(&s).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let driver = doc
            .descendants()
            .find(|n| {
                n.has_tag_name("driver") && n.parent().is_some_and(|p| p.has_tag_name("interface"))
            })
            .unwrap();
        assert_eq!(driver.attribute("name"), Some("qemu"));
        let host = driver.children().find(|n| n.has_tag_name("host")).unwrap();
        let guest = driver.children().find(|n| n.has_tag_name("guest")).unwrap();
        for a in ["tso4", "tso6", "gso", "ecn", "ufo"] {
            assert_eq!(host.attribute(a), Some("off"), "host {a}");
        }
        for a in ["tso4", "tso6", "ecn", "ufo"] {
            assert_eq!(guest.attribute(a), Some("off"), "guest {a}");
        }
    }

    #[test]
    fn renders_an_escaped_domain() {
        let xml = domain_xml(&spec()).unwrap();
        assert!(xml.contains("<domain type='qemu'"));
        assert!(xml.contains("<name>nicstorm-a1b2c3-server</name>"));
        assert!(xml.contains("a&lt;b &amp; &#39;c&#39;"), "{xml}");
        assert!(xml.contains("<source bridge='nsta1b2c3b0'/>"));
        assert!(xml.contains("<model type='virtio'/>") && xml.contains("<driver name='qemu'/>"));
        assert!(!xml.contains("<link") && !xml.contains("qemu:commandline"));
        assert!(!xml.contains("host-passthrough"));
        assert!(xml.contains("<controller type='usb' model='none'/>"));
        // The emulator is what the spec names (issue 12: a recipe's binary).
        let mut s = spec();
        s.emulator = "/cache/emulators/vmnet-flow-control-abc/bin/qemu-system-x86_64".into();
        s.kvm = true;
        s.qemu_env = vec![EnvVar {
            name: "NICSTORM_VMNET_BURST".into(),
            value: "64".into(),
        }];
        let xml = domain_xml(&s).unwrap();
        assert!(
            xml.contains("<emulator>/cache/emulators/vmnet-flow-control-abc/bin/qemu-system-x86_64</emulator>"),
            "{xml}"
        );
        assert!(
            xml.contains("<domain type='kvm'") && xml.contains("<cpu mode='host-passthrough'/>")
        );
        assert!(
            xml.contains("<qemu:env name='NICSTORM_VMNET_BURST' value='64'/>"),
            "{xml}"
        );
        // Every document parses as XML.
        for x in [domain_xml(&spec()).unwrap(), xml] {
            roxmltree::Document::parse(&x).unwrap_or_else(|e| panic!("{e}\n{x}"));
        }
    }

    #[test]
    fn user_mode_and_link_updates() {
        let mut s = spec();
        s.nic = None;
        s.qemu_net = Some(QemuNet {
            netdev: "user,id=nsnet0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:30004-:22".into(),
            device: "e1000,netdev=nsnet0,mac=52:54:00:00:00:01,bus=pci.0,addr=0x10".into(),
            kind: "user",
        });
        let xml = domain_xml(&s).unwrap();
        assert!(!xml.contains("<interface type='bridge'>"));
        assert!(xml.contains("hostfwd=tcp:127.0.0.1:30004-:22"), "{xml}");
        roxmltree::Document::parse(&xml).unwrap();
        // passt mode: the stream netdev and its device, in order, with no <interface>.
        let mut p = spec();
        p.nic = None;
        p.qemu_net = Some(QemuNet {
            netdev: "stream,id=nsnet0,server=off,addr.type=unix,addr.path=/var/lib/nicstorm/labs/nicstorm-a1b2c3/server.net.sock".into(),
            device: "virtio-net-pci,netdev=nsnet0,mac=52:54:a1:b2:c3:00,bus=pci.0,addr=0x10".into(),
            kind: "passt",
        });
        let xml = domain_xml(&p).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        assert!(!doc.descendants().any(|n| n.has_tag_name("interface")));
        let qemu_ns = "http://libvirt.org/schemas/domain/qemu/1.0";
        let cl = doc
            .descendants()
            .find(|n| n.has_tag_name((qemu_ns, "commandline")))
            .expect("a qemu:commandline");
        let args: Vec<&str> = cl
            .children()
            .filter(|n| n.has_tag_name((qemu_ns, "arg")))
            .filter_map(|n| n.attribute("value"))
            .collect();
        assert_eq!(
            args,
            [
                "-netdev",
                "stream,id=nsnet0,server=off,addr.type=unix,addr.path=/var/lib/nicstorm/labs/nicstorm-a1b2c3/server.net.sock",
                "-device",
                "virtio-net-pci,netdev=nsnet0,mac=52:54:a1:b2:c3:00,bus=pci.0,addr=0x10",
            ]
        );
        let comment = cl
            .children()
            .find(|n| n.is_comment())
            .and_then(|n| n.text())
            .unwrap();
        assert!(comment.contains("passt mode"), "{comment}");
        let mut nic = spec().nic.unwrap();
        nic.driver = None;
        nic.link = Some("down");
        let x = interface_xml(&nic).unwrap();
        assert!(x.contains("<link state='down'/>") && x.contains("<target dev='nsta1b2c3s'/>"));
        assert!(!x.contains("driver"));
        roxmltree::Document::parse(&x).unwrap();
    }
}
