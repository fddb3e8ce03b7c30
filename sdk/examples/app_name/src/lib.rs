//! Adds an `app` column named from well-known ports (the lower of the two
//! ports that is known wins), plus any the config adds or overrides — a
//! batch-level transform.
//!
//! ```yaml
//! config: { ports: { "8443": "https-alt" } }
//! ```

use std::collections::HashMap;

use spillway_sdk::{FlowBatch, Result, transform};

#[derive(serde::Deserialize, Default)]
pub struct Config {
    #[serde(default)]
    ports: HashMap<u16, String>,
}

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

#[transform]
pub fn process(batch: FlowBatch, cfg: &Config) -> Result<FlowBatch> {
    let name = |p: Option<u16>| {
        p.and_then(|p| cfg.ports.get(&p).cloned().or_else(|| well_known(p).map(String::from)))
    };
    batch.with_column("app", |flow| {
        let (s, d) = (flow.src_port(), flow.dst_port());
        // The service side is usually the lower port.
        let (lo, hi) = if s.unwrap_or(u16::MAX) <= d.unwrap_or(u16::MAX) { (s, d) } else { (d, s) };
        name(lo).or_else(|| name(hi))
    })
}
