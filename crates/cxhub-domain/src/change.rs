//! The customer change log: one ordered entry per change of a customer (created, updated with
//! the names of what changed, merged, split, erased), written in the transaction of the change
//! itself, so the log never misses a committed change nor shows one that rolled back.
//!
//! Entries carry ids and field names, never personal data: a consumer that needs the values
//! reads the customer (an audited read), and erasing a customer leaves nothing to scrub here.
//!
//! Positions: every entry has a sequence number, strictly increasing in commit order (on
//! PostgreSQL every writer of the log holds the identity lock, so numbers are taken in commit
//! order). A resume token names the last position a consumer has seen; entries older than the
//! retention are pruned, and the log remembers up to where (its horizon), so a token from
//! before the horizon is refused instead of silently skipping what was pruned.

use std::collections::BTreeSet;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::feed::Profile;
use crate::identifier::CustomerId;
use crate::record::FieldGroup;
use crate::resolution::MergeId;
use crate::text_enum::text_enum;

text_enum!(
    /// What happened to a customer.
    ChangeKind {
        /// The hub saw the customer for the first time.
        Created = "created",
        /// Profile fields, identifiers, interactions or transactions changed (see the fields).
        Updated = "updated",
        /// Identity resolution folded other customers into this one.
        Merged = "merged",
        /// An operator undid a merge into this customer.
        Split = "split",
        /// The customer's personal data was erased.
        Erased = "erased",
        /// The customer's category or churn band changed, or the customer was scored for the
        /// first time (see the fields: [`CATEGORY`], [`CHURN_BAND`]).
        Rescored = "rescored",
    }
);

/// Field name of a rescored entry when the customer's category changed.
pub const CATEGORY: &str = "category";
/// Field name of a rescored entry when the customer's churn band changed.
pub const CHURN_BAND: &str = "churn_band";

/// Field name of an updated entry when interactions were added or changed.
pub const INTERACTIONS: &str = "interactions";
/// Field name of an updated entry when ledger transactions were added or changed.
pub const TRANSACTIONS: &str = "transactions";
/// Field name of an updated entry when source customer ids were added.
pub const SOURCE_IDS: &str = "source_ids";

/// A change to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChange {
    /// The customer it happened to (the survivor, for a merge or split).
    pub customer: CustomerId,
    /// What happened.
    pub kind: ChangeKind,
    /// For an update: what changed (profile field groups, `interactions`, `transactions`,
    /// `source_ids`), ascending.
    pub fields: Vec<String>,
    /// For a merge: the absorbed customers; for a split: the restored ones.
    pub related: Vec<CustomerId>,
    /// The merge made or undone.
    pub merge: Option<MergeId>,
}

impl NewChange {
    /// A plain change without fields or related customers.
    pub fn new(customer: CustomerId, kind: ChangeKind) -> Self {
        Self {
            customer,
            kind,
            fields: Vec::new(),
            related: Vec::new(),
            merge: None,
        }
    }

    /// A change of the scores named by `fields` ([`CATEGORY`], [`CHURN_BAND`]).
    pub fn rescored<'a>(customer: CustomerId, fields: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            kind: ChangeKind::Rescored,
            ..Self::updated(customer, fields)
        }
    }

    /// An update of `fields`.
    pub fn updated<'a>(customer: CustomerId, fields: impl IntoIterator<Item = &'a str>) -> Self {
        let fields: BTreeSet<&str> = fields.into_iter().collect();
        Self {
            fields: fields.into_iter().map(str::to_owned).collect(),
            ..Self::new(customer, ChangeKind::Updated)
        }
    }
}

/// A change as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its position in the log.
    pub seq: i64,
    /// What changed.
    pub change: NewChange,
    /// When it was committed (the writer's clock).
    pub at: DateTime<Utc>,
}

/// A slice of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSlice {
    /// Entries after the asked position, ascending.
    pub changes: Vec<Change>,
    /// Entries up to this position were pruned (0 when nothing was).
    pub horizon: i64,
    /// The newest position in the log when read (0 when it is empty).
    pub head: i64,
}

/// Which changes a consumer wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    /// Only changes of these customers (as the changed customer or a related one); all when
    /// empty.
    pub customers: BTreeSet<CustomerId>,
    /// Only these kinds; all when empty.
    pub kinds: BTreeSet<ChangeKind>,
}

impl ChangeFilter {
    /// Whether `change` passes.
    pub fn matches(&self, change: &NewChange) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&change.kind))
            && (self.customers.is_empty()
                || self.customers.contains(&change.customer)
                || change.related.iter().any(|c| self.customers.contains(c)))
    }
}

/// The profile field groups whose values differ between two versions of a profile (names as
/// in [`FieldGroup`]; e-mails and phones are identities, reported when they are added).
pub fn changed_groups(old: &Profile, new: &Profile) -> Vec<&'static str> {
    let mut groups = Vec::new();
    if old.given_name != new.given_name || old.family_name != new.family_name {
        groups.push(FieldGroup::Name);
    }
    if old.addresses != new.addresses {
        groups.push(FieldGroup::Address);
    }
    if old.preferred_language != new.preferred_language {
        groups.push(FieldGroup::Language);
    }
    if old.consents != new.consents {
        groups.push(FieldGroup::Consent);
    }
    if old.lifecycle_stage != new.lifecycle_stage {
        groups.push(FieldGroup::Lifecycle);
    }
    if old.account_id != new.account_id {
        groups.push(FieldGroup::Account);
    }
    groups.into_iter().map(FieldGroup::as_str).collect()
}

