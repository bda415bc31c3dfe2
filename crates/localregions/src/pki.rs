//! Certificates and kubeconfigs for one local cluster.
//!
//! Each cluster gets its own CA; the API server serves a certificate signed by
//! it for 127.0.0.1/localhost (and a spread hub's region addresses), and the admin kubeconfig authenticates with a
//! client certificate in `system:masters`. A separate key signs
//! ServiceAccount tokens so they work as in a real cluster.

use std::path::{Path, PathBuf};

use anyhow::Result;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Paths of the files written for one cluster.
#[derive(Clone, Debug)]
pub struct ClusterPki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// Private key that signs ServiceAccount tokens (PKCS#8).
    pub service_account_key: PathBuf,
    /// Its public half, which the API server verifies tokens with.
    pub service_account_pub: PathBuf,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub ca_pem: String,
}

impl ClusterPki {
    /// Generates the CA, serving, admin and ServiceAccount keys into `dir`;
    /// the serving certificate is for 127.0.0.1, localhost and `addresses`.
    pub fn generate(dir: &Path, cluster: &str, addresses: &[std::net::IpAddr]) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{cluster}-ca"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut serving = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        for address in addresses {
            serving.subject_alt_names.push(SanType::IpAddress(*address));
        }
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate()?;
        let serving_cert = serving.signed_by(&serving_key, &ca)?;

        let mut admin = CertificateParams::default();
        admin.distinguished_name.push(DnType::CommonName, "admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate()?;
        let admin_cert = admin.signed_by(&admin_key, &ca)?;

        let sa_key = KeyPair::generate()?;

        let pki = ClusterPki {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            service_account_key: dir.join("service-account.key"),
            service_account_pub: dir.join("service-account.pub"),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
            ca_pem: ca.as_ref().pem(),
        };
        write_private(&pki.ca_cert, &pki.ca_pem)?;
        write_private(&pki.serving_cert, &serving_cert.pem())?;
        write_private(&pki.serving_key, &serving_key.serialize_pem())?;
        write_private(&pki.service_account_key, &sa_key.serialize_pem())?;
        write_private(&pki.service_account_pub, &sa_key.public_key_pem())?;
        write_private(&dir.join("admin.crt"), &pki.admin_cert_pem)?;
        write_private(&dir.join("admin.key"), &pki.admin_key_pem)?;
        Ok(pki)
    }

    /// An admin kubeconfig whose only context is named after the cluster.
    pub fn admin_kubeconfig(&self, cluster: &str, server: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {cluster}-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {cluster}
  context:
    cluster: {cluster}
    user: {cluster}-admin
current-context: {cluster}
",
            ca = b64(&self.ca_pem),
            cert = b64(&self.admin_cert_pem),
            key = b64(&self.admin_key_pem),
        )
    }
}

/// Writes a file readable only by the owner (keys live next to certs).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, contents.as_bytes())?;
    Ok(())
}
