//! One node's replica of one partition: its part in the chain, as a pure state machine.
//!
//! Invariants it keeps:
//! - it acknowledges upstream only offsets durable here and acknowledged by its successor
//!   (the last member: durable here), and only in the chain epoch it is in;
//! - as head it reports `Committed` only while its lease holds, and never a lower value;
//! - it cuts its log only where it parts from its predecessor's (entries never committed),
//!   or to the committed offset it knows when it attaches after a break, never below that.

use std::collections::VecDeque;

use strand_engine::Offset;

use super::{Action, Chain, Cut, Entry, Envelope, Message};
use crate::ids::{ChainEpoch, NodeId};

/// Bounds of one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries kept in memory for forwarding; older ones are read back from the log. The
    /// head refuses appends while this many wait for its successor.
    pub window_entries_max: usize,
    /// Entries in one `Append` message.
    pub message_entries_max: usize,
    /// Bytes of entries in one `Append` message (see [`Entry::bytes`]); a message always
    /// carries at least one entry, whatever its size.
    pub message_bytes_max: usize,
    /// Ticks without an acknowledgement before a replica resends: the upstream its entries
    /// from the successor's log end, the downstream its acknowledgement.
    pub resend_ticks: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            window_entries_max: 4096,
            message_entries_max: 64,
            message_bytes_max: 8 << 20,
            resend_ticks: 4,
        }
    }
}

/// Why the head did not take an append.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendRefused {
    #[error("{node} is not the head of the partition's chain")]
    NotHead { node: NodeId },
    #[error("{node} cannot confirm its lease with the controller")]
    LeaseLapsed { node: NodeId },
    #[error("{node} has {pending} entries waiting for its successor (at most {max})")]
    Backlog {
        node: NodeId,
        pending: usize,
        max: usize,
    },
}

/// What a restarted replica read back from its disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The end of the log on disk.
    pub log_end: Offset,
    /// Where each chain epoch's entries start in the log, in order.
    pub log_epochs: Vec<(ChainEpoch, Offset)>,
    /// What the last sync stored: the committed offset and the attached epoch.
    pub committed: Offset,
    pub attached_epoch: Option<ChainEpoch>,
}

/// One node's replica of one partition.
#[derive(Debug)]
pub struct Replica<E> {
    node: NodeId,
    limits: Limits,
    chain: Option<Chain>,
    /// Chains older than this are from before the node's restart and are ignored.
    epoch_min: ChainEpoch,
    /// The last epoch in which this node was attached to the chain (stored with each sync,
    /// so it survives a restart).
    attached_epoch: Option<ChainEpoch>,
    /// True while attached to `chain` (as a member or the learner).
    attached: bool,
    log_end: Offset,
    /// Where each epoch's entries start in the log: entries carry the epoch of the head
    /// that appended them, so two logs agree up to where their epochs part.
    log_epochs: Vec<(ChainEpoch, Offset)>,
    durable_end: Offset,
    sync_in_flight: bool,
    /// Where the log was cut while a sync was in flight: that sync vouches for nothing
    /// past it (what follows was appended after the sync began).
    sync_cut: Option<Offset>,
    committed: Offset,
    /// The chain epoch in which this replica last committed as head.
    committed_in: ChainEpoch,
    lease_valid: bool,
    downstream: Option<Downstream>,
    upstream: Option<Upstream>,
    /// Recent entries, for forwarding without reading the log: they span
    /// `window_start..log_end`.
    window: VecDeque<E>,
    window_start: Offset,
    reading: bool,
    actions: Vec<Action<E>>,
}

/// What a replica knows of its successor in the current epoch.
#[derive(Debug)]
struct Downstream {
    node: NodeId,
    /// False for the learner: its acknowledgements commit nothing.
    counts: bool,
    /// The successor's log end, from its last acknowledgement; `None` until its handshake.
    log_end: Option<Offset>,
    /// The epoch of the successor's last entry, from the same acknowledgement.
    last_epoch: Option<ChainEpoch>,
    acked: Offset,
    next_send: Offset,
    idle_ticks: u32,
    seq_out: u64,
    seq_in: u64,
    /// A cut the successor must make, until it acknowledges an `Append` carrying it.
    cut: Option<Cut>,
}

