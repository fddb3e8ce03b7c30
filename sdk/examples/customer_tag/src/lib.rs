//! Tags each flow with the customer its exporter belongs to, from a map in
//! the plugin's config:
//!
//! ```yaml
//! config:
//!   default: unknown
//!   customers: { "10.0.0.1": acme, "10.0.0.2": globex }
//! ```

use std::collections::HashMap;

use spillway_sdk::{Flow, map};

#[derive(serde::Deserialize)]
pub struct Config {
    customers: HashMap<std::net::IpAddr, String>,
    #[serde(default)]
    default: Option<String>,
}

#[map(column = "customer", reads = ["exporter"])]
pub fn customer(flow: &Flow, cfg: &Config) -> Option<String> {
    flow.exporter().and_then(|e| cfg.customers.get(&e).cloned()).or_else(|| cfg.default.clone())
}
