//! One poll of one agent: sysName and sysUpTime, then a GETBULK walk of the
//! interface table columns, over the `snmp2` client.
//!
//! The columns are walked together: each GETBULK asks for the next
//! `max_repetitions` rows of every column not yet finished, so a device
//! with 10 interfaces and the default column set answers one request. An
//! agent that answers `tooBig` gets half the repetitions; one that does not
//! move forward (a broken agent returning the same OID) ends that column.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use snmp2::AsyncSession;
use snmp2::v3::{Auth, AuthProtocol, Cipher, Security};
use snmp2::{Oid, Value};

/// What to send as credentials.
#[derive(Clone, PartialEq)]
pub enum Credentials {
    /// SNMPv2c with a community.
    V2c { community: String },
    /// SNMPv3 USM.
    V3(V3Credentials),
}

impl std::fmt::Debug for Credentials {
    // Secrets never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::V2c { .. } => f.write_str("v2c"),
            Credentials::V3(v) => write!(f, "v3 user {} ({:?})", v.user, v.level),
        }
    }
}

/// SNMPv3 USM settings.
#[derive(Clone, PartialEq)]
pub struct V3Credentials {
    pub user: String,
    pub level: Level,
    pub auth_protocol: AuthProtocol,
    pub auth_password: String,
    pub priv_protocol: Cipher,
    pub priv_password: String,
}

/// USM security level (the RFC 3414 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub enum Level {
    NoAuthNoPriv,
    AuthNoPriv,
    AuthPriv,
}

impl V3Credentials {
    fn security(&self) -> Security {
        let auth = match self.level {
            Level::NoAuthNoPriv => Auth::NoAuthNoPriv,
            Level::AuthNoPriv => Auth::AuthNoPriv,
            Level::AuthPriv => Auth::AuthPriv {
                cipher: self.priv_protocol,
                privacy_password: self.priv_password.as_bytes().to_vec(),
            },
        };
        Security::new(self.user.as_bytes(), self.auth_password.as_bytes())
            .with_auth_protocol(self.auth_protocol)
            .with_auth(auth)
    }
}

/// Timing of requests.
#[derive(Debug, Clone, Copy)]
pub struct RequestOptions {
    /// Wait for one answer.
    pub timeout: Duration,
    /// Further tries after a timeout.
    pub retries: u32,
    /// Pause before the first retry, doubled for each next one.
    pub backoff: Duration,
    /// Rows asked for per column per GETBULK.
    pub max_repetitions: u32,
    /// Most interfaces (rows of any column) one poll may return.
    pub max_interfaces: usize,
    /// Most bytes of values one poll may return.
    pub max_bytes: usize,
    /// Longest one poll may take, all its requests and retries included.
    pub poll_timeout: Duration,
}

/// Why a poll failed.
#[derive(Debug, Clone, PartialEq)]
pub enum PollError {
    /// No answer in any try.
    Timeout(String),
    /// The agent rejected our credentials (SNMPv3), or we could not verify
    /// its answer.
    Auth(String),
    /// The network refused (nothing listens there, no route).
    Unreachable(String),
    /// The agent answered something we cannot use.
    Protocol(String),
    /// The agent's answer exceeded a bound of the poll (interfaces, bytes,
    /// time): an agent that never ends a walk costs no more than this.
    Limit(String),
}

impl PollError {
    /// A short label for metrics and the `health` output.
    pub fn kind(&self) -> &'static str {
        match self {
            PollError::Timeout(_) => "timeout",
            PollError::Auth(_) => "auth",
            PollError::Unreachable(_) => "unreachable",
            PollError::Protocol(_) => "protocol",
            PollError::Limit(_) => "limit",
        }
    }
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollError::Timeout(m)
            | PollError::Auth(m)
            | PollError::Unreachable(m)
            | PollError::Protocol(m)
            | PollError::Limit(m) => f.write_str(m),
        }
    }
}

/// A value read from the agent, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Int(i64),
    Unsigned(u64),
    Text(String),
}

