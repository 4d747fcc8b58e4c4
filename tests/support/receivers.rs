//! The office's and the site's side of notices, as real local servers: a
//! webhook receiver (HTTP) and an SMTP sink (plain or TLS with a private CA).

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// A webhook receiver that answers with whatever status the test sets.
#[derive(Clone, Default)]
pub struct Receiver {
    pub answer: Arc<AtomicU16>,
    pub received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.received.lock().await.push((headers, body));
    StatusCode::from_u16(r.answer.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

impl Receiver {
    /// Starts one on a free port; returns it and its URL.
    pub async fn start(first_answer: u16) -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver.answer.store(first_answer, Ordering::SeqCst);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    /// Waits until `n` requests have arrived (20 s at most).
    pub async fn wait_for(&self, n: usize) {
        for _ in 0..400 {
            if self.received.lock().await.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} deliveries within 20 s");
    }

    /// The JSON events received so far.
    pub async fn events(&self) -> Vec<Value> {
        self.received
            .lock()
            .await
            .iter()
            .map(|(_, body)| serde_json::from_slice(body).expect("json event"))
            .collect()
    }
}

/// A minimal SMTP server that accepts every message and keeps it.
#[derive(Clone, Default)]
pub struct SmtpSink {
    pub messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    /// A plain SMTP sink; returns it and its `smtp://` URL.
    pub async fn start() -> (SmtpSink, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("smtp://{}", listener.local_addr().expect("addr"));
        let sink = SmtpSink::default();
        let messages = sink.messages.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(converse(socket, messages.clone()));
            }
        });
        (sink, url)
    }

    /// An SMTP sink speaking TLS from the first byte (`smtps://`), with a
    /// certificate for 127.0.0.1 issued by a private CA made here. Returns
    /// it, its URL and the CA certificate (PEM) a client must trust.
    pub async fn start_tls() -> (SmtpSink, String, String) {
        let (config, ca_pem) = tls_server_config();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("smtps://{}", listener.local_addr().expect("addr"));
        let sink = SmtpSink::default();
        let messages = sink.messages.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let messages = messages.clone();
                tokio::spawn(async move {
                    // A client that does not trust the CA hangs up here.
                    if let Ok(stream) = acceptor.accept(socket).await {
                        converse(stream, messages).await;
                    }
                });
            }
        });
        (sink, url, ca_pem)
    }

    /// Waits for the first message (10 s at most), with quoted-printable
    /// soft line breaks undone.
    pub async fn first_message(&self) -> String {
        self.wait_for(1).await;
        self.messages.lock().await[0].replace("=\n", "")
    }

    /// Waits until `n` messages have arrived (10 s at most).
    pub async fn wait_for(&self, n: usize) {
        for _ in 0..200 {
            if self.messages.lock().await.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} e-mails within 10 s");
    }

    /// Every message so far, soft line breaks undone.
    pub async fn all(&self) -> Vec<String> {
        self.messages
            .lock()
            .await
            .iter()
            .map(|m| m.replace("=\n", ""))
            .collect()
    }
}

async fn converse<S>(stream: S, sink: Arc<Mutex<Vec<String>>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
    let mut data: Option<String> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(body) = data.as_mut() {
            if line == "." {
                sink.lock().await.push(std::mem::take(body));
                data = None;
                let _ = write.write_all(b"250 queued\r\n").await;
            } else {
                body.push_str(&line);
                body.push('\n');
            }
            continue;
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 sink\r\n",
            "DATA" => {
                data = Some(String::new());
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                break;
            }
            _ => b"250 ok\r\n",
        };
        let _ = write.write_all(reply).await;
        let _ = write.flush().await;
    }
}

/// A server certificate for 127.0.0.1 signed by a fresh CA; returns the
/// server's TLS configuration and the CA certificate as PEM.
fn tls_server_config() -> (rustls::ServerConfig, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
        .expect("ca certificate");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server config");
    (config, ca.pem())
}
