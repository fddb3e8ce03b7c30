//! Damaged captures never fail a replay: a record whose microseconds field
//! is out of range is read as tshark reads it, a record cut off at any byte
//! is counted and the rest decodes, and a pcapng block that cannot be read
//! is skipped and counted while the blocks after it decode.

mod common;

use spillway_netflow::capture::{self, Skipped};

/// The frames of a corpus capture (pcapng, nanosecond timestamps), with
/// their timestamps (s, µs).
fn frames(path: &std::path::Path) -> Vec<(u32, u32, Vec<u8>)> {
    let mut r = pcap_file::pcapng::PcapNgReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(b) = r.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(p) = b.unwrap() {
            // if_tsresol is 9 in these files: the crate's Duration is exact.
            out.push((p.timestamp.as_secs() as u32, p.timestamp.subsec_micros(), p.data.to_vec()));
        }
    }
    out
}

/// A classic little-endian microsecond pcap of Ethernet frames; the offset
/// where each record starts.
fn pcap(frames: &[(u32, u32, Vec<u8>)]) -> (Vec<u8>, Vec<usize>) {
    let mut b = Vec::new();
    {
        let v = 0xa1b2_c3d4u32;
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    let mut starts = Vec::new();
    for (s, us, data) in frames {
        starts.push(b.len());
        for v in [*s, *us, data.len() as u32, data.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(data);
    }
    (b, starts)
}

fn block(ty: u32, body: &[u8]) -> Vec<u8> {
    let pad = (4 - body.len() % 4) % 4;
    let len = (12 + body.len() + pad) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.extend(std::iter::repeat_n(0, pad));
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// A little-endian pcapng (one Ethernet interface, µs timestamps) written
/// from the format's definition; the offset of each packet block.
fn pcapng(frames: &[(u32, u32, Vec<u8>)]) -> (Vec<u8>, Vec<usize>) {
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut b = block(0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&0u32.to_le_bytes());
    b.extend(block(1, &idb));
    let mut starts = Vec::new();
    for (s, us, data) in frames {
        let ts = *s as u64 * 1_000_000 + *us as u64;
        let mut epb = Vec::new();
        for v in [0u32, (ts >> 32) as u32, ts as u32, data.len() as u32, data.len() as u32] {
            epb.extend_from_slice(&v.to_le_bytes());
        }
        epb.extend_from_slice(data);
        starts.push(b.len());
        b.extend(block(6, &epb));
    }
    (b, starts)
}

fn corpus_frames() -> Option<Vec<(u32, u32, Vec<u8>)>> {
    let corpus = common::corpus()?;
    Some(frames(&corpus.join("softflowd/v9/export_v9.pcap")))
}

#[test]
fn microseconds_out_of_range_are_carried_into_the_seconds() {
    let Some(mut f) = corpus_frames() else { return };
    let n = f.len();
    f[1].1 = 1_000_000;
    f[2].1 = 1_250_000;
    let (bytes, _) = pcap(&f);
    let (datagrams, skipped) = capture::read_bytes(&bytes).unwrap();
    assert_eq!((datagrams.len(), skipped), (n, Skipped::default()));
    assert_eq!(datagrams[1].time_ns, (f[1].0 as i64 + 1) * 1_000_000_000);
    assert_eq!(datagrams[2].time_ns, (f[2].0 as i64 + 1) * 1_000_000_000 + 250_000_000);
    // tshark reads the same records at the same times.
    let (_dir, path) = write_temp(&bytes);
    let Some(out) =
        common::tool("tshark", &["-r", path.to_str().unwrap(), "-T", "fields", "-e", "frame.time_epoch"])
    else {
        return;
    };
    let theirs: Vec<i64> = out
        .lines()
        .map(|l| {
            // tshark prints the nanoseconds as they are, so an out-of-range
            // fraction shows as 10 digits (`.1000000000` is a whole second).
            let (s, frac) = l.trim().split_once('.').unwrap();
            s.parse::<i64>().unwrap() * 1_000_000_000 + format!("{frac:0<9}").parse::<i64>().unwrap()
        })
        .collect();
    let ours: Vec<i64> = datagrams.iter().map(|d| d.time_ns).collect();
    assert_eq!(ours, theirs);
}

fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("damaged.pcap");
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

#[test]
fn a_record_cut_at_any_byte_is_counted_and_the_rest_decodes() {
    let Some(f) = corpus_frames() else { return };
    let n = f.len();
    for (make, name) in
        [(pcap as fn(&[(u32, u32, Vec<u8>)]) -> (Vec<u8>, Vec<usize>), "pcap"), (pcapng, "pcapng")]
    {
        let (bytes, starts) = make(&f);
        let last = starts[n - 1];
        for cut in last + 1..bytes.len() {
            let (datagrams, skipped) = capture::read_bytes(&bytes[..cut]).unwrap();
            assert_eq!(datagrams.len(), n - 1, "{name} cut at {cut}");
            assert_eq!(skipped.truncated, 1, "{name} cut at {cut}: {skipped:?}");
            assert_eq!(skipped.lost(), 1);
        }
        let (datagrams, skipped) = capture::read_bytes(&bytes[..last]).unwrap();
        assert_eq!(
            (datagrams.len(), skipped.lost()),
            (n - 1, 0),
            "{name}: a cut between records loses nothing"
        );
    }
}

#[test]
fn a_corrupt_pcapng_block_is_skipped_and_the_blocks_after_it_decode() {
    let Some(f) = corpus_frames() else { return };
    let n = f.len();
    let (mut bytes, starts) = pcapng(&f);
    // Block 10: its trailing length no longer matches (framing broken: the
    // reader must find the next block). Block 20: its captured length runs
    // past the block (framing fine, content broken).
    let end10 = starts[11] - 4;
    bytes[end10] ^= 0x40;
    let caplen20 = starts[20] + 8 + 12;
    bytes[caplen20..caplen20 + 4].copy_from_slice(&60_000u32.to_le_bytes());
    let (datagrams, skipped) = capture::read_bytes(&bytes).unwrap();
    assert_eq!(skipped.damaged, 2, "{skipped:?}");
    assert_eq!(datagrams.len(), n - 2);
    let (whole, _) = capture::read_bytes(&pcapng(&f).0).unwrap();
    let mut expected = whole.clone();
    expected.remove(20);
    expected.remove(10);
    assert_eq!(datagrams, expected, "every other datagram, in order, with its time");
    // The time of a pcapng packet is read at the interface's resolution (µs).
    assert_eq!(whole[0].time_ns, f[0].0 as i64 * 1_000_000_000 + f[0].1 as i64 * 1000);
}