impl Read {
    fn from_value(v: &Value<'_>) -> Option<Read> {
        Some(match v {
            Value::Integer(i) => Read::Int(*i),
            Value::Counter32(n) | Value::Unsigned32(n) | Value::Timeticks(n) => Read::Unsigned(*n as u64),
            Value::Counter64(n) => Read::Unsigned(*n),
            Value::OctetString(b) | Value::Opaque(b) => Read::Text(text(b)),
            Value::IpAddress(a) => Read::Text(std::net::Ipv4Addr::from(*a).to_string()),
            Value::ObjectIdentifier(o) => Read::Text(o.to_id_string()),
            Value::Boolean(b) => Read::Int(*b as i64),
            _ => return None,
        })
    }

    /// As an unsigned number, if it is one (a negative integer is not).
    pub fn unsigned(&self) -> Option<u64> {
        match self {
            Read::Unsigned(n) => Some(*n),
            Read::Int(i) => u64::try_from(*i).ok(),
            Read::Text(_) => None,
        }
    }

    /// As a signed number, if it is one.
    pub fn signed(&self) -> Option<i64> {
        match self {
            Read::Int(i) => Some(*i),
            Read::Unsigned(n) => i64::try_from(*n).ok(),
            Read::Text(_) => None,
        }
    }

    /// As text (numbers are written in decimal).
    /// What holding the value costs (its bytes and its place in a table).
    pub fn cost(&self) -> usize {
        match self {
            Read::Text(t) => 48 + t.len(),
            _ => 48,
        }
    }

    pub fn into_text(self) -> String {
        match self {
            Read::Text(s) => s,
            Read::Int(i) => i.to_string(),
            Read::Unsigned(n) => n.to_string(),
        }
    }
}

/// DisplayString is ASCII by definition; some devices put Latin-1 or
/// UTF-8 in ifAlias. Keep UTF-8, map other bytes one to one (Latin-1), and
/// drop a trailing NUL that some agents send.
fn text(b: &[u8]) -> String {
    let b = b.strip_suffix(&[0]).unwrap_or(b);
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => b.iter().map(|&c| c as char).collect(),
    }
}

/// What one poll read.
#[derive(Debug, Default)]
pub struct PollResult {
    pub sys_name: Option<String>,
    /// sysUpTime in centiseconds.
    pub sys_uptime: Option<u32>,
    /// Column position → ifIndex → value.
    pub columns: Vec<BTreeMap<u32, Read>>,
}

const SYS_NAME: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];
const SYS_UPTIME: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];

/// Requests one agent; owns the session and the retry policy.
struct Client {
    addr: SocketAddr,
    creds: Credentials,
    opts: RequestOptions,
    session: Option<AsyncSession>,
    requests: u32,
    req_id: i32,
    /// The session came from an earlier poll.
    reused: bool,
}

type Varbinds = Vec<(Vec<u64>, Option<Read>, bool)>; // oid, value, end-of-view

enum Request<'a> {
    Get(&'a [Oid<'static>]),
    Bulk(&'a [Oid<'static>], u32),
}

impl Request<'_> {
    fn name(&self) -> &'static str {
        match self {
            Request::Get(_) => "GET sysName/sysUpTime",
            Request::Bulk(..) => "GETBULK of the interface table",
        }
    }
}

impl Client {
    async fn open(&mut self) -> Result<(), PollError> {
        let mut s = match &self.creds {
            Credentials::V2c { community } => {
                AsyncSession::new_v2c(self.addr, community.as_bytes(), self.req_id).await
            }
            Credentials::V3(v) => AsyncSession::new_v3(self.addr, self.req_id, v.security()).await,
        }
        .map_err(|e| PollError::Unreachable(format!("cannot open a socket to {}: {e}", self.addr)))?;
        if matches!(self.creds, Credentials::V3(_)) {
            // Engine discovery: one round trip.
            self.requests += 1;
            match tokio::time::timeout(self.opts.timeout, s.init()).await {
                Err(_) => return Err(self.timeout_error("SNMPv3 engine discovery")),
                Ok(Err(e)) => return Err(self.classify(e)),
                Ok(Ok(())) => {}
            }
        }
        self.session = Some(s);
        self.reused = false;
        Ok(())
    }

    fn timeout_error(&self, what: &str) -> PollError {
        let tries = self.opts.retries + 1;
        let hint = match &self.creds {
            Credentials::V2c { .. } => {
                " (agents ignore a wrong community: check it, and that the agent runs)"
            }
            Credentials::V3(_) => "",
        };
        PollError::Timeout(format!(
            "{what}: no answer from {} in {tries} tries of {:?}{hint}",
            self.addr, self.opts.timeout
        ))
    }

