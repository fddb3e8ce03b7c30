//! A fixed decode workload for instruction counting, which is repeatable on
//! a shared machine where timings are not:
//!
//! ```text
//! cargo build --release -p spillway-netflow --example decode_loop
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/decode_loop 9 1   # then with 3 rounds
//! ```
//!
//! The difference between the totals of 3 rounds and 1 round, over twice
//! the records a round decodes, is the steady-state instructions per
//! record (generating the messages and the first round's warm-up cancel
//! out). Arguments: NetFlow version (5, 9 or 10), rounds.

use spillway_core::addr::Addr;
use spillway_netflow::decode::{Decoder, DecoderConfig};
use spillway_netflow::generate;
use spillway_netflow::row::FlowBuilders;

fn main() {
    let mut args = std::env::args().skip(1);
    let version: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let msgs = generate::messages(version, 100, 2000, 30, 7);
    let exporters: Vec<Addr> =
        (0..100).map(|i| Addr::from(std::net::IpAddr::V4(generate::exporter_addr(i)))).collect();
    let mut d = Decoder::new(DecoderConfig::default());
    let mut out = FlowBuilders::new(8192);
    let mut records = 0u64;
    for _ in 0..rounds {
        for (e, m) in &msgs {
            records += d.decode(m, exporters[*e as usize], 0, &mut out).records;
            if out.is_full() {
                std::hint::black_box(out.finish());
            }
        }
    }
    std::hint::black_box(out.finish());
    println!("v{version}: {records} records in {rounds} rounds");
}