const TOKEN_PREFIX: &str = "cl1.";

/// The resume token of position `seq`: a consumer that presents it gets every change after it.
pub fn resume_token(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{seq}"))
}

/// The position a resume token names (field `resume_token`).
pub fn parse_resume_token(token: &str) -> Result<i64> {
    let invalid = || {
        Error::invalid_field(
            "resume_token",
            "not a resume token of this hub's change feed (use one from a change event, or leave \
             it empty)",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let seq: i64 = text
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|s| s.parse().ok())
        .ok_or_else(invalid)?;
    if seq < 0 {
        return Err(invalid());
    }
    Ok(seq)
}

/// Checks that a consumer resuming after `after` misses nothing: `OutOfRange`
/// (`CHANGES_PRUNED`, with the oldest usable token) when entries after it were pruned, and
/// `InvalidArgument` when the position was never issued by this log.
pub fn check_resume(after: i64, slice: &ChangeSlice) -> Result<()> {
    if after < slice.horizon {
        return Err(Error::OutOfRange {
            reason: "CHANGES_PRUNED",
            message: format!(
                "changes after this token were pruned (retention); resume from the oldest \
                 available token {} and reconcile by reading the customers",
                resume_token(slice.horizon)
            ),
            metadata: vec![("oldest_token".to_owned(), resume_token(slice.horizon))],
        });
    }
    if after > slice.head {
        return Err(Error::invalid_field(
            "resume_token",
            "this token is ahead of the change log: it comes from another hub or database",
        ));
    }
    Ok(())
}

/// Storage of the change log.
#[async_trait]
pub trait ChangeLogRepo: Send + Sync {
    /// Up to `limit` entries after position `after`, with the log's horizon and head.
    async fn read_changes(&self, after: i64, limit: u32) -> Result<ChangeSlice>;

    /// Prunes the entries committed before `before`; answers how many went.
    async fn prune_changes(&self, before: DateTime<Utc>) -> Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(horizon: i64, head: i64) -> ChangeSlice {
        ChangeSlice {
            changes: Vec::new(),
            horizon,
            head,
        }
    }

    #[test]
    fn tokens_round_trip_and_foreign_text_is_refused() {
        for seq in [0, 1, 42, i64::MAX] {
            assert_eq!(parse_resume_token(&resume_token(seq)).ok(), Some(seq));
        }
        for bad in [
            "", "abc", "Y2wxLi0x", /* cl1.-1 */
            "eDEuMQ",   /* x1.1 */
        ] {
            let err = parse_resume_token(bad).err();
            assert!(
                matches!(&err, Some(Error::InvalidArgument { violations, .. }) if violations[0].field == "resume_token"),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn resuming_before_the_horizon_is_out_of_range_with_the_oldest_token() {
        assert!(check_resume(10, &slice(10, 20)).is_ok());
        assert!(check_resume(20, &slice(10, 20)).is_ok());
        match check_resume(9, &slice(10, 20)) {
            Err(Error::OutOfRange {
                reason, metadata, ..
            }) => {
                assert_eq!(reason, "CHANGES_PRUNED");
                assert_eq!(
                    metadata,
                    vec![("oldest_token".to_owned(), resume_token(10))]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_resume(21, &slice(10, 20)),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn filters_match_kinds_and_customers_directly_or_as_related() {
        let a = CustomerId::generate();
        let b = CustomerId::generate();
        let c = CustomerId::generate();
        let merge = NewChange {
            related: vec![b],
            ..NewChange::new(a, ChangeKind::Merged)
        };
        assert!(ChangeFilter::default().matches(&merge));
        let only_b = ChangeFilter {
            customers: [b].into(),
            ..ChangeFilter::default()
        };
        assert!(only_b.matches(&merge));
        let only_c = ChangeFilter {
            customers: [c].into(),
            ..ChangeFilter::default()
        };
        assert!(!only_c.matches(&merge));
        let only_updates = ChangeFilter {
            kinds: [ChangeKind::Updated].into(),
            ..ChangeFilter::default()
        };
        assert!(!only_updates.matches(&merge));
        assert!(only_updates.matches(&NewChange::updated(a, ["name"])));
    }

    #[test]
    fn changed_groups_compare_values_not_provenance() {
        let old = Profile {
            given_name: "Ana".into(),
            account_id: "acc-1".into(),
            ..Profile::default()
        };
        let mut new = old.clone();
        new.provenance.insert(
            FieldGroup::Name,
            crate::record::Provenance {
                source: "crm".into(),
                record_id: "c-1".into(),
                updated_at: Utc::now(),
            },
        );
        assert!(changed_groups(&old, &new).is_empty());
        new.family_name = "Lima".into();
        new.account_id = "acc-2".into();
        assert_eq!(changed_groups(&old, &new), ["name", "account"]);
    }

    #[test]
    fn updates_list_fields_once_in_order() {
        let c = CustomerId::generate();
        let change = NewChange::updated(c, ["transactions", "name", "transactions"]);
        assert_eq!(change.fields, ["name", "transactions"]);
    }
}