    fn classify(&self, e: snmp2::Error) -> PollError {
        match e {
            snmp2::Error::AuthFailure(kind) => PollError::Auth(format!(
                "SNMPv3 authentication with {} failed ({kind}): check the user, protocols and passwords",
                self.addr
            )),
            snmp2::Error::Crypto(m) => {
                PollError::Auth(format!("SNMPv3 crypto error with {}: {m}", self.addr))
            }
            snmp2::Error::Receive | snmp2::Error::Send => PollError::Unreachable(format!(
                "{} refused the request (ICMP unreachable: nothing listens on that port, or no route)",
                self.addr
            )),
            other => PollError::Protocol(format!("unusable answer from {}: {other}", self.addr)),
        }
    }

    /// Sends one request with timeout, retries and backoff; returns the
    /// varbinds owned.
    async fn request(&mut self, req: &Request<'_>) -> Result<(u32, Varbinds), PollError> {
        let mut pause = self.opts.backoff;
        let mut auth_updates = 0;
        let mut attempt = 0;
        loop {
            if self.session.is_none() {
                self.open().await?;
            }
            let s = self.session.as_mut().expect("opened above");
            self.requests += 1;
            let fut = async {
                let pdu = match req {
                    Request::Get(oids) => {
                        let refs: Vec<&Oid<'_>> = oids.iter().collect();
                        s.get_many(&refs).await
                    }
                    Request::Bulk(oids, reps) => {
                        let refs: Vec<&Oid<'_>> = oids.iter().collect();
                        s.getbulk(&refs, 0, *reps).await
                    }
                }?;
                let status = pdu.error_status;
                let vbs: Varbinds = pdu
                    .varbinds
                    .map(|(oid, v)| {
                        let end = matches!(v, Value::EndOfMibView);
                        let read = match v {
                            Value::NoSuchObject
                            | Value::NoSuchInstance
                            | Value::EndOfMibView
                            | Value::Null => None,
                            ref v => Read::from_value(v),
                        };
                        (oid.iter().map(|i| i.collect()).unwrap_or_default(), read, end)
                    })
                    .collect();
                Ok::<_, snmp2::Error>((status, vbs))
            };
            match tokio::time::timeout(self.opts.timeout, fut).await {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(snmp2::Error::AuthUpdated)) if auth_updates < 3 => {
                    // The agent's clock was learned: repeat at once.
                    auth_updates += 1;
                }
                Ok(Err(e @ (snmp2::Error::RequestIdMismatch | snmp2::Error::CommunityMismatch))) => {
                    // A stray or late datagram: start over on a fresh socket.
                    self.session = None;
                    attempt += 1;
                    if attempt > self.opts.retries {
                        return Err(self.classify(e));
                    }
                }
                Ok(Err(e @ snmp2::Error::AuthFailure(_))) if self.reused => {
                    // A session kept from an earlier poll may be stale (the
                    // device was replaced or re-keyed): discover afresh once.
                    tracing::debug!(agent = %self.addr, error = %e, "kept SNMPv3 session refused; rediscovering");
                    self.reused = false;
                    self.session = None;
                }
                Ok(Err(e)) => return Err(self.classify(e)),
                Err(_) => {
                    // A late answer to this request must not be read as the
                    // answer to the next: the retry uses a fresh socket.
                    self.session = None;
                    attempt += 1;
                    if attempt > self.opts.retries {
                        return Err(self.timeout_error(req.name()));
                    }
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                }
            }
        }
    }
}

