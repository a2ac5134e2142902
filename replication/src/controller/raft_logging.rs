//! raft-rs logs through slog; this drain passes its records on to `tracing` (target
//! `raft`), with their key-value pairs, so elections and leader changes show up in the
//! broker's own log at the level raft-rs gave them.

use std::fmt::{self, Write as _};

use slog::{Drain, KV as _, Level, OwnedKVList, Record};

/// A logger for raft-rs that writes through `tracing`, tagged with this node.
pub fn raft_logger(node: crate::NodeId) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("node" => node.value()))
}

struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut pairs = Pairs(String::new());
        // Formatting into a String cannot fail; a pair that does is only left out.
        let _ = record.kv().serialize(record, &mut pairs);
        let _ = values.serialize(record, &mut pairs);
        let message = record.msg();
        let pairs = pairs.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{message}{pairs}"),
            Level::Warning => tracing::warn!(target: "raft", "{message}{pairs}"),
            Level::Info => tracing::info!(target: "raft", "{message}{pairs}"),
            Level::Debug => tracing::debug!(target: "raft", "{message}{pairs}"),
            Level::Trace => tracing::trace!(target: "raft", "{message}{pairs}"),
        }
        Ok(())
    }
}

struct Pairs(String);

impl slog::Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, value: &fmt::Arguments<'_>) -> slog::Result {
        write!(self.0, " {key}={value}").map_err(|_| slog::Error::Fmt(fmt::Error))
    }
}
