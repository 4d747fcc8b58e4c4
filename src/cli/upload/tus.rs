//! The tus 1.0.0 client side of `relay upload`: create an upload, send it
//! in chunks, and after a dropped connection, a server fault or a restart
//! of this program ask the server where the upload stands and go on from
//! there.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use reqwest::{Client, StatusCode};
use serde_json::Value;

/// Bytes per PATCH: a dropped connection costs at most this much again.
pub const CHUNK: u64 = 8 << 20;
/// Tries per chunk (with growing pauses) before a file is given up.
const TRIES: u32 = 6;

/// Why a file was not uploaded.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The server refused the request: not worth retrying as it is.
    #[error("{message}")]
    Refused {
        /// The HTTP status, for callers that tell a refused file from a
        /// refused token or case.
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached, kept failing, or answered
    /// something unusable: worth trying again later.
    #[error("gave up after repeated tries: {0}")]
    GaveUp(String),
    #[error("cannot read the file: {0}")]
    Read(#[from] std::io::Error),
}

/// A server answer's `{"error", "message"}`, or its status.
pub(crate) async fn refusal(response: reqwest::Response) -> UploadError {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    UploadError::Refused {
        status: status.as_u16(),
        code: body["error"].as_str().unwrap_or("refused").to_owned(),
        message: body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered {status}")),
    }
}

fn transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// Where an upload stands on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub offset: u64,
    /// The image it became (`Relay-Image`), once the last byte went through
    /// ingest.
    pub image: Option<String>,
}

/// One server, one token.
#[derive(Debug, Clone)]
pub struct Tus {
    pub http: Client,
    pub server: String,
    pub token: String,
    /// Tries per request or chunk before giving up: a person waiting at a
    /// terminal wants a verdict; the agent retries on its own schedule.
    pub tries: u32,
}

impl Tus {
    /// A client of `server` with the default number of tries.
    pub fn new(http: Client, server: &str, token: String) -> Self {
        Self {
            http,
            server: server.trim_end_matches('/').to_owned(),
            token,
            tries: TRIES,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.trim_end_matches('/'))
    }

    pub(crate) fn authorized(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.authorized(method, path)
            .header("tus-resumable", "1.0.0")
    }

    /// Creates an upload of `size` bytes into `case`; returns its path.
    pub async fn create(
        &self,
        case: &str,
        name: &str,
        media_type: &str,
        size: u64,
        sha256_hex: &str,
    ) -> Result<String, UploadError> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let metadata = format!(
            "case {},filename {},filetype {},sha256 {}",
            b64(case),
            b64(name),
            b64(media_type),
            b64(sha256_hex)
        );
        let response = self
            .retrying(|| {
                self.request(reqwest::Method::POST, "/api/v1/uploads")
                    .header("upload-length", size.to_string())
                    .header("upload-metadata", metadata.clone())
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(refusal(response).await);
        }
        response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(|l| l.trim_start_matches(&self.server).to_owned())
            .ok_or_else(|| UploadError::GaveUp("the server named no upload".to_owned()))
    }

    /// Where an upload stands: its offset, or `None` when the server no
    /// longer has it (expired, or another server's).
    pub async fn offset(&self, upload: &str) -> Result<Option<u64>, UploadError> {
        Ok(self.standing(upload).await?.map(|s| s.offset))
    }

    /// Where an upload stands, and the image it became if it is finished;
    /// `None` when the server no longer has it.
    pub async fn standing(&self, upload: &str) -> Result<Option<Standing>, UploadError> {
        let response = self
            .retrying(|| self.request(reqwest::Method::HEAD, upload))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let Some(offset) = header("upload-offset").and_then(|v| v.parse().ok()) else {
            return Err(UploadError::GaveUp(
                "the server named no Upload-Offset".to_owned(),
            ));
        };
        Ok(Some(Standing {
            offset,
            image: header("relay-image"),
        }))
    }

    /// Sends `path` from `offset` to the end, chunk by chunk, calling
    /// `progress` with each chunk's size; returns the image receipt.
    pub async fn send(
        &self,
        upload: &str,
        path: &Path,
        size: u64,
        mut offset: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Value, UploadError> {
        let mut file = std::fs::File::open(path)?;
        let mut tries = 0u32;
        loop {
            let length = CHUNK.min(size - offset);
            let mut chunk = vec![0u8; usize::try_from(length).unwrap_or(usize::MAX)];
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut chunk)?;
            let checksum = base64::engine::general_purpose::STANDARD
                .encode(<sha2::Sha256 as sha2::Digest>::digest(&chunk));
            let sent = self
                .request(reqwest::Method::PATCH, upload)
                .header("content-type", "application/offset+octet-stream")
                .header("upload-offset", offset.to_string())
                .header("upload-checksum", format!("sha256 {checksum}"))
                .body(chunk)
                .send()
                .await;
            match sent {
                Ok(response) if response.status() == StatusCode::NO_CONTENT => {
                    let next = response
                        .headers()
                        .get("upload-offset")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(offset + length);
                    progress(next - offset);
                    offset = next;
                    tries = 0;
                    if offset >= size {
                        let image = response
                            .headers()
                            .get("location")
                            .and_then(|l| l.to_str().ok())
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                UploadError::GaveUp("the server named no image".to_owned())
                            })?;
                        return self.receipt(&image).await;
                    }
                    continue;
                }
                Ok(response) if !transient(response.status()) => {
                    return Err(refusal(response).await);
                }
                Ok(response) => {
                    tracing::warn!(status = %response.status(), offset, "upload: retrying")
                }
                Err(error) => tracing::warn!(%error, offset, "upload: connection lost; resuming"),
            }
            tries += 1;
            if tries >= self.tries {
                return Err(UploadError::GaveUp(format!(
                    "the upload stopped at byte {offset}"
                )));
            }
            tokio::time::sleep(pause(tries)).await;
            match self.offset(upload).await? {
                Some(at) => {
                    if at > offset {
                        progress(at - offset);
                    }
                    offset = at;
                }
                None => return Err(UploadError::GaveUp("the server lost the upload".to_owned())),
            }
        }
    }

    /// The receipt (the image record) of a finished upload's image.
    pub async fn receipt(&self, image: &str) -> Result<Value, UploadError> {
        let response = self
            .retrying(|| self.http.get(self.url(image)).bearer_auth(&self.token))
            .await?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| UploadError::GaveUp(format!("unreadable receipt: {e}")))
    }

    /// Sends a request again after a connection failure or a server fault.
    pub(crate) async fn retrying(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, UploadError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match request().send().await {
                Ok(response) if !response.status().is_server_error() || tries >= self.tries => {
                    return Ok(response);
                }
                Ok(response) => tracing::warn!(status = %response.status(), "retrying"),
                Err(error) if tries >= self.tries => {
                    return Err(UploadError::GaveUp(error.to_string()));
                }
                Err(error) => tracing::warn!(%error, "retrying"),
            }
            tokio::time::sleep(pause(tries)).await;
        }
    }
}

/// 0.5 s, 1 s, 2 s, … up to 16 s.
fn pause(tries: u32) -> Duration {
    Duration::from_millis(500 << tries.min(5))
}
