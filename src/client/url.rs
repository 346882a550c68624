//! Server URLs: `http`, `https`, `ws` and `wss` (or a bare `host:port`) turned into what a client connects to.

use std::fmt;

use super::ClientError;

/// Where a client connects: scheme (TLS or not), host, port, and the request target pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://` or `wss://`.
    pub tls: bool,
    /// Host name or IP literal, without IPv6 brackets (used for DNS and TLS SNI).
    pub host: String,
    /// TCP port (the scheme's default when the URL has none).
    pub port: u16,
    /// The `Host:` header value: host as written in the URL, plus `:port` when not the default.
    pub authority: String,
    /// The URL path, `/` when empty.
    pub path: String,
    /// The URL query string without `?`, if any.
    pub query: Option<String>,
}

impl Endpoint {
    /// Parse `http://host:port/path?query` (also `https`, `ws`, `wss`; a bare `host:port` means http).
    pub fn parse(url: &str) -> Result<Endpoint, ClientError> {
        let bad = |reason: String| ClientError::Url {
            url: url.to_string(),
            reason,
        };
        let trimmed = url.trim();
        if trimmed.is_empty() {
            return Err(bad("empty URL".into()));
        }
        // A bare `host:port` (or `host`) is read as http://, as curl does.
        let with_scheme;
        let text = if trimmed.contains("://") {
            trimmed
        } else {
            with_scheme = format!("http://{trimmed}");
            &with_scheme
        };
        let uri: http::Uri = text
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let tls = match scheme.as_str() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            other => {
                return Err(bad(format!(
                    "unsupported scheme `{other}` (use http, https, ws or wss)"
                )));
            }
        };
        let authority = uri.authority().ok_or_else(|| bad("no host".into()))?;
        if authority.as_str().contains('@') {
            return Err(bad("user:password@ in URLs is not supported".into()));
        }
        let raw_host = authority.host();
        if raw_host.is_empty() {
            return Err(bad("no host".into()));
        }
        let host = raw_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let default_port = if tls { 443 } else { 80 };
        let port = match authority.port() {
            Some(p) => p.as_u16(),
            None => {
                // `Authority::port` is None both for "no port" and for one that is not a u16.
                let after_host = authority
                    .as_str()
                    .rsplit_once(']')
                    .map_or(authority.as_str(), |(_, r)| r);
                match after_host.rsplit_once(':') {
                    Some((_, "")) => return Err(bad("empty port".into())),
                    Some((_, p)) => return Err(bad(format!("invalid port `{p}`"))),
                    None => default_port,
                }
            }
        };
        if port == 0 {
            return Err(bad("port 0 is not a port one can connect to".into()));
        }
        let authority = if port == default_port {
            raw_host.to_string()
        } else {
            format!("{raw_host}:{port}")
        };
        let path = match uri.path() {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        let query = uri.query().filter(|q| !q.is_empty()).map(str::to_string);
        Ok(Endpoint {
            tls,
            host,
            port,
            authority,
            path,
            query,
        })
    }

    /// The request target of the URL itself: path plus `?query` (used by `--raw`).
    pub fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// The Engine.IO request target: `eio_path?EIO=4&transport=T[&sid=S]` plus the URL's own query.
    ///
    /// The path must end with `/`: the reference server answers 404 to `/socket.io?...`
    /// (socketio-protocol.md §1.1, `addTrailingSlash`).
    pub fn engineio_target(&self, eio_path: &str, transport: &str, sid: Option<&str>) -> String {
        let mut t = String::with_capacity(eio_path.len() + 64);
        t.push_str(eio_path);
        if !eio_path.ends_with('/') {
            t.push('/');
        }
        t.push_str("?EIO=4&transport=");
        t.push_str(transport);
        if let Some(sid) = sid {
            t.push_str("&sid=");
            push_query_escaped(&mut t, sid);
        }
        if let Some(q) = &self.query {
            t.push('&');
            t.push_str(q);
        }
        t
    }

    /// Scheme and authority for messages: `https://host:port`.
    pub fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.authority
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.target())
    }
}

/// Percent-encode what is not an unreserved character (RFC 3986 §2.3) into a query value.
fn push_query_escaped(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_url_with_port_and_default_path() {
        let e = Endpoint::parse("http://127.0.0.1:3001").unwrap();
        assert!(!e.tls);
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 3001));
        assert_eq!(e.authority, "127.0.0.1:3001");
        assert_eq!(e.path, "/");
        assert_eq!(
            e.engineio_target("/socket.io/", "websocket", None),
            "/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn schemes_map_to_tls_and_default_ports() {
        let e = Endpoint::parse("wss://example.org/ws/1?name=a").unwrap();
        assert!(e.tls);
        assert_eq!(e.port, 443);
        assert_eq!(e.authority, "example.org");
        assert_eq!(e.target(), "/ws/1?name=a");
        let e = Endpoint::parse("WS://example.org").unwrap();
        assert!(!e.tls);
        assert_eq!(e.port, 80);
        let e = Endpoint::parse("https://example.org:8443/").unwrap();
        assert_eq!(e.authority, "example.org:8443");
    }

    #[test]
    fn bare_host_port_means_http() {
        let e = Endpoint::parse("localhost:3001").unwrap();
        assert!(!e.tls);
        assert_eq!((e.host.as_str(), e.port), ("localhost", 3001));
    }

    #[test]
    fn ipv6_literal_keeps_brackets_in_host_header_only() {
        let e = Endpoint::parse("http://[::1]:3001/").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.authority, "[::1]:3001");
    }

    #[test]
    fn query_of_the_url_is_kept_and_sid_is_escaped() {
        let e = Endpoint::parse("http://h:1/?token=x").unwrap();
        assert_eq!(
            e.engineio_target("/socket.io", "polling", Some("a+b/c=")),
            "/socket.io/?EIO=4&transport=polling&sid=a%2Bb%2Fc%3D&token=x"
        );
    }

    #[test]
    fn wrong_urls_are_refused_with_a_reason() {
        for (url, want) in [
            ("ftp://h/", "unsupported scheme `ftp`"),
            ("", "empty URL"),
            ("http://", "invalid"),
            ("http://h:0/", "port 0"),
            ("http://u:p@h/", "user:password"),
            ("http://h:99999/", "invalid port `99999`"),
            ("http://h:/", "empty port"),
        ] {
            let err = Endpoint::parse(url).expect_err(url).to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }
}
