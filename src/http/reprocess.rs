//! `/api/v1/admin/reprocess`: administrators start operators' batch runs
//! (verify, rederive) and watch them. A started run is carried out by a
//! worker through the `reprocess` job, so it survives this request and the
//! worker that first takes it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use relay_workers::blob::canonical_url;
use relay_workers::reprocess::{BlobFilter, Rate, RunKind, RunOptions, RunRecord, Shard};
use relay_workers::stages::ReprocessJob;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Caller, JsonBody};
use relay_workers::queue::Job;

/// A run to start; every field but `kind` is optional.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// `verify`, `rederive`, `migrate` or `sweep`.
    pub kind: RunKind,
    /// Items worked on at once (default 4, at most 64).
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1, maximum = 64)]
    pub concurrency: Option<usize>,
    /// e.g. `50MB/s` or `200/s`.
    pub rate: Option<String>,
    pub filter: Option<BlobFilter>,
    #[serde(default)]
    pub dry_run: bool,
    /// `rederive`: every image, not only stale ones.
    #[serde(default)]
    pub all: bool,
    /// `migrate` (required): the URL of the store to move blobs to.
    pub to: Option<String>,
    /// `migrate`: remove each blob from its old store once verified and
    /// recorded in the new one.
    #[serde(default)]
    pub delete_source: bool,
    /// `verify`: the URL of a store holding replicas to repair from.
    pub repair_from: Option<String>,
    /// `sweep`: seconds an unreferenced blob must have been stored before
    /// it is removed (default one day).
    #[serde(default, deserialize_with = "whole")]
    pub grace_secs: Option<u64>,
    /// `verify`, `migrate`, `sweep`: split the run into this many runs, one
    /// per range of blob keys, each its own job, so as many workers carry
    /// it out at once (default 1, at most 64).
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1, maximum = 64)]
    pub shards: Option<u32>,
}

impl JsonBody for StartRun {}

/// A count as JSON Schema's `integer` has it: any number without a
/// fractional part, `4.0` as well as `4` (serde alone refuses `4.0`, which
/// some clients' JSON writers send for a whole float).
fn whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a whole number in range, got {number}")))
}

/// `POST /api/v1/admin/reprocess`: records the run (or its shards) and
/// queues each.
#[utoipa::path(post, path = "/api/v1/admin/reprocess", tag = "admin", request_body = StartRun, security(("bearer" = [])),
    responses((status = 202, description = "The runs queued: one, or one per shard", body = Vec<RunRecord>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start_run(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<StartRun>, ApiError>,
) -> Result<(StatusCode, Json<Vec<RunRecord>>), ApiError> {
    // Who may start a run is settled before the body is read: a caller
    // who may not learns nothing of what a valid body is.
    caller.require_admin()?;
    let ApiJson(body) = body?;
    if body.kind == RunKind::Migrate && body.to.is_none() {
        return Err(ApiError::InvalidField {
            field: Some("to".to_owned()),
            message: "a migration needs the URL of the store to move blobs to".to_owned(),
        });
    }
    for url in [&body.to, &body.repair_from].into_iter().flatten() {
        canonical_url(url).map_err(|e| ApiError::InvalidField {
            field: Some(
                if Some(url) == body.to.as_ref() {
                    "to"
                } else {
                    "repair_from"
                }
                .to_owned(),
            ),
            message: e.to_string(),
        })?;
    }
    let shards = body.shards.unwrap_or(1);
    if shards == 0 || shards > Shard::MAX || (shards > 1 && body.kind == RunKind::Rederive) {
        return Err(ApiError::InvalidField {
            field: Some("shards".to_owned()),
            message: format!(
                "shards must be between 1 and {} (rederive is spread over the workers by its derive jobs)",
                Shard::MAX
            ),
        });
    }
    let concurrency = body.concurrency.unwrap_or(4);
    if concurrency == 0 || concurrency > 64 {
        return Err(ApiError::InvalidField {
            field: Some("concurrency".to_owned()),
            message: "concurrency must be between 1 and 64".to_owned(),
        });
    }
    let rate = body
        .rate
        .as_deref()
        .map(Rate::parse)
        .transpose()
        .map_err(|message| ApiError::InvalidField {
            field: Some("rate".to_owned()),
            message,
        })?;
    let options = RunOptions {
        concurrency,
        rate,
        filter: body.filter,
        dry_run: body.dry_run,
        all: body.all,
        to: body.to,
        delete_source: body.delete_source,
        repair_from: body.repair_from,
        grace_secs: body.grace_secs,
        ..RunOptions::default()
    };
    let mut runs = Vec::with_capacity(shards as usize);
    for index in 0..shards {
        let options = RunOptions {
            shard: (shards > 1).then_some(Shard { index, of: shards }),
            ..options.clone()
        };
        let run = state.catalog.start_run(body.kind, &options).await?;
        let job = serde_json::to_value(ReprocessJob {
            run_id: run.id.clone(),
        })
        .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        state
            .catalog
            .enqueue(ReprocessJob::KIND, &job, ReprocessJob::MAX_ATTEMPTS)
            .await?;
        tracing::info!(run.id = %run.id, kind = body.kind.as_str(), "reprocess run queued");
        runs.push(run);
    }
    state.work_queued();
    Ok((StatusCode::ACCEPTED, Json(runs)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// At most 200; default 20.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// `GET /api/v1/admin/reprocess`: recent runs, newest first.
#[utoipa::path(get, path = "/api/v1/admin/reprocess", tag = "admin", params(RunParams), security(("bearer" = [])),
    responses((status = 200, body = Vec<RunRecord>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<RunParams>,
) -> Result<Json<Vec<RunRecord>>, ApiError> {
    caller.require_admin()?;
    let limit = params.limit.unwrap_or(20);
    if limit == 0 || limit > 200 {
        return Err(ApiError::InvalidQuery(
            "limit must be between 1 and 200".to_owned(),
        ));
    }
    Ok(Json(state.catalog.list_runs(limit).await?))
}

/// `GET /api/v1/admin/reprocess/{id}`: one run, with its counts and failures.
#[utoipa::path(get, path = "/api/v1/admin/reprocess/{id}", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = RunRecord), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunRecord>, ApiError> {
    caller.require_admin()?;
    Ok(Json(state.catalog.get_run(&id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concurrency(json: &str) -> Result<Option<usize>, serde_json::Error> {
        serde_json::from_str::<StartRun>(&format!(r#"{{"kind": "verify", "concurrency": {json}}}"#))
            .map(|run| run.concurrency)
    }

    #[test]
    fn counts_are_whole_numbers_however_spelled() {
        assert_eq!(concurrency("4").ok(), Some(Some(4)));
        assert_eq!(concurrency("4.0").ok(), Some(Some(4)));
        assert_eq!(concurrency("null").ok(), Some(None));
        for refused in ["4.5", "-1", "-1.0", "1e300", "\"4\""] {
            assert!(concurrency(refused).is_err(), "{refused}");
        }
        let absent: StartRun = serde_json::from_str(r#"{"kind": "sweep"}"#).expect("valid");
        assert_eq!(
            (absent.concurrency, absent.grace_secs, absent.shards),
            (None, None, None)
        );
    }
}