/// What a replica knows of its predecessor in the current epoch.
#[derive(Debug)]
struct Upstream {
    node: NodeId,
    acked_sent: Offset,
    idle_ticks: u32,
    seq_out: u64,
    seq_in: u64,
    /// The last cut made on the predecessor's word.
    cut_done: u64,
}

impl<E: Entry> Replica<E> {
    /// A replica with an empty log, attached to no chain yet.
    pub fn new(node: NodeId, limits: Limits) -> Replica<E> {
        Replica::recover(node, limits, Recovered::default(), ChainEpoch::default())
    }

    /// A replica reopened over what its disk holds.
    ///
    /// `epoch_min` is the chain epoch the controller answered the node's registration with.
    /// A restarted node may have lost entries it forwarded but had not synced, so it must
    /// not act in a chain from before its restart: the controller detaches it (unless it
    /// is the only member, which goes on in a new epoch) and it comes back as the learner.
    pub fn recover(
        node: NodeId,
        limits: Limits,
        disk: Recovered,
        epoch_min: ChainEpoch,
    ) -> Replica<E> {
        assert!(limits.window_entries_max > 0, "the window holds entries");
        assert!(limits.message_entries_max > 0, "messages carry entries");
        assert!(limits.resend_ticks > 0, "resends wait at least a tick");
        let log_end = disk.log_end;
        Replica {
            node,
            limits,
            chain: None,
            epoch_min,
            attached_epoch: disk.attached_epoch,
            attached: false,
            log_end,
            log_epochs: disk.log_epochs,
            durable_end: log_end,
            sync_in_flight: false,
            sync_cut: None,
            committed: disk.committed.min(log_end),
            committed_in: ChainEpoch::default(),
            lease_valid: false,
            downstream: None,
            upstream: None,
            window: VecDeque::new(),
            window_start: log_end,
            reading: false,
            actions: Vec::new(),
        }
    }

    /// The actions asked for since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<Action<E>> {
        std::mem::take(&mut self.actions)
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn chain(&self) -> Option<&Chain> {
        self.chain.as_ref()
    }

    pub fn log_end(&self) -> Offset {
        self.log_end
    }

    pub fn durable_end(&self) -> Offset {
        self.durable_end
    }

    /// The committed offset this replica knows (the head's is authoritative).
    pub fn committed(&self) -> Offset {
        self.committed
    }

    /// The chain epoch in which this replica last committed as head: a commit in an epoch
    /// needed every member's acknowledgement, so each member of it then held every
    /// committed offset (what the controller needs before it may drop older members).
    pub fn committed_in(&self) -> ChainEpoch {
        self.committed_in
    }

    /// Where each epoch's entries start in this replica's log.
    pub fn log_epochs(&self) -> &[(ChainEpoch, Offset)] {
        &self.log_epochs
    }

    /// Whether the controller has confirmed this node's lease recently enough. A head
    /// without one takes no appends and commits nothing: the controller may already have
    /// removed it.
    pub fn set_lease(&mut self, valid: bool) {
        self.lease_valid = valid;
        if valid {
            self.advance();
        }
    }