/// Polls one agent: the system values, then every column of `columns`
/// (base OIDs of interface table columns, indexed by ifIndex).
///
/// `session` is the SNMPv3 session kept from this target's last good poll:
/// reusing it saves the engine discovery round trip and, above all, the
/// RFC 3414 key localisation (a megabyte of hashing per password) on every
/// poll. It is handed back after a good SNMPv3 poll.
pub async fn poll(
    addr: SocketAddr,
    creds: &Credentials,
    opts: RequestOptions,
    columns: &[Oid<'static>],
    req_id: i32,
    session: Option<AsyncSession>,
) -> (u32, Option<AsyncSession>, Result<PollResult, PollError>) {
    let reused = session.is_some();
    let mut c = Client { addr, creds: creds.clone(), opts, session, requests: 0, req_id, reused };
    let r = match tokio::time::timeout(opts.poll_timeout, poll_with(&mut c, columns)).await {
        Ok(r) => r,
        Err(_) => Err(PollError::Limit(format!(
            "{addr}: the poll took longer than poll_timeout ({:?}); the agent's walk is too slow or does not end",
            opts.poll_timeout
        ))),
    };
    let keep = if r.is_ok() && matches!(creds, Credentials::V3(_)) { c.session.take() } else { None };
    (c.requests, keep, r)
}

async fn poll_with(c: &mut Client, columns: &[Oid<'static>]) -> Result<PollResult, PollError> {
    let mut out = PollResult { columns: vec![BTreeMap::new(); columns.len()], ..Default::default() };
    let sys = [Oid::from(SYS_NAME).expect("valid"), Oid::from(SYS_UPTIME).expect("valid")];
    let (status, vbs) = c.request(&Request::Get(&sys)).await?;
    if status == 0 {
        for (oid, v, _) in vbs {
            match (oid.as_slice(), v) {
                (SYS_NAME, Some(v)) => out.sys_name = Some(v.into_text()),
                (SYS_UPTIME, Some(Read::Unsigned(t))) => out.sys_uptime = Some(t as u32),
                _ => {}
            }
        }
    }
    let bases: Vec<Vec<u64>> =
        columns.iter().map(|o| o.iter().map(|i| i.collect()).unwrap_or_default()).collect();
    // Columns still walking: (position, where it is).
    let mut walking: Vec<(usize, Vec<u64>)> = bases.iter().cloned().enumerate().collect();
    let mut reps = c.opts.max_repetitions.max(1);
    let mut rounds = 0u32;
    let mut bytes = 0usize;
    while !walking.is_empty() {
        rounds += 1;
        if rounds > 100_000 {
            return Err(PollError::Protocol(format!("{}: the interface walk did not end", c.addr)));
        }
        let oids: Vec<Oid<'static>> = walking
            .iter()
            .map(|(_, at)| Oid::from(at).map_err(|_| PollError::Protocol(format!("bad OID {at:?}"))))
            .collect::<Result<_, _>>()?;
        let (status, vbs) = c.request(&Request::Bulk(&oids, reps)).await?;
        if status == 1 && reps > 1 {
            // tooBig: ask for fewer rows.
            reps /= 2;
            continue;
        }
        if status != 0 {
            return Err(PollError::Protocol(format!(
                "{} answered GETBULK with error-status {status} ({})",
                c.addr,
                error_status_name(status)
            )));
        }
        if vbs.is_empty() {
            return Err(PollError::Protocol(format!("{} answered GETBULK with no variables", c.addr)));
        }
        let n = walking.len();
        let mut done = vec![false; n];
        let mut moved = vec![false; n];
        for (k, (oid, value, end)) in vbs.into_iter().enumerate() {
            let i = k % n;
            if done[i] {
                continue;
            }
            let (col, at) = &mut walking[i];
            let base = &bases[*col];
            if end || !oid.starts_with(base) || oid.as_slice() <= at.as_slice() {
                done[i] = true;
                continue;
            }
            // One index component: the ifIndex. Anything deeper is not an
            // interface-table cell; skip past it.
            if oid.len() == base.len() + 1
                && let (Ok(idx), Some(v)) = (u32::try_from(oid[base.len()]), value)
            {
                bytes += v.cost();
                let cells = &mut out.columns[*col];
                cells.insert(idx, v);
                if cells.len() > c.opts.max_interfaces {
                    return Err(PollError::Limit(format!(
                        "{}: the agent returned more than max_interfaces ({}) interfaces",
                        c.addr, c.opts.max_interfaces
                    )));
                }
                if bytes > c.opts.max_bytes {
                    return Err(PollError::Limit(format!(
                        "{}: the agent returned more than max_poll_bytes ({} bytes)",
                        c.addr, c.opts.max_bytes
                    )));
                }
            }
            *at = oid;
            moved[i] = true;
        }
        let mut i = 0;
        walking.retain(|_| {
            let keep = !done[i] && moved[i];
            i += 1;
            keep
        });
    }
    Ok(out)
}

fn error_status_name(s: u32) -> &'static str {
    match s {
        1 => "tooBig",
        2 => "noSuchName",
        3 => "badValue",
        4 => "readOnly",
        5 => "genErr",
        6 => "noAccess",
        16 => "authorizationError",
        _ => "other",
    }
}
