//! The TLS policy of a connection URL (libpq's `sslmode` and `sslrootcert`), read once here for every
//! adapter whose driver does not read it itself (tokio-postgres and postgres).
//!
//! [`TlsPolicy::from_url`] takes `sslmode` and `sslrootcert` out of a URL (or a `key=value` connection
//! string) and gives back the policy and a URL the driver parses: tokio-postgres knows only
//! `sslmode=disable|prefer|require` and refuses any parameter it does not know, such as `sslrootcert`.
//! With the `rustls` feature, [`TlsPolicy::client_config`] builds the rustls client configuration that
//! verifies the server as libpq would:
//!
//! | `sslmode` | encrypted | server certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers TLS, else plain | only against a root certificate if one is given (then as `verify-ca`) |
//! | `require` | always | as `prefer` |
//! | `verify-ca` | always | its chain, against the root certificate |
//! | `verify-full` | always | its chain, and that it names the host connected to |
//!
//! The root certificate is the file `sslrootcert=<file>` names (PEM, one or more certificates),
//! otherwise `~/.postgresql/root.crt` when it exists, as libpq does; `sslrootcert=system` takes the
//! operating system's trusted roots and, as in libpq, needs `sslmode=verify-full`. `verify-ca` and
//! `verify-full` without any root certificate are refused before anything is sent.
//!
//! ```
//! use jobq_core::tls::{SslMode, TlsPolicy};
//!
//! let (policy, url) =
//!     TlsPolicy::from_url("postgres://app@db/app?sslmode=verify-full&sslrootcert=/etc/ca.pem")?;
//! assert_eq!(policy.mode(), SslMode::VerifyFull);
//! assert_eq!(url, "postgres://app@db/app?sslmode=require");
//! # Ok::<(), jobq_core::tls::TlsError>(())
//! ```

use crate::{ConnectorError, ErrorKind};
use std::path::{Path, PathBuf};

/// libpq's `sslmode`: whether to encrypt, and how far to check the server (see the [module](self) table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it; the server is checked only against a root certificate if one is given.
    #[default]
    Prefer,
    /// Always TLS; the server is checked only against a root certificate if one is given.
    Require,
    /// Always TLS; the server's certificate chain must lead to the root certificate.
    VerifyCa,
    /// Always TLS; the chain must lead to the root certificate and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    /// The mode for a URL's `sslmode` value.
    pub fn parse(value: &str) -> Result<Self, TlsError> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(TlsError::new(format!(
                "sslmode={other} is not supported: use disable, prefer, require, verify-ca or verify-full"
            ))),
        }
    }

    /// The value as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// True when a connection in this mode must be encrypted.
    pub fn requires_tls(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }

    /// The `sslmode` that tokio-postgres' own parser accepts: the verifying modes become `require`, and
    /// the verification is the [`client_config`](TlsPolicy::client_config)'s.
    fn driver_value(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require | Self::VerifyCa | Self::VerifyFull => "require",
        }
    }
}

/// Where the root certificates that check the server come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more certificates (`sslrootcert=<file>`, or `~/.postgresql/root.crt`).
    File(PathBuf),
    /// The operating system's trusted roots (`sslrootcert=system`).
    System,
}

/// A URL's TLS policy: its `sslmode` and root certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsPolicy {
    mode: SslMode,
    root_cert: Option<RootCert>,
}

/// A TLS policy that cannot be followed: an unknown `sslmode`, a missing or unreadable root certificate.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TlsError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    #[cfg(feature = "rustls")]
    fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// This error as `connector`'s [`ConnectorError`] (kind [`ErrorKind::Other`]: a setting, not the network).
    pub fn into_connector_error(self, connector: &'static str) -> ConnectorError {
        ConnectorError::new(connector, ErrorKind::Other, self.message.clone()).with_source(self)
    }
}

