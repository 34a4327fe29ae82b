//! Who may act, and whether a request really comes from the dashboard's own pages: the access token, the
//! login cookie, the CSRF token, the Origin / Sec-Fetch-Site check.
//!
//! Two cookies, both `HttpOnly; SameSite=Strict`, both signed with HMAC-SHA-256 under a key drawn when
//! the router is built:
//! - `jobq_csrf`: a random nonce per browser; each form carries `csrf` = HMAC(key, "csrf" ‖ nonce), checked
//!   on every POST. Set on the first page a browser loads.
//! - `jobq_auth`: "logged in until T", set by the login form when the token matched.
//!
//! They are separate so that a navigation from another site (which carries neither cookie, as they are
//! `SameSite=Strict`) may replace the nonce without logging the user out.

use axum::http::{HeaderMap, HeaderValue, header};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The CSRF nonce's cookie.
pub(crate) const CSRF_COOKIE: &str = "jobq_csrf";
/// The login cookie.
pub(crate) const AUTH_COOKIE: &str = "jobq_auth";
/// How long a login lasts.
const LOGIN_SECONDS: i64 = 12 * 3600;

/// The key cookies are signed with, and the token's MAC under it.
pub(crate) struct Keys {
    key: [u8; 32],
    token_mac: Option<[u8; 32]>,
}

impl Keys {
    /// A fresh random key; `token` is the access token, if any.
    pub(crate) fn new(token: Option<&str>) -> Self {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key)
            .expect("jobq-web needs the operating system's random source for its cookie key");
        let mut keys = Self {
            key,
            token_mac: None,
        };
        keys.token_mac = token.map(|t| keys.mac(&[b"token", t.as_bytes()]));
        keys
    }

    pub(crate) fn has_token(&self) -> bool {
        self.token_mac.is_some()
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        for part in parts {
            // Length-prefixed, so that no two sequences of parts hash alike.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `given` is the access token, in constant time (both sides' MACs are compared, so neither
    /// the token's length nor its prefix leaks).
    pub(crate) fn token_matches(&self, given: &str) -> bool {
        match &self.token_mac {
            Some(expected) => {
                let given = self.mac(&[b"token", given.as_bytes()]);
                bool::from(given.ct_eq(expected))
            }
            None => false,
        }
    }

    /// A new random CSRF nonce, hex.
    pub(crate) fn new_nonce() -> String {
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce)
            .expect("jobq-web needs the operating system's random source for its CSRF nonces");
        hex::encode(nonce)
    }

    /// The CSRF token of the browser whose nonce cookie is `nonce`.
    pub(crate) fn csrf_token(&self, nonce: &str) -> String {
        hex::encode(self.mac(&[b"csrf", nonce.as_bytes()]))
    }

    /// Whether `given` is the CSRF token for `nonce`, in constant time.
    pub(crate) fn csrf_matches(&self, nonce: &str, given: &str) -> bool {
        let expected = self.csrf_token(nonce);
        expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
    }

    /// The login cookie's value: valid until `now + LOGIN_SECONDS`.
    pub(crate) fn login_value(&self, now: i64) -> String {
        let until = (now + LOGIN_SECONDS).to_string();
        format!(
            "{until}.{}",
            hex::encode(self.mac(&[b"auth", until.as_bytes()]))
        )
    }

    /// Whether `value` is a login cookie this key signed, still valid at `now`.
    pub(crate) fn login_valid(&self, value: &str, now: i64) -> bool {
        let Some((until, mac)) = value.split_once('.') else {
            return false;
        };
        let Ok(until_secs) = until.parse::<i64>() else {
            return false;
        };
        let Ok(mac) = hex::decode(mac) else {
            return false;
        };
        let expected = self.mac(&[b"auth", until.as_bytes()]);
        bool::from(expected.as_slice().ct_eq(&mac)) && until_secs > now
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` header for `name`: `HttpOnly; SameSite=Strict; Path=/`, lasting `max_age` seconds (0
/// deletes it).
pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    let text = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The login cookie's lifetime, for its `Max-Age`.
pub(crate) const LOGIN_MAX_AGE: i64 = LOGIN_SECONDS;

/// A nonce cookie's value is 32 hex digits; anything else is replaced.
pub(crate) fn nonce_well_formed(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Refuses a cross-site request: `Sec-Fetch-Site` (sent by every current browser) must be `same-origin`
/// when present, and `Origin`, when present, must name the host the request was sent to. A request with
/// neither (a script, curl) passes here and still needs the CSRF token or the bearer token.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return Err("the request came from another site (Sec-Fetch-Site)");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| "unreadable Origin header")?;
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or("an Origin header without a Host header")?;
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .ok_or("the request came from another site (Origin)")?;
        if !authority.eq_ignore_ascii_case(host) {
            return Err("the request came from another site (Origin is not this host)");
        }
    }
    Ok(())
}

/// The token of an `Authorization: Bearer` header, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_cookies_and_csrf() {
        let keys = Keys::new(Some("s3cret"));
        assert!(keys.token_matches("s3cret"));
        assert!(!keys.token_matches("s3cre"));
        assert!(!keys.token_matches(""));
        let login = keys.login_value(1000);
        assert!(keys.login_valid(&login, 1000));
        assert!(!keys.login_valid(&login, 1000 + LOGIN_SECONDS));
        assert!(!Keys::new(Some("s3cret")).login_valid(&login, 1000));
        let forged = login.replacen(&(1000 + LOGIN_SECONDS).to_string(), "99999999999", 1);
        assert!(!keys.login_valid(&forged, 1000));
        let nonce = Keys::new_nonce();
        assert!(nonce_well_formed(&nonce));
        let csrf = keys.csrf_token(&nonce);
        assert!(keys.csrf_matches(&nonce, &csrf));
        assert!(!keys.csrf_matches(&Keys::new_nonce(), &csrf));
        assert!(!keys.csrf_matches(&nonce, ""));
        assert!(!Keys::new(None).token_matches(""));
    }

    #[test]
    fn origin_checks() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h).is_ok());
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(same_origin(&h).is_err());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin(&h).is_err());
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&h).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h).is_ok());
    }
}
