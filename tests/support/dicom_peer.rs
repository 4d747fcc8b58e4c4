//! A DICOM peer the tests drive message by message (dicom-ul's client),
//! for what DCMTK's tools will not do on purpose: hold an association open
//! and silent, or stop in the middle of a data set.

use std::net::TcpStream;
use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::ClientAssociationOptions;
use dicom_ul::association::client::ClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};

/// An association with Relay's door, proposing CT Image Storage in
/// Explicit VR Little Endian.
pub struct Peer {
    pub association: ClientAssociation<TcpStream>,
    context_id: u8,
}

impl Peer {
    /// Associates as `calling` with RELAY on `127.0.0.1:port`.
    pub fn associate(port: &str, calling: &str) -> Result<Self, dicom_ul::association::Error> {
        let association = ClientAssociationOptions::new()
            .calling_ae_title(calling)
            .called_ae_title("RELAY")
            .with_presentation_context(
                uids::CT_IMAGE_STORAGE,
                vec![uids::EXPLICIT_VR_LITTLE_ENDIAN],
            )
            .establish(format!("127.0.0.1:{port}"))?;
        let context_id = association
            .presentation_contexts()
            .first()
            .map(|pc| pc.id)
            .expect("a presentation context was accepted");
        Ok(Self {
            association,
            context_id,
        })
    }

    /// Sends the C-STORE-RQ for the instance at `path` and the first
    /// `fraction` of its data set, not marked last: a transfer cut short.
    pub fn send_part_of(&mut self, path: &Path, fraction: f64) {
        let object = dicom_object::open_file(path).expect("the instance opens");
        let class = object.meta().media_storage_sop_class_uid().to_owned();
        let instance = object.meta().media_storage_sop_instance_uid().to_owned();
        let ts = TransferSyntaxRegistry
            .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .expect("explicit VR little endian");
        let mut data = Vec::new();
        object
            .write_dataset_with_ts(&mut data, ts)
            .expect("the data set encodes");
        let command = store_command(&class, &instance);
        let cut = ((data.len() as f64) * fraction) as usize;
        self.association
            .send(&Pdu::PData {
                data: vec![
                    PDataValue {
                        presentation_context_id: self.context_id,
                        value_type: PDataValueType::Command,
                        is_last: true,
                        data: command,
                    },
                    PDataValue {
                        presentation_context_id: self.context_id,
                        value_type: PDataValueType::Data,
                        is_last: false,
                        data: data[..cut].to_vec(),
                    },
                ],
            })
            .expect("the first part is sent");
    }

    /// Waits for the server's next PDU (the idle timeout's A-ABORT), or
    /// for the connection to close.
    pub fn next_pdu(&mut self) -> Result<Pdu, dicom_ul::association::Error> {
        self.association.receive()
    }
}

/// A C-STORE-RQ command set (Implicit VR Little Endian) for one instance.
fn store_command(class: &str, instance: &str) -> Vec<u8> {
    let command = InMemDicomObject::command_from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(class),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001u16)),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(1u16)),
        DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0x0000u16),
        ),
        DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(instance),
        ),
    ]);
    let ts = TransferSyntaxRegistry
        .get(uids::IMPLICIT_VR_LITTLE_ENDIAN)
        .expect("implicit VR little endian");
    let mut out = Vec::new();
    command
        .write_dataset_with_ts(&mut out, ts)
        .expect("the command encodes");
    out
}
