//! Whether the server can be used now. After a network or server fault
//! the agent leaves it alone for a pause that doubles (1 s, 2 s, … up to
//! `--max-backoff`, with a little jitter so many clinics' agents do not
//! knock in step), then asks `GET /api/v1/me` — which needs the network,
//! the server and the token — before sending the queue again.

use std::time::{Duration, Instant};

use crate::cli::upload::tus::Tus;

/// Why the server is being left alone, and until when.
#[derive(Debug)]
struct Down {
    reason: String,
    pause: Duration,
    next_try: Instant,
}

/// The agent's view of its link to the server.
#[derive(Debug)]
pub struct Link {
    down: Option<Down>,
    max_pause: Duration,
}

impl Link {
    pub fn new(max_pause: Duration) -> Self {
        Self {
            down: None,
            max_pause,
        }
    }

    /// Why the server is not used now, if it is not.
    pub fn down_because(&self) -> Option<String> {
        self.down.as_ref().map(|d| d.reason.clone())
    }

    pub fn is_up(&self) -> bool {
        self.down.is_none()
    }

    /// A try failed for a reason that is not the file's.
    pub fn lost(&mut self, reason: String) {
        if self.down.is_none() {
            tracing::warn!(%reason, "cannot reach the server; files stay queued and are tried again");
            self.down = Some(Down {
                reason,
                pause: Duration::from_secs(1),
                next_try: Instant::now() + Duration::from_secs(1),
            });
        }
    }

    /// Whether to use the server now: yes unless it was lost and the pause
    /// is not over or it still does not answer.
    pub async fn usable(&mut self, tus: &Tus) -> bool {
        let Some(down) = &mut self.down else {
            return true;
        };
        if Instant::now() < down.next_try {
            return false;
        }
        let probe = tus
            .authorized(reqwest::Method::GET, "/api/v1/me")
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match probe {
            Ok(response) if response.status().is_success() => {
                tracing::info!("the server answers again; sending the queued files");
                self.down = None;
                true
            }
            outcome => {
                let why = match outcome {
                    Ok(response) => format!("the server answered {}", response.status()),
                    Err(e) => e.to_string(),
                };
                down.pause = (down.pause * 2).min(self.max_pause);
                down.next_try = Instant::now() + down.pause + jitter();
                tracing::debug!(reason = %why, pause = ?down.pause, "server still unreachable");
                down.reason = why;
                false
            }
        }
    }
}

/// Up to a quarter second, from the clock (no randomness crate needed).
fn jitter() -> Duration {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    Duration::from_millis(u64::from(millis % 250))
}
