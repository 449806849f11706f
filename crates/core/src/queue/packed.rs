//! Optional values in the space of the value itself. A deep queue holds one
//! entry per message (ten million entries are common), and an `Option` of
//! an 8-byte value takes 16: these take 8, with a value that cannot occur
//! standing for none.

use crate::clock::Timestamp;
use crate::store::Location;

/// An optional timestamp; `Timestamp::MAX` (no real time is that late)
/// stands for none.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct MaybeTime(Timestamp);

impl MaybeTime {
    pub(super) const NONE: MaybeTime = MaybeTime(Timestamp::MAX);

    pub(super) fn new(t: Option<Timestamp>) -> Self {
        MaybeTime(t.unwrap_or(Timestamp::MAX))
    }

    pub(super) fn get(self) -> Option<Timestamp> {
        (self.0 != Timestamp::MAX).then_some(self.0)
    }
}

/// An optional store location; `u64::MAX` stands for none (a store's
/// locations are file and offset packed in far fewer bits).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct MaybeLoc(u64);

impl MaybeLoc {
    pub(super) fn new(l: Option<Location>) -> Self {
        debug_assert!(l != Some(Location(u64::MAX)), "a location that means none");
        MaybeLoc(l.map_or(u64::MAX, |l| l.0))
    }

    pub(super) fn get(self) -> Option<Location> {
        (self.0 != u64::MAX).then_some(Location(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_some_come_back() {
        assert_eq!(MaybeTime::new(None).get(), None);
        assert_eq!(MaybeTime::new(Some(Timestamp(5))).get(), Some(Timestamp(5)));
        assert_eq!(MaybeLoc::new(None).get(), None);
        assert_eq!(MaybeLoc::new(Some(Location(0))).get(), Some(Location(0)));
        assert_eq!(std::mem::size_of::<MaybeTime>(), 8);
    }

    /// The entry is per message: its size is memory per queued message.
    #[test]
    fn a_queue_entry_stays_small() {
        let size = std::mem::size_of::<super::super::Entry>();
        assert!(size <= 112, "Entry is {size} bytes");
    }
}
