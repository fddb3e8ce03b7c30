//! The `app_name` example's logic as a `#[map]` that reads two columns:
//! for measuring what projection saves at the plugin boundary.

use spillway_sdk::{Flow, map};

fn well_known(port: u16) -> Option<&'static str> {
    Some(match port {
        22 => "ssh",
        53 => "dns",
        80 => "http",
        123 => "ntp",
        443 => "https",
        993 => "imaps",
        3478 => "stun",
        8080 => "http-alt",
        _ => return None,
    })
}

#[map(column = "app", reads = ["src_port", "dst_port"])]
pub fn app(flow: &Flow) -> Option<&'static str> {
    let (s, d) = (flow.src_port(), flow.dst_port());
    let (lo, hi) = if s.unwrap_or(u16::MAX) <= d.unwrap_or(u16::MAX) { (s, d) } else { (d, s) };
    lo.and_then(well_known).or_else(|| hi.and_then(well_known))
}
