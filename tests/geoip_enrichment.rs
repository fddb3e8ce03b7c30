//! The `geoip` transform against databases the test writes with PyPI's
//! mmdb-writer: every row of a replayed capture (IPv4 and IPv6) enriched
//! exactly as MaxMind's own Python reader answers for its addresses, misses
//! null, written to Parquet and read back by DuckDB; and a database replaced
//! while the pipeline runs, taking effect between batches.

mod common;

use std::path::Path;
use std::time::Duration;

/// Writes a City database and an ASN database into `dir`; `country` is
/// what 192.0.2.0/24 is in (the reload test changes it).
fn write_databases(dir: &Path, city: &Path, country: &str) {
    common::run_python(
        r#"
import sys
from netaddr import IPSet
from mmdb_writer import MMDBWriter
city_path, asn_path, country = sys.argv[1], sys.argv[2], sys.argv[3]
w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type='GeoLite2-City', languages=['en'], int_type='u32')
w.insert_network(IPSet(['10.0.0.0/9']), {'country': {'iso_code': 'DE'}, 'city': {'names': {'en': 'Berlin'}}})
w.insert_network(IPSet(['192.0.2.0/24']), {'country': {'iso_code': country}, 'city': {'names': {'en': 'Paris' if country == 'FR' else 'Madrid'}}})
w.insert_network(IPSet(['2001:db8::/33']), {'country': {'iso_code': 'NL'}, 'city': {'names': {'en': 'Amsterdam'}}})
w.insert_network(IPSet(['2001:db8:8000::/33']), {'country': {'iso_code': 'BE'}})
w.to_db_file(city_path)
a = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type='GeoLite2-ASN', int_type='u32')
a.insert_network(IPSet(['10.0.0.0/8']), {'autonomous_system_number': 64500, 'autonomous_system_organization': 'Example Net'})
a.insert_network(IPSet(['2001:db8::/32']), {'autonomous_system_number': 64501, 'autonomous_system_organization': 'Doc Six'})
a.to_db_file(asn_path)
"#,
        &[city.to_str().unwrap(), dir.join("asn.mmdb").to_str().unwrap(), country],
    );
}

