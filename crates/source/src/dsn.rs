//! Connection options: the DSN forms taosbackup accepts and the credentials.

use std::fmt;
use std::time::Duration;

use crate::Error;

/// TDengine's default user.
pub const DEFAULT_USER: &str = "root";
/// TDengine's default password.
pub const DEFAULT_PASSWORD: &str = "taosdata";

/// How to reach TDengine: native (client library) or WebSocket (taosAdapter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// The native protocol through the dynamically loaded client library (`taos://`, bare
    /// `host[:port]`); default port 6030.
    Native,
    /// WebSocket through taosAdapter (`ws://`, `taos+ws://`); default port 6041.
    Ws,
    /// WebSocket over TLS (`wss://`, `taos+wss://`, cloud `?token=` DSNs); default port 443.
    Wss,
}

/// A parsed endpoint: protocol, host, port and extra DSN parameters (no credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The protocol.
    pub protocol: Protocol,
    /// Host name or address.
    pub host: String,
    /// Port (the protocol's default when the DSN names none).
    pub port: u16,
    /// Cloud token (`?token=`), kept secret.
    token: Option<String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("protocol", &self.protocol)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl fmt::Display for Endpoint {
    /// The endpoint without credentials: `ws://host:6041`, `taos://host:6030`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.protocol {
            Protocol::Native => "taos",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
        };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl Endpoint {
    /// Parses `host`, `host:port`, `taos://host:6030`, `ws://host:6041`, `wss://…`,
    /// `taos+ws://…`, `taos+wss://…` and cloud DSNs with `?token=` (which imply `wss` unless
    /// the scheme says `ws`). User and password inside the DSN are returned separately.
    pub fn parse(dsn: &str) -> Result<(Endpoint, Option<String>, Option<String>), Error> {
        let invalid = |reason: &str| Error::InvalidDsn {
            endpoint: redact(dsn),
            reason: reason.to_string(),
        };
        let dsn = dsn.trim();
        if dsn.is_empty() {
            return Err(invalid("empty DSN"));
        }
        let (scheme, rest) = match dsn.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, dsn),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let mut token = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("token", v)) if !v.is_empty() => token = Some(v.to_string()),
                Some(("token", _)) => return Err(invalid("empty token")),
                _ => {
                    return Err(invalid(
                        "unsupported DSN parameter (only token= is accepted)",
                    ));
                }
            }
        }
        let mut protocol = match scheme.as_deref() {
            None | Some("taos") => Protocol::Native,
            Some("ws" | "taos+ws" | "taosws") => Protocol::Ws,
            Some("wss" | "taos+wss" | "taoswss") => Protocol::Wss,
            Some(_) => {
                return Err(invalid(
                    "unknown scheme (use taos://, ws://, wss://, taos+ws:// or host:port)",
                ));
            }
        };
        if token.is_some() && protocol == Protocol::Native {
            protocol = Protocol::Wss;
        }
        // Strip a trailing path (a database is given separately).
        let authority = rest.split('/').next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(u.to_string()), None),
            },
            None => (None, None),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [ipv6]:port
            let (h, after) = h
                .split_once(']')
                .ok_or_else(|| invalid("unclosed [ in host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(invalid("junk after ]")),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let host = if host.is_empty() {
            "localhost".to_string()
        } else {
            host
        };
        if host.chars().any(|c| c.is_whitespace() || c == '\0') {
            return Err(invalid("host contains whitespace"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| invalid("port is not a number 0-65535"))?,
            None => match protocol {
                Protocol::Native => 6030,
                Protocol::Ws => 6041,
                Protocol::Wss => 443,
            },
        };
        Ok((
            Endpoint {
                protocol,
                host,
                port,
                token,
            },
            user,
            password,
        ))
    }

    /// Whether this endpoint needs the native client library.
    pub fn is_native(&self) -> bool {
        self.protocol == Protocol::Native
    }

    /// The cloud token (`?token=`), for connections built without the connector.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The DSN for the `taos` crate, with credentials and an optional database.
    pub(crate) fn connector_dsn(&self, creds: &Credentials, database: Option<&str>) -> String {
        let scheme = match self.protocol {
            Protocol::Native => "taos",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut dsn = if self.token.is_some() {
            format!("{scheme}://{host}:{}", self.port)
        } else {
            format!(
                "{scheme}://{}:{}@{host}:{}",
                encode(&creds.user),
                encode(&creds.password),
                self.port
            )
        };
        if let Some(db) = database {
            dsn.push('/');
            dsn.push_str(db);
        }
        if let Some(t) = &self.token {
            dsn.push_str("?token=");
            dsn.push_str(t);
        }
        dsn
    }
}

/// Percent-encodes the characters that would break a DSN's user info.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The DSN with any password and token replaced, for messages.
pub(crate) fn redact(dsn: &str) -> String {
    let mut s = dsn.to_string();
    if let Some(i) = s.find("token=") {
        let end = s[i..].find('&').map_or(s.len(), |e| i + e);
        s.replace_range(i + 6..end, "<redacted>");
    }
    if let Some(scheme_end) = s.find("://") {
        let after = scheme_end + 3;
        if let Some(at) = s[after..].find('@') {
            let userinfo = &s[after..after + at];
            if let Some(colon) = userinfo.find(':') {
                s.replace_range(after + colon + 1..after + at, "<redacted>");
            }
        }
    }
    s
}

/// User and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    password: String,
}

