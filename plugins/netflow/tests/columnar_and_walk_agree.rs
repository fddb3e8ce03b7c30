//! Data sets of fixed-length flow templates are filled column by column
//! (`Template::columnar`); every other set is walked record by record. The
//! two must append the same rows and count the same: on every corpus
//! capture, and on random v9 and IPFIX templates (random elements, reduced
//! and odd lengths, IPv4 and IPv6 addresses side by side, zeros where a
//! second field must not overwrite the first, ICMP beside destination
//! ports, each kind of time with and without a known boot time).

mod common;

use arrow::array::RecordBatch;
use spillway_core::schema::{Addr, flow_schema};
use spillway_netflow::capture;
use spillway_netflow::decode::{Decoder, DecoderConfig, Outcome};
use spillway_netflow::row::FlowBuilders;
use spillway_netflow::template::{FieldSpec, Template};

/// Decodes `msgs` with one decoder, columnar or not: every outcome, the
/// rows, the counters and the notices.
fn decode(msgs: &[(Addr, Vec<u8>)], columnar: bool) -> (Vec<Outcome>, RecordBatch, String) {
    let mut d = Decoder::new(DecoderConfig::default());
    d.set_columnar(columnar);
    let mut out = FlowBuilders::new(512);
    let mut batches = Vec::new();
    let mut outcomes = Vec::new();
    for (i, (exporter, m)) in msgs.iter().enumerate() {
        outcomes.push(d.decode(m, *exporter, 1_700_000_000_000_000_000 + i as i64, &mut out));
        if out.is_full() {
            batches.push(out.finish());
        }
    }
    batches.push(out.finish());
    let batch = arrow::compute::concat_batches(&flow_schema(), &batches).unwrap();
    let notices: Vec<_> = d.take_notices().collect();
    (outcomes, batch, format!("{:?} {notices:?}", d.stats))
}

fn assert_agree(what: &str, msgs: &[(Addr, Vec<u8>)]) -> usize {
    let (o1, b1, s1) = decode(msgs, true);
    let (o2, b2, s2) = decode(msgs, false);
    assert_eq!(o1, o2, "{what}: outcomes");
    assert_eq!(s1, s2, "{what}: counters and notices");
    assert_eq!(b1.num_rows(), b2.num_rows(), "{what}: rows");
    for (i, (a, b)) in b1.columns().iter().zip(b2.columns()).enumerate() {
        assert_eq!(a, b, "{what}: column {}", flow_schema().field(i).name());
    }
    b1.num_rows()
}

#[test]
fn every_corpus_capture_decodes_the_same_both_ways() {
    let Some(corpus) = common::corpus() else { return };
    let mut files = Vec::new();
    let mut dirs = vec![corpus.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() > 20, "the corpus's captures: {}", files.len());
    let mut rows = 0;
    for f in &files {
        let Ok((datagrams, _)) = capture::read_file(f) else { continue };
        let msgs: Vec<_> = datagrams.into_iter().map(|d| (Addr::from(d.src), d.payload)).collect();
        rows += assert_agree(&f.display().to_string(), &msgs);
    }
    assert!(rows > 10_000, "rows decoded from the corpus: {rows}");
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Elements a flow template may carry, with their usual lengths; 48 (a
/// sampler id) and 34 (a sampling interval) make a template that is walked.
const ELEMENTS: &[(u16, u16)] = &[
    (1, 8),
    (2, 8),
    (85, 8),
    (86, 8),
    (4, 1),
    (5, 1),
    (6, 1),
    (7, 2),
    (11, 2),
    (8, 4),
    (12, 4),
    (15, 4),
    (27, 16),
    (28, 16),
    (62, 16),
    (9, 1),
    (13, 1),
    (10, 4),
    (14, 4),
    (16, 4),
    (17, 4),
    (58, 2),
    (61, 1),
    (32, 2),
    (139, 2),
    (22, 4),
    (21, 4),
    (150, 4),
    (151, 4),
    (152, 8),
    (153, 8),
    (154, 8),
    (155, 8),
    (158, 4),
    (159, 4),
    (0x4321, 3),
    (48, 1),
    (34, 4),
];

fn random_template(rng: &mut Rng) -> Vec<FieldSpec> {
    let n = 1 + rng.below(18) as usize;
    (0..n)
        .map(|_| {
            let (id, natural) = ELEMENTS[rng.below(ELEMENTS.len() as u64) as usize];
            // Now and then a reduced, odd or wrong length.
            let len = match rng.below(8) {
                0 => 1 + rng.below(9) as u16,
                1 if natural == 4 || natural == 16 => 20 - natural,
                _ => natural,
            };
            FieldSpec { id, len, enterprise: 0 }
        })
        .collect()
}

/// Records of `fields`, each field zero a quarter of the time.
fn records(rng: &mut Rng, fields: &[FieldSpec], n: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for _ in 0..n {
        for f in fields {
            let zero = rng.below(4) == 0;
            for _ in 0..f.len {
                b.push(if zero { 0 } else { rng.next() as u8 });
            }
        }
    }
    b
}

fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut s = id.to_be_bytes().to_vec();
    s.extend_from_slice(&(body.len() as u16 + 4).to_be_bytes());
    s.extend_from_slice(body);
    s
}

fn template_body(id: u16, fields: &[FieldSpec]) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for f in fields {
        b.extend_from_slice(&f.id.to_be_bytes());
        b.extend_from_slice(&f.len.to_be_bytes());
    }
    b
}

