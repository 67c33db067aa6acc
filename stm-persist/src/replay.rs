//! [`Replica`]: the state and the log it is rebuilt from, shared by both store flavours: load
//! the newest usable snapshot, roll forward, apply one record, the transaction checker.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use stm_core::{StmError, TxError, try_atomically};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::format;
use crate::store::{Command, State};

/// The state, the backend, and how far the log has been applied to the state.
pub(crate) struct Replica<C: Command> {
    pub(crate) state: C::State,
    pub(crate) backend: Box<dyn Backend>,
    allow: Option<HashSet<String>>,
    /// The position of the last record applied to `state` by replay. Written only by the one
    /// applier of the flavour (under its lock), read by anyone.
    applied: AtomicU64,
    _commands: PhantomData<fn() -> C>,
}

impl<C: Command> Replica<C> {
    /// Loads the newest usable snapshot (or `init()`); does not roll forward yet.
    pub(crate) fn load(
        backend: Box<dyn Backend>,
        allow: Option<HashSet<String>>,
        init: impl FnOnce() -> C::State,
    ) -> Result<Self> {
        let (at, state) = load_snapshot::<C>(&*backend, init)?;
        Ok(Self {
            state,
            backend,
            allow,
            applied: AtomicU64::new(at),
            _commands: PhantomData,
        })
    }

    /// The position of the last record applied by replay.
    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Records that the state now reflects every record up to `position`. The caller is the
    /// flavour's one applier.
    pub(crate) fn set_applied(&self, position: u64) {
        self.applied.store(position, Ordering::Release);
    }

    /// Applies the records after [`applied`](Self::applied), in order; returns the position
    /// after the last. The caller is the flavour's one applier.
    pub(crate) fn roll_forward(&self) -> Result<u64> {
        let from = self.applied() + 1;
        self.backend.scan(from, &mut |pos, bytes| {
            self.apply_record(pos, bytes)?;
            self.set_applied(pos);
            Ok(true)
        })
    }

    /// Replays one record: the transaction checker, decoding, then `apply`.
    pub(crate) fn apply_record(&self, pos: u64, bytes: &[u8]) -> Result<()> {
        let cmd = self.decode(pos, bytes)?;
        self.apply_logged(pos, &cmd).map(drop)
    }

    /// Decodes a record, checking its name against the allowlist first.
    fn decode(&self, pos: u64, bytes: &[u8]) -> Result<C> {
        let view = format::view_record(bytes, pos)?;
        if let Some(allow) = &self.allow
            && !allow.contains(view.name)
        {
            return Err(Error::UnknownCommand {
                position: pos,
                name: view.name.to_string(),
            });
        }
        format::decode_body(&view).map_err(|e| match e {
            Error::Corrupt { detail, .. } if self.allow.is_none() => Error::UnknownCommand {
                position: pos,
                name: format!("{} ({detail})", view.name),
            },
            e => e,
        })
    }

    /// Applies a command whose record is in the log at `pos`. It committed once on this very
    /// state, so it must commit again, without blocking (a retry here would wait forever).
    pub(crate) fn apply_logged(&self, pos: u64, cmd: &C) -> Result<C::Output> {
        let outcome = try_atomically(|tx| match cmd.apply(&self.state, tx) {
            Ok(out) => Ok(out),
            Err(TxError::Abort(_)) => Err(TxError::Abort("apply rejected it")),
            // Not handed to the runtime, which would wait for a change that never comes.
            Err(TxError::Stm(StmError::Retry)) => Err(TxError::Abort("apply called retry")),
            Err(TxError::Stm(e)) => Err(TxError::Stm(e)),
        });
        outcome.map_err(|detail| Error::Replay {
            position: pos,
            // The name the record carries: it was written from this very command.
            name: cmd.name().to_string(),
            detail: detail.to_string(),
        })
    }
}

/// Loads the newest readable snapshot, or `init()` when there is none.
///
/// A damaged snapshot is skipped for an older one only while the log still holds every record
/// after that older one; otherwise the damage is the error, naming the damaged file.
fn load_snapshot<C: Command>(
    backend: &dyn Backend,
    init: impl FnOnce() -> C::State,
) -> Result<(u64, C::State)> {
    let mut damaged = None;
    let log_reaches = |at: u64| match backend.scan(at + 1, &mut |_, _| Ok(false)) {
        Ok(_) => Ok(true),
        Err(Error::Lagging { .. }) => Ok(false),
        Err(e) => Err(e),
    };
    for seq in backend.snapshots()?.into_iter().rev() {
        let (source, bytes) = backend.load_snapshot(seq)?;
        match format::decode_snapshot::<<C::State as State>::Image>(&bytes, &source) {
            Ok((at, image)) => {
                if let Some(e) = damaged
                    && !log_reaches(at)?
                {
                    return Err(e);
                }
                return Ok((at, C::State::from_image(image)));
            }
            Err(e @ Error::UnsupportedFormat { .. }) => return Err(e),
            Err(e) => {
                damaged.get_or_insert(e);
            }
        }
    }
    match damaged {
        Some(e) if !log_reaches(0)? => Err(e),
        _ => Ok((0, init())),
    }
}
