//! Identity resolution as a pure function: which customer an incoming record belongs to, and
//! which customers it shows to be one, given who holds its identifiers now. Also the model of a
//! merge and of its exact undoing (a split).
//!
//! The rules:
//! - the same (source, source customer id) is always the same customer: a
//!   [`IdentifierKind::SourceId`] always links, whatever the rules say;
//! - identifiers of a kind not in [`ResolutionRules::mergeable`] never link anyone;
//! - an identifier shared by more than [`ResolutionRules::max_customers_per_identifier`]
//!   customers links no one and is reported ([`IgnoreReason::Overshared`]);
//! - the survivor of a merge is the smallest [`CustomerId`] among the linked customers (ids are
//!   UUID v7, so the oldest customer).
//!
//! The caller passes only usable identifiers: normalised, junk and suppressed ones removed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::Violations;
use crate::id::uuid_id;
use crate::identifier::{CustomerId, Identifier, IdentifierKind};
use crate::record::RecordKey;
use crate::text_enum::text_enum;

uuid_id!(
    /// The id of a merge (a UUID v7).
    MergeId
);

/// Which identifiers may link records to customers, and when an identifier is too widely shared
/// to trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolutionRules {
    /// The kinds of identifier that may link and merge customers. Source ids always link,
    /// listed or not.
    pub mergeable: BTreeSet<IdentifierKind>,
    /// An identifier held by more distinct customers than this (counting the customers the
    /// record links anyway as one) links no one and is reported. A value below 1 acts as 1.
    pub max_customers_per_identifier: usize,
}

impl Default for ResolutionRules {
    /// Source ids, e-mails and phones link; an identifier shared by more than 5 customers does
    /// not.
    fn default() -> Self {
        Self {
            mergeable: BTreeSet::from([
                IdentifierKind::SourceId,
                IdentifierKind::Email,
                IdentifierKind::Phone,
            ]),
            max_customers_per_identifier: 5,
        }
    }
}

impl ResolutionRules {
    /// Whether identifiers of `kind` link customers.
    pub fn links(&self, kind: IdentifierKind) -> bool {
        kind == IdentifierKind::SourceId || self.mergeable.contains(&kind)
    }

    /// Checks the rules from configuration, reporting at `{field}.max_customers_per_identifier`.
    pub fn check(&self, field: &str, v: &mut Violations) {
        if self.max_customers_per_identifier == 0 {
            let path = if field.is_empty() {
                "max_customers_per_identifier".to_owned()
            } else {
                format!("{field}.max_customers_per_identifier")
            };
            v.add(
                path,
                "at least 1: an identifier held by one customer must be able to find that customer",
            );
        }
    }

    fn limit(&self) -> usize {
        self.max_customers_per_identifier.max(1)
    }
}

/// The customer a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    /// No customer matches: create one.
    New,
    /// This customer (the survivor, when the record causes a merge).
    Existing(CustomerId),
}

text_enum!(
    /// Why an identifier of the record linked no one.
    IgnoreReason {
        /// Held by more customers than the rules allow.
        Overshared = "OVERSHARED",
        /// Its kind may not merge customers, and other customers hold it.
        NotMergeable = "NOT_MERGEABLE",
    }
);

text_enum!(
    /// The rule that made several customers one.
    MergeRule {
        /// The same source customer id was held by several customers.
        SameSourceId = "SAME_SOURCE_ID",
        /// A shared e-mail address.
        SameEmail = "SAME_EMAIL",
        /// A shared phone number.
        SamePhone = "SAME_PHONE",
        /// An operator merged them.
        Manual = "MANUAL",
    }
);

impl MergeRule {
    fn of(kind: IdentifierKind) -> Self {
        match kind {
            IdentifierKind::SourceId => MergeRule::SameSourceId,
            IdentifierKind::Email => MergeRule::SameEmail,
            IdentifierKind::Phone => MergeRule::SamePhone,
        }
    }
}