impl Credentials {
    /// Credentials from explicit values.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The password (for building connections only).
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials::new(DEFAULT_USER, DEFAULT_PASSWORD)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything needed to connect: the DSN, credentials, pool size, retries and timeouts.
///
/// Credentials are resolved in this order: explicit [`ConnectOptions::user`] /
/// [`ConnectOptions::password`] (flags, config), then the DSN's user info, then `TAOS_USER` /
/// `TAOS_PASSWORD`, then TDengine's defaults (`root` / `taosdata`).
#[derive(Clone)]
pub struct ConnectOptions {
    /// The DSN (any form [`Endpoint::parse`] accepts).
    pub dsn: String,
    /// User from flags or config.
    pub user: Option<String>,
    /// Password from flags or config.
    pub password: Option<String>,
    /// Maximum connections open at once (default 4).
    pub pool_size: usize,
    /// How many times a transient failure is retried (default 3).
    pub retry_count: u32,
    /// Pause between retries in milliseconds (default 1000).
    pub retry_interval_ms: u64,
    /// Longest wait for any single reply (default 60 s).
    pub request_timeout: Duration,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("dsn", &redact(&self.dsn))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("pool_size", &self.pool_size)
            .field("retry_count", &self.retry_count)
            .field("retry_interval_ms", &self.retry_interval_ms)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl ConnectOptions {
    /// Options for `dsn` with the defaults.
    pub fn new(dsn: impl Into<String>) -> Self {
        ConnectOptions {
            dsn: dsn.into(),
            user: None,
            password: None,
            pool_size: 4,
            retry_count: 3,
            retry_interval_ms: 1000,
            request_timeout: Duration::from_secs(60),
        }
    }

    /// Sets user and password (flags, config).
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// Parses the endpoint and resolves the credentials (see the type docs), reading the
    /// environment through `env`.
    pub fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Endpoint, Credentials), Error> {
        let (endpoint, dsn_user, dsn_password) = Endpoint::parse(&self.dsn)?;
        let user = self
            .user
            .clone()
            .or(dsn_user)
            .or_else(|| env("TAOS_USER"))
            .unwrap_or_else(|| DEFAULT_USER.to_string());
        let password = self
            .password
            .clone()
            .or(dsn_password)
            .or_else(|| env("TAOS_PASSWORD"))
            .unwrap_or_else(|| DEFAULT_PASSWORD.to_string());
        if user.contains('\0') || password.contains('\0') {
            return Err(Error::InvalidDsn {
                endpoint: endpoint.to_string(),
                reason: "user or password contains a NUL byte".into(),
            });
        }
        if self.pool_size == 0 {
            return Err(Error::InvalidDsn {
                endpoint: endpoint.to_string(),
                reason: "pool size must be at least 1".into(),
            });
        }
        Ok((endpoint, Credentials::new(user, password)))
    }

    /// [`ConnectOptions::resolve_with`] reading the process environment.
    pub fn resolve(&self) -> Result<(Endpoint, Credentials), Error> {
        self.resolve_with(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(dsn: &str) -> Endpoint {
        Endpoint::parse(dsn).unwrap().0
    }

    #[test]
    fn dsn_forms() {
        assert_eq!(ep("db1").to_string(), "taos://db1:6030");
        assert_eq!(ep("db1:7030").to_string(), "taos://db1:7030");
        assert_eq!(ep("taos://h:6030").to_string(), "taos://h:6030");
        assert_eq!(ep("ws://h").to_string(), "ws://h:6041");
        assert_eq!(ep("taos+ws://h:1234").to_string(), "ws://h:1234");
        assert_eq!(
            ep("wss://cloud.example").to_string(),
            "wss://cloud.example:443"
        );
        let cloud = ep("https-ignored-host?token=abc");
        assert_eq!(cloud.protocol, Protocol::Wss);
        assert!(!format!("{cloud:?}").contains("abc"));
        assert_eq!(ep("ws://h:1?token=abc").protocol, Protocol::Ws);
        assert_eq!(ep("ws://[::1]:6041").host, "::1");
        assert!(Endpoint::parse("ftp://h").is_err());
        assert!(Endpoint::parse("h:port").is_err());
        assert!(Endpoint::parse("ws://h?x=1").is_err());
        assert!(Endpoint::parse("").is_err());
    }

    #[test]
    fn credentials_precedence_and_secrecy() {
        let env = |k: &str| match k {
            "TAOS_USER" => Some("envu".to_string()),
            "TAOS_PASSWORD" => Some("envp".to_string()),
            _ => None,
        };
        let (_, c) = ConnectOptions::new("ws://h").resolve_with(env).unwrap();
        assert_eq!((c.user.as_str(), c.password()), ("envu", "envp"));
        let (_, c) = ConnectOptions::new("ws://u:p@h").resolve_with(env).unwrap();
        assert_eq!((c.user.as_str(), c.password()), ("u", "p"));
        let o = ConnectOptions::new("ws://u:p@h").with_credentials("f", "secret-pw");
        let (_, c) = o.resolve_with(env).unwrap();
        assert_eq!((c.user.as_str(), c.password()), ("f", "secret-pw"));
        let (_, c) = ConnectOptions::new("ws://h")
            .resolve_with(|_| None)
            .unwrap();
        assert_eq!((c.user.as_str(), c.password()), ("root", "taosdata"));
        assert!(!format!("{o:?}{c:?}").contains("secret-pw"));
        assert!(!format!("{:?}", ConnectOptions::new("ws://u:pw9@h")).contains("pw9"));
        assert_eq!(
            redact("ws://u:pw@h?token=t1"),
            "ws://u:<redacted>@h?token=<redacted>"
        );
    }

    #[test]
    fn connector_dsn_encodes_credentials() {
        let (e, _, _) = Endpoint::parse("ws://h:1").unwrap();
        let d = e.connector_dsn(&Credentials::new("u", "p@ss:/"), Some("db"));
        assert_eq!(d, "ws://u:p%40ss%3A%2F@h:1/db");
    }
}
