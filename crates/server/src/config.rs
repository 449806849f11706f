//! Server settings: what `ferry serve` flags and the TOML config file say.
//! Every flag has a config key of the same name; flags win.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::error::ServerError;

/// Where a listener listens, or that it is off.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Off,
    At(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;

    /// `off`, `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`; port 0 picks a free port.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        if let Some(port) = s.strip_prefix("localhost:") {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("'{s}': the port must be a number from 0 to 65535"))?;
            return Ok(Listen::At(SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
        }
        s.parse::<SocketAddr>()
            .map(Listen::At)
            .map_err(|_| format!("'{s}': expected HOST:PORT (e.g. 127.0.0.1:5672) or 'off'"))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::At(a) => write!(f, "{a}"),
        }
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The config file. Keys are the flag names without the leading dashes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub admin_listen: Option<Listen>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::Config {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ServerError::Config {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }
}

pub const DEFAULT_DATA_DIR: &str = "./ferry-data";
pub const DEFAULT_ADMIN_LISTEN: Listen = Listen::At(SocketAddr::new(
    std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
    15672,
));

/// Settings after flags, file and defaults are merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub admin_listen: Listen,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            admin_listen: DEFAULT_ADMIN_LISTEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values() {
        assert_eq!("off".parse::<Listen>(), Ok(Listen::Off));
        assert_eq!(
            "127.0.0.1:0".parse::<Listen>(),
            Ok(Listen::At("127.0.0.1:0".parse().expect("addr")))
        );
        assert_eq!(
            "localhost:5672".parse::<Listen>(),
            Ok(Listen::At("127.0.0.1:5672".parse().expect("addr")))
        );
        assert!("[::1]:80".parse::<Listen>().is_ok());
        assert!("nowhere".parse::<Listen>().is_err());
        assert!("localhost:99999".parse::<Listen>().is_err());
    }

    #[test]
    fn config_file_keys_are_flag_names() {
        let c: FileConfig = toml::from_str(
            "data-dir = \"/tmp/x\"\nadmin-listen = \"off\"\nlog-level = \"debug\"\n",
        )
        .expect("parse");
        assert_eq!(c.admin_listen, Some(Listen::Off));
        assert_eq!(c.data_dir, Some(PathBuf::from("/tmp/x")));
        assert!(toml::from_str::<FileConfig>("unknown-key = 1").is_err());
        assert!(toml::from_str::<FileConfig>("admin-listen = \"bad\"").is_err());
    }
}