    /// A chain from the controller. Older or repeated epochs are ignored, and so are
    /// chains from before the node's restart.
    pub fn reconfigure(&mut self, chain: Chain) {
        let known = self.chain.as_ref().map(|known| known.epoch);
        if chain.epoch < self.epoch_min || known.is_some_and(|known| known >= chain.epoch) {
            return;
        }
        let me = chain.attached(self.node);
        self.downstream = None;
        self.upstream = None;
        self.attached = me.is_some();
        if let Some(me) = me {
            let rejoining = self.attached_epoch.is_none_or(|last| me.since > last);
            if rejoining {
                self.cut_log(self.committed);
            }
            self.attached_epoch = Some(chain.epoch);
            self.downstream = chain.successor(self.node).map(|node| Downstream {
                node,
                counts: chain.is_member(node),
                log_end: None,
                last_epoch: None,
                acked: Offset::ZERO,
                next_send: self.log_end,
                idle_ticks: 0,
                seq_out: 0,
                seq_in: 0,
                cut: None,
            });
            self.upstream = chain.predecessor(self.node).map(|node| Upstream {
                node,
                acked_sent: Offset::ZERO,
                idle_ticks: 0,
                seq_out: 0,
                seq_in: 0,
                cut_done: 0,
            });
        }
        if self.downstream.is_none() {
            self.window.clear();
            self.window_start = self.log_end;
        }
        self.chain = Some(chain);
        self.send_ack();
        self.advance();
    }

    /// Whether [`Replica::append`] would take an entry now, and if so the chain epoch it
    /// would stamp (a host that assigns offsets before appending asks first).
    pub fn admit(&self) -> Result<ChainEpoch, AppendRefused> {
        let node = self.node;
        if !self.attached || !self.role_head() {
            return Err(AppendRefused::NotHead { node });
        }
        if !self.lease_valid {
            return Err(AppendRefused::LeaseLapsed { node });
        }
        // A learner catching up never holds producers back: only a member does.
        let pending = self.window.len();
        let member_next = self.downstream.as_ref().is_some_and(|down| down.counts);
        if member_next && pending >= self.limits.window_entries_max {
            let max = self.limits.window_entries_max;
            return Err(AppendRefused::Backlog { node, pending, max });
        }
        Ok(self.epoch())
    }

    /// A client's append at the head: the offset of its first record.
    pub fn append(&mut self, mut entry: E) -> Result<Offset, AppendRefused> {
        let epoch = self.admit()?;
        entry.set_epoch(epoch);
        let start = self.log_end;
        self.store(vec![entry]);
        self.start_sync();
        if !self.check_parting() {
            self.pump();
        }
        Ok(start)
    }

    /// A message from another node.
    pub fn receive(&mut self, envelope: Envelope<E>) {
        let current = self.chain.as_ref().map(|chain| chain.epoch);
        if !self.attached || envelope.to != self.node || Some(envelope.message.epoch()) != current {
            return; // not for this chain epoch: stale, or from a chain not yet known here
        }
        match envelope.message {
            Message::Append {
                seq,
                start,
                entries,
                committed,
                cut,
                ..
            } => {
                let Some(up) = self.upstream.as_mut() else {
                    return;
                };
                if up.node != envelope.from || seq <= up.seq_in {
                    return;
                }
                up.seq_in = seq;
                if let Some(cut) = cut.filter(|cut| cut.id > up.cut_done) {
                    up.cut_done = cut.id;
                    self.on_cut(cut.end);
                }
                self.on_append(start, entries, committed);
            }
            Message::Ack {
                seq,
                log_end,
                last_epoch,
                acked,
                seen,
                ..
            } => {
                let Some(down) = self.downstream.as_mut() else {
                    return;
                };
                if down.node != envelope.from || seq <= down.seq_in {
                    return;
                }
                down.seq_in = seq;
                if let Some(cut) = down.cut {
                    if seen < cut.id {
                        return; // sent before the successor made the cut
                    }
                    down.cut = None;
                }
                self.on_ack(log_end, last_epoch, acked);
            }
        }
    }

    /// The host finished the sync of the log up to `end`.
    pub fn synced(&mut self, end: Offset) {
        self.sync_in_flight = false;
        let end = self.sync_cut.take().map_or(end, |cut| end.min(cut));
        self.durable_end = self.durable_end.max(end.min(self.log_end));
        self.start_sync();
        self.advance();
    }

