//! Drops flows by a port policy: any flow to or from a blocked port, or of
//! a blocked protocol, is removed.
//!
//! ```yaml
//! config: { blocked_ports: [23, 445], blocked_protocols: [47] }
//! ```

use spillway_sdk::{Flow, filter};

#[derive(serde::Deserialize)]
pub struct Policy {
    #[serde(default)]
    blocked_ports: Vec<u16>,
    #[serde(default)]
    blocked_protocols: Vec<u8>,
}

#[filter(reads = ["src_port", "dst_port", "protocol"])]
pub fn allowed(flow: &Flow, policy: &Policy) -> bool {
    let port = |p: Option<u16>| p.is_some_and(|p| policy.blocked_ports.contains(&p));
    let proto = flow.protocol().is_some_and(|p| policy.blocked_protocols.contains(&p));
    !(port(flow.src_port()) || port(flow.dst_port()) || proto)
}
