//! The soak's checks after the run: answers, audit trail, images and the
//! blob store against the catalog.

use super::*;
use crate::clients::{Call, Outcome, Shared};

/// The catalog, opened directly.
async fn database(data: &Path) -> Result<sqlx::SqliteConnection> {
    use sqlx::Connection;
    let url = format!("sqlite://{}", data.join("relay.db").display());
    Ok(sqlx::SqliteConnection::connect(&url).await?)
}

/// No call may fail on the client's side or be answered 5xx, and only a
/// resumable upload whose creation a kill cut off may be answered 4xx (its
/// chunks then find no upload).
pub(crate) fn check_answers(calls: &[Call], failures: &mut Vec<String>) {
    let mut refused: HashMap<(&str, u16), usize> = HashMap::new();
    for call in calls {
        if let Outcome::Refused { status } = call.outcome {
            *refused.entry((call.kind, status)).or_default() += 1;
        }
    }
    for ((kind, status), count) in refused {
        let tus = kind.starts_with("upload.") && status == 404;
        if !tus {
            failures.push(format!("{count} × {kind} answered {status}"));
        }
    }
}

/// Reconciles the audit trail with the calls, by request id.
pub(crate) async fn check_audit(
    data: &Path,
    calls: &[Call],
    failures: &mut Vec<String>,
) -> Result<Value> {
    let mut db = database(data).await?;
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT request_id, COUNT(*) FROM audit_events \
         WHERE actor_role NOT IN ('operator', 'system') GROUP BY request_id",
    )
    .fetch_all(&mut db)
    .await?;
    let mut events: HashMap<String, usize> = HashMap::new();
    let mut rows_total = 0;
    for (request_id, count) in rows {
        rows_total += count as usize;
        match request_id {
            Some(id) if id.starts_with("soak-") => {
                events.insert(id, count as usize);
            }
            other => failures.push(format!(
                "{count} audit events of a user with request id {other:?}, no call of the clients"
            )),
        }
    }
    let mut due_2xx = 0;
    let (mut cut, mut cut_committed, mut cut_events) = (0, 0, 0);
    let mut wrong = Vec::new();
    let mut known = 0;
    for call in calls.iter().filter(|c| !c.request_id.is_empty()) {
        let found = events.get(&call.request_id).copied().unwrap_or(0);
        known += found;
        match call.outcome {
            Outcome::Answered2xx { events } => {
                due_2xx += events;
                if found != events {
                    wrong.push(format!(
                        "{} {} answered 2xx: {found} events, {events} due",
                        call.kind, call.request_id
                    ));
                }
            }
            Outcome::Refused { .. } | Outcome::Unreached => {
                if found != 0 {
                    wrong.push(format!(
                        "{} {} {:?}: {found} events, none due",
                        call.kind, call.request_id, call.outcome
                    ));
                }
            }
            // A call of several events may have committed some: a tus
            // chunk's `upload.append` is written before its bytes, the
            // image's `image.create` after them.
            Outcome::Cut { events } => {
                cut += 1;
                if found > 0 {
                    cut_committed += 1;
                    cut_events += found;
                    if found > events {
                        wrong.push(format!(
                            "{} {} cut off: {found} events, at most {events} due",
                            call.kind, call.request_id
                        ));
                    }
                }
            }
        }
    }
    if known != events.values().sum::<usize>() {
        failures.push(format!(
            "{} audit events name request ids no client used",
            events.values().sum::<usize>() - known
        ));
    }
    if !wrong.is_empty() {
        failures.push(format!(
            "{} calls with the wrong audit events, e.g. {}",
            wrong.len(),
            wrong[..wrong.len().min(5)].join("; ")
        ));
    }
    if rows_total != due_2xx + cut_events {
        failures.push(format!(
            "audit rows of users {rows_total} ≠ events due to 2xx calls {due_2xx} + events of committed cut calls {cut_events}"
        ));
    }
    Ok(json!({
        "user_rows": rows_total,
        "due_to_2xx_calls": due_2xx,
        "cut_calls": cut,
        "cut_calls_committed": cut_committed,
        "events_of_committed_cut_calls": cut_events,
        "calls_with_wrong_events": wrong.len(),
    }))
}

