//! Components for trying pipelines, testing and benchmarking: the `demo`
//! source and the `file`, `stdout` and `blackhole` sinks.
//!
//! ```yaml
//! sources:
//!   flows: { type: demo, count: 1000, seed: 7 }
//! sinks:
//!   out: { type: stdout, inputs: [flows] }
//! ```

#![forbid(unsafe_code)]

pub mod blackhole;
pub mod demo;
pub mod text;
