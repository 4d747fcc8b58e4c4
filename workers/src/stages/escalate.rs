//! The escalate stage: tells the site's administrators that a case is past
//! its service level, by e-mail when addresses are configured. The message
//! names the case, specialty, priority and how late it is — never the
//! patient. Without addresses, the warning in the log, the `case.escalate`
//! audit event and the overdue metric are the escalation.

use serde::{Deserialize, Serialize};

use super::StageDeps;
use crate::model::{Escalation, Timestamp};
use crate::queue::{Job, JobError};

/// Escalate one overdue case.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EscalateJob(pub Escalation);

impl Job for EscalateJob {
    const KIND: &'static str = "escalate";
    const MAX_ATTEMPTS: u32 = 10;
}

fn late_by(due_at: Timestamp, now: Timestamp) -> String {
    let seconds = (now.as_millis() - due_at.as_millis()).max(0) / 1000;
    let minutes = seconds / 60;
    match minutes {
        0 => format!("{seconds} s"),
        1..60 => format!("{minutes} min"),
        _ => format!("{} h {} min", minutes / 60, minutes % 60),
    }
}

/// Sends one escalation to every configured administrator.
pub async fn escalate(deps: &StageDeps, job: EscalateJob) -> Result<(), JobError> {
    let e = job.0;
    let late = late_by(e.due_at, Timestamp::now());
    tracing::warn!(
        case.id = %e.case_id,
        office.id = %e.office_id,
        specialty = e.specialty.as_str(),
        priority = e.priority.as_str(),
        late = %late,
        "case overdue: escalated"
    );
    if deps.escalate_to.is_empty() {
        return Ok(());
    }
    let Some(mailer) = &deps.mail else {
        return Err(JobError::Fatal(
            "escalations go to --escalate-to but Relay has no SMTP relay configured (--smtp-url, --mail-from)".to_owned(),
        ));
    };
    let subject = format!(
        "Overdue {} {} case ({late} late)",
        e.priority.as_str(),
        e.specialty.as_str()
    );
    let body = format!(
        "A {} {} case is past its service level by {late}.\n\nCase: {}\nOffice: {}\nDue: {}\n\n\
         Check the specialists' worklist and staffing. This message carries no patient information.\n",
        e.priority.as_str(),
        e.specialty.as_str(),
        e.case_id,
        e.office_id,
        e.due_at.to_rfc3339(),
    );
    for to in &deps.escalate_to {
        mailer.send(to, &subject, body.clone()).await?;
    }
    tracing::info!(case.id = %e.case_id, admins = deps.escalate_to.len(), "escalation e-mailed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_reads_in_minutes_then_hours() {
        let due = Timestamp::from_millis(0);
        assert_eq!(late_by(due, Timestamp::from_millis(42_500)), "42 s");
        assert_eq!(late_by(due, Timestamp::from_millis(5 * 60_000)), "5 min");
        assert_eq!(
            late_by(due, Timestamp::from_millis(125 * 60_000)),
            "2 h 5 min"
        );
        assert_eq!(late_by(Timestamp::from_millis(60_000), due), "0 s");
    }
}
