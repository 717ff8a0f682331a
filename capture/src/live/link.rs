//! Link state of capture interfaces: what the kernel says an interface is
//! now (up, administratively down, without carrier, missing), how its
//! frames are framed, and the alert a change of state raises.
//!
//! Guarantees:
//! - lookups go through a [`Control`] socket opened by
//!   [`super::Capture::start`] (or by [`link_state`]), so they answer for the
//!   network namespace the capture runs in, never for the one `/sys` was
//!   mounted from; they are ioctls that never block;
//! - only Ethernet-framed (Ethernet, loopback) and raw-IP (tun, WireGuard,
//!   PPP, raw-IP modems) interfaces are accepted; any other hardware type is
//!   refused with its number, never decoded as if it were Ethernet.

use std::io;

use serde::Serialize;

use super::ring::{Control, Nic};
use crate::decode::LinkType;
use crate::summary::CaptureAlert;

/// ARPHRD_* hardware types (linux/if_arp.h) the capture accepts.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_PPP: u16 = 512;
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_NONE: u16 = 0xfffe;

/// What a capture interface's link is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Not looked at yet.
    #[default]
    Unknown,
    /// Up with a carrier: packets can be seen.
    Up,
    /// Administratively up, but without carrier (cable, mirror port or the
    /// peer is down): no packet arrives.
    NoCarrier,
    /// Administratively down (`ip link set IF down`): no packet arrives.
    Down,
    /// No interface of that name in this network namespace (yet).
    Missing,
}

impl LinkState {
    const ALL: [LinkState; 5] = [
        LinkState::Unknown,
        LinkState::Up,
        LinkState::NoCarrier,
        LinkState::Down,
        LinkState::Missing,
    ];

    /// Stable name used in stats, JSON and alert labels.
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Unknown => "unknown",
            LinkState::Up => "up",
            LinkState::NoCarrier => "no_carrier",
            LinkState::Down => "down",
            LinkState::Missing => "missing",
        }
    }

    pub(crate) fn from_u8(v: u8) -> LinkState {
        LinkState::ALL
            .get(v as usize)
            .copied()
            .unwrap_or(LinkState::Unknown)
    }

    pub(crate) fn as_u8(self) -> u8 {
        self as u8
    }

    /// One line for a person: what the state means for the capture.
    pub fn explain(self, interface: &str) -> String {
        match self {
            LinkState::Unknown => format!("the link of {interface} has not been looked at yet"),
            LinkState::Up => format!("{interface} is up"),
            LinkState::NoCarrier => format!(
                "{interface} has no carrier (cable, mirror port or peer down): no packets are seen"
            ),
            LinkState::Down => format!(
                "{interface} is down (`ip link set {interface} up` brings it back): no packets are seen"
            ),
            LinkState::Missing => format!(
                "{interface} does not exist on this host: nothing is captured on it until it appears (looked for again with backoff; correct capture.interfaces if the name is wrong)"
            ),
        }
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The state an interface lookup describes.
pub(crate) fn state_of(nic: Option<&Nic>) -> LinkState {
    match nic {
        None => LinkState::Missing,
        Some(n) if !n.up => LinkState::Down,
        Some(n) if !n.running => LinkState::NoCarrier,
        Some(_) => LinkState::Up,
    }
}

/// The link state of interface `name` in this thread's network namespace,
/// now (for `owlet check-config` and the self-test).
pub fn link_state(name: &str) -> io::Result<LinkState> {
    Ok(state_of(Control::open()?.lookup(name)?.as_ref()))
}

/// The names of this namespace's interfaces (for messages that name what
/// there is).
pub fn interface_names() -> Vec<String> {
    pnet_datalink::interfaces()
        .into_iter()
        .map(|n| n.name)
        .collect()
}

/// How the frames of an interface of hardware type `hw_type` are framed
/// on a SOCK_RAW packet socket, or why it cannot be captured.
pub(crate) fn link_of(hw_type: u16) -> Result<LinkType, String> {
    match hw_type {
        // The loopback device carries an all-zero Ethernet header.
        ARPHRD_ETHER | ARPHRD_LOOPBACK => Ok(LinkType::Ethernet),
        // No link-layer header: the packet socket hands over the IP packet.
        ARPHRD_NONE | ARPHRD_PPP | ARPHRD_RAWIP => Ok(LinkType::RawIp),
        other => Err(format!(
            "its hardware type is {other} (ARPHRD_*, see `ip -d link`), which owlet does not decode; capture on an Ethernet, loopback or raw-IP (tun, WireGuard, PPP) interface"
        )),
    }
}

/// Stable name of the link types a live interface can have.
pub(crate) fn link_type_name(link: Option<LinkType>) -> &'static str {
    match link {
        Some(LinkType::Ethernet) => "ethernet",
        Some(LinkType::RawIp) => "raw_ip",
        Some(_) => "other",
        None => "",
    }
}

