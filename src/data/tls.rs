//! TLS to the databases, as a libpq URI asks for it. tokio-postgres reads
//! `sslmode` only as `disable`, `prefer` or `require` and no `sslrootcert`
//! at all, so the operator takes both out of the URI and checks the
//! server itself:
//!
//! | `sslmode` | TLS | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `allow`, `prefer` (or none) | when the server offers it | not checked (as libpq) |
//! | `require` | always | not checked; checked against the CA when one is given (as libpq) |
//! | `verify-ca` | always | signed by the CA |
//! | `verify-full` | always | signed by the CA and for the URI's host |
//!
//! The CA is the Secret's `ca.crt` key (PEM, for every region's URI), or
//! the Mozilla roots with `sslrootcert=system`. A client certificate is
//! the Secret's `tls.crt` and `tls.key`. A `sslrootcert`, `sslcert` or
//! `sslkey` path is refused: the operator reads no file of its pod for a
//! tenant.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::plan::replication::ClientIdentity;

/// The Secret key whose PEM certificates the databases' servers are
/// checked against.
pub const CA_KEY: &str = "ca.crt";
/// The Secret keys of the client certificate (PEM chain) the operator
/// shows every region's server, and of its private key (PEM: PKCS#8,
/// PKCS#1 or SEC1), as in a `kubernetes.io/tls` Secret.
pub const CLIENT_CERT_KEY: &str = "tls.crt";
pub const CLIENT_KEY_KEY: &str = "tls.key";

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Which certificates a server's is checked against (`sslrootcert`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The Secret's `ca.crt`, if it has one.
    Secret,
    /// `sslrootcert=system`: the Mozilla roots.
    System,
}

/// A URI with the TLS settings taken out: what tokio-postgres reads, and
/// what the operator does itself.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    pub uri: String,
    pub mode: SslMode,
    pub roots: Roots,
}

/// Takes `sslmode` and `sslrootcert` out of a URI, in either of libpq's
/// forms (`postgresql://...?sslmode=...` or `host=... sslmode=...`).
/// `sslrootcert=system` means `verify-full` and refuses weaker modes, as
/// in libpq.
pub fn split(uri: &str) -> Result<Split, String> {
    let (uri, settings) = if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
        split_url(uri)
    } else {
        split_words(uri)
    };
    let (mut mode, mut roots) = (None, Roots::Secret);
    for (key, value) in settings {
        match (key.as_str(), value.as_str()) {
            ("sslmode", "disable") => mode = Some(SslMode::Disable),
            ("sslmode", "allow" | "prefer") => mode = Some(SslMode::Prefer),
            ("sslmode", "require") => mode = Some(SslMode::Require),
            ("sslmode", "verify-ca") => mode = Some(SslMode::VerifyCa),
            ("sslmode", "verify-full") => mode = Some(SslMode::VerifyFull),
            ("sslmode", other) => {
                let shown = if other.len() <= 16
                    && other.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    format!("={other}")
                } else {
                    String::new()
                };
                return Err(format!(
                    "sslmode{shown}: not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
            ("sslrootcert", "system") => roots = Roots::System,
            ("sslrootcert", _) => {
                return Err(format!(
                    "sslrootcert: a file is not read; put the CA in the Secret's {CA_KEY} key, or write sslrootcert=system"
                ));
            }
            (key, _) => {
                return Err(format!(
                    "{key}: a file is not read; put the client certificate and its key in the Secret's {CLIENT_CERT_KEY} and {CLIENT_KEY_KEY} keys"
                ));
            }
        }
    }
    let mode = match (roots, mode) {
        (Roots::System, None | Some(SslMode::VerifyFull)) => SslMode::VerifyFull,
        (Roots::System, Some(_)) => {
            return Err(
                "sslrootcert=system: only with sslmode=verify-full (any public certificate would do otherwise)"
                    .to_string(),
            );
        }
        (Roots::Secret, mode) => mode.unwrap_or(SslMode::Prefer),
    };
    Ok(Split { uri, mode, roots })
}

/// The settings this module reads.
const OURS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

fn split_url(uri: &str) -> (String, Vec<(String, String)>) {
    // The query begins after the credentials, which end at an `@` before
    // the first `/` (as libpq reads them: a `?` in a password does not
    // begin it); what this misses, `connect` refuses.
    let start = uri.find("://").map_or(0, |i| i + 3);
    let authority = &uri[start..];
    let credentials = authority
        .find(['@', '/'])
        .filter(|&i| authority[i..].starts_with('@'));
    let after = credentials.map_or(start, |i| start + i + 1);
    let Some(at) = uri[after..].find('?').map(|i| after + i) else {
        return (uri.to_string(), Vec::new());
    };
    let (base, query) = (&uri[..at], &uri[at + 1..]);
    let (mut kept, mut taken) = (Vec::new(), Vec::new());
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((key, value)) if OURS.contains(&key) => {
                taken.push((key.to_string(), value.to_string()));
            }
            _ => kept.push(pair),
        }
    }
    let uri = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (uri, taken)
}

