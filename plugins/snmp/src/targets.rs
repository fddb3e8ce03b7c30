//! Targets: what to poll, where, with which credentials — from the pipeline
//! file, from a CSV or YAML file, or discovered from flow exporters.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use snmp2::v3::{AuthProtocol, Cipher};

use crate::walk::{Credentials, Level, V3Credentials};

/// SNMP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Version {
    #[serde(rename = "v2c", alias = "2c", alias = "2")]
    V2c,
    #[serde(rename = "v3", alias = "3")]
    V3,
}

/// SNMPv3 settings as written in a config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct V3Config {
    /// USM user name.
    #[serde(default)]
    pub user: Option<String>,
    /// `auth_priv`, `auth_no_priv` or `no_auth_no_priv`; by default what
    /// the passwords given allow.
    #[serde(default)]
    pub level: Option<String>,
    /// md5, sha (SHA-1), sha224, sha256, sha384, sha512. Default sha.
    #[serde(default)]
    pub auth_protocol: Option<String>,
    #[serde(default)]
    pub auth_password: Option<String>,
    /// des, aes (AES-128), aes192, aes256. Default aes.
    #[serde(default)]
    pub priv_protocol: Option<String>,
    #[serde(default)]
    pub priv_password: Option<String>,
}

impl V3Config {
    /// Fields set here win over `base`.
    pub fn over(&self, base: &V3Config) -> V3Config {
        V3Config {
            user: self.user.clone().or_else(|| base.user.clone()),
            level: self.level.clone().or_else(|| base.level.clone()),
            auth_protocol: self.auth_protocol.clone().or_else(|| base.auth_protocol.clone()),
            auth_password: self.auth_password.clone().or_else(|| base.auth_password.clone()),
            priv_protocol: self.priv_protocol.clone().or_else(|| base.priv_protocol.clone()),
            priv_password: self.priv_password.clone().or_else(|| base.priv_password.clone()),
        }
    }

    /// The USM credentials, or what is missing.
    pub fn resolve(&self) -> Result<V3Credentials, String> {
        let user = self.user.clone().ok_or("SNMPv3 needs `v3.user`")?;
        let auth_protocol = match self.auth_protocol.as_deref().unwrap_or("sha").to_ascii_lowercase().as_str()
        {
            "md5" => AuthProtocol::Md5,
            "sha" | "sha1" | "sha-1" => AuthProtocol::Sha1,
            "sha224" | "sha-224" => AuthProtocol::Sha224,
            "sha256" | "sha-256" => AuthProtocol::Sha256,
            "sha384" | "sha-384" => AuthProtocol::Sha384,
            "sha512" | "sha-512" => AuthProtocol::Sha512,
            other => {
                return Err(format!(
                    "unknown auth_protocol `{other}` (md5, sha, sha224, sha256, sha384, sha512)"
                ));
            }
        };
        let priv_protocol = match self.priv_protocol.as_deref().unwrap_or("aes").to_ascii_lowercase().as_str()
        {
            "des" => Cipher::Des,
            "aes" | "aes128" | "aes-128" => Cipher::Aes128,
            "aes192" | "aes-192" => Cipher::Aes192,
            "aes256" | "aes-256" => Cipher::Aes256,
            other => return Err(format!("unknown priv_protocol `{other}` (des, aes, aes192, aes256)")),
        };
        let level = match self.level.as_deref().map(|l| l.to_ascii_lowercase().replace(['-', '_'], "")) {
            Some(l) if l == "authpriv" => Level::AuthPriv,
            Some(l) if l == "authnopriv" => Level::AuthNoPriv,
            Some(l) if l == "noauthnopriv" => Level::NoAuthNoPriv,
            Some(_) => {
                return Err(format!(
                    "unknown level `{}` (auth_priv, auth_no_priv, no_auth_no_priv)",
                    self.level.as_deref().unwrap_or_default()
                ));
            }
            None if self.priv_password.is_some() => Level::AuthPriv,
            None if self.auth_password.is_some() => Level::AuthNoPriv,
            None => Level::NoAuthNoPriv,
        };
        let auth_password = self.auth_password.clone().unwrap_or_default();
        let priv_password = self.priv_password.clone().unwrap_or_default();
        if level != Level::NoAuthNoPriv && auth_password.len() < 8 {
            return Err("`v3.auth_password` must have at least 8 characters (RFC 3414)".into());
        }
        if level == Level::AuthPriv && priv_password.len() < 8 {
            return Err("`v3.priv_password` must have at least 8 characters (RFC 3414)".into());
        }
        Ok(V3Credentials { user, level, auth_protocol, auth_password, priv_protocol, priv_password })
    }
}