/// The alert for `interface` going from `prev` to `now`, if that change
/// is one the SOC hears about: losing the link (or not finding it at
/// start) and getting it back. Changes between two "no packets" states
/// (down, then up without carrier) raise nothing new.
pub(crate) fn alert(interface: &str, prev: LinkState, now: LinkState) -> Option<CaptureAlert> {
    let was_up = matches!(prev, LinkState::Up | LinkState::Unknown);
    let (name, message) = match now {
        LinkState::Up if prev == LinkState::Unknown || was_up => return None,
        LinkState::Up => (
            "capture_link_up",
            format!("capture interface {interface} is up again: capturing"),
        ),
        LinkState::Unknown => return None,
        _ if !was_up => return None,
        other => (
            "capture_link_down",
            format!("capture interface {}", other.explain(interface)),
        ),
    };
    Some(CaptureAlert {
        name,
        subject: interface.to_string(),
        message,
        labels: vec![
            ("interface".into(), interface.to_string()),
            ("link".into(), now.name().into()),
            ("previous".into(), prev.name().into()),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(up: bool, running: bool) -> Nic {
        Nic {
            index: 3,
            up,
            running,
            hw_type: ARPHRD_ETHER,
        }
    }

    #[test]
    fn states_from_flags() {
        assert_eq!(state_of(None), LinkState::Missing);
        assert_eq!(state_of(Some(&nic(false, false))), LinkState::Down);
        assert_eq!(state_of(Some(&nic(true, false))), LinkState::NoCarrier);
        assert_eq!(state_of(Some(&nic(true, true))), LinkState::Up);
        for s in LinkState::ALL {
            assert_eq!(LinkState::from_u8(s.as_u8()), s);
        }
    }

    #[test]
    fn alerts_on_losing_and_regaining_the_link_only() {
        use LinkState::*;
        let name = |p, n| alert("eth1", p, n).map(|a| a.name);
        assert_eq!(name(Unknown, Up), None, "up at start: nothing to say");
        assert_eq!(name(Unknown, Missing), Some("capture_link_down"));
        assert_eq!(name(Up, Down), Some("capture_link_down"));
        assert_eq!(name(Up, NoCarrier), Some("capture_link_down"));
        assert_eq!(name(Down, NoCarrier), None, "still no packets");
        assert_eq!(name(NoCarrier, Up), Some("capture_link_up"));
        assert_eq!(name(Missing, Up), Some("capture_link_up"));
        let a = alert("eth9", Unknown, Missing).unwrap();
        assert_eq!(a.subject, "eth9");
        assert!(a.message.contains("eth9 does not exist"), "{}", a.message);
        assert!(a.labels.contains(&("link".into(), "missing".into())));
    }

    #[test]
    fn link_types_by_hardware_type() {
        assert_eq!(link_of(ARPHRD_ETHER), Ok(LinkType::Ethernet));
        assert_eq!(link_of(ARPHRD_LOOPBACK), Ok(LinkType::Ethernet));
        assert_eq!(link_of(ARPHRD_NONE), Ok(LinkType::RawIp));
        assert_eq!(link_of(ARPHRD_PPP), Ok(LinkType::RawIp));
        let e = link_of(803).unwrap_err();
        assert!(e.contains("hardware type is 803"), "{e}");
    }

    #[test]
    fn loopback_is_up_and_a_made_up_name_is_missing() {
        assert_eq!(link_state("lo").unwrap(), LinkState::Up);
        assert_eq!(link_state("owlet-none0").unwrap(), LinkState::Missing);
        assert_eq!(
            link_state("a-name-longer-than-ifnamsiz").unwrap(),
            LinkState::Missing
        );
    }
}
