//! Which messages a consumer side has seen, by sender and sequence number: one bit each, so a
//! run can say that every acknowledged message arrived, and arrived once.

/// Bits of one sender's sequence numbers; grows as higher numbers arrive.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    senders: Vec<Vec<u64>>,
    distinct: u64,
    duplicates: u64,
}

/// A sender or sequence number beyond these is not from this run's senders.
const SENDERS_MAX: u32 = 100_000;
const SEQUENCE_MAX: u64 = 1 << 36;

impl Ledger {
    /// Marks `(sender, sequence)` seen; false when it was seen before (or is out of range).
    pub fn mark(&mut self, sender: u32, sequence: u64) -> bool {
        if sender >= SENDERS_MAX || sequence >= SEQUENCE_MAX {
            return false;
        }
        let sender = sender as usize;
        if self.senders.len() <= sender {
            self.senders.resize(sender + 1, Vec::new());
        }
        let words = &mut self.senders[sender];
        let word = usize::try_from(sequence / 64).unwrap_or(usize::MAX);
        if words.len() <= word {
            words.resize(word + 1, 0);
        }
        let bit = 1_u64 << (sequence % 64);
        if words[word] & bit == 0 {
            words[word] |= bit;
            self.distinct += 1;
            true
        } else {
            self.duplicates += 1;
            false
        }
    }

    /// Messages seen at least once.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }

    /// Arrivals of messages already seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_messages_and_duplicates() {
        let mut ledger = Ledger::default();
        assert!(ledger.mark(0, 0));
        assert!(ledger.mark(0, 1000));
        assert!(ledger.mark(3, 5));
        assert!(!ledger.mark(0, 1000));
        assert!(!ledger.mark(SENDERS_MAX, 0), "out of range");
        assert_eq!(ledger.distinct(), 3);
        assert_eq!(ledger.duplicates(), 1);
    }
}
