//! NetFlow v5, v9 and IPFIX collection.
//!
//! - [`decode::Decoder`]: messages into flow-schema column buffers, with
//!   bounded per-exporter [`state`] (templates, sampling, sequence
//!   positions) and data parked until its template arrives.
//! - [`packet`]: packet headers (Ethernet, VLAN, MPLS, IP, TCP/UDP/ICMP) for
//!   IPFIX PSAMP packet sections.
//! - `netflow` source: UDP, several `SO_REUSEPORT` sockets, `recvmmsg`.
//! - `pcap` source: replays captures through the same decoder.
//! - [`sflow`]: sFlow v5 datagrams (the `sflow` source, and in captures).
//! - [`generate`]: a load generator speaking real v5/v9/IPFIX.
//! - [`relay`]: the relay tier's edge (datagrams as records, not decoded);
//!   `netflow_decode` ([`decode_transform`]) decodes them behind Kafka.
//! - [`shared_state`]: templates and sampling state shared between workers,
//!   collectors of a host (a directory) and a fleet (a compacted Kafka topic).

#![deny(unsafe_code)]

pub mod capture;
pub mod collector;
pub mod completeness;
pub mod decode;
pub mod decode_transform;
pub mod generate;
pub mod iana;
pub mod journaled;
pub mod packet;
pub mod pcap_source;
pub mod quickstart;
pub mod recv;
pub mod relay;
pub mod row;
pub mod sequence;
pub mod sflow;
pub mod shared_state;
pub mod state;
pub mod template;
pub mod udp;