/// The key/value form, with the settings taken out and the rest of the
/// text as it was (quoted values keep their spaces).
fn split_words(uri: &str) -> (String, Vec<(String, String)>) {
    let (mut kept, mut taken) = (String::new(), Vec::new());
    let mut rest = uri;
    while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
        let end = rest[start..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |i| start + i);
        let word = &rest[start..end];
        match word.split_once('=') {
            Some((key, value)) if OURS.contains(&key) => {
                taken.push((key.to_string(), value.trim_matches('\'').to_string()));
            }
            _ => kept.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    (kept.trim().to_string(), taken)
}

/// The TLS connector for `mode`, trusting `ca` (PEM) or the Mozilla roots,
/// showing `client`'s certificate when there is one.
pub fn connector(
    split: &Split,
    ca: Option<&str>,
    client: Option<&ClientIdentity>,
) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = roots(split, ca)?;
    let verifier: Arc<dyn ServerCertVerifier> = match (split.mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => webpki(roots, &provider)?,
        (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(AnyName {
            inner: webpki(roots, &provider)?,
        }),
        (SslMode::VerifyFull | SslMode::VerifyCa, None) => {
            return Err(format!(
                "sslmode={}: no CA to check the server against; put it in the Secret's {CA_KEY} key, or write sslrootcert=system",
                if split.mode == SslMode::VerifyFull {
                    "verify-full"
                } else {
                    "verify-ca"
                }
            ));
        }
        _ => Arc::new(Unchecked {
            provider: provider.clone(),
        }),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client {
        Some(identity) => {
            let (chain, key) = client_identity(identity)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{CLIENT_KEY_KEY}: does not go with {CLIENT_CERT_KEY}: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The client certificate chain and key, parsed from their PEM.
fn client_identity(
    identity: &ClientIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_slice_iter(identity.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{CLIENT_CERT_KEY}: not PEM certificates: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{CLIENT_CERT_KEY}: no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes())
        .map_err(|_| format!("{CLIENT_KEY_KEY}: not a PEM private key"))?;
    Ok((chain, key))
}

/// The certificates to check against: `None` when there are none to use.
fn roots(split: &Split, ca: Option<&str>) -> Result<Option<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    match (split.roots, ca) {
        (Roots::System, _) => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        (Roots::Secret, Some(pem)) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("{CA_KEY}: not PEM certificates: {e}"))?;
                store
                    .add(cert)
                    .map_err(|e| format!("{CA_KEY}: a certificate rustls refuses: {e}"))?;
            }
            if store.is_empty() {
                return Err(format!("{CA_KEY}: no certificate in it"));
            }
        }
        (Roots::Secret, None) => return Ok(None),
    }
    Ok(Some(store))
}

fn webpki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())
}