/// Credentials as written: each field may be left to a default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CredentialConfig {
    #[serde(default)]
    pub version: Option<Version>,
    #[serde(default)]
    pub community: Option<String>,
    #[serde(default)]
    pub v3: Option<V3Config>,
}

impl CredentialConfig {
    /// These settings over `base` (the source's defaults).
    pub fn resolve(&self, base: &CredentialConfig) -> Result<Credentials, String> {
        let v3 = match (&self.v3, &base.v3) {
            (Some(a), Some(b)) => Some(a.over(b)),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        let version =
            self.version.or(if self.v3.is_some() { Some(Version::V3) } else { None }).or(base.version);
        let version = version.unwrap_or(if v3.is_some() { Version::V3 } else { Version::V2c });
        match version {
            Version::V2c => Ok(Credentials::V2c {
                community: self
                    .community
                    .clone()
                    .or_else(|| base.community.clone())
                    .unwrap_or_else(|| "public".into()),
            }),
            Version::V3 => v3
                .ok_or_else(|| "version v3 needs a `v3` section".to_string())?
                .resolve()
                .map(Credentials::V3),
        }
    }
}

/// A target as written in the pipeline or a targets file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The agent's IP address.
    pub address: IpAddr,
    /// The agent's UDP port (default: the source's `port`).
    #[serde(default)]
    pub port: Option<u16>,
    /// The target's name in records and metrics (default: the address).
    #[serde(default)]
    pub name: Option<String>,
    /// The flow exporter address this device uses, for joins with flows
    /// (default: `address`).
    #[serde(default)]
    pub exporter: Option<IpAddr>,
    /// Overrides of the source's default credentials.
    #[serde(default)]
    pub version: Option<Version>,
    #[serde(default)]
    pub community: Option<String>,
    #[serde(default)]
    pub v3: Option<V3Config>,
}

/// A flat target row of a CSV file (empty cells are unset).
#[derive(Debug, Deserialize)]
struct CsvTarget {
    address: IpAddr,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    exporter: Option<IpAddr>,
    #[serde(default)]
    version: Option<Version>,
    #[serde(default)]
    community: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    auth_protocol: Option<String>,
    #[serde(default)]
    auth_password: Option<String>,
    #[serde(default)]
    priv_protocol: Option<String>,
    #[serde(default)]
    priv_password: Option<String>,
}

/// A target ready to poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub agent: SocketAddr,
    pub exporter: IpAddr,
    pub credentials: Credentials,
}

impl TargetConfig {
    /// Resolves defaults.
    pub fn resolve(&self, default_port: u16, base: &CredentialConfig) -> Result<Target, String> {
        let port = self.port.unwrap_or(default_port);
        let agent = SocketAddr::new(self.address, port);
        let name = self.name.clone().unwrap_or_else(|| {
            if port == default_port { self.address.to_string() } else { agent.to_string() }
        });
        let own = CredentialConfig {
            version: self.version,
            community: self.community.clone(),
            v3: self.v3.clone(),
        };
        let credentials = own.resolve(base).map_err(|e| format!("target `{name}`: {e}"))?;
        Ok(Target { name, agent, exporter: self.exporter.unwrap_or(self.address), credentials })
    }
}

