//! The instant at which evidence is verified (certificate validity, DCAP
//! collateral windows, Nitro document chains).
//!
//! A running broker verifies at the wall clock ([`WallClock`], the default of
//! [`crate::Broker::open`]); nothing read from the network or from the CLI can
//! change that. Code that embeds the library — tests with archived evidence whose
//! certificates have since expired, or an operator re-checking evidence that was
//! presented at a known time — constructs a [`FixedClock`] and hands it to
//! [`crate::Broker::with_evidence_clock`]. The clock is only the verification
//! instant: session expiry and token timestamps always use the system clock.

use std::fmt;

use ironclaw_verifier::VerifyTime;

/// A source of the verification instant.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The instant evidence is verified at.
    fn now(&self) -> VerifyTime;
}

/// The system's wall clock (production).
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> VerifyTime {
        VerifyTime::now()
    }
}

/// A fixed instant, for tests and for verifying archived evidence.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub VerifyTime);

impl Clock for FixedClock {
    fn now(&self) -> VerifyTime {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_returns_its_instant_and_wall_clock_moves() {
        let t = VerifyTime::from_unix(1_751_624_191);
        assert_eq!(FixedClock(t).now(), t);
        // The wall clock is after the fixtures' era (2025) on any machine running this.
        assert!(WallClock.now() > t);
    }
}
