//! The `parquet` sink: Arrow batches into zstd-compressed Parquet files,
//! rotated by rows, bytes and age, in Hive-style time partitions.
//!
//! ```yaml
//! sinks:
//!   archive:
//!     type: parquet
//!     inputs: [flows]
//!     path: ./data/flows
//!     partition: "dt=%Y-%m-%d/hour=%H"
//!     rotate: { max_age: 5m, max_bytes: 256MiB }
//! ```
//!
//! Durability: a file is written under a hidden temporary name, `fsync`ed,
//! renamed to its final `*.parquet` name and its directory `fsync`ed; only
//! then are its records counted as delivered and their acknowledgements
//! settled. A reader never sees a partial file, and a crash never leaves a
//! corrupt one under a final name. Temporary files left by a crash are moved
//! to `<path>/_incomplete/` at the next start (see [`recover`]).

#![forbid(unsafe_code)]

mod encode;
#[doc(hidden)]
pub mod file;
mod partition;
mod recover;
mod sink;

pub use recover::{INCOMPLETE_DIR, TMP_SUFFIX, recover};
pub use sink::{AddressForm, IntegerEncoding, ParquetConfig, Rotate};