/// Customers a record shows to be one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merge {
    /// The customer that remains: the smallest id among the linked customers.
    pub survivor: CustomerId,
    /// The customers folded into the survivor, ascending; never empty, never the survivor.
    pub absorbed: Vec<CustomerId>,
    /// The rule that linked them: the e-mail or phone rule when one of those took part (the
    /// e-mail first), else the source-id rule.
    pub rule: MergeRule,
    /// The record's identifiers that linked a customer, ascending.
    pub because: Vec<Identifier>,
}

/// What to do with an incoming record's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The customer the record belongs to.
    pub customer: Target,
    /// The merge the record causes, if it links several customers.
    pub merge: Option<Merge>,
    /// Identifiers that would have linked other customers but were not used, ascending.
    pub ignored: Vec<(Identifier, IgnoreReason)>,
}

/// Resolves one record. `identifiers` are the record's usable identifiers (order and duplicates
/// do not matter); `holders` says which customers hold each identifier now (identifiers absent
/// from it are held by no one; other entries are ignored).
///
/// An identifier's share count is the number of distinct customers holding it, the customers the
/// record links anyway counted as one: it is the count after the merge, so resolving the same
/// record again against the merged state gives the same customer and no further merge. The
/// linked set is the least fixed point of "add the holders of every linking identifier whose
/// share count is within the limit", which does not depend on the order of anything.
pub fn resolve(
    identifiers: &[Identifier],
    holders: &BTreeMap<Identifier, BTreeSet<CustomerId>>,
    rules: &ResolutionRules,
) -> Resolution {
    let no_one = BTreeSet::new();
    let record: BTreeMap<&Identifier, &BTreeSet<CustomerId>> = identifiers
        .iter()
        .map(|id| (id, holders.get(id).unwrap_or(&no_one)))
        .collect();
    let limit = rules.limit();

    let mut linked: BTreeSet<CustomerId> = BTreeSet::new();
    let mut used: BTreeSet<&Identifier> = BTreeSet::new();
    loop {
        let mut grew = false;
        for (id, held) in &record {
            if used.contains(id) || !rules.links(id.kind()) {
                continue;
            }
            if id.kind() == IdentifierKind::SourceId || share_count(held, &linked) <= limit {
                used.insert(id);
                linked.extend(held.iter().copied());
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }

    let ignored = record
        .iter()
        .filter(|(id, _)| !used.contains(*id))
        .filter_map(|(id, held)| {
            if !rules.links(id.kind()) {
                held.iter()
                    .any(|c| !linked.contains(c))
                    .then(|| ((*id).clone(), IgnoreReason::NotMergeable))
            } else {
                Some(((*id).clone(), IgnoreReason::Overshared))
            }
        })
        .collect();

    let mut customers = linked.iter().copied();
    let Some(survivor) = customers.next() else {
        return Resolution {
            customer: Target::New,
            merge: None,
            ignored,
        };
    };
    let absorbed: Vec<CustomerId> = customers.collect();
    let merge = (!absorbed.is_empty()).then(|| {
        let because: Vec<Identifier> = used
            .iter()
            .filter(|id| record.get(*id).is_some_and(|held| !held.is_empty()))
            .map(|id| (*id).clone())
            .collect();
        let rule = because
            .iter()
            .map(Identifier::kind)
            .filter(|k| *k != IdentifierKind::SourceId)
            .min()
            .map_or(MergeRule::SameSourceId, MergeRule::of);
        Merge {
            survivor,
            absorbed,
            rule,
            because,
        }
    });
    Resolution {
        customer: Target::Existing(survivor),
        merge,
        ignored,
    }
}

/// Distinct customers holding an identifier, the already-linked ones counted as one.
fn share_count(held: &BTreeSet<CustomerId>, linked: &BTreeSet<CustomerId>) -> usize {
    let outside = held.iter().filter(|c| !linked.contains(c)).count();
    outside + usize::from(outside < held.len())
}

/// What a customer holds that a merge moves: identifiers and records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdings {
    /// Identifiers the customer holds.
    pub identifiers: BTreeSet<Identifier>,
    /// Records assigned to the customer.
    pub records: BTreeSet<RecordKey>,
    /// Interactions recorded directly (RecordInteractions, not derived from a record), as
    /// (source, interaction id).
    #[serde(default)]
    pub interactions: BTreeSet<(String, String)>,
}

impl Holdings {
    /// Whether the customer holds nothing.
    pub fn is_empty(&self) -> bool {
        self.identifiers.is_empty() && self.records.is_empty() && self.interactions.is_empty()
    }
}

/// One absorbed customer of a merge and what it held just before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsorbedCustomer {
    /// The absorbed customer (afterwards a redirect to the survivor).
    pub customer: CustomerId,
    /// What it held just before the merge.
    pub held: Holdings,
}

