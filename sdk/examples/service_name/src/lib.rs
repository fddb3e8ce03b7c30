//! A Spillway plugin: names destination ports in a `service` column.
//!
//! This file is the template `spillway plugin new` starts from (it is
//! also built and tested with the SDK's other examples). Build: see
//! README.md.

use std::collections::HashMap;

use spillway_sdk::{Flow, map};

/// The plugin's `config:` from the pipeline file.
#[derive(serde::Deserialize, Default)]
pub struct Config {
    /// Extra names for destination ports, e.g. { "8443": "https-alt" }.
    #[serde(default)]
    pub ports: HashMap<u16, String>,
}

/// Adds a `service` column: a name for the destination port.
#[map(column = "service")]
pub fn service(flow: &Flow, cfg: &Config) -> Option<String> {
    let port = flow.dst_port()?;
    cfg.ports.get(&port).cloned().or_else(|| match port {
        53 => Some("dns".into()),
        80 => Some("http".into()),
        443 => Some("https".into()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_sdk::arrow_array::{RecordBatch, UInt16Array};
    use spillway_sdk::arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn names_ports() {
        let schema = Arc::new(Schema::new(vec![Field::new("dst_port", DataType::UInt16, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(UInt16Array::from(vec![Some(443), Some(9), None]))])
                .unwrap();
        let cfg = Config::default();
        let out = spillway_sdk::testing::run(
            |b, c: &Config| b.with_column("service", |f| service(f, c)),
            batch,
            &cfg,
        )
        .unwrap();
        let names = out.column(1).as_any().downcast_ref::<spillway_sdk::arrow_array::StringArray>().unwrap();
        assert_eq!(names.iter().collect::<Vec<_>>(), [Some("https"), None, None]);
    }
}
