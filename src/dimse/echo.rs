//! Verification (C-ECHO): a modality's "is Relay there?" Answered success
//! whenever the association was accepted, since acceptance already proved
//! the calling AE title is known.

use super::command::{C_ECHO_RSP, Command, response};
use super::status::SUCCESS;

/// The C-ECHO-RSP for `request`.
pub fn answer(request: &Command) -> Vec<u8> {
    response(C_ECHO_RSP, request, SUCCESS, None)
}