    /// The host read `entries` from `start` of the log, as a `Read` action asked.
    pub fn read_done(&mut self, start: Offset, entries: Vec<E>) {
        self.reading = false;
        let Some(down) = self.downstream.as_ref() else {
            return;
        };
        if down.log_end.is_none() || down.next_send != start || entries.is_empty() {
            return;
        }
        let mut end = start;
        let log_end = self.log_end;
        let sent = self.message(entries.into_iter().take_while(|entry| {
            let inside = end < log_end;
            end = end.plus(entry.offsets());
            inside
        }));
        self.send_append(start, sent);
        self.pump();
    }

    /// Time passes: resend what may have been lost.
    pub fn tick(&mut self) {
        let resend_ticks = self.limits.resend_ticks;
        let mut resend = false;
        if let Some(down) = self.downstream.as_mut() {
            let behind = down.log_end.is_some_and(|log_end| down.next_send > log_end);
            if behind || down.cut.is_some() {
                down.idle_ticks += 1;
                if down.idle_ticks >= resend_ticks {
                    down.idle_ticks = 0;
                    if let Some(log_end) = down.log_end {
                        down.next_send = log_end;
                    }
                    resend = true;
                }
            }
        }
        if resend
            && !self.pump()
            && let Some(start) = self
                .downstream
                .as_ref()
                .filter(|down| down.cut.is_some())
                .map(|down| down.next_send)
        {
            self.send_append(start, Vec::new());
        }
        if let Some(up) = self.upstream.as_mut() {
            up.idle_ticks += 1;
            if up.idle_ticks >= resend_ticks {
                self.send_ack();
            }
        }
    }

    fn epoch(&self) -> ChainEpoch {
        self.chain
            .as_ref()
            .expect("attached replicas know their chain")
            .epoch
    }

    fn role_head(&self) -> bool {
        self.chain
            .as_ref()
            .is_some_and(|chain| chain.head() == self.node)
    }

    /// The epoch of this log's last entry.
    fn last_epoch(&self) -> Option<ChainEpoch> {
        self.log_epochs.last().map(|(epoch, _)| *epoch)
    }

    /// Where entries of epochs after `epoch` start in this log (its end if none do): a log
    /// whose last entry is of `epoch` agrees with this one up to there.
    fn end_of(&self, epoch: Option<ChainEpoch>) -> Offset {
        let Some(epoch) = epoch else {
            return Offset::ZERO;
        };
        self.log_epochs
            .iter()
            .find(|(later, _)| *later > epoch)
            .map_or(self.log_end, |(_, start)| *start)
    }

    /// The epoch of the entry holding `offset`.
    fn epoch_at(&self, offset: Offset) -> Option<ChainEpoch> {
        self.log_epochs
            .iter()
            .take_while(|(_, start)| *start <= offset)
            .last()
            .map(|(epoch, _)| *epoch)
    }

    /// Cuts the local log at `end`.
    fn cut_log(&mut self, end: Offset) {
        if self.log_end > end {
            self.actions.push(Action::Truncate { end });
            if self.sync_in_flight {
                self.sync_cut = Some(self.sync_cut.map_or(end, |cut| cut.min(end)));
            }
            self.log_end = end;
            self.durable_end = self.durable_end.min(end);
            self.log_epochs.retain(|(_, start)| *start < end);
            if let Some(up) = self.upstream.as_mut() {
                up.acked_sent = up.acked_sent.min(end);
            }
        }
        self.window.clear();
        self.window_start = self.log_end;
    }

    fn on_cut(&mut self, end: Offset) {
        assert!(
            end >= self.committed,
            "{}: told to cut at {end}, below the committed offset {}",
            self.node,
            self.committed
        );
        if self.log_end > end {
            self.cut_log(end);
            self.cut_downstream(end);
        }
    }

    fn on_append(&mut self, start: Offset, entries: Vec<E>, committed: Offset) {
        if start > self.log_end {
            self.send_ack(); // a gap: something was lost; say where the log ends
            return;
        }
        let mut at = start;
        let mut fresh = Vec::new();
        for entry in entries {
            let end = at.plus(entry.offsets());
            if at >= self.log_end {
                fresh.push(entry);
            } else {
                assert!(
                    end <= self.log_end && self.epoch_at(at) == Some(entry.epoch()),
                    "{}: the predecessor's entry {at}..{end} of {} differs from the log here",
                    self.node,
                    entry.epoch()
                );
            }
            at = end;
        }
        if !fresh.is_empty() {
            self.store(fresh);
        }
        self.committed = self.committed.max(committed.min(self.log_end));
        self.start_sync();
        if !self.check_parting() {
            self.pump();
        }
        if let Some(up) = self.upstream.as_mut() {
            up.idle_ticks = 0;
        }
        self.send_ack_if_new();
    }

