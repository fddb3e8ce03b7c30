//! `spillway top`: the status page's view in a terminal (ratatui), from the
//! admin endpoint's JSON (`/api/ledger`, `/api/exporters`,
//! `/health/ready`), refreshed every second: components with their rates
//! and drops, exporters with their rates and sequence loss. `q` quits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::widgets::{Block, Paragraph, Row, Table};

/// One GET to the admin endpoint: the body of a 200 (or of the readiness
/// probe's 503), or why not.
fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("{path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{path}: not an HTTP response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" && !(path == "/health/ready" && status == "503") {
        return Err(format!("{path}: HTTP {status}"));
    }
    Ok(body.to_string())
}

fn json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(&get(addr, path)?).map_err(|e| format!("{path}: {e}"))
}

/// What one refresh read.
struct Snapshot {
    at: Instant,
    ready: String,
    ledger: serde_json::Value,
    exporters: serde_json::Value,
}

fn read(addr: SocketAddr) -> Result<Snapshot, String> {
    Ok(Snapshot {
        at: Instant::now(),
        ready: get(addr, "/health/ready")?.trim().to_string(),
        ledger: json(addr, "/api/ledger")?,
        exporters: json(addr, "/api/exporters")?,
    })
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// `1234567` as `1,234,567`.
fn human(n: f64) -> String {
    let digits = (n.max(0.0).round() as u64).to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs until `q` (or Esc, or Ctrl-C).
pub fn run(addr: SocketAddr) -> Result<(), String> {
    // Fail before taking over the terminal when nothing answers.
    let mut now = read(addr)?;
    let mut error = String::new();
    let mut terminal = ratatui::init();
    let result = loop {
        let view = view(&now, addr, &error);
        if let Err(e) = terminal.draw(|f| view.draw(f)) {
            break Err(e.to_string());
        }
        let deadline = now.at + Duration::from_secs(1);
        let mut quit = false;
        while Instant::now() < deadline {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => {
                    if let Ok(Event::Key(k)) = event::read()
                        && k.kind == KeyEventKind::Press
                        && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                            || (k.code == KeyCode::Char('c')
                                && k.modifiers.contains(event::KeyModifiers::CONTROL)))
                    {
                        quit = true;
                        break;
                    }
                }
                Ok(false) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        if quit {
            break Ok(());
        }
        match read(addr) {
            Ok(s) => {
                now = s;
                error.clear();
            }
            Err(e) => error = format!("cannot reach {addr}: {e}"),
        }
    };
    ratatui::restore();
    result
}

/// The rows to draw.
struct View {
    title: String,
    components: Vec<[String; 7]>,
    exporters: Vec<[String; 7]>,
    footer: String,
}

fn view(now: &Snapshot, addr: SocketAddr, error: &str) -> View {
    // Rates come from the engine, which samples its counters every second.
    let rate = |v: &serde_json::Value| v["records_per_s"].as_f64().unwrap_or(0.0);
    let components = now.ledger["components"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let name = c["component"].as_str().unwrap_or("").to_string();
            let why: Vec<String> = c["dropped"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k} {}", u(v))).collect())
                .unwrap_or_default();
            [
                name,
                c["kind"].as_str().unwrap_or("").to_string(),
                human(rate(c)),
                human(u(&c["received"]) as f64),
                human(u(&c["emitted"]) as f64 + u(&c["delivered"]) as f64),
                human(u(&c["dropped_total"]) as f64),
                why.join(", "),
            ]
        })
        .collect();
    let mut exporters: Vec<(f64, [String; 7])> = Vec::new();
    for s in now.exporters["sources"].as_array().map(|a| a.as_slice()).unwrap_or_default() {
        for x in s["exporters"].as_array().map(|a| a.as_slice()).unwrap_or_default() {
            let records = u(&x["records"]);
            let missing = u(&x["sequence_missing"]);
            let r = rate(x);
            let loss =
                if records + missing > 0 { missing as f64 * 100.0 / (records + missing) as f64 } else { 0.0 };
            let sampling = match (x["sampling_rate"].as_u64(), x["sampling_source"].as_str()) {
                (Some(r), Some(src)) => format!("1:{r} ({src})"),
                (None, Some(src)) => format!("? ({src})"),
                _ => String::new(),
            };
            let st = &x["snmp"]["status"];
            let snmp = match st["ok"].as_bool() {
                None => String::new(),
                Some(ok) => {
                    let name = st["sys_name"].as_str().or(st["target"].as_str()).unwrap_or("");
                    if ok {
                        format!("{name} ok")
                    } else {
                        format!("{name} FAILING ({})", st["error_kind"].as_str().unwrap_or(""))
                    }
                }
            };
            exporters.push((
                r,
                [
                    x["exporter"].as_str().unwrap_or("").to_string(),
                    s["source"].as_str().unwrap_or("").to_string(),
                    human(r),
                    human(records as f64),
                    if missing > 0 { format!("{loss:.2}% LOSSY") } else { "0%".into() },
                    sampling,
                    snmp,
                ],
            ));
        }
    }
    // Busiest first; the lossy ones among equals.
    exporters.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1[0].cmp(&b.1[0])));
    View {
        title: format!(" spillway top — {addr} — {} ", now.ready),
        components,
        exporters: exporters.into_iter().map(|(_, r)| r).collect(),
        footer: if error.is_empty() { "q quits · refreshed every second".into() } else { error.to_string() },
    }
}

impl View {
    fn draw(&self, f: &mut ratatui::Frame) {
        let [top, bottom, foot] = Layout::vertical([
            Constraint::Length(self.components.len() as u16 + 3),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let components = Table::new(
            self.components.iter().map(|r| Row::new(r.clone())),
            [
                Constraint::Length(22),
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Length(12),
                Constraint::Length(12),
                Constraint::Length(10),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(["component", "kind", "records/s", "received", "passed on", "dropped", "why"])
                .style(bold),
        )
        .block(Block::bordered().title(self.title.clone()));
        f.render_widget(components, top);
        let exporters = Table::new(
            self.exporters.iter().map(|r| {
                let row = Row::new(r.clone());
                if r[4].contains("LOSSY") { row.yellow() } else { row }
            }),
            [
                Constraint::Length(26),
                Constraint::Length(16),
                Constraint::Length(12),
                Constraint::Length(12),
                Constraint::Length(16),
                Constraint::Length(20),
                Constraint::Min(12),
            ],
        )
        .header(
            Row::new(["exporter", "source", "records/s", "records", "sequence loss", "sampling", "SNMP"])
                .style(bold),
        )
        .block(Block::bordered().title(format!(" exporters ({}) ", self.exporters.len())));
        f.render_widget(exporters, bottom);
        f.render_widget(Paragraph::new(self.footer.clone()), foot);
    }
}
