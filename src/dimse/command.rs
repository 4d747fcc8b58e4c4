//! DIMSE command sets (PS3.7 §9.3, §E): the small data set at the head of
//! every message, always Implicit VR Little Endian. Requests are read with
//! dicom-object; responses are encoded here, byte by byte, because they are
//! six fixed elements and their group length.

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_object::Tag;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::error::DimseError;

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
/// Command Data Set Type: no data set follows.
const NO_DATA_SET: u16 = 0x0101;
/// The largest command set accepted; real ones are a few hundred bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// A request's command set, as far as Relay reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub field: u16,
    pub message_id: u16,
    pub affected_sop_class: Option<String>,
    pub affected_sop_instance: Option<String>,
    /// Whether a data set follows the command.
    pub has_data_set: bool,
}

impl Command {
    pub fn parse(bytes: &[u8]) -> Result<Self, DimseError> {
        let ts = TransferSyntaxRegistry
            .get(dicom_dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN)
            .ok_or_else(|| DimseError::protocol("implicit VR little endian is not registered"))?;
        let object = InMemDicomObject::read_dataset_with_ts(bytes, ts)
            .map_err(|e| DimseError::protocol(format!("unreadable command set: {e}")))?;
        let int = |tag: Tag, name: &str| {
            object
                .element(tag)
                .ok()
                .and_then(|e| e.to_int::<u16>().ok())
                .ok_or_else(|| DimseError::protocol(format!("the command has no {name}")))
        };
        let uid = |tag: Tag| {
            object
                .element(tag)
                .ok()
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches(['\0', ' ']).to_owned())
                .filter(|s| !s.is_empty())
        };
        Ok(Command {
            field: int(tags::COMMAND_FIELD, "Command Field")?,
            message_id: int(tags::MESSAGE_ID, "Message ID")?,
            affected_sop_class: uid(tags::AFFECTED_SOP_CLASS_UID),
            affected_sop_instance: uid(tags::AFFECTED_SOP_INSTANCE_UID),
            has_data_set: int(tags::COMMAND_DATA_SET_TYPE, "Command Data Set Type")? != NO_DATA_SET,
        })
    }
}

/// A response to `request` with `status`, and an error comment for failures
/// (no patient data: ingest's messages name tags and limits, not values).
pub fn response(
    field: u16,
    request: &Command,
    status: u16,
    error_comment: Option<&str>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    if let Some(class) = &request.affected_sop_class {
        element(&mut body, tags::AFFECTED_SOP_CLASS_UID, &uid_bytes(class));
    }
    element(&mut body, tags::COMMAND_FIELD, &field.to_le_bytes());
    element(
        &mut body,
        tags::MESSAGE_ID_BEING_RESPONDED_TO,
        &request.message_id.to_le_bytes(),
    );
    element(
        &mut body,
        tags::COMMAND_DATA_SET_TYPE,
        &NO_DATA_SET.to_le_bytes(),
    );
    element(&mut body, tags::STATUS, &status.to_le_bytes());
    if let Some(comment) = error_comment {
        // LO: at most 64 characters, padded with a space to even length.
        let mut text: Vec<u8> = comment
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '\\')
            .take(64)
            .map(|c| c as u8)
            .collect();
        if text.len() % 2 == 1 {
            text.push(b' ');
        }
        element(&mut body, tags::ERROR_COMMENT, &text);
    }
    if let Some(instance) = &request.affected_sop_instance {
        element(
            &mut body,
            tags::AFFECTED_SOP_INSTANCE_UID,
            &uid_bytes(instance),
        );
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
    element(&mut out, tags::COMMAND_GROUP_LENGTH, &length.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// One Implicit VR Little Endian element.
fn element(out: &mut Vec<u8>, tag: Tag, value: &[u8]) {
    out.extend_from_slice(&tag.group().to_le_bytes());
    out.extend_from_slice(&tag.element().to_le_bytes());
    out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(value);
}

/// A UID padded with NUL to an even length.
fn uid_bytes(uid: &str) -> Vec<u8> {
    let mut bytes = uid.as_bytes().to_vec();
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_request() -> Command {
        Command {
            field: C_ECHO_RQ,
            message_id: 7,
            affected_sop_class: Some("1.2.840.10008.1.1".to_owned()),
            affected_sop_instance: None,
            has_data_set: false,
        }
    }

    #[test]
    fn a_response_reads_back_as_a_command_with_its_group_length() {
        let request = Command {
            field: C_STORE_RQ,
            affected_sop_instance: Some("1.2.3.45".to_owned()),
            ..echo_request()
        };
        let bytes = response(C_STORE_RSP, &request, 0xA700, Some("disk full"));
        let ts = TransferSyntaxRegistry
            .get(dicom_dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN)
            .expect("ts");
        let object = InMemDicomObject::read_dataset_with_ts(&bytes[..], ts).expect("reads");
        let length: u32 = object
            .element(tags::COMMAND_GROUP_LENGTH)
            .expect("length")
            .to_int()
            .expect("int");
        assert_eq!(length as usize, bytes.len() - 12);
        let status: u16 = object
            .element(tags::STATUS)
            .expect("status")
            .to_int()
            .expect("int");
        assert_eq!(status, 0xA700);
        let parsed = Command::parse(&bytes);
        // A response has no Message ID, so it is not a request.
        assert!(parsed.is_err());
        let instance = object
            .element(tags::AFFECTED_SOP_INSTANCE_UID)
            .expect("instance")
            .to_str()
            .expect("str")
            .trim_end_matches('\0')
            .to_owned();
        assert_eq!(instance, "1.2.3.45");
    }

    #[test]
    fn a_request_is_read_back() {
        let mut body = Vec::new();
        element(
            &mut body,
            tags::AFFECTED_SOP_CLASS_UID,
            &uid_bytes("1.2.840.10008.1.1"),
        );
        element(&mut body, tags::COMMAND_FIELD, &C_ECHO_RQ.to_le_bytes());
        element(&mut body, tags::MESSAGE_ID, &7u16.to_le_bytes());
        element(
            &mut body,
            tags::COMMAND_DATA_SET_TYPE,
            &NO_DATA_SET.to_le_bytes(),
        );
        assert_eq!(Command::parse(&body).expect("parses"), echo_request());
    }
}
