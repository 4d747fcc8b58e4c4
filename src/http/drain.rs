//! Reading and dropping the rest of a refused request's body.
//!
//! A server that answers before reading the whole body and then closes
//! the socket with unread data in it makes the kernel send a reset: the
//! client, still sending, sees a broken connection instead of the answer.
//! Reading what is left (bounded in bytes and time, never decoded) lets the
//! refusal reach it.

use std::time::Duration;

use axum::body::BodyDataStream;
use futures_util::StreamExt;

/// At most this much of a refused body is read…
const DRAIN_LIMIT: usize = 16 << 20;
/// …for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads and discards what is left of `body`, within the limits above.
pub(crate) async fn drain(body: &mut BodyDataStream) {
    let mut drained = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = body.next().await {
            drained += chunk.len();
            if drained > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}