    fn on_ack(&mut self, log_end: Offset, last_epoch: Option<ChainEpoch>, acked: Offset) {
        assert!(acked <= log_end, "acknowledged past the log end");
        let down = self.downstream.as_mut().expect("checked by the caller");
        if down.log_end.is_none() {
            down.next_send = log_end; // the handshake: resume where its log ends
        }
        if down.log_end.is_none_or(|known| log_end > known) || acked > down.acked {
            down.idle_ticks = 0;
        }
        down.log_end = Some(log_end);
        down.last_epoch = last_epoch;
        down.acked = down.acked.max(acked);
        if self.check_parting() {
            return;
        }
        // The successor holds everything below its log end: forget it here.
        while let Some(first) = self.window.front() {
            let end = self.window_start.plus(first.offsets());
            if end > log_end {
                break;
            }
            self.window_start = end;
            self.window.pop_front();
        }
        self.advance();
        self.pump();
    }

    /// Cuts the successor's log where it parts from this one, if it does. Entries of one
    /// epoch are the same wherever they are, so the logs part where this one holds entries
    /// of an epoch later than the successor's last. If this log has none there, it may only
    /// be behind (a member promoted ahead of its predecessor): nothing to cut, and nothing
    /// to send until this log passes the successor's.
    fn check_parting(&mut self) -> bool {
        let Some(down) = self.downstream.as_ref() else {
            return false;
        };
        let Some(log_end) = down.log_end else {
            return false;
        };
        let parting = self.end_of(down.last_epoch);
        if parting < log_end && parting < self.log_end {
            // The successor holds entries this log replaced: never committed.
            self.cut_downstream(parting);
            return true;
        }
        false
    }

    /// Tells the successor to cut its log at `end` and forgets what it acknowledged above.
    fn cut_downstream(&mut self, end: Offset) {
        let Some(down) = self.downstream.as_mut() else {
            return;
        };
        down.cut = Some(Cut {
            id: down.seq_out + 1,
            end,
        });
        down.acked = down.acked.min(end);
        down.next_send = down.next_send.min(end);
        down.log_end = down.log_end.map(|known| known.min(end));
        down.idle_ticks = 0;
        if !self.pump() {
            self.send_append(end.min(self.log_end), Vec::new());
        }
    }

    /// Appends `entries` at the log end and keeps them for forwarding.
    fn store(&mut self, entries: Vec<E>) {
        let start = self.log_end;
        for entry in &entries {
            let epoch = entry.epoch();
            match self.last_epoch() {
                Some(last) if last == epoch => {}
                last => {
                    assert!(
                        last.is_none_or(|last| last < epoch),
                        "{}: an entry of {epoch} after one of {last:?}",
                        self.node
                    );
                    self.log_epochs.push((epoch, self.log_end));
                }
            }
            self.log_end = self.log_end.plus(entry.offsets());
        }
        if self.downstream.is_some() {
            if self.window.len() + entries.len() > self.limits.window_entries_max {
                self.window.clear(); // forwarding reads them back from the log instead
                self.window_start = self.log_end;
            } else {
                self.window.extend(entries.iter().cloned());
            }
        } else {
            self.window_start = self.log_end;
        }
        self.actions.push(Action::Append { start, entries });
    }

    fn start_sync(&mut self) {
        if !self.sync_in_flight && self.log_end > self.durable_end {
            self.sync_in_flight = true;
            self.actions.push(Action::Sync {
                end: self.log_end,
                committed: self.committed.min(self.log_end),
                attached_epoch: self.attached_epoch,
            });
        }
    }