/// Every acknowledged image is in the catalog with the digest it was given.
pub(crate) async fn check_images(
    data: &Path,
    shared: &Shared,
    failures: &mut Vec<String>,
) -> Result<usize> {
    let mut db = database(data).await?;
    let stored: HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT id, stored_sha256 FROM images")
            .fetch_all(&mut db)
            .await?
            .into_iter()
            .collect();
    let images = shared.images.lock().expect("images lock").clone();
    let lost: Vec<_> = images
        .iter()
        .filter(|(id, sha)| stored.get(id) != Some(sha))
        .collect();
    if !lost.is_empty() {
        failures.push(format!(
            "{} acknowledged images missing or changed, e.g. {:?}",
            lost.len(),
            lost.first()
        ));
    }
    Ok(images.len())
}

/// The blob store against the catalog, before and after a sweep.
pub(crate) async fn check_disk(
    relay: &Relay,
    orphan_bound: usize,
    failures: &mut Vec<String>,
) -> Result<Value> {
    let blobs = relay.data.join("blobs");
    let spool: Vec<_> = std::fs::read_dir(blobs.join("tmp"))?.collect();
    if !spool.is_empty() {
        failures.push(format!("{} spool files left in blobs/tmp", spool.len()));
    }
    let before = compare_blobs(relay).await?;
    let swept = relay
        .command()
        .args(["reprocess", "sweep", "--grace", "0s"])
        .output()?;
    if !swept.status.success() {
        failures.push(format!(
            "sweep failed: {}",
            String::from_utf8_lossy(&swept.stderr)
        ));
    }
    let after = compare_blobs(relay).await?;
    if before.missing > 0 || before.wrong_size > 0 {
        failures.push(format!(
            "{} catalog blobs missing on disk, {} with another size",
            before.missing, before.wrong_size
        ));
    }
    if before.orphans > orphan_bound {
        failures.push(format!(
            "{} orphan blobs, more than the kills times the clients ({orphan_bound})",
            before.orphans
        ));
    }
    if after.disk_bytes != after.catalog_bytes || after.orphans > 0 || after.missing > 0 {
        failures.push(format!(
            "after the sweep: {} bytes on disk, {} in the catalog, {} orphans, {} missing",
            after.disk_bytes, after.catalog_bytes, after.orphans, after.missing
        ));
    }
    Ok(json!({
        "blobs": before.rows,
        "catalog_bytes": before.catalog_bytes,
        "disk_bytes_before_sweep": before.disk_bytes,
        "orphans_before_sweep": before.orphans,
        "orphan_bytes_before_sweep": before.orphan_bytes,
        "disk_bytes_after_sweep": after.disk_bytes,
        "catalog_bytes_after_sweep": after.catalog_bytes,
        "du_kb_after_sweep": du_kb(&blobs.join("sha256")),
    }))
}

#[derive(Debug, Default)]
struct BlobComparison {
    rows: usize,
    catalog_bytes: u64,
    disk_bytes: u64,
    orphans: usize,
    orphan_bytes: u64,
    missing: usize,
    wrong_size: usize,
}

async fn compare_blobs(relay: &Relay) -> Result<BlobComparison> {
    let mut db = database(&relay.data).await?;
    let rows: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT sha256, size FROM blobs")
            .fetch_all(&mut db)
            .await?
            .into_iter()
            .collect();
    let mut files = HashMap::new();
    let mut stack = vec![relay.data.join("blobs/sha256")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files.insert(entry.file_name().to_string_lossy().into_owned(), meta.len());
            }
        }
    }
    let mut out = BlobComparison {
        rows: rows.len(),
        catalog_bytes: rows.values().map(|&s| s as u64).sum(),
        disk_bytes: files.values().sum(),
        ..BlobComparison::default()
    };
    for (name, size) in &files {
        match rows.get(name) {
            None => {
                out.orphans += 1;
                out.orphan_bytes += size;
            }
            Some(&row) if row as u64 != *size => out.wrong_size += 1,
            Some(_) => {}
        }
    }
    out.missing = rows.keys().filter(|k| !files.contains_key(*k)).count();
    Ok(out)
}

fn du_kb(dir: &Path) -> Option<u64> {
    let out = Command::new("du").arg("-sk").arg(dir).output().ok()?;
    String::from_utf8(out.stdout)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
