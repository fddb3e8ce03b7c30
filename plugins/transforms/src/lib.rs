//! Flow transforms that run on Arrow batches, one module each:
//! `sample` (random, hash and upscale, with provenance), `filter` (a
//! condition compiled to Arrow kernels), `select` (keep, drop, rename,
//! constants), `aggregate` (tumbling windows, sums by key), `enrich_cidr`
//! (longest-prefix match against a CIDR list), and `table` (a `table` sink
//! that keeps the latest row per key, read by the `enrich` transform: the
//! SNMP interface-name join). `derive` holds the computed columns of
//! `select` (a condition, or one arithmetic operation).
//!
//! ```yaml
//! transforms:
//!   sampled: { type: sample, inputs: [flows], mode: hash, rate: 10 }
//!   billing: { type: sample, inputs: [sampled], mode: upscale }
//!   slim:    { type: select, inputs: [billing], keep: [exporter, in_if, bytes, bytes_raw] }
//! ```

// Unsafe code only where a module needs it (geoip maps its databases),
// allowed per function with a SAFETY comment.
#![deny(unsafe_code)]

pub mod aggregate;
pub mod derive;
pub mod enrich_cidr;
pub mod filter;
pub mod geoip;
pub mod sample;
pub mod select;
pub mod table;