/// A message of `version` (9 or 10) holding `sets`; v9's header uptime is
/// `uptime_ms` (0: not known).
fn message(version: u16, seq: u32, uptime_ms: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let mut m = version.to_be_bytes().to_vec();
    if version == 9 {
        m.extend_from_slice(&(sets.len() as u16).to_be_bytes());
        m.extend_from_slice(&uptime_ms.to_be_bytes());
        m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&7u32.to_be_bytes());
    } else {
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&7u32.to_be_bytes());
    }
    for s in sets {
        m.extend_from_slice(s);
    }
    if version == 10 {
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
    }
    m
}

#[test]
fn random_templates_decode_the_same_both_ways() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut columnar, mut walked, mut rows) = (0, 0, 0);
    for round in 0..400u32 {
        let version = if round % 2 == 0 { 9 } else { 10 };
        let exporter = Addr::from_v4_octets([192, 0, 2, (round % 200) as u8 + 1]);
        let mut msgs = Vec::new();
        // IPFIX exporters sometimes announce their boot time (options data
        // with systemInitTimeMilliseconds), which uptime times need.
        if version == 10 && rng.below(2) == 0 {
            let mut opt = 300u16.to_be_bytes().to_vec();
            opt.extend_from_slice(&[0, 2, 0, 1, 0, 149, 0, 4, 0, 160, 0, 8]);
            let mut data = 7u32.to_be_bytes().to_vec();
            data.extend_from_slice(&1_699_999_000_000u64.to_be_bytes());
            msgs.push((exporter, message(10, 0, 0, &[set(3, &opt), set(300, &data)])));
        }
        let uptime = if rng.below(4) == 0 { 0 } else { 86_400_000 + rng.below(1 << 30) as u32 };
        let mut templates = Vec::new();
        for k in 0..1 + rng.below(3) as u16 {
            let fields = random_template(&mut rng);
            let t = Template::new(fields.clone(), 0, &[]).expect("a template with fields");
            if t.columnar.is_some() {
                columnar += 1
            } else {
                walked += 1
            }
            templates.push((256 + k, fields));
        }
        let tsets: Vec<_> = templates
            .iter()
            .map(|(id, f)| set(if version == 9 { 0 } else { 2 }, &template_body(*id, f)))
            .collect();
        msgs.push((exporter, message(version, 1, uptime, &tsets)));
        for seq in 2..6 {
            let sets: Vec<_> = templates
                .iter()
                .map(|(id, f)| {
                    let n = 1 + rng.below(30) as usize;
                    let mut body = records(&mut rng, f, n);
                    // Padding shorter than a record.
                    let len: usize = f.iter().map(|f| f.len as usize).sum();
                    body.extend(std::iter::repeat_n(0, rng.below(len as u64) as usize));
                    set(*id, &body)
                })
                .collect();
            msgs.push((exporter, message(version, seq, uptime, &sets)));
        }
        rows += assert_agree(&format!("round {round} (v{version}, templates {templates:?})"), &msgs);
    }
    assert!(columnar > 300 && walked > 100, "columnar templates {columnar}, walked {walked}");
    assert!(rows > 10_000, "rows: {rows}");
}