/// The permanent record of a merge: who, what, why, and enough to undo it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeRecord {
    /// The customer that remained.
    pub survivor: CustomerId,
    /// The customers folded into it, ascending, each with what it held before.
    pub absorbed: Vec<AbsorbedCustomer>,
    /// Why.
    pub rule: MergeRule,
    /// The identifiers that linked them.
    pub because: Vec<Identifier>,
    /// The record whose ingestion caused the merge (`None` for a manual merge).
    pub trigger: Option<RecordKey>,
    /// Identifiers of absorbed customers that the survivor held too before the merge: it keeps
    /// them on a split.
    pub survivor_shared: BTreeSet<Identifier>,
}

/// How to undo a merge: what the survivor gives up and what each absorbed customer gets back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPlan {
    /// The customer that remained.
    pub survivor: CustomerId,
    /// Identifiers the survivor held only because of the merge.
    pub survivor_loses_identifiers: BTreeSet<Identifier>,
    /// Records the survivor held only because of the merge.
    pub survivor_loses_records: BTreeSet<RecordKey>,
    /// Each absorbed customer, no longer a redirect, with exactly what it held before.
    pub restore: Vec<AbsorbedCustomer>,
}

/// The plan that restores exactly the assignment before `merge`: every identifier and record
/// back with the absorbed customer that held it, the survivor left with what it held before.
/// (What the survivor gained after the merge stays with it.)
pub fn split_plan(merge: &MergeRecord) -> SplitPlan {
    let mut survivor_loses_identifiers = BTreeSet::new();
    let mut survivor_loses_records = BTreeSet::new();
    for absorbed in &merge.absorbed {
        survivor_loses_identifiers.extend(
            absorbed
                .held
                .identifiers
                .iter()
                .filter(|id| !merge.survivor_shared.contains(*id))
                .cloned(),
        );
        survivor_loses_records.extend(absorbed.held.records.iter().cloned());
    }
    SplitPlan {
        survivor: merge.survivor,
        survivor_loses_identifiers,
        survivor_loses_records,
        restore: merge.absorbed.clone(),
    }
}

/// Who holds what: an in-memory model of the identity part of the store, on which merges and
/// splits are applied exactly as the store applies them. The reference for the store's tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Every customer with what it holds (an absorbed customer holds nothing).
    pub customers: BTreeMap<CustomerId, Holdings>,
}

impl Assignment {
    /// Which customers hold each identifier: the `holders` input of [`resolve`].
    pub fn holders(&self) -> BTreeMap<Identifier, BTreeSet<CustomerId>> {
        let mut holders: BTreeMap<Identifier, BTreeSet<CustomerId>> = BTreeMap::new();
        for (customer, held) in &self.customers {
            for id in &held.identifiers {
                holders.entry(id.clone()).or_default().insert(*customer);
            }
        }
        holders
    }

    /// Gives `customer` the identifiers (and the record) of an ingested record.
    pub fn attach(
        &mut self,
        customer: CustomerId,
        identifiers: impl IntoIterator<Item = Identifier>,
        record: Option<RecordKey>,
    ) {
        let held = self.customers.entry(customer).or_default();
        held.identifiers.extend(identifiers);
        held.records.extend(record);
    }

