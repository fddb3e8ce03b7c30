//! A plugin that misbehaves on purpose, chosen by its config, for the
//! host's tests: `loop`, `bomb`, `panic`, `error`, `wrong_schema`, and
//! `identity` (for measuring the plugin boundary), and
//! `panic_on_port` (fails only on batches whose first record has that
//! destination port, so instances must be recreated and carry on).

use spillway_sdk::{FlowBatch, Result, transform};

#[derive(serde::Deserialize)]
pub struct Config {
    mode: String,
    #[serde(default)]
    port: u16,
}

#[transform]
pub fn process(batch: FlowBatch, cfg: &Config) -> Result<FlowBatch> {
    if batch.is_empty() {
        return Ok(batch); // init's probe: behave
    }
    match cfg.mode.as_str() {
        "loop" => {
            let mut x: u64 = 1;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("the hostile plugin panics on purpose"),
        "error" => Err("the hostile plugin refuses this batch".into()),
        "identity" => Ok(batch),
        "wrong_schema" => batch.with_column("surprise", |_| 1u64),
        "panic_on_port" => {
            if batch.get(0).dst_port() == Some(cfg.port) {
                panic!("port {} in the first record", cfg.port);
            }
            Ok(batch)
        }
        other => Err(format!("unknown mode {other}").into()),
    }
}
