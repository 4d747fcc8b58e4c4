//! Accepting connections: `axum::serve`'s loop, with the timeouts it lacks.
//!
//! `axum::serve` gives hyper no timer, and without one hyper's header read
//! timeout never fires: a client that sends its request head a byte at a
//! time (slow loris) holds a connection and a task for as long as it likes,
//! and enough of them exhaust the process's file descriptors. This loop is
//! the same accept loop with a Tokio timer, so an HTTP/1 request head must
//! arrive whole within `header_read_timeout`, and the same graceful
//! shutdown: in-flight requests finish, idle connections close. Slow bodies
//! are bounded separately, by the body read timeout layer of the router.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::drain::drain;
use super::error::ApiError;

/// How long accepting pauses after an error such as running out of file
/// descriptors, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The router with the limits every request gets whatever its route: a
/// body that pauses longer than `body_read_timeout` between two pieces
/// fails (upload routes have no overall deadline, so this is what ends a
/// stalled upload), and a compressed body is refused.
pub fn with_transport_limits(router: Router, body_read_timeout: Duration) -> Router {
    router
        .layer(RequestBodyTimeoutLayer::new(body_read_timeout))
        .layer(middleware::from_fn(refuse_content_encoding))
        .layer(middleware::from_fn(close_after_refused_body))
}

/// Says `Connection: close` on an error answer to a request that carried a
/// body. A handler that refuses a request may not have read all of its body;
/// hyper then reads what has already arrived and, if the body is not done,
/// stops reading and closes the connection after the answer — which the
/// client cannot tell from the answer, and may already be sending its next
/// request on (a broken pipe; seen with a tus client's PATCH right after a
/// `409` at the wrong offset). Saying so in the answer makes the client open
/// a new connection instead (RFC 9112 §9.6).
async fn close_after_refused_body(request: Request<Body>, next: Next) -> Response {
    let has_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    let mut response = next.run(request).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Answers `415` to a request whose body has a `Content-Encoding` other
/// than `identity` (RFC 9110 §15.5.16). Relay does not decompress request
/// bodies: an image is sent as its own bytes, and refusing at the header is
/// cheaper and clearer than letting a gzip bomb reach a parser that would
/// only see that the bytes are not an image or JSON.
async fn refuse_content_encoding(request: Request<Body>, next: Next) -> Response {
    let encoded = request
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
        .map(str::to_owned);
    let Some(coding) = encoded else {
        return next.run(request).await;
    };
    drain(&mut request.into_body().into_data_stream()).await;
    let mut response = ApiError::UnsupportedMediaType(format!(
        "Content-Encoding {coding:?} is not accepted: send the body uncompressed"
    ))
    .into_response();
    response.headers_mut().insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    response
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for
/// the connections' in-flight requests. Handlers see the peer address as
/// `ConnectInfo<SocketAddr>`, as with `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = router
            .clone()
            .map_request(move |request: Request<hyper::body::Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            });
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            if let Err(error) = watcher.watch(connection).await {
                // Timeouts and clients that vanish end here; not a fault.
                tracing::debug!(peer = %remote, %error, "connection closed with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_request_head_sent_too_slowly_is_cut_off_and_others_are_served() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            router,
            Duration::from_millis(300),
            async move {
                let _ = stopped.await;
            },
        ));

        let started = Instant::now();
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET / HT").await.expect("write");
        let mut normal = tokio::net::TcpStream::connect(addr).await.expect("connect");
        normal
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        normal.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("127.0.0.1"), "{answer}");

        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the slow client was not cut off");
        assert!(started.elapsed() < Duration::from_secs(2));

        stop.send(()).expect("stop");
        server.await.expect("joined").expect("served");
    }
}