impl TlsPolicy {
    /// The policy of `url` (a `postgres://` URL or a `key=value` connection string), and `url` as the
    /// driver parses it: without `sslrootcert`, and with `sslmode` as tokio-postgres knows it (the verifying
    /// modes become `require`). An unknown `sslmode` fails, and so does `sslrootcert=system` with a mode
    /// other than `verify-full` (as in libpq); nothing is read from disk yet.
    pub fn from_url(url: &str) -> Result<(Self, String), TlsError> {
        let mut mode = None;
        let mut root = None;
        let rewrite = |key: &str, value: &str| -> Result<Option<String>, TlsError> {
            match key {
                "sslmode" => {
                    let m = SslMode::parse(value)?;
                    mode = Some(m);
                    Ok(Some(m.driver_value().to_owned()))
                }
                "sslrootcert" => {
                    root = Some(if value == "system" {
                        RootCert::System
                    } else {
                        RootCert::File(PathBuf::from(value))
                    });
                    Ok(None)
                }
                _ => Ok(Some(value.to_owned())),
            }
        };
        let driver_url = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            rewrite_url(url, rewrite)?
        } else {
            rewrite_key_values(url, rewrite)?
        };
        let policy = Self {
            mode: mode.unwrap_or_default(),
            root_cert: root,
        };
        if policy.root_cert == Some(RootCert::System) && policy.mode != SslMode::VerifyFull {
            return Err(TlsError::new(format!(
                "sslrootcert=system needs sslmode=verify-full, not sslmode={}",
                policy.mode.as_str()
            )));
        }
        Ok((policy, driver_url))
    }

    /// The `sslmode`.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The root certificate the URL names (`sslrootcert`), if any.
    pub fn root_cert(&self) -> Option<&RootCert> {
        self.root_cert.as_ref()
    }

    /// The root certificate used: the one the URL names, else `~/.postgresql/root.crt` if that file
    /// exists (libpq's default).
    #[cfg_attr(not(feature = "rustls"), allow(dead_code))]
    fn effective_root(&self) -> Option<RootCert> {
        self.root_cert.clone().or_else(|| {
            let home = std::env::var_os("HOME")?;
            let default = Path::new(&home).join(".postgresql").join("root.crt");
            default.is_file().then_some(RootCert::File(default))
        })
    }
}

