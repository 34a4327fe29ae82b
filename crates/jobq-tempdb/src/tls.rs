//! A throwaway server that takes TCP connections only over TLS: `ssl=on`, a certificate authority and a
//! server certificate for `localhost` and `127.0.0.1` made at start (with rcgen), and a `pg_hba.conf`
//! whose TCP lines are all `hostssl`. Its admin connection, and the databases it creates, go through its
//! Unix socket.

use crate::{Error, Server, Setup, TestDatabase, run, start_throwaway_with};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The TLS-only throwaway server (see [`tls_server`]).
#[derive(Debug)]
pub struct TlsServer {
    server: Server,
    port: u16,
    ca: PathBuf,
    other_ca: PathBuf,
}

impl TlsServer {
    /// The PEM file of the certificate authority that signed the server's certificate: what
    /// `sslrootcert=` names for `verify-ca` and `verify-full`.
    pub fn ca_path(&self) -> &Path {
        &self.ca
    }

    /// The PEM file of another certificate authority, which signed nothing this server holds: a wrong
    /// `sslrootcert` for tests.
    pub fn other_ca_path(&self) -> &Path {
        &self.other_ca
    }

    /// The TCP URL of database `name` at `localhost`, `postgres://postgres@localhost:PORT/name`, with no
    /// TLS parameters: add `?sslmode=...` as the test needs.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@localhost:{}/{name}", self.port)
    }

    /// [`url`](Self::url) with `sslmode=verify-full` and `sslrootcert` naming [`ca_path`](Self::ca_path).
    pub fn verify_full_url(&self, name: &str) -> String {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            self.url(name),
            self.ca.display()
        )
    }

    /// A fresh database with the jobq schema applied, on this server. Its [`TestDatabase::url`] reaches it
    /// through the Unix socket, without TLS; over TCP, use [`url`](Self::url) with its name.
    pub fn database(&self) -> Result<TestDatabase, Error> {
        self.server.database(true)
    }

    /// The server itself (its log is `server.log` in [`Server::dir`]).
    pub fn server(&self) -> &Server {
        &self.server
    }
}

/// The TLS-only throwaway server for this process, started on first use (apart from [`crate::server`]).
/// It is stopped and deleted when the process ends.
///
/// ```no_run
/// let tls = jobq_tempdb::tls_server().unwrap();
/// let db = tls.database().unwrap();
/// let url = tls.verify_full_url(db.name()); // postgres://postgres@localhost:PORT/NAME?sslmode=verify-full&...
/// ```
pub fn tls_server() -> Result<&'static TlsServer, Error> {
    static SERVER: OnceLock<Result<TlsServer, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| crate::off_runtime(|| start().map_err(|e| e.to_string())))
        .as_ref()
        .map_err(|e| Error::Schema(format!("the TLS-only server did not start: {e}")))
}

fn start() -> Result<TlsServer, Error> {
    let prepare = |dir: &Path| prepare(dir);
    let server = start_throwaway_with(
        &format!("{}-tls", std::process::id()),
        Some(Setup { prepare: &prepare }),
    )?;
    let dir = server
        .dir
        .clone()
        .ok_or_else(|| Error::Schema("a throwaway server has a directory".into()))?;
    let port = server
        .base_url()
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| Error::Schema(format!("no port in {}", server.base_url())))?;
    Ok(TlsServer {
        server,
        port,
        ca: dir.join("tls").join("ca.pem"),
        other_ca: dir.join("tls").join("other-ca.pem"),
    })
}

/// Writes the certificates into `dir/tls` and a `pg_hba.conf` with `hostssl` lines only for TCP; returns
/// the server options that turn TLS on.
fn prepare(dir: &Path) -> Result<String, Error> {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls)?;
    let (ca, ca_key) = authority("jobq-tempdb test CA")?;
    let (other_ca, _) = authority("jobq-tempdb other CA (signed nothing)")?;
    let server_key = KeyPair::generate().map_err(cert_error)?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .map_err(cert_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_cert = params
        .signed_by(&server_key, &ca, &ca_key)
        .map_err(cert_error)?;
    std::fs::write(tls.join("ca.pem"), ca.pem())?;
    std::fs::write(tls.join("other-ca.pem"), other_ca.pem())?;
    std::fs::write(tls.join("server.crt"), server_cert.pem())?;
    let key = tls.join("server.key");
    std::fs::write(&key, server_key.serialize_pem())?;
    // PostgreSQL refuses a key that others can read.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    if std::fs::metadata("/proc/self")?.uid() == 0 {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&tls))?;
    }
    // Unix socket for the admin connection; over TCP, TLS or nothing.
    std::fs::write(
        dir.join("data").join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostssl all all ::1/128 trust\n",
    )?;
    Ok(format!(
        " -c ssl=on -c ssl_cert_file='{}' -c ssl_key_file='{}'",
        tls.join("server.crt").display(),
        key.display()
    ))
}

/// A self-signed certificate authority named `name`, and its key.
fn authority(name: &str) -> Result<(rcgen::Certificate, KeyPair), Error> {
    let key = KeyPair::generate().map_err(cert_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(cert_error)?;
    Ok((cert, key))
}

fn cert_error(e: rcgen::Error) -> Error {
    Error::Schema(format!("cannot make the test certificates: {e}"))
}

/// `dir` as the host part of a URL: a Unix socket directory, percent-encoded.
pub(crate) fn url_path(dir: &Path) -> String {
    let mut out = String::new();
    for b in dir.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
