//! Spillway's engine.
//!
//! A pipeline file wires sources through transforms into sinks. This crate
//! knows nothing of any particular component: it provides the [`Batch`]
//! that flows between them (an Arrow `RecordBatch` with metadata and
//! acknowledgement handles), the [`ledger`] that accounts for every record,
//! the [`config`] loader that validates a whole pipeline before anything
//! starts, the [`registry`] through which plugin crates make their components
//! known, and the [`topology`] runner.
//!
//! ```
//! use spillway_core::config;
//! // No component types are registered in this doctest, so `demo` is unknown;
//! // the error says where.
//! let errors = config::load_str(
//!     "sources:\n  s:\n    type: demo\n",
//!     &|_| None,
//!     std::path::Path::new("."),
//! )
//! .unwrap_err();
//! let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
//! assert!(text.contains(&"3:11: sources.s.type: unknown source type `demo`".to_string()), "{text:?}");
//! ```

#![forbid(unsafe_code)]

pub mod ack;
pub mod addr;
pub mod admin;
pub mod batch;
pub mod channel;
pub mod component;
pub mod config;
pub mod disk_buffer;
pub mod events;
pub mod exporters;
pub mod health;
pub mod human;
pub mod journal;
pub mod ledger;
pub mod metrics;
pub mod rand;
pub mod registry;
pub mod schema;
pub mod topology;

pub use batch::{Batch, BatchMeta};

#[doc(hidden)]
pub use inventory;
