//! The few case calls a client of Relay makes besides uploading: create a
//! case from a referral, list draft cases, submit a case. They share the
//! tus client's connection, token and retry rule, and give the same typed
//! errors, so a caller can tell "refused" (fix the input) from "gave up"
//! (try again later).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::tus::{Tus, UploadError, refusal};

impl Tus {
    /// `POST /api/v1/cases` with `referral`; returns the new case.
    pub async fn create_case(&self, referral: &Value) -> Result<Value, UploadError> {
        let response = self
            .retrying(|| {
                self.authorized(Method::POST, "/api/v1/cases")
                    .json(referral)
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(refusal(response).await);
        }
        body(response).await
    }

    /// The office's draft cases, newest first (one page of up to 100).
    pub async fn draft_cases(&self) -> Result<Vec<Value>, UploadError> {
        let response = self
            .retrying(|| self.authorized(Method::GET, "/api/v1/cases?status=draft&per_page=100"))
            .await?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        let page = body(response).await?;
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    /// `POST /api/v1/cases/{id}/submit`: sends a draft to its specialty.
    pub async fn submit_case(&self, case: &str) -> Result<Value, UploadError> {
        let path = format!("/api/v1/cases/{case}/submit");
        let response = self
            .retrying(|| self.authorized(Method::POST, &path))
            .await?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        body(response).await
    }
}

async fn body(response: reqwest::Response) -> Result<Value, UploadError> {
    response
        .json()
        .await
        .map_err(|e| UploadError::GaveUp(format!("unreadable answer: {e}")))
}
