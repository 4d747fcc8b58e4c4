//! A panic fence around third-party decoders.
//!
//! The image and DICOM decoders are large and are fed untrusted bytes; some
//! of their code paths index or assert on values read from the file (a VOI
//! LUT with no entries, a JPEG 2000 component larger than the image). A
//! panic there must fail this one derivative with a reason, not unwind
//! through the job runner.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::DeriveError;

/// Runs `work`, turning a panic inside it into [`DeriveError::Invalid`]
/// naming `what` was being done.
///
/// `AssertUnwindSafe` is sound here: `work` only reads its inputs and builds
/// fresh values, so a panic leaves nothing half-changed behind.
pub(super) fn no_panic<T>(
    what: &str,
    work: impl FnOnce() -> Result<T, DeriveError>,
) -> Result<T, DeriveError> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let cause = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            tracing::warn!(%cause, "decoder panicked while {what}");
            Err(DeriveError::invalid(format!(
                "the decoder failed while {what} ({cause}); the file is probably damaged"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_invalid() {
        let result: Result<(), _> = no_panic("testing", || panic!("boom"));
        let Err(DeriveError::Invalid(message)) = result else {
            panic!("expected Invalid, got {result:?}");
        };
        assert!(message.contains("boom"), "{message}");
    }

    #[test]
    fn results_pass_through() {
        assert_eq!(no_panic("testing", || Ok(3)), Ok(3));
        let err = DeriveError::unsupported("x");
        assert_eq!(no_panic::<()>("testing", || Err(err.clone())), Err(err));
    }
}
