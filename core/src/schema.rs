//! The normalized flow schema, as the engine uses it: the definition lives
//! in the `spillway-schema` crate (shared with the Kafka codec and the plugin
//! SDK); here it is an Arrow `SchemaRef` built once, beside the address
//! representation used inside the engine.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::SchemaRef;

pub use crate::addr::Addr;
pub use spillway_schema::{
    ADDR_LEN, COLUMNS, Column, ColumnType, SamplingSource, address_type, column, names, timestamp_type,
};

/// The normalized flow schema (DESIGN.md, "The flow schema"; the columns
/// are [`COLUMNS`]), built once.
pub fn flow_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA.get_or_init(|| Arc::new(spillway_schema::flow_schema())).clone()
}
