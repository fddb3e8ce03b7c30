//! `blackhole` sink: counts and acknowledges everything; for benches.

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::Deserialize;
use spillway_core::ack::AckStatus;
use spillway_core::component::{ComponentError, Sink, SinkContext, SinkInput};
use spillway_core::registry::{BuildContext, BuildError, SinkConfig};

/// Config of the `blackhole` sink (it has no options).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

impl SinkConfig for BlackholeConfig {
    fn build(&self, _cx: &BuildContext, _input: &SchemaRef) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(Blackhole))
    }
}

spillway_core::register_sink! {
    config: BlackholeConfig,
    name: "blackhole",
    description: "Counts records as delivered and discards them; for benchmarks and trials.",
    example: "type: blackhole\ninputs: [flows]\n",
}

struct Blackhole;

#[async_trait]
impl Sink for Blackhole {
    async fn run(self: Box<Self>, mut input: SinkInput, cx: SinkContext) -> Result<(), ComponentError> {
        while let Some(batch) = input.recv().await {
            cx.events.delivered(batch.rows() as u64);
            batch.acks.settle(AckStatus::Delivered);
        }
        Ok(())
    }
}
