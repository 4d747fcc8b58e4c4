//! Offices and the people who sign in.

use serde::Serialize;

use super::{Name, OfficeId, Role, Specialty, Timestamp, UserId};

/// A primary care office: owns its cases and its staff accounts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Office {
    pub id: OfficeId,
    pub name: Name,
    pub created_at: Timestamp,
}

/// A user account. Which of `office` and `specialty` is set follows from the
/// role; [`NewUser`] is the only way to make one, and it enforces that.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub name: Name,
    pub role: Role,
    pub office: Option<OfficeId>,
    pub specialty: Option<Specialty>,
    pub created_at: Timestamp,
}

/// A user to be created, one variant per role.
#[derive(Debug, Clone)]
pub enum NewUser {
    Office { name: Name, office: OfficeId },
    Specialist { name: Name, specialty: Specialty },
    Admin { name: Name },
}

impl NewUser {
    pub fn name(&self) -> &Name {
        match self {
            NewUser::Office { name, .. }
            | NewUser::Specialist { name, .. }
            | NewUser::Admin { name } => name,
        }
    }

    pub fn role(&self) -> Role {
        match self {
            NewUser::Office { .. } => Role::Office,
            NewUser::Specialist { .. } => Role::Specialist,
            NewUser::Admin { .. } => Role::Admin,
        }
    }

    pub fn office(&self) -> Option<OfficeId> {
        match self {
            NewUser::Office { office, .. } => Some(*office),
            _ => None,
        }
    }

    pub fn specialty(&self) -> Option<Specialty> {
        match self {
            NewUser::Specialist { specialty, .. } => Some(*specialty),
            _ => None,
        }
    }
}
