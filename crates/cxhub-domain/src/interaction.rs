//! Interactions reported directly by event sources other than the feeds (web and app analytics,
//! store footfall, kiosks): idempotent by (source, interaction id), stored beside the
//! interactions derived from feed records.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{FieldViolation, Result};
use crate::identifier::CustomerId;
use crate::record::ContentHash;
use crate::touchpoint::{Channel, Key};

/// Most interactions in one call.
pub const MAX_INTERACTIONS: usize = 1_000;
/// Longest outcome code.
pub const MAX_OUTCOME_LEN: usize = 64;

/// Who an interaction is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerRef {
    /// A hub customer id (a merged one names its survivor).
    Id(CustomerId),
    /// The id a source gave the customer; unknown ones create the customer, as a feed record
    /// would. Never a junk id ([`crate::identifier::classify_source_id`] refuses those).
    Source {
        /// The source system.
        source: String,
        /// The customer's id there, normalised ([`crate::identifier::normalise_source_id`]).
        id: String,
    },
}

/// A validated interaction to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInteraction {
    /// Position in the request.
    pub index: usize,
    /// The event source.
    pub source: String,
    /// Its id in the source.
    pub interaction_id: String,
    /// The customer.
    pub customer: CustomerRef,
    /// The touchpoint.
    pub touchpoint_key: Key,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// The channel; `None` takes the touchpoint's.
    pub channel: Option<Channel>,
    /// What came of it (UPPER_SNAKE_CASE).
    pub outcome: String,
    /// Hash of the interaction's canonical encoding: a re-send has the same.
    pub hash: ContentHash,
}

/// What recording one interaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Recorded.
    Created,
    /// Recorded before with the same content.
    Unchanged,
    /// Recorded before with other content: nothing overwritten.
    Conflict,
}

/// The result of one valid interaction: what happened and whose it is, or why the store
/// refused it (an unknown customer id, an unknown or archived touchpoint).
pub type Recorded = std::result::Result<(RecordOutcome, CustomerId), Vec<FieldViolation>>;

/// Checks an outcome code: 1 to 64 characters of `A-Z`, `0-9` and `_`, starting with a letter.
pub fn check_outcome(code: &str) -> std::result::Result<(), String> {
    let ok = !code.is_empty()
        && code.len() <= MAX_OUTCOME_LEN
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "an UPPER_SNAKE_CASE code of 1 to {MAX_OUTCOME_LEN} characters, e.g. `VISITED` (got `{code}`)"
        ))
    }
}

/// Storage of directly reported interactions.
#[async_trait]
pub trait InteractionRepo: Send + Sync {
    /// Records the interactions in one transaction; one result per item, in order.
    async fn record_interactions(&self, items: Vec<NewInteraction>) -> Result<Vec<Recorded>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_codes_are_upper_snake_case() {
        assert!(check_outcome("VISITED").is_ok());
        assert!(check_outcome("ABANDONED_CART_2").is_ok());
        for bad in ["", "visited", "_X", "2FA", "A-B", &"A".repeat(65)] {
            assert!(check_outcome(bad).is_err(), "{bad}");
        }
    }
}
