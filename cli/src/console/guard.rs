//! Who may use the console: a browser on this machine that was given the printed URL.
//!
//! - The `Host` header must name the loopback listener: a page on another site that
//!   rebinds its DNS name to 127.0.0.1 still sends its own name.
//! - Every page needs the session cookie, which only the printed URL's `/login` sets:
//!   another user on this machine can reach the port but has not seen the URL.
//! - A change (POST) must also carry the token as a form field, which only a page of
//!   this console holds (another site cannot read it), and an `Origin` or
//!   `Sec-Fetch-Site` header, when sent, must say this console.

use hyper::HeaderMap;
use hyper::header::{COOKIE, HOST, ORIGIN};

/// The session cookie's name, before the console's port.
const COOKIE_PREFIX: &str = "gantry_console_";
/// The form field every change carries.
pub const TOKEN_FIELD: &str = "token";

/// What a refused request lacked, said in its 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

pub struct Guard {
    port: u16,
    token: String,
}

impl Guard {
    pub fn new(port: u16, token: String) -> Self {
        Self { port, token }
    }

    /// A fresh token: 256 bits from the operating system's generator, in hex.
    pub fn random_token() -> std::io::Result<String> {
        use std::io::Read;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The `Host` header names this listener.
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers.get(HOST).and_then(|value| value.to_str().ok());
        match host {
            Some(host) if self.is_own(host) => Ok(()),
            Some(host) => Err(Refusal(format!(
                "Host {host:?} is not this console (127.0.0.1:{port} or localhost:{port})",
                port = self.port
            ))),
            None => Err(Refusal("no Host header".into())),
        }
    }

    /// `/login`'s token is this session's.
    pub fn check_login(&self, given: Option<&str>) -> Result<(), Refusal> {
        match given {
            Some(given) if same(given, &self.token) => Ok(()),
            Some(_) => Err(Refusal(
                "the token is not this console's: open the URL gantry console printed".into(),
            )),
            None => Err(Refusal(
                "no token: open the URL gantry console printed".into(),
            )),
        }
    }

    /// The session cookie's name: one per port, since browsers send a cookie to every
    /// port of a host, and two consoles must not overwrite each other's.
    pub fn cookie_name(&self) -> String {
        format!("{COOKIE_PREFIX}{}", self.port)
    }

    /// A page: the session cookie. Any of the cookies by its name may hold it: a page on
    /// another port of this host can set one with a longer path, which the browser sends
    /// first.
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        self.check_host(headers)?;
        let name = self.cookie_name();
        let values: Vec<&str> = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(given, _)| *given == name)
            .map(|(_, value)| value)
            .collect();
        if values.iter().any(|value| same(value, &self.token)) {
            Ok(())
        } else if values.is_empty() {
            Err(Refusal(
                "no session cookie: open the URL gantry console printed".into(),
            ))
        } else {
            Err(Refusal(
                "the session cookie is not this console's: open the URL gantry console printed"
                    .into(),
            ))
        }
    }

    /// A change: the cookie, the form's token field, and no other site's headers.
    pub fn check_change(&self, headers: &HeaderMap, field: Option<&str>) -> Result<(), Refusal> {
        self.check_read(headers)?;
        if let Some(origin) = headers.get(ORIGIN) {
            let own = origin
                .to_str()
                .ok()
                .and_then(|origin| origin.strip_prefix("http://"))
                .is_some_and(|host| self.is_own(host));
            if !own {
                return Err(Refusal(format!("Origin {origin:?} is not this console")));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site")
            && !matches!(site.to_str(), Ok("same-origin" | "none"))
        {
            return Err(Refusal(format!(
                "Sec-Fetch-Site {site:?}: only this console's own pages may change things"
            )));
        }
        match field {
            Some(field) if same(field, &self.token) => Ok(()),
            Some(_) => Err(Refusal(format!(
                "the form's {TOKEN_FIELD} is not this console's"
            ))),
            None => Err(Refusal(format!(
                "the form carries no {TOKEN_FIELD}: use the console's own buttons"
            ))),
        }
    }

    fn is_own(&self, host: &str) -> bool {
        let port = self.port.to_string();
        ["127.0.0.1", "localhost"].iter().any(|name| {
            host.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                == Some(&port)
        })
    }
}

/// Compares two tokens in time independent of where they differ.
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn guard() -> Guard {
        Guard::new(8123, "a".repeat(64))
    }

    #[test]
    fn a_page_needs_this_consoles_host_and_cookie() {
        let cookie = format!(
            "gantry_console_8123=planted; other=1; gantry_console_8123={}",
            "a".repeat(64)
        );
        let guard = guard();
        assert!(
            guard
                .check_read(&headers(&[("host", "127.0.0.1:8123"), ("cookie", &cookie)]))
                .is_ok()
        );
        assert!(
            guard
                .check_read(&headers(&[("host", "localhost:8123"), ("cookie", &cookie)]))
                .is_ok()
        );
        for host in [
            "evil.example:8123",
            "127.0.0.1:8124",
            "127.0.0.1",
            "localhost.evil:8123",
        ] {
            let refused = guard.check_read(&headers(&[("host", host), ("cookie", &cookie)]));
            assert!(
                refused.unwrap_err().0.contains("is not this console"),
                "{host}"
            );
        }
        let wrong = format!("gantry_console_8123={}", "b".repeat(64));
        assert!(
            guard
                .check_read(&headers(&[("host", "127.0.0.1:8123"), ("cookie", &wrong)]))
                .is_err()
        );
        let short = "gantry_console_8123=a".to_owned();
        assert!(
            guard
                .check_read(&headers(&[("host", "127.0.0.1:8123"), ("cookie", &short)]))
                .is_err()
        );
        let refused = guard
            .check_read(&headers(&[("host", "127.0.0.1:8123")]))
            .unwrap_err();
        assert!(refused.0.contains("no session cookie"), "{refused:?}");
    }

    #[test]
    fn a_change_also_needs_the_form_token_and_no_other_sites_headers() {
        let cookie = format!("gantry_console_8123={}", "a".repeat(64));
        let token = "a".repeat(64);
        let guard = guard();
        let own = [("host", "127.0.0.1:8123"), ("cookie", cookie.as_str())];
        assert!(guard.check_change(&headers(&own), Some(&token)).is_ok());
        let same_site = [
            own[0],
            own[1],
            ("origin", "http://localhost:8123"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(
            guard
                .check_change(&headers(&same_site), Some(&token))
                .is_ok()
        );
        assert!(
            guard
                .check_change(&headers(&own), None)
                .unwrap_err()
                .0
                .contains("no token")
        );
        assert!(guard.check_change(&headers(&own), Some("a")).is_err());
        let foreign = [own[0], own[1], ("origin", "http://evil.example")];
        assert!(
            guard
                .check_change(&headers(&foreign), Some(&token))
                .unwrap_err()
                .0
                .contains("Origin")
        );
        let null = [own[0], own[1], ("origin", "null")];
        assert!(guard.check_change(&headers(&null), Some(&token)).is_err());
        let cross = [own[0], own[1], ("sec-fetch-site", "cross-site")];
        assert!(
            guard
                .check_change(&headers(&cross), Some(&token))
                .unwrap_err()
                .0
                .contains("Sec-Fetch-Site")
        );
    }

    #[test]
    fn login_takes_only_this_sessions_token() {
        let guard = guard();
        assert!(guard.check_login(Some(&"a".repeat(64))).is_ok());
        assert!(guard.check_login(Some("a")).is_err());
        assert!(guard.check_login(None).is_err());
        let token = Guard::random_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(token, Guard::random_token().unwrap());
    }
}
