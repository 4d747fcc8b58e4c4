//! Writing command results to stdout. A reader that stops early (`| head`)
//! ends the listing quietly instead of crashing the command.

use std::io::{self, Write};

use serde::Serialize;

/// Prints each item as one line of JSON; stops without error if stdout closes.
pub fn json_lines<T: Serialize>(items: impl IntoIterator<Item = T>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    for item in items {
        let line = serde_json::to_string(&item)?;
        match writeln!(out, "{line}") {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
