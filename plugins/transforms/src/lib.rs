//! Flow transforms that run on Arrow batches: `sample` (random, hash and
//! upscale, with provenance) and `select` (keep, drop, rename, constants).
//!
//! ```yaml
//! transforms:
//!   sampled: { type: sample, inputs: [flows], mode: hash, rate: 10 }
//!   billing: { type: sample, inputs: [sampled], mode: upscale }
//!   slim:    { type: select, inputs: [billing], keep: [exporter, in_if, bytes, bytes_raw] }
//! ```

#![forbid(unsafe_code)]

pub mod aggregate;
pub mod derive;
pub mod enrich_cidr;
pub mod filter;
pub mod sample;
pub mod select;
pub mod table;
