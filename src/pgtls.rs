//! TLS for drover's PostgreSQL connections (a ledger, the work queue, a site registry), with
//! rustls. A URL's `sslmode` says how far to trust the server, as libpq's does:
//!
//! - `disable`: never TLS;
//! - `prefer` (the default): TLS when the server offers it, its certificate not checked;
//! - `require`: TLS or no connection, the certificate not checked (checked against
//!   `sslrootcert` when one is given, as libpq does);
//! - `verify-ca`: TLS, the certificate signed by a trusted root: `sslrootcert=<file>` (PEM), else
//!   the system's roots;
//! - `verify-full`: as `verify-ca`, and the certificate names the host connected to.
//!
//! A managed database (RDS, Cloud SQL, Azure) wants `sslmode=verify-full` with its provider's
//! root certificate in `sslrootcert`. tokio-postgres reads neither `verify-*` nor `sslrootcert`,
//! so both are taken out of the URL here, before it parses the rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// How to connect: whether to use TLS, and the connector that checks the server as asked.
#[derive(Clone)]
pub struct Tls {
    pub mode: SslMode,
    pub connector: MakeRustlsConnect,
}

/// What every drover connection sets once the caller has checked the URL: the password from
/// `PGPASSWORD` when the URL has none, a 10 s connect timeout, the name the server shows for it
/// (`pg_stat_activity.application_name`), and TLS as `tls` says.
pub fn settle(config: &mut tokio_postgres::Config, tls: &Tls, application: &str) {
    if config.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
    {
        config.password(password);
    }
    config.connect_timeout(std::time::Duration::from_secs(10));
    config.application_name(application);
    config.ssl_mode(tls.mode);
}

/// Takes `sslmode` and `sslrootcert` out of `url`: the rest of the URL (for tokio-postgres to
/// parse), and how to connect. The error says what is wrong and what to give instead.
pub fn split(url: &str) -> Result<(String, Tls), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut rootcert) = (None, None);
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", m)) => mode = Some(m.to_owned()),
            Some(("sslrootcert", p)) => rootcert = Some(PathBuf::from(p)),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let root = rootcert.as_deref();
    let (mode, verify) = match mode.as_deref().unwrap_or("prefer") {
        "disable" => (SslMode::Disable, Verify::Nothing),
        "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
        "require" if root.is_some() => (SslMode::Require, Verify::Chain),
        "require" => (SslMode::Require, Verify::Nothing),
        "verify-ca" => (SslMode::Require, Verify::Chain),
        "verify-full" => (SslMode::Require, Verify::Full),
        other => {
            return Err(format!(
                "sslmode={other} is not a TLS mode: give disable, prefer, require, verify-ca or \
                 verify-full"
            ));
        }
    };
    let config = client_config(verify, root)?;
    Ok((
        url,
        Tls {
            mode,
            connector: MakeRustlsConnect::new(config),
        },
    ))
}

/// How much of the server's certificate is checked.
enum Verify {
    Nothing,
    Chain,
    Full,
}

fn client_config(verify: Verify, rootcert: Option<&Path>) -> Result<ClientConfig, String> {
    // Named, not installed process-wide: two providers linked in would make the default panic.
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    Ok(match verify {
        Verify::Full => builder
            .with_root_certificates(roots(rootcert)?)
            .with_no_client_auth(),
        Verify::Chain | Verify::Nothing => {
            let roots = match verify {
                Verify::Chain => Some(Arc::new(roots(rootcert)?)),
                _ => None,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient { provider, roots }))
                .with_no_client_auth()
        }
    })
}

/// The roots a certificate is checked against: `sslrootcert`'s, else the system's.
fn roots(rootcert: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let unreadable = |e: &dyn std::fmt::Display| {
                format!(
                    "sslrootcert={}: cannot read it as PEM certificates: {e}",
                    path.display()
                )
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
                store
                    .add(cert.map_err(|e| unreadable(&e))?)
                    .map_err(|e| unreadable(&e))?;
            }
        }
        None => {
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    if store.is_empty() {
        return Err(match rootcert {
            Some(path) => format!("sslrootcert={} holds no certificate", path.display()),
            None => "this machine has no root certificates to check the server's against: give \
                     sslrootcert=<file> (the CA's certificate, PEM)"
                .into(),
        });
    }
    Ok(store)
}

/// Checks the handshake's signatures always, and the certificate's chain (never its name) when
/// it has roots: `prefer`/`require` and `verify-ca`.
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    roots: Option<Arc<RootCertStore>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_parameters_leave_the_url_and_bad_ones_are_named() {
        let (rest, tls) = split("postgres://u@h:5432/db?sslmode=require&ledger=x").unwrap();
        assert_eq!(rest, "postgres://u@h:5432/db?ledger=x");
        assert!(matches!(tls.mode, SslMode::Require));
        let (rest, tls) = split("postgres://u@h/db").unwrap();
        assert_eq!(rest, "postgres://u@h/db");
        assert!(matches!(tls.mode, SslMode::Prefer));
        let bad = split("postgres://u@h/db?sslmode=verify-everything")
            .err()
            .unwrap();
        assert!(
            bad.contains("verify-everything") && bad.contains("verify-full"),
            "{bad}"
        );
        let missing = split("postgres://u@h/db?sslmode=verify-full&sslrootcert=/no/such.pem")
            .err()
            .unwrap();
        assert!(missing.contains("/no/such.pem"), "{missing}");
    }
}