    /// What this replica may acknowledge: durable here and, unless it is the last member,
    /// acknowledged by its successor.
    fn acked(&self) -> Offset {
        match &self.downstream {
            Some(down) if down.counts => self.durable_end.min(down.acked),
            _ => self.durable_end,
        }
    }

    /// Passes acknowledgements up, or commits them at the head.
    fn advance(&mut self) {
        if !self.attached {
            return;
        }
        let acked = self.acked();
        if self.role_head() {
            if self.lease_valid && acked > self.committed {
                self.committed = acked;
                self.committed_in = self.epoch();
                self.actions.push(Action::Committed(acked));
            }
        } else {
            self.send_ack_if_new();
        }
    }

    fn send_ack_if_new(&mut self) {
        let acked = self.acked();
        if self
            .upstream
            .as_ref()
            .is_some_and(|up| acked > up.acked_sent)
        {
            self.send_ack();
        }
    }

    fn send_ack(&mut self) {
        let acked = self.acked();
        let (log_end, last_epoch) = (self.log_end, self.last_epoch());
        let epoch = self.chain.as_ref().map(|chain| chain.epoch);
        let Some((up, epoch)) = self.upstream.as_mut().zip(epoch) else {
            return;
        };
        up.acked_sent = up.acked_sent.max(acked);
        up.idle_ticks = 0;
        up.seq_out += 1;
        let message = Message::Ack {
            epoch,
            seq: up.seq_out,
            log_end,
            last_epoch,
            acked,
            seen: up.seq_in,
        };
        let to = up.node;
        self.send(to, message);
    }

    fn send_append(&mut self, start: Offset, entries: Vec<E>) {
        let epoch = self.epoch();
        let committed = self.committed;
        let Some(down) = self.downstream.as_mut() else {
            return;
        };
        down.seq_out += 1;
        down.next_send = entries
            .iter()
            .fold(start, |end, entry| end.plus(entry.offsets()))
            .max(down.next_send);
        let message = Message::Append {
            epoch,
            seq: down.seq_out,
            start,
            entries,
            committed,
            cut: down.cut,
        };
        let to = down.node;
        self.send(to, message);
    }

    /// Forwards to the successor whatever it lacks, from the window or (older) the log.
    /// True when it sent or asked for something.
    fn pump(&mut self) -> bool {
        let mut progressed = false;
        loop {
            let Some(down) = self.downstream.as_ref() else {
                return progressed;
            };
            if down.log_end.is_none() || down.next_send >= self.log_end {
                return progressed;
            }
            let next_send = down.next_send;
            if next_send < self.window_start {
                if !self.reading {
                    self.reading = true;
                    self.actions.push(Action::Read { start: next_send });
                }
                return true;
            }
            let mut at = self.window_start;
            let mut skip = 0;
            for entry in &self.window {
                if at >= next_send {
                    break;
                }
                at = at.plus(entry.offsets());
                skip += 1;
            }
            assert_eq!(
                at, next_send,
                "{}: forwarding must start on an entry boundary",
                self.node
            );
            let entries = self.message(self.window.iter().skip(skip).cloned());
            self.send_append(next_send, entries);
            progressed = true;
        }
    }

    /// The entries of one `Append` message, from the front of `entries`: at most
    /// `message_entries_max` of them and `message_bytes_max` bytes, and at least one.
    fn message(&self, entries: impl Iterator<Item = E>) -> Vec<E> {
        let mut bytes = 0usize;
        let mut taken = Vec::new();
        for entry in entries.take(self.limits.message_entries_max) {
            bytes = bytes.saturating_add(entry.bytes());
            if !taken.is_empty() && bytes > self.limits.message_bytes_max {
                break;
            }
            taken.push(entry);
        }
        taken
    }

    fn send(&mut self, to: NodeId, message: Message<E>) {
        self.actions.push(Action::Send(Envelope {
            from: self.node,
            to,
            message,
        }));
    }
}
#[cfg(test)]
mod tests;
