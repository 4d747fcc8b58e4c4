//! Who may open an association: the called AE title must be Relay's own,
//! and the calling AE title must be mapped to an office
//! (`relay admin office set-ae`). The mapping is read from the catalog for
//! each association, so a new or removed title takes effect at once.

use std::collections::HashMap;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use relay_workers::model::AeMapping;

/// The calling AE titles known when an association was requested.
#[derive(Debug, Clone, Default)]
pub struct KnownCallers(HashMap<String, AeMapping>);

impl KnownCallers {
    pub fn new(mappings: Vec<AeMapping>) -> Self {
        Self(
            mappings
                .into_iter()
                .map(|m| (m.ae_title.as_str().to_owned(), m))
                .collect(),
        )
    }

    /// The office mapping of a calling AE title, exactly as sent.
    pub fn get(&self, calling: &str) -> Option<&AeMapping> {
        self.0.get(calling.trim())
    }
}

impl AccessControl for KnownCallers {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if self.get(calling_ae_title).is_none() {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_workers::model::{AeTitle, OfficeId, Timestamp, UserId};

    #[test]
    fn only_mapped_callers_reach_relays_own_title() {
        let known = KnownCallers::new(vec![AeMapping {
            ae_title: AeTitle::parse("CT1").expect("title"),
            office: OfficeId::generate(),
            user: UserId::generate(),
            created_at: Timestamp::now(),
        }]);
        assert!(known.check_access("RELAY", "CT1", "RELAY", None).is_ok());
        assert_eq!(
            known.check_access("RELAY", "CT2", "RELAY", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
        assert_eq!(
            known.check_access("RELAY", "CT1", "OTHER", None),
            Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
        assert_eq!(
            known.check_access("RELAY", "ct1", "RELAY", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized),
            "AE titles are case-sensitive"
        );
    }
}
