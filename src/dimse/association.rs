//! One association, from A-ASSOCIATE to A-RELEASE or A-ABORT.
//!
//! P-DATA-TF PDUs carry presentation data values: fragments of a message's
//! command set and then of its data set, each flagged "last" at its end,
//! in any split across PDUs. They are put back together here — the command
//! in memory (bounded), a data set straight into a spool file (bounded by
//! the ingest limit) — and each whole message is answered before the next
//! is read. The peer may send any number of messages, then releases or
//! aborts; a peer silent for longer than the idle timeout is aborted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use dicom_ul::Pdu;
use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::association::{Association, ServerAssociationOptions};
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, PDataValue, PDataValueType,
    PresentationContextResultReason,
};
use relay_workers::audit::{Actor, AuditContext};
use relay_workers::model::{AeMapping, Principal};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::callers::KnownCallers;
use super::command::{self, C_ECHO_RQ, C_STORE_RQ, C_STORE_RSP, Command};
use super::error::DimseError;
use super::instance::{Identity, Incoming, file_meta};
use super::listener::DicomDoor;
use super::reject::{self, Busy};
use super::status;
use super::syntaxes::{STORAGE, TRANSFER, VERIFICATION};
use super::{echo, store};

/// The largest PDU Relay accepts (and announces).
const MAX_PDU_LENGTH: u32 = 1 << 20;

/// Serves one connection; errors end it and are logged here, once.
pub async fn serve(
    door: Arc<DicomDoor>,
    socket: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let span = tracing::info_span!("dimse", association.id = %id, peer = %peer);
    async {
        match run(&door, socket, peer, &id, &stop).await {
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, "association ended"),
        }
    }
    .instrument(span)
    .await;
}

/// An accepted presentation context: its abstract and transfer syntax.
#[derive(Debug, Clone)]
struct Context {
    abstract_syntax: String,
    transfer_syntax: String,
}

/// A message whose data set is still arriving.
#[derive(Debug)]
struct Pending {
    context_id: u8,
    command: Command,
    /// The spool file, or `None` when the data set is read only to be
    /// dropped (the answer is already decided: `refusal`).
    incoming: Option<Incoming>,
    refusal: Option<(u16, String)>,
}