/// Reads a targets file: `.csv` (a header naming the columns `address`,
/// `port`, `name`, `exporter`, `version`, `community`, `user`, `level`,
/// `auth_protocol`, `auth_password`, `priv_protocol`, `priv_password`), or
/// YAML/JSON (a list of targets as in the pipeline file). `${VAR}` in YAML
/// values is read from the environment, so secrets can stay out of it.
pub fn read_file(path: &Path) -> Result<Vec<TargetConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        let mut r =
            csv::ReaderBuilder::new().trim(csv::Trim::All).comment(Some(b'#')).from_reader(text.as_bytes());
        let mut out = Vec::new();
        for (i, row) in r.deserialize::<CsvTarget>().enumerate() {
            let row = row.map_err(|e| format!("{} row {}: {e}", path.display(), i + 2))?;
            let any_v3 = row.user.is_some() || row.auth_password.is_some() || row.priv_password.is_some();
            out.push(TargetConfig {
                address: row.address,
                port: row.port,
                name: row.name,
                exporter: row.exporter,
                version: row.version,
                community: row.community,
                v3: any_v3.then_some(V3Config {
                    user: row.user,
                    level: row.level,
                    auth_protocol: row.auth_protocol,
                    auth_password: row.auth_password,
                    priv_protocol: row.priv_protocol,
                    priv_password: row.priv_password,
                }),
            });
        }
        Ok(out)
    } else {
        let env = |k: &str| std::env::var(k).ok();
        let node = spillway_core::config::yaml::parse(&text, &env).map_err(|errs| {
            errs.iter()
                .map(|e| format!("{}: {}: {}", path.display(), e.pos, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        serde_path_to_error::deserialize::<_, Vec<TargetConfig>>(node.to_json())
            .map_err(|e| format!("{}: {}: {}", path.display(), e.path(), e.inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_fall_back_to_the_defaults() {
        let base = CredentialConfig {
            version: None,
            community: Some("c0mm".into()),
            v3: Some(V3Config {
                user: Some("u".into()),
                auth_password: Some("authpass1".into()),
                priv_password: Some("privpass1".into()),
                ..Default::default()
            }),
        };
        // v3 by default since a v3 section is there, with its defaults.
        let c = CredentialConfig::default().resolve(&base).unwrap();
        let Credentials::V3(v) = c else { panic!("{c:?}") };
        assert_eq!(
            (v.level, v.auth_protocol, v.priv_protocol),
            (Level::AuthPriv, AuthProtocol::Sha1, Cipher::Aes128)
        );
        // A target that says v2c uses the default community.
        let t = CredentialConfig { version: Some(Version::V2c), ..Default::default() };
        assert_eq!(t.resolve(&base).unwrap(), Credentials::V2c { community: "c0mm".into() });
        // A target's own v3 fields override one by one.
        let t = CredentialConfig {
            v3: Some(V3Config { auth_protocol: Some("SHA-256".into()), ..Default::default() }),
            ..Default::default()
        };
        let Credentials::V3(v) = t.resolve(&base).unwrap() else { panic!() };
        assert_eq!((v.user.as_str(), v.auth_protocol), ("u", AuthProtocol::Sha256));
        // Short passwords are refused with the reason.
        let t = CredentialConfig {
            v3: Some(V3Config {
                user: Some("u".into()),
                auth_password: Some("short".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(t.resolve(&CredentialConfig::default()).unwrap_err().contains("at least 8"));
    }

    #[test]
    fn csv_targets_with_empty_cells() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(
            &p,
            "address,port,name,community,user,auth_password,priv_password\n\
             10.0.0.1,,r1,secret,,,\n\
             10.0.0.2,1161,r2,,admin,authpass1,privpass1\n",
        )
        .unwrap();
        let t = read_file(&p).unwrap();
        let base = CredentialConfig::default();
        let a = t[0].resolve(161, &base).unwrap();
        assert_eq!((a.name.as_str(), a.agent.port()), ("r1", 161));
        assert_eq!(a.credentials, Credentials::V2c { community: "secret".into() });
        let b = t[1].resolve(161, &base).unwrap();
        assert!(matches!(b.credentials, Credentials::V3(ref v) if v.user == "admin"));
        assert_eq!(b.agent, "10.0.0.2:1161".parse().unwrap());
    }
}