fn have_writer() -> bool {
    let ok = std::process::Command::new(common::python())
        .args(["-c", "import mmdb_writer, maxminddb, netaddr, duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    common::require("python3 with mmdb-writer, maxminddb and duckdb (PyPI)", ok)
}

#[test]
fn a_replayed_capture_is_enriched_as_maxminds_reader_answers_v4_and_v6() {
    let Some(corpus) = common::corpus() else { return };
    if !have_writer() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let city = dir.path().join("city.mmdb");
    write_databases(dir.path(), &city, "FR");
    let capture = corpus.join("softflowd/v10/export_v10.pcap");
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  replay: {{ type: pcap, path: \"{}\" }}\n\
             transforms:\n  geo: {{ type: geoip, inputs: [replay], fields: [src_addr, dst_addr], geo: ./city.mmdb, asn: ./asn.mmdb }}\n\
             sinks:\n  out: {{ type: parquet, inputs: [geo], path: ./data }}\n",
            capture.display()
        ),
    );
    let (out, ledger) = common::run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", common::text(&out));
    common::assert_balanced(&ledger);
    // DuckDB reads what we wrote; MaxMind's reader says what it should be.
    let report = common::run_python(
        r#"
import sys, duckdb, maxminddb
d = sys.argv[1]
city, asn = maxminddb.open_database(d + '/city.mmdb'), maxminddb.open_database(d + '/asn.mmdb')
rows = duckdb.sql(f"select src_addr, dst_addr, src_addr_country, src_addr_city, src_addr_asn, src_addr_as_org, "
                  f"dst_addr_country, dst_addr_city, dst_addr_asn, dst_addr_as_org from read_parquet('{d}/data/**/*.parquet')").fetchall()
def want(ip):
    c, a = city.get(ip), asn.get(ip)
    return ((c or {}).get('country', {}).get('iso_code'), (c or {}).get('city', {}).get('names', {}).get('en'),
            (a or {}).get('autonomous_system_number'), (a or {}).get('autonomous_system_organization'))
bad, seen, v6, hits = 0, set(), 0, 0
for r in rows:
    for ip, got in ((r[0], r[2:6]), (r[1], r[6:10])):
        if tuple(got) != want(ip):
            bad += 1
            if bad < 5: print('MISMATCH', ip, got, want(ip))
        seen.add(got[0]); v6 += ':' in ip; hits += got[0] is not None
print(len(rows), bad, v6, hits, ','.join(sorted(str(s) for s in seen)))
"#,
        &[dir.path().to_str().unwrap()],
    );
    let last = report.lines().last().unwrap();
    let f: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(f[0], "4047", "{report}");
    assert_eq!(f[1], "0", "rows differing from maxminddb's answers: {report}");
    assert!(f[2].parse::<u64>().unwrap() > 100, "IPv6 addresses looked up: {report}");
    assert!(f[3].parse::<u64>().unwrap() > 100, "addresses found: {report}");
    // Every kind of answer occurred: each country, and misses.
    assert_eq!(f[4], "BE,DE,FR,NL,None", "{report}");
}

/// A NetFlow v5 packet with one record from `src` to destination port `port`.
fn v5(src: [u8; 4], port: u16, seq: u32) -> Vec<u8> {
    let mut p = vec![0u8; 24 + 48];
    p[1] = 5;
    p[3] = 1;
    p[16..20].copy_from_slice(&seq.to_be_bytes());
    let r = 24;
    p[r..r + 4].copy_from_slice(&src);
    p[r + 4..r + 8].copy_from_slice(&[10, 200, 0, 1]);
    p[r + 16..r + 20].copy_from_slice(&1u32.to_be_bytes());
    p[r + 20..r + 24].copy_from_slice(&100u32.to_be_bytes());
    p[r + 34..r + 36].copy_from_slice(&port.to_be_bytes());
    p[r + 38] = 17;
    p
}

#[test]
fn a_database_renamed_over_the_old_one_is_used_from_the_next_batch() {
    if !have_writer() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let city = dir.path().join("city.mmdb");
    write_databases(dir.path(), &city, "FR");
    let port = common::free_udp_port();
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 1, flush_interval: 20ms }}\n\
             transforms:\n  geo: {{ type: geoip, inputs: [flows], fields: [src_addr], geo: ./city.mmdb, reload_interval: 100ms }}\n\
             sinks:\n  out: {{ type: parquet, inputs: [geo], path: ./data }}\n"
        ),
    );
    let g = common::Guard::run(
        dir.path(),
        &p,
        &["--ledger-json", dir.path().join("ledger.json").to_str().unwrap()],
    );
    assert!(g.wait_for("listening for NetFlow/IPFIX", Duration::from_secs(30)));
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..5 {
        s.send_to(&v5([192, 0, 2, 7], 1, i), ("127.0.0.1", port)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    // A new version beside it, renamed over the old (as geoipupdate does).
    let next = dir.path().join("city.mmdb.new");
    write_databases(dir.path(), &next, "ES");
    std::fs::rename(&next, &city).unwrap();
    assert!(
        g.wait_for("GeoIP database reloaded", Duration::from_secs(10)),
        "the new database was never loaded"
    );
    for i in 5..10 {
        s.send_to(&v5([192, 0, 2, 7], 2, i), ("127.0.0.1", port)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    common::signal(g.id(), "TERM");
    let out = g.wait();
    assert!(out.status.success(), "{}", common::text(&out));
    let got = common::run_python(
        "import sys, duckdb\nprint(duckdb.sql(f\"select dst_port, src_addr_country, src_addr_city, count(*) from read_parquet('{sys.argv[1]}/**/*.parquet') group by all order by 1\").fetchall())",
        &[dir.path().join("data").to_str().unwrap()],
    );
    assert_eq!(got.trim(), "[(1, 'FR', 'Paris', 5), (2, 'ES', 'Madrid', 5)]");
}