async fn run(
    door: &DicomDoor,
    socket: TcpStream,
    peer: SocketAddr,
    id: &str,
    stop: &CancellationToken,
) -> Result<(), DimseError> {
    let callers = match door.catalog.list_ae_titles().await {
        Ok(mappings) => KnownCallers::new(mappings),
        Err(error) => {
            // The calling AE title cannot be checked: "try later", not
            // "unknown caller", so the device keeps its instances queued.
            tracing::error!(%error, "cannot read the AE titles; association rejected (transient)");
            reject::reject(socket, Busy::CatalogUnavailable).await;
            return Ok(());
        }
    };
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(callers.clone())
        .ae_title(door.ae_title.clone())
        .max_pdu_length(MAX_PDU_LENGTH)
        .read_timeout(door.idle_timeout)
        .write_timeout(door.idle_timeout)
        .with_abstract_syntax(VERIFICATION);
    for class in STORAGE {
        options = options.with_abstract_syntax(*class);
    }
    for ts in TRANSFER {
        options = options.with_transfer_syntax(*ts);
    }
    let mut association = match options.establish_async(socket).await {
        Ok(association) => association,
        Err(error) => {
            // A-ASSOCIATE-RJ was sent (unknown calling or called AE title,
            // wrong application context) or the request never came.
            tracing::info!(%error, "association refused");
            return Ok(());
        }
    };
    let calling = association.peer_ae_title().to_owned();
    let caller = callers
        .get(&calling)
        .cloned()
        .ok_or_else(|| DimseError::protocol("accepted an unknown calling AE title"))?;
    let contexts: HashMap<u8, Context> = association
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| {
            (
                pc.id,
                Context {
                    abstract_syntax: pc.abstract_syntax.trim_end_matches('\0').to_owned(),
                    transfer_syntax: pc.transfer_syntax.trim_end_matches('\0').to_owned(),
                },
            )
        })
        .collect();
    tracing::info!(
        ae.calling = %calling,
        office.id = %caller.office,
        contexts = contexts.len(),
        "association accepted"
    );
    let ctx = AuditContext {
        actor: Actor::User(Principal::Office {
            user: caller.user,
            office: caller.office,
        }),
        remote_addr: peer.ip().to_string(),
        request_id: Some(format!("dimse-{id}")),
    };
    let mut session = Session {
        door,
        caller: &caller,
        ctx: &ctx,
        contexts: &contexts,
        command: Vec::new(),
        pending: None,
    };
    let mut stored = 0u64;
    loop {
        ack_at_once(association.inner_stream());
        let received = tokio::select! {
            () = stop.cancelled() => None,
            pdu = association.receive() => Some(pdu),
        };
        let pdu = match received {
            None => {
                tracing::info!("server stopping: association aborted");
                abort(
                    association,
                    AbortRQServiceProviderReason::ReasonNotSpecified,
                )
                .await;
                return Ok(());
            }
            Some(Ok(pdu)) => pdu,
            Some(Err(error)) => {
                abort(
                    association,
                    AbortRQServiceProviderReason::ReasonNotSpecified,
                )
                .await;
                return Err(match error {
                    dicom_ul::association::Error::Timeout { .. } => {
                        DimseError::Idle(door.idle_timeout)
                    }
                    other => other.into(),
                });
            }
        };
        match pdu {
            Pdu::PData { data } => {
                for value in data {
                    match session.take(value).await {
                        Ok(Some((context_id, answer, was_store))) => {
                            stored += u64::from(was_store);
                            send_command(&mut association, context_id, answer).await?;
                        }
                        Ok(None) => {}
                        Err(error) => {
                            abort(
                                association,
                                AbortRQServiceProviderReason::UnexpectedPduParameter,
                            )
                            .await;
                            return Err(error);
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                association.send(&Pdu::ReleaseRP).await?;
                tracing::info!(instances = stored, "association released");
                return Ok(());
            }
            Pdu::AbortRQ { source } => {
                tracing::info!(
                    ?source,
                    instances = stored,
                    "association aborted by the peer"
                );
                return Ok(());
            }
            other => {
                abort(association, AbortRQServiceProviderReason::UnexpectedPdu).await;
                return Err(DimseError::protocol(format!(
                    "unexpected PDU {}",
                    pdu_name(&other)
                )));
            }
        }
    }
}

/// The state of the messages on one association.
struct Session<'a> {
    door: &'a DicomDoor,
    caller: &'a AeMapping,
    ctx: &'a AuditContext,
    contexts: &'a HashMap<u8, Context>,
    /// The command set being received.
    command: Vec<u8>,
    pending: Option<Pending>,
}

/// A response to send: its presentation context, its command set, and
/// whether it answered a C-STORE.
type Answer = (u8, Vec<u8>, bool);

impl Session<'_> {
    /// Takes one presentation data value; returns the response once a
    /// message is complete.
    async fn take(&mut self, value: PDataValue) -> Result<Option<Answer>, DimseError> {
        let context_id = value.presentation_context_id;
        let Some(context) = self.contexts.get(&context_id) else {
            return Err(DimseError::protocol(format!(
                "presentation context {context_id} was not accepted"
            )));
        };
        match value.value_type {
            PDataValueType::Command => {
                if self.pending.is_some() {
                    return Err(DimseError::protocol(
                        "a command arrived before the previous data set ended",
                    ));
                }
                if self.command.len() + value.data.len() > command::MAX_COMMAND_BYTES {
                    return Err(DimseError::protocol("the command set is too large"));
                }
                self.command.extend_from_slice(&value.data);
                if !value.is_last {
                    return Ok(None);
                }
                let request = Command::parse(&std::mem::take(&mut self.command))?;
                if request.has_data_set {
                    self.pending = Some(self.begin(context_id, context, request).await?);
                    return Ok(None);
                }
                Ok(Some(self.answer_without_data(context_id, &request)))
            }
            PDataValueType::Data => {
                let Some(pending) = self.pending.as_mut() else {
                    return Err(DimseError::protocol("a data set arrived without a command"));
                };
                if pending.context_id != context_id {
                    return Err(DimseError::protocol(
                        "a data set continued on another presentation context",
                    ));
                }
                if let Some(incoming) = pending.incoming.as_mut() {
                    incoming.push(&value.data).await?;
                }
                if !value.is_last {
                    return Ok(None);
                }
                let Some(pending) = self.pending.take() else {
                    return Ok(None);
                };
                Ok(Some(self.finish(pending).await?))
            }
        }
    }

    /// C-ECHO, or a command Relay does not provide.
    fn answer_without_data(&self, context_id: u8, request: &Command) -> Answer {
        if request.field == C_ECHO_RQ {
            return (context_id, echo::answer(request), false);
        }
        tracing::info!(command = request.field, "unsupported DIMSE command");
        // 0x0211: unrecognized operation.
        let answer = command::response(request.field | 0x8000, request, 0x0211, None);
        (context_id, answer, false)
    }

    /// Starts receiving a message's data set.
    async fn begin(
        &self,
        context_id: u8,
        context: &Context,
        command: Command,
    ) -> Result<Pending, DimseError> {
        let refuse = |status: u16, why: &str| Pending {
            context_id,
            command: command.clone(),
            incoming: None,
            refusal: Some((status, why.to_owned())),
        };
        if command.field != C_STORE_RQ {
            return Ok(refuse(0x0211, "only C-STORE carries a data set here"));
        }
        let (Some(class), Some(instance)) = (
            command.affected_sop_class.as_deref(),
            command.affected_sop_instance.as_deref(),
        ) else {
            return Ok(refuse(
                status::CANNOT_UNDERSTAND,
                "the C-STORE has no affected SOP class or instance",
            ));
        };
        if class != context.abstract_syntax {
            return Ok(refuse(
                status::SOP_CLASS_NOT_SUPPORTED,
                "the SOP class is not the presentation context's",
            ));
        }
        let meta = file_meta(&Identity {
            sop_class: class,
            sop_instance: instance,
            transfer_syntax: &context.transfer_syntax,
            source_ae: self.caller.ae_title.as_str(),
        })?;
        let incoming = Incoming::begin(
            self.door.ingest.spool_dir(),
            &meta,
            self.door.ingest.limits().max_bytes,
        )
        .await?;
        Ok(Pending {
            context_id,
            command,
            incoming: Some(incoming),
            refusal: None,
        })
    }

    /// The data set is complete: store it and answer.
    async fn finish(&self, pending: Pending) -> Result<Answer, DimseError> {
        let Pending {
            context_id,
            command,
            incoming,
            refusal,
        } = pending;
        let (status, comment) = match (refusal, incoming) {
            (Some((status, why)), _) => (status, Some(why)),
            (None, None) => (status::PROCESSING_FAILURE, None),
            (None, Some(incoming)) => match incoming.finish().await? {
                Some(file) => store::store(self.door, self.caller, self.ctx, &command, file).await,
                None => (
                    status::OUT_OF_RESOURCES,
                    Some(format!(
                        "the instance is larger than the limit of {} bytes",
                        self.door.ingest.limits().max_bytes
                    )),
                ),
            },
        };
        let answer = command::response(C_STORE_RSP, &command, status, comment.as_deref());
        Ok((context_id, answer, status == status::SUCCESS))
    }
}

