//! Refusing an association the door cannot serve right now — too many
//! associations at once, or the catalog unreachable — with an
//! A-ASSOCIATE-RJ whose result is "rejected-transient" (PS3.8 9.3.4,
//! Table 9-21). A plain close reads to a modality like a network fault or
//! a misconfiguration; a transient rejection says "try again later", which
//! is what a sending device's retry queue is for.

use std::time::Duration;

use bytes::BytesMut;
use dicom_ul::Pdu;
use dicom_ul::association::read_pdu_from_wire_async;
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource, write_pdu,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest A-ASSOCIATE-RQ read before refusing (a request is a few
/// hundred bytes per presentation context).
const MAX_REQUEST_PDU: u32 = 1 << 20;

/// How long the peer may take to send its request, and then to close the
/// connection after reading the rejection.
pub const REJECT_WAIT: Duration = Duration::from_secs(5);

/// Why an association is refused for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// As many associations as allowed are running: service-provider
    /// (presentation related), local-limit-exceeded.
    LimitReached,
    /// The catalog cannot be read, so the calling AE title cannot be
    /// checked: service-user, no-reason-given.
    CatalogUnavailable,
}

impl Busy {
    /// The A-ASSOCIATE-RJ this refusal sends.
    pub fn rejection(self) -> AssociationRJ {
        let source = match self {
            Busy::LimitReached => AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
            Busy::CatalogUnavailable => {
                AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::NoReasonGiven)
            }
        };
        AssociationRJ {
            result: AssociationRJResult::Transient,
            source,
        }
    }
}

/// Reads the peer's A-ASSOCIATE-RQ and answers it with the transient
/// rejection for `busy`, then waits (bounded) for the peer to close, so
/// the rejection is not lost to a reset. Anything else the peer sends, or
/// silence, just closes the connection.
pub async fn reject(mut socket: TcpStream, busy: Busy) {
    let mut buffer = BytesMut::with_capacity(16 * 1024);
    let request = tokio::time::timeout(
        REJECT_WAIT,
        read_pdu_from_wire_async(&mut socket, &mut buffer, MAX_REQUEST_PDU, false),
    )
    .await;
    match request {
        Ok(Ok(Pdu::AssociationRQ(rq))) => {
            tracing::info!(
                ae.calling = %rq.calling_ae_title.trim(),
                reason = ?busy,
                "association rejected (transient)"
            );
        }
        Ok(Ok(_)) | Ok(Err(_)) | Err(_) => return,
    }
    let mut out = Vec::with_capacity(16);
    if write_pdu(&mut out, &Pdu::AssociationRJ(busy.rejection())).is_err() {
        return;
    }
    if socket.write_all(&out).await.is_err() {
        return;
    }
    let _ = socket.shutdown().await;
    let mut sink = [0u8; 256];
    let _ = tokio::time::timeout(REJECT_WAIT, async {
        while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes on the wire, as PS3.8 Table 9-21 numbers them: result 2
    /// (rejected-transient), then source and reason.
    fn wire(busy: Busy) -> [u8; 3] {
        let mut out = Vec::new();
        write_pdu(&mut out, &Pdu::AssociationRJ(busy.rejection())).expect("encodes");
        assert_eq!(out[0], 0x03, "A-ASSOCIATE-RJ");
        [out[7], out[8], out[9]]
    }

    #[test]
    fn rejections_are_transient_with_the_standard_source_and_reason() {
        assert_eq!(wire(Busy::LimitReached), [2, 3, 2], "local-limit-exceeded");
        assert_eq!(wire(Busy::CatalogUnavailable), [2, 1, 1], "no-reason-given");
    }
}