    /// The record of `merge` as it would be applied to this assignment now.
    pub fn merge_record(&self, merge: &Merge, trigger: Option<RecordKey>) -> MergeRecord {
        let no_holdings = Holdings::default();
        let survivor = self.customers.get(&merge.survivor).unwrap_or(&no_holdings);
        let absorbed: Vec<AbsorbedCustomer> = merge
            .absorbed
            .iter()
            .map(|c| AbsorbedCustomer {
                customer: *c,
                held: self.customers.get(c).cloned().unwrap_or_default(),
            })
            .collect();
        let survivor_shared = absorbed
            .iter()
            .flat_map(|a| a.held.identifiers.iter())
            .filter(|id| survivor.identifiers.contains(*id))
            .cloned()
            .collect();
        MergeRecord {
            survivor: merge.survivor,
            absorbed,
            rule: merge.rule,
            because: merge.because.clone(),
            trigger,
            survivor_shared,
        }
    }

    /// Applies a merge: everything the absorbed customers hold moves to the survivor.
    pub fn apply_merge(&mut self, merge: &MergeRecord) {
        let mut moved = Holdings::default();
        for absorbed in &merge.absorbed {
            if let Some(held) = self.customers.get_mut(&absorbed.customer) {
                let held = std::mem::take(held);
                moved.identifiers.extend(held.identifiers);
                moved.records.extend(held.records);
            }
        }
        let survivor = self.customers.entry(merge.survivor).or_default();
        survivor.identifiers.extend(moved.identifiers);
        survivor.records.extend(moved.records);
    }