/// `verify-ca`: the chain must lead to the CA; the host name is not
/// checked.
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
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
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a CA: encrypted, the server not checked
/// (libpq's behaviour); the handshake's signatures still are.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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
    fn tls_settings_are_taken_out_of_either_form_of_uri() {
        let url = split(
            "postgresql://monitor:pw@db.eu:5432/app?sslmode=verify-full&application_name=x&sslrootcert=system",
        )
        .unwrap();
        assert_eq!(
            url,
            Split {
                uri: "postgresql://monitor:pw@db.eu:5432/app?application_name=x".into(),
                mode: SslMode::VerifyFull,
                roots: Roots::System,
            }
        );
        let words =
            split("host=127.0.0.1 port=5432 sslmode='require' password='a  b' user=postgres")
                .unwrap();
        assert_eq!(
            words.uri,
            "host=127.0.0.1 port=5432 password='a  b' user=postgres"
        );
        assert_eq!((words.mode, words.roots), (SslMode::Require, Roots::Secret));
        let plain = split("postgres://u@h/db").unwrap();
        assert_eq!(
            (plain.uri.as_str(), plain.mode),
            ("postgres://u@h/db", SslMode::Prefer)
        );
        for (mode, expected) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("verify-ca", SslMode::VerifyCa),
        ] {
            assert_eq!(
                split(&format!("host=h sslmode={mode}")).unwrap().mode,
                expected
            );
        }
    }

    #[test]
    fn system_roots_mean_verify_full_as_in_libpq() {
        assert_eq!(
            split("host=h sslrootcert=system").unwrap().mode,
            SslMode::VerifyFull
        );
        let weak = split("host=h sslrootcert=system sslmode=require").unwrap_err();
        assert!(weak.contains("only with sslmode=verify-full"), "{weak}");
        let secret = "postgres://u:pa?ss@h/db?sslmode=verify-full";
        assert_eq!(
            split(secret).unwrap().mode,
            SslMode::VerifyFull,
            "a ? in the password"
        );
        let at_in_query =
            split("postgres://h/db?application_name=a@b&sslmode=verify-full&sslrootcert=system")
                .unwrap();
        assert_eq!(at_in_query.uri, "postgres://h/db?application_name=a@b");
        assert_eq!(at_in_query.mode, SslMode::VerifyFull, "an @ in the query");
    }

    #[test]
    fn what_the_operator_cannot_honour_is_refused_by_name() {
        let bad = |uri: &str| split(uri).unwrap_err();
        assert!(bad("host=h sslmode=strict").starts_with("sslmode=strict"));
        let hidden = bad("postgres://u@h/db?sslmode=s3cr3t&x=1%2F");
        assert!(hidden.starts_with("sslmode=s3cr3t"), "{hidden}");
        let odd = bad("host=h sslmode=p@ss/word:long-and-odd");
        assert!(odd.starts_with("sslmode: not one of"), "{odd}");
        assert!(bad("postgres://h/db?sslrootcert=/etc/ca.pem").contains("ca.crt"));
        assert!(bad("host=h sslcert=/c.pem").starts_with("sslcert"));
        let verify = split("host=h sslmode=verify-full").unwrap();
        let refused = connector(&verify, None, None).err().unwrap();
        assert!(refused.contains("no CA"), "{refused}");
        let garbage = connector(&verify, Some("not a certificate"), None)
            .err()
            .unwrap();
        assert!(garbage.contains("ca.crt"), "{garbage}");
        assert!(connector(&split("host=h").unwrap(), None, None).is_ok());
    }

    #[test]
    fn a_client_certificate_is_shown_only_when_whole_and_its_key_never_printed() {
        let dir = std::env::temp_dir().join(format!("multiregion-tls-{}", std::process::id()));
        let pki = localregions::pki::ClusterPki::generate(&dir, "db", &[]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let verify = split("host=h sslmode=verify-full").unwrap();
        let whole = ClientIdentity {
            cert: pki.admin_cert_pem.clone().into(),
            key: pki.admin_key_pem.clone().into(),
        };
        assert!(connector(&verify, Some(&pki.ca_pem), Some(&whole)).is_ok());
        let refused = |identity: ClientIdentity| {
            connector(&verify, Some(&pki.ca_pem), Some(&identity))
                .err()
                .unwrap()
        };
        let bad_key = ClientIdentity {
            key: "not a key".into(),
            ..whole.clone()
        };
        assert!(refused(bad_key).starts_with("tls.key"));
        let no_cert = ClientIdentity {
            cert: "".into(),
            ..whole.clone()
        };
        assert!(refused(no_cert).starts_with("tls.crt"));
        let shown = format!("{whole:?}");
        assert!(!shown.contains(pki.admin_key_pem.trim()), "{shown}");
        assert!(shown.contains("***"));
    }
}