async fn send_command(
    association: &mut AsyncServerAssociation<TcpStream>,
    context_id: u8,
    command: Vec<u8>,
) -> Result<(), DimseError> {
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command,
            }],
        })
        .await?;
    Ok(())
}

/// Asks the kernel to acknowledge what arrives next at once (Linux
/// `TCP_QUICKACK`, which the kernel clears again by itself, so it is set
/// before every read). A peer that leaves Nagle's algorithm on — DCMTK
/// does unless `TCP_NODELAY=1` is in its environment — sends a C-STORE's
/// small command PDU, then holds the data set back until that is
/// acknowledged; with delayed ACKs that is about 40 ms per instance, which
/// was most of a C-STORE's time on loopback.
fn ack_at_once(socket: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = socket.set_quickack(true) {
        tracing::debug!(%error, "cannot set TCP_QUICKACK");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = socket;
}

/// Sends A-ABORT and closes; the association is over either way.
async fn abort(
    mut association: AsyncServerAssociation<TcpStream>,
    reason: AbortRQServiceProviderReason,
) {
    let _ = association
        .send(&Pdu::AbortRQ {
            source: AbortRQSource::ServiceProvider(reason),
        })
        .await;
}

fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
        Pdu::Unknown { .. } => "unknown",
    }
}
