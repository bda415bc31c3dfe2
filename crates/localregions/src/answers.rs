//! A member API server that answers, but only with an error: 429 from API
//! Priority and Fairness, 503 while etcd elects a leader, 500 during an
//! upgrade. Such answers say nothing about whether the region serves, and
//! the operator must not read them as a failure.
//!
//! `LocalRegions::answer` points the operator's proxy for a cluster at a
//! server that answers every request with one status code, over TLS with
//! the cluster's own serving certificate (so the operator's kubeconfig
//! trusts it as it trusts the real API server). Switching the proxy's
//! upstream closes the connections open through it, watches included.
//! The servers run on threads of this process and live as long as it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Ports of the servers started by this process, by certificate and code.
fn servers() -> &'static Mutex<BTreeMap<(PathBuf, u16), u16>> {
    static SERVERS: OnceLock<Mutex<BTreeMap<(PathBuf, u16), u16>>> = OnceLock::new();
    SERVERS.get_or_init(Default::default)
}

/// The port of a server answering `code` to every request over TLS with
/// `cert`/`key`, started on first use.
pub(crate) fn server(cert: &Path, key: &Path, code: u16) -> Result<u16> {
    if !(400..600).contains(&code) {
        bail!("answer with an error code (400-599), not {code}");
    }
    let mut started = servers().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(port) = started.get(&(cert.to_path_buf(), code)) {
        return Ok(*port);
    }
    let acceptor = acceptor(cert, key)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    std::thread::Builder::new()
        .name(format!("answers-{code}"))
        .spawn(move || serve(listener, acceptor, code))?;
    started.insert((cert.to_path_buf(), code), port);
    Ok(port)
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn serve(listener: std::net::TcpListener, acceptor: TlsAcceptor, code: u16) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return tracing::error!(%error, "starting the answers server"),
    };
    runtime.block_on(async move {
        let Ok(listener) = TcpListener::from_std(listener) else {
            return;
        };
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let io = hyper_util::rt::TokioIo::new(tls);
                let answer = hyper::service::service_fn(move |request| answer(request, code));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, answer)
                    .await;
            });
        }
    });
}

/// A Kubernetes `Status` with `code`, as the API server writes its errors.
async fn answer(
    request: Request<hyper::body::Incoming>,
    code: u16,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let reason = match code {
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    };
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("{} {}: answered {code} by localregions", request.method(), request.uri().path()),
        "reason": reason,
        "code": code,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::SERVICE_UNAVAILABLE);
    let headers = response.headers_mut();
    headers.insert("content-type", "application/json".parse().expect("static"));
    if code == 429 {
        headers.insert("retry-after", "1".parse().expect("static"));
    }
    Ok(response)
}
