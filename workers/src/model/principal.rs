//! Who is asking, and what they may see.
//!
//! Architecture Invariant: every case query takes a [`CaseScope`], and the
//! only way to get one is from a [`Principal`]. An office sees its own cases,
//! a specialist the submitted cases of their specialty, an admin all of them
//! (and every admin read is audited like any other).

use serde::{Deserialize, Serialize};

use super::{InvalidValue, OfficeId, UserId};

/// The clinical service a case is referred to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Specialty {
    Dermatology,
    Radiology,
}

impl Specialty {
    pub const ALL: [Specialty; 2] = [Specialty::Dermatology, Specialty::Radiology];

    pub fn as_str(&self) -> &'static str {
        match self {
            Specialty::Dermatology => "dermatology",
            Specialty::Radiology => "radiology",
        }
    }

    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        match text {
            "dermatology" => Ok(Specialty::Dermatology),
            "radiology" => Ok(Specialty::Radiology),
            _ => Err(InvalidValue::new(
                "specialty must be dermatology or radiology",
            )),
        }
    }
}

/// What a user account is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Office,
    Specialist,
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Office => "office",
            Role::Specialist => "specialist",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        match text {
            "office" => Ok(Role::Office),
            "specialist" => Ok(Role::Specialist),
            "admin" => Ok(Role::Admin),
            _ => Err(InvalidValue::new(
                "role must be office, specialist or admin",
            )),
        }
    }
}

/// An authenticated caller. The variants carry exactly what scoping needs, so
/// an office principal without an office cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Office { user: UserId, office: OfficeId },
    Specialist { user: UserId, specialty: Specialty },
    Admin { user: UserId },
}

impl Principal {
    pub fn user_id(&self) -> UserId {
        match self {
            Principal::Office { user, .. }
            | Principal::Specialist { user, .. }
            | Principal::Admin { user } => *user,
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Principal::Office { .. } => Role::Office,
            Principal::Specialist { .. } => Role::Specialist,
            Principal::Admin { .. } => Role::Admin,
        }
    }

    /// The cases this caller may see.
    pub fn case_scope(&self) -> CaseScope {
        match self {
            Principal::Office { office, .. } => CaseScope::Office(*office),
            Principal::Specialist { specialty, .. } => CaseScope::Specialty(*specialty),
            Principal::Admin { .. } => CaseScope::All,
        }
    }
}

/// The rows of `cases` a query may touch. Applied in SQL, so a case outside
/// the scope is indistinguishable from a case that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseScope {
    /// One office's cases, in any state.
    Office(OfficeId),
    /// A specialty's cases once they have left `draft`.
    Specialty(Specialty),
    /// Every case (administrators).
    All,
}

impl CaseScope {
    /// The office filter, if any, as bound into SQL.
    pub fn office_filter(&self) -> Option<String> {
        match self {
            CaseScope::Office(office) => Some(office.to_string()),
            _ => None,
        }
    }

    /// The specialty filter, if any, as bound into SQL.
    pub fn specialty_filter(&self) -> Option<&'static str> {
        match self {
            CaseScope::Specialty(specialty) => Some(specialty.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_principal_gets_its_own_scope() {
        let office = OfficeId::generate();
        let user = UserId::generate();
        assert_eq!(
            Principal::Office { user, office }.case_scope(),
            CaseScope::Office(office)
        );
        assert_eq!(
            Principal::Specialist {
                user,
                specialty: Specialty::Radiology
            }
            .case_scope(),
            CaseScope::Specialty(Specialty::Radiology)
        );
        assert_eq!(Principal::Admin { user }.case_scope(), CaseScope::All);
    }

    #[test]
    fn roles_and_specialties_parse_their_rendering() {
        for role in [Role::Office, Role::Specialist, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        for s in [Specialty::Dermatology, Specialty::Radiology] {
            assert_eq!(Specialty::parse(s.as_str()), Ok(s));
        }
        assert!(Role::parse("root").is_err());
        assert!(Specialty::parse("cardiology").is_err());
    }
}