/// Rewrites the query parameters of a `postgres://` URL: `rewrite` gives each (decoded) key and value its
/// new value, or `None` to drop it.
fn rewrite_url(
    url: &str,
    mut rewrite: impl FnMut(&str, &str) -> Result<Option<String>, TlsError>,
) -> Result<String, TlsError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_owned());
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_decode(value);
        match rewrite(&percent_decode(key), &decoded)? {
            Some(new) if new == decoded => kept.push(pair.to_owned()),
            Some(new) => kept.push(format!("{key}={new}")),
            None => {}
        }
    }
    Ok(if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

/// Decodes `%XX` escapes (and leaves anything else as it is).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rewrites a libpq `key=value` connection string (values may be single-quoted, with `\'` and `\\`).
fn rewrite_key_values(
    s: &str,
    mut rewrite: impl FnMut(&str, &str) -> Result<Option<String>, TlsError>,
) -> Result<String, TlsError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(TlsError::new(format!(
                "the connection string has `{key}` without `=value`"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(TlsError::new(format!(
                            "the connection string's `{key}` value has no closing quote"
                        )));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        if let Some(new) = rewrite(&key, &value)? {
            let quoted = new.replace('\\', "\\\\").replace('\'', "\\'");
            out.push(format!("{key}='{quoted}'"));
        }
    }
    Ok(out.join(" "))
}

#[cfg(feature = "rustls")]
mod client {
    use super::{RootCert, SslMode, TlsError, TlsPolicy};
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{
        CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    };
    use std::sync::Arc;

    impl TlsPolicy {
        /// A rustls client configuration (ring provider) that checks the server as the policy says (see
        /// the [module](super) table). It reads the root certificate now, so a missing, unreadable or
        /// empty file fails here, before anything is sent; so do `verify-ca` and `verify-full` without
        /// a root certificate.
        pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let algorithms = provider.signature_verification_algorithms;
            let roots = match self.effective_root() {
                Some(root) => Some(Arc::new(root_store(&root)?)),
                None if matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                    return Err(TlsError::new(format!(
                        "sslmode={} needs a root certificate to check the server against: give \
                         sslrootcert=<file> (PEM), put it in ~/.postgresql/root.crt, or use \
                         sslrootcert=system with sslmode=verify-full",
                        self.mode.as_str()
                    )));
                }
                None => None,
            };
            let verifier: Arc<dyn ServerCertVerifier> = match roots {
                None => Arc::new(Unverified(algorithms)),
                Some(roots) => {
                    let webpki =
                        WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                            .build()
                            .map_err(|e| {
                                TlsError::new(format!("cannot use the root certificates: {e}"))
                                    .with_source(e)
                            })?;
                    if self.mode == SslMode::VerifyFull {
                        webpki
                    } else {
                        Arc::new(ChainOnly(webpki))
                    }
                }
            };
            Ok(ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::new(format!("rustls: {e}")).with_source(e))?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth())
        }
    }

    /// The certificates of `root`.
    fn root_store(root: &RootCert) -> Result<RootCertStore, TlsError> {
        let mut store = RootCertStore::empty();
        match root {
            RootCert::File(path) => {
                let shown = path.display();
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        TlsError::new(format!(
                            "cannot read root certificate file \"{shown}\": {e}"
                        ))
                        .with_source(e)
                    })?;
                if certs.is_empty() {
                    return Err(TlsError::new(format!(
                        "root certificate file \"{shown}\" holds no PEM certificate"
                    )));
                }
                for cert in certs {
                    store.add(cert).map_err(|e| {
                        TlsError::new(format!(
                            "root certificate file \"{shown}\" holds an unusable certificate: {e}"
                        ))
                        .with_source(e)
                    })?;
                }
            }
            RootCert::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found
                        .errors
                        .first()
                        .map_or_else(String::new, |e| format!(": {e}"));
                    return Err(TlsError::new(format!(
                        "sslrootcert=system found no trusted root certificate on this system{why}"
                    )));
                }
            }
        }
        Ok(store)
    }

    /// libpq's `prefer` and `require` without a root certificate: encrypted, the server unchecked (the
    /// handshake's signatures are still verified).
    #[derive(Debug)]
    struct Unverified(WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for Unverified {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    /// libpq's `verify-ca`: the chain must lead to a root certificate, whatever host the certificate names.
    /// webpki checks the chain before the name, so a name mismatch means the chain was good.
    #[derive(Debug)]
    struct ChainOnly(Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            match self.0.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_sslrootcert_and_keep_the_rest() {
        let (p, url) = TlsPolicy::from_url(
            "postgres://u@h:5/db?connect_timeout=3&sslmode=verify-ca&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(p.mode(), SslMode::VerifyCa);
        assert_eq!(
            p.root_cert(),
            Some(&RootCert::File(PathBuf::from("/tmp/ca.pem")))
        );
        assert_eq!(url, "postgres://u@h:5/db?connect_timeout=3&sslmode=require");
        let (p, url) = TlsPolicy::from_url("postgresql://u@h/db").unwrap();
        assert_eq!(p, TlsPolicy::default());
        assert_eq!(url, "postgresql://u@h/db");
        let (_, url) = TlsPolicy::from_url("postgres://u@h/db?sslrootcert=/x").unwrap();
        assert_eq!(url, "postgres://u@h/db");
    }

    #[test]
    fn key_value_strings_are_rewritten() {
        let (p, s) = TlsPolicy::from_url(
            "host=localhost user=app sslmode = verify-full sslrootcert='/a b/c\\'s.pem'",
        )
        .unwrap();
        assert_eq!(p.mode(), SslMode::VerifyFull);
        assert_eq!(
            p.root_cert(),
            Some(&RootCert::File(PathBuf::from("/a b/c's.pem")))
        );
        assert_eq!(s, "host='localhost' user='app' sslmode='require'");
        assert!(TlsPolicy::from_url("host=x sslmode").is_err());
        assert!(TlsPolicy::from_url("host='x").is_err());
    }

    #[test]
    fn bad_policies_are_refused() {
        let e = TlsPolicy::from_url("postgres://h/db?sslmode=allow").unwrap_err();
        assert!(
            e.to_string().contains("sslmode=allow is not supported"),
            "{e}"
        );
        let e =
            TlsPolicy::from_url("postgres://h/db?sslmode=require&sslrootcert=system").unwrap_err();
        assert!(e.to_string().contains("needs sslmode=verify-full"), "{e}");
        assert!(SslMode::VerifyCa.requires_tls() && !SslMode::Prefer.requires_tls());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%2Fa%20b%"), "/a b%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn client_configs_need_readable_roots() {
        let (p, _) = TlsPolicy::from_url("postgres://h/db?sslmode=require").unwrap();
        p.client_config().unwrap();
        let (p, _) = TlsPolicy::from_url(
            "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap();
        let e = p.client_config().unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot read root certificate file \"/nonexistent/ca.pem\""),
            "{e}"
        );
    }
}