    /// Applies a split plan.
    pub fn apply_split(&mut self, plan: &SplitPlan) {
        let survivor = self.customers.entry(plan.survivor).or_default();
        survivor
            .identifiers
            .retain(|id| !plan.survivor_loses_identifiers.contains(id));
        survivor
            .records
            .retain(|r| !plan.survivor_loses_records.contains(r));
        for absorbed in &plan.restore {
            self.customers
                .insert(absorbed.customer, absorbed.held.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::record::RecordType;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn c(n: u128) -> CustomerId {
        CustomerId(Uuid::from_u128(n))
    }

    fn src(source: &str, id: &str) -> Identifier {
        Identifier::SourceId {
            source: source.into(),
            id: id.into(),
        }
    }

    fn email(e: &str) -> Identifier {
        Identifier::Email(e.into())
    }

    fn phone(p: &str) -> Identifier {
        Identifier::Phone(p.into())
    }

    fn held(entries: &[(Identifier, &[u128])]) -> BTreeMap<Identifier, BTreeSet<CustomerId>> {
        entries
            .iter()
            .map(|(id, cs)| (id.clone(), cs.iter().map(|n| c(*n)).collect()))
            .collect()
    }

    #[test]
    fn unknown_identifiers_make_a_new_customer() {
        let r = resolve(
            &[src("crm", "1"), email("a@x.org")],
            &BTreeMap::new(),
            &ResolutionRules::default(),
        );
        assert_eq!(r.customer, Target::New);
        assert_eq!(r.merge, None);
        assert!(r.ignored.is_empty());
    }

    #[test]
    fn the_same_source_id_is_the_same_customer() {
        let rules = ResolutionRules {
            mergeable: BTreeSet::new(),
            ..ResolutionRules::default()
        };
        let holders = held(&[(src("crm", "1"), &[7]), (email("a@x.org"), &[3])]);
        let r = resolve(&[email("a@x.org"), src("crm", "1")], &holders, &rules);
        assert_eq!(r.customer, Target::Existing(c(7)));
        assert_eq!(r.merge, None, "e-mails are not mergeable here");
        assert_eq!(r.ignored, [(email("a@x.org"), IgnoreReason::NotMergeable)]);
    }

    #[test]
    fn a_shared_email_merges_into_the_oldest_customer() {
        let holders = held(&[(src("erp", "9"), &[5]), (email("a@x.org"), &[2, 8])]);
        let r = resolve(
            &[src("erp", "9"), email("a@x.org"), phone("+351912345678")],
            &holders,
            &ResolutionRules::default(),
        );
        assert_eq!(r.customer, Target::Existing(c(2)));
        assert_eq!(
            r.merge,
            Some(Merge {
                survivor: c(2),
                absorbed: vec![c(5), c(8)],
                rule: MergeRule::SameEmail,
                because: vec![src("erp", "9"), email("a@x.org")],
            })
        );
        assert!(r.ignored.is_empty());
    }

    #[test]
    fn a_source_id_held_twice_is_repaired_by_a_merge() {
        let holders = held(&[(src("crm", "1"), &[4, 3])]);
        let r = resolve(&[src("crm", "1")], &holders, &ResolutionRules::default());
        let merge = r.merge.unwrap();
        assert_eq!((merge.survivor, merge.absorbed), (c(3), vec![c(4)]));
        assert_eq!(merge.rule, MergeRule::SameSourceId);
    }

    #[test]
    fn an_overshared_identifier_links_no_one_and_is_reported() {
        let holders = held(&[(email("info@shop.example"), &[1, 2, 3, 4, 5, 6])]);
        let r = resolve(
            &[src("crm", "1"), email("info@shop.example")],
            &holders,
            &ResolutionRules::default(),
        );
        assert_eq!(r.customer, Target::New);
        assert_eq!(r.merge, None);
        assert_eq!(
            r.ignored,
            [(email("info@shop.example"), IgnoreReason::Overshared)]
        );
        assert_eq!(IgnoreReason::Overshared.as_str(), "OVERSHARED");

        // Five customers sharing it is within the limit.
        let holders = held(&[(email("info@shop.example"), &[1, 2, 3, 4, 5])]);
        let r = resolve(
            &[email("info@shop.example")],
            &holders,
            &ResolutionRules::default(),
        );
        assert_eq!(r.merge.map(|m| m.absorbed.len()), Some(4));
    }

    #[test]
    fn customers_the_record_links_anyway_count_once() {
        // The e-mail is held by six customers, but 1 and 2 are linked by the record's own
        // source id and phone, so after the merge five distinct customers share it.
        let holders = held(&[
            (src("crm", "1"), &[1]),
            (phone("+15550100"), &[2]),
            (email("a@x.org"), &[1, 2, 3, 4, 5, 6]),
        ]);
        let ids = [src("crm", "1"), phone("+15550100"), email("a@x.org")];
        let r = resolve(&ids, &holders, &ResolutionRules::default());
        assert_eq!(r.merge.unwrap().absorbed, [c(2), c(3), c(4), c(5), c(6)]);

        let tighter = ResolutionRules {
            max_customers_per_identifier: 4,
            ..ResolutionRules::default()
        };
        let r = resolve(&ids, &holders, &tighter);
        let merge = r.merge.unwrap();
        assert_eq!(merge.absorbed, [c(2)]);
        assert_eq!(merge.rule, MergeRule::SamePhone);
        assert_eq!(r.ignored, [(email("a@x.org"), IgnoreReason::Overshared)]);
    }

    #[test]
    fn rules_are_checked() {
        let mut v = Violations::new();
        ResolutionRules::default().check("feeds.resolution", &mut v);
        assert!(v.is_empty());
        ResolutionRules {
            max_customers_per_identifier: 0,
            ..ResolutionRules::default()
        }
        .check("feeds.resolution", &mut v);
        let fields: Vec<_> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["feeds.resolution.max_customers_per_identifier"]);
    }

    fn key(source: &str, id: &str) -> RecordKey {
        RecordKey {
            source: source.into(),
            record_type: RecordType::Contact,
            record_id: id.into(),
        }
    }

    #[test]
    fn merge_then_split_restores_both_customers() {
        let mut state = Assignment::default();
        state.attach(
            c(1),
            [src("crm", "1"), email("a@x.org")],
            Some(key("crm", "r1")),
        );
        state.attach(
            c(2),
            [src("erp", "2"), email("a@x.org")],
            Some(key("erp", "r2")),
        );
        let before = state.clone();

        let r = resolve(
            &[email("a@x.org")],
            &state.holders(),
            &ResolutionRules::default(),
        );
        let merge = state.merge_record(&r.merge.unwrap(), Some(key("web", "r3")));
        assert_eq!(merge.survivor_shared, BTreeSet::from([email("a@x.org")]));
        state.apply_merge(&merge);
        assert_eq!(state.customers[&c(2)], Holdings::default());
        assert_eq!(state.customers[&c(1)].records.len(), 2);

        let json = serde_json::to_string(&merge).unwrap();
        let stored: MergeRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(stored, merge);
        assert!(json.contains(r#""rule":"SAME_EMAIL""#), "{json}");

        let plan = split_plan(&stored);
        assert_eq!(
            plan.survivor_loses_identifiers,
            BTreeSet::from([src("erp", "2")])
        );
        state.apply_split(&plan);
        assert_eq!(state, before);
    }

    // Property tests over a small universe, so that identifiers are often shared.

    fn pool() -> Vec<Identifier> {
        vec![
            src("crm", "1"),
            src("crm", "2"),
            src("erp", "1"),
            src("erp", "2"),
            src("billing", "1"),
            email("a@x.org"),
            email("b@x.org"),
            email("c@x.org"),
            phone("+15550101"),
            phone("+15550102"),
        ]
    }

    /// Up to 8 customers, each holding some identifiers of the pool and some records of its own.
    fn assignments() -> impl Strategy<Value = Assignment> {
        proptest::collection::vec(
            (proptest::sample::subsequence(pool(), 0..5), 0usize..3),
            0..8,
        )
        .prop_map(|customers| {
            let mut state = Assignment::default();
            for (i, (ids, records)) in customers.into_iter().enumerate() {
                let customer = c(i as u128 + 1);
                state.attach(customer, ids, None);
                for r in 0..records {
                    state.attach(customer, [], Some(key("crm", &format!("{i}-{r}"))));
                }
            }
            state
        })
    }

    /// A record's identifiers: at least one source id (a feed record always names its
    /// source's customer), possibly repeated, in any order.
    fn record_identifiers() -> impl Strategy<Value = Vec<Identifier>> {
        (
            proptest::sample::select(pool()[..5].to_vec()),
            proptest::sample::subsequence(pool(), 0..5),
            proptest::collection::vec(proptest::sample::select(pool()), 0..3),
        )
            .prop_map(|(source_id, mut others, repeats)| {
                others.push(source_id);
                others.extend(repeats);
                others
            })
            .prop_shuffle()
    }

    fn rules() -> impl Strategy<Value = ResolutionRules> {
        (
            proptest::sample::subsequence(
                vec![
                    IdentifierKind::SourceId,
                    IdentifierKind::Email,
                    IdentifierKind::Phone,
                ],
                0..=3,
            ),
            0usize..5,
        )
            .prop_map(|(kinds, max)| ResolutionRules {
                mergeable: kinds.into_iter().collect(),
                max_customers_per_identifier: max,
            })
    }

    fn held_by(
        holders: &BTreeMap<Identifier, BTreeSet<CustomerId>>,
        ids: &[Identifier],
        rules: &ResolutionRules,
    ) -> BTreeSet<CustomerId> {
        ids.iter()
            .filter(|id| rules.links(id.kind()))
            .filter_map(|id| holders.get(id))
            .flatten()
            .copied()
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn resolution_does_not_depend_on_input_order(
            state in assignments(),
            ids in record_identifiers(),
            rules in rules(),
            rotate in any::<usize>(),
        ) {
            let holders = state.holders();
            let first = resolve(&ids, &holders, &rules);
            let mut other = ids.clone();
            other.reverse();
            let n = other.len();
            other.rotate_left(rotate % n);
            other.extend(ids.iter().take(2).cloned());
            // The same holders built in reverse insertion order.
            let rebuilt: BTreeMap<_, BTreeSet<_>> = holders
                .iter()
                .rev()
                .map(|(id, cs)| (id.clone(), cs.iter().rev().copied().collect()))
                .collect();
            prop_assert_eq!(resolve(&other, &rebuilt, &rules), first);
        }

        #[test]
        fn the_survivor_is_the_smallest_linked_customer(
            state in assignments(),
            ids in record_identifiers(),
            rules in rules(),
        ) {
            let holders = state.holders();
            let r = resolve(&ids, &holders, &rules);
            // Only holders of identifiers of a linking kind can be linked.
            let candidates = held_by(&holders, &ids, &rules);
            match (&r.customer, &r.merge) {
                (Target::New, merge) => prop_assert!(merge.is_none()),
                (Target::Existing(customer), None) => {
                    prop_assert!(candidates.contains(customer));
                }
                (Target::Existing(customer), Some(merge)) => {
                    prop_assert_eq!(*customer, merge.survivor);
                    prop_assert!(candidates.contains(&merge.survivor));
                    prop_assert!(!merge.absorbed.is_empty());
                    for absorbed in &merge.absorbed {
                        prop_assert!(candidates.contains(absorbed));
                        prop_assert!(merge.survivor < *absorbed);
                    }
                    prop_assert!(merge.absorbed.windows(2).all(|w| w[0] < w[1]));
                    for id in &merge.because {
                        prop_assert!(rules.links(id.kind()) && ids.contains(id));
                    }
                }
            }
            for (id, reason) in &r.ignored {
                prop_assert!(ids.contains(id));
                prop_assert_eq!(*reason == IgnoreReason::NotMergeable, !rules.links(id.kind()));
                prop_assert!(id.kind() != IdentifierKind::SourceId);
            }
            // Every record source id's holders are the chosen customer or merged into it.
            for id in ids.iter().filter(|id| id.kind() == IdentifierKind::SourceId) {
                for holder in holders.get(id).into_iter().flatten() {
                    let absorbed = r.merge.as_ref().is_some_and(|m| m.absorbed.contains(holder));
                    prop_assert!(r.customer == Target::Existing(*holder) || absorbed);
                }
            }
        }

        #[test]
        fn merge_then_split_restores_the_assignment_exactly(
            state in assignments(),
            ids in record_identifiers(),
            rules in rules(),
        ) {
            let r = resolve(&ids, &state.holders(), &rules);
            if let Some(merge) = r.merge {
                let record = state.merge_record(&merge, Some(key("web", "trigger")));
                let mut merged = state.clone();
                merged.apply_merge(&record);
                for absorbed in &merge.absorbed {
                    prop_assert!(merged.customers[absorbed].is_empty());
                }
                merged.apply_split(&split_plan(&record));
                prop_assert_eq!(merged, state);
            }
        }

        #[test]
        fn resolving_the_same_record_again_is_idempotent(
            state in assignments(),
            ids in record_identifiers(),
            rules in rules(),
        ) {
            let first = resolve(&ids, &state.holders(), &rules);
            let mut after = state.clone();
            if let Some(merge) = &first.merge {
                after.apply_merge(&after.merge_record(merge, None));
            }
            let target = match first.customer {
                Target::Existing(c) => c,
                Target::New => c(1_000),
            };
            after.attach(target, ids.iter().cloned(), Some(key("web", "record")));

            let second = resolve(&ids, &after.holders(), &rules);
            prop_assert_eq!(second.customer, Target::Existing(target));
            prop_assert_eq!(second.merge, None);
        }
    }
}
