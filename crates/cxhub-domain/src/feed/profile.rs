//! The profile fields of a customer, built from the contact records the customer holds.
//!
//! A profile is a pure function of the set of contact records (and the configured source
//! priority): per field group the winning record is the one [`wins`] ranks highest among those
//! that have a value for the group, so the profile does not depend on the order records arrived
//! in, and a merge or a split only has to rebuild it from the records each customer now holds.
//! Consents are the exception: per (purpose, channel) the customer's latest answer counts,
//! whichever source recorded it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::{FieldGroup, Provenance, SourcePriority, wins};
use crate::text_enum::text_enum;

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostalAddress {
    /// Street lines, first to last.
    pub lines: Vec<String>,
    /// City, town or village.
    pub locality: String,
    /// State, province or county.
    pub region: String,
    /// Postal code as written in the country.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 code in capitals.
    pub country_code: String,
}

text_enum!(
    /// What personal data may be used for.
    ConsentPurpose {
        /// Marketing messages and offers.
        Marketing = "marketing",
        /// Analytics over the customer's behaviour.
        Analytics = "analytics",
        /// Survey invitations.
        Surveys = "surveys",
        /// Automated profiling.
        Profiling = "profiling",
    }
);

text_enum!(
    /// The channel a consent applies to.
    ConsentChannel {
        /// Every channel.
        Any = "any",
        /// E-mail.
        Email = "email",
        /// Text messages.
        Sms = "sms",
        /// Phone calls.
        Phone = "phone",
        /// Letters.
        Post = "post",
        /// App push notifications.
        Push = "push",
    }
);

text_enum!(
    /// A customer's answer to a consent request.
    ConsentStatus {
        /// Granted.
        Granted = "granted",
        /// Refused or withdrawn.
        Denied = "denied",
    }
);

text_enum!(
    /// Where a customer stands in the lifecycle.
    LifecycleStage {
        /// Known, not yet qualified.
        Lead = "lead",
        /// Qualified, not yet buying.
        Prospect = "prospect",
        /// A customer.
        Customer = "customer",
        /// A former customer.
        FormerCustomer = "former_customer",
    }
);

/// One consent answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// What for.
    pub purpose: ConsentPurpose,
    /// Over which channel.
    pub channel: ConsentChannel,
    /// The answer.
    pub status: ConsentStatus,
    /// When the customer gave it.
    pub given_at: DateTime<Utc>,
}

/// The profile fields one contact record carries (validated). Empty text and empty lists mean
/// "this source does not know", never "clear the value".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactFields {
    /// Given name(s).
    pub given_name: String,
    /// Family name(s).
    pub family_name: String,
    /// Postal addresses.
    pub addresses: Vec<PostalAddress>,
    /// BCP 47 language tag.
    pub preferred_language: String,
    /// Consents, at most one per (purpose, channel).
    pub consents: Vec<Consent>,
    /// The account in the source.
    pub account_id: String,
    /// Lifecycle stage, if the source knows it.
    pub lifecycle_stage: Option<LifecycleStage>,
}

/// One contact record a customer holds: where it came from and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileSource {
    /// Source, record id and version of the contact.
    pub provenance: Provenance,
    /// Its fields.
    pub fields: ContactFields,
}

/// The profile fields of a customer, with the record each group came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Given name(s).
    pub given_name: String,
    /// Family name(s).
    pub family_name: String,
    /// Postal addresses.
    pub addresses: Vec<PostalAddress>,
    /// Preferred language.
    pub preferred_language: String,
    /// The latest answer per (purpose, channel), ordered by purpose then channel.
    pub consents: Vec<Consent>,
    /// The account.
    pub account_id: String,
    /// Lifecycle stage.
    pub lifecycle_stage: Option<LifecycleStage>,
    /// Per field group that has a value, the contact record that set it.
    pub provenance: BTreeMap<FieldGroup, Provenance>,
}

/// Builds the profile from every contact record the customer holds (in any order).
pub fn build_profile(contacts: &[ProfileSource], priority: &SourcePriority) -> Profile {
    let mut profile = Profile::default();

    let name = winner(contacts, FieldGroup::Name, priority, |f| {
        !f.given_name.is_empty() || !f.family_name.is_empty()
    });
    if let Some(c) = name {
        profile.given_name.clone_from(&c.fields.given_name);
        profile.family_name.clone_from(&c.fields.family_name);
        profile
            .provenance
            .insert(FieldGroup::Name, c.provenance.clone());
    }
    if let Some(c) = winner(contacts, FieldGroup::Address, priority, |f| {
        !f.addresses.is_empty()
    }) {
        profile.addresses.clone_from(&c.fields.addresses);
        profile
            .provenance
            .insert(FieldGroup::Address, c.provenance.clone());
    }
    if let Some(c) = winner(contacts, FieldGroup::Language, priority, |f| {
        !f.preferred_language.is_empty()
    }) {
        profile
            .preferred_language
            .clone_from(&c.fields.preferred_language);
        profile
            .provenance
            .insert(FieldGroup::Language, c.provenance.clone());
    }
    if let Some(c) = winner(contacts, FieldGroup::Account, priority, |f| {
        !f.account_id.is_empty()
    }) {
        profile.account_id.clone_from(&c.fields.account_id);
        profile
            .provenance
            .insert(FieldGroup::Account, c.provenance.clone());
    }
    if let Some(c) = winner(contacts, FieldGroup::Lifecycle, priority, |f| {
        f.lifecycle_stage.is_some()
    }) {
        profile.lifecycle_stage = c.fields.lifecycle_stage;
        profile
            .provenance
            .insert(FieldGroup::Lifecycle, c.provenance.clone());
    }

    // Consents: the latest answer per (purpose, channel); at equal times the record that wins
    // the consent group. The group's provenance is the record of the latest answer kept.
    let mut latest: BTreeMap<(ConsentPurpose, ConsentChannel), (&Consent, &ProfileSource)> =
        BTreeMap::new();
    for contact in contacts {
        for consent in &contact.fields.consents {
            let slot = (consent.purpose, consent.channel);
            let replace = match latest.get(&slot) {
                None => true,
                Some((kept, kept_from)) => {
                    consent.given_at > kept.given_at
                        || (consent.given_at == kept.given_at
                            && wins(
                                &kept_from.provenance,
                                &contact.provenance,
                                FieldGroup::Consent,
                                priority,
                            ))
                }
            };
            if replace {
                latest.insert(slot, (consent, contact));
            }
        }
    }
    let mut newest: Option<(&Consent, &ProfileSource)> = None;
    for (consent, from) in latest.values() {
        profile.consents.push((*consent).clone());
        let newer = newest.is_none_or(|(n, n_from)| {
            consent.given_at > n.given_at
                || (consent.given_at == n.given_at
                    && wins(
                        &n_from.provenance,
                        &from.provenance,
                        FieldGroup::Consent,
                        priority,
                    ))
        });
        if newer {
            newest = Some((consent, from));
        }
    }
    if let Some((_, from)) = newest {
        profile
            .provenance
            .insert(FieldGroup::Consent, from.provenance.clone());
    }
    profile
}

fn winner<'a>(
    contacts: &'a [ProfileSource],
    group: FieldGroup,
    priority: &SourcePriority,
    has_value: impl Fn(&ContactFields) -> bool,
) -> Option<&'a ProfileSource> {
    let mut best: Option<&ProfileSource> = None;
    for contact in contacts.iter().filter(|c| has_value(&c.fields)) {
        if best.is_none_or(|b| wins(&b.provenance, &contact.provenance, group, priority)) {
            best = Some(contact);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn contact(source: &str, id: &str, t: i64, given: &str, lang: &str) -> ProfileSource {
        ProfileSource {
            provenance: Provenance {
                source: source.into(),
                updated_at: at(t),
                record_id: id.into(),
            },
            fields: ContactFields {
                given_name: given.into(),
                family_name: "Silva".into(),
                preferred_language: lang.into(),
                ..ContactFields::default()
            },
        }
    }

    #[test]
    fn latest_record_wins_each_group_and_empty_values_do_not_clear() {
        let old = contact("crm", "c1", 10, "Ana", "pt");
        let new = contact("billing", "b1", 20, "Ana Maria", "");
        let p = build_profile(&[old.clone(), new.clone()], &SourcePriority::new());
        assert_eq!(p.given_name, "Ana Maria");
        assert_eq!(p.provenance[&FieldGroup::Name], new.provenance);
        // The newer record has no language: the older one's stays.
        assert_eq!(p.preferred_language, "pt");
        assert_eq!(p.provenance[&FieldGroup::Language], old.provenance);
    }

    #[test]
    fn a_priority_source_wins_its_group_whatever_the_time() {
        let crm = contact("crm", "c1", 10, "Ana", "pt");
        let billing = contact("billing", "b1", 20, "A. Silva", "en");
        let priority = SourcePriority::from_lists(
            BTreeMap::from([(FieldGroup::Name, vec!["crm".to_owned()])]),
            "",
        )
        .unwrap();
        let p = build_profile(&[crm, billing], &priority);
        assert_eq!(p.given_name, "Ana");
        // Language has no priority list: the latest wins.
        assert_eq!(p.preferred_language, "en");
    }

    #[test]
    fn consents_keep_the_latest_answer_per_purpose_and_channel() {
        let mut a = contact("crm", "c1", 10, "Ana", "");
        let mut b = contact("shop", "s1", 5, "", "");
        let give = |status, t| Consent {
            purpose: ConsentPurpose::Marketing,
            channel: ConsentChannel::Email,
            status,
            given_at: at(t),
        };
        a.fields.consents = vec![give(ConsentStatus::Granted, 1)];
        b.fields.consents = vec![give(ConsentStatus::Denied, 2)];
        let p = build_profile(&[a, b.clone()], &SourcePriority::new());
        assert_eq!(p.consents, vec![give(ConsentStatus::Denied, 2)]);
        assert_eq!(p.provenance[&FieldGroup::Consent], b.provenance);
    }

    #[test]
    fn no_contacts_no_profile() {
        assert_eq!(
            build_profile(&[], &SourcePriority::new()),
            Profile::default()
        );
    }

    proptest! {
        #[test]
        fn the_profile_does_not_depend_on_record_order(
            records in proptest::collection::vec(
                (0usize..3, 0i64..4, "[a-c]{0,2}", "[a-c]{0,1}", proptest::option::of(0i64..3)),
                0..8,
            ),
            seed in any::<u64>(),
        ) {
            let sources = ["crm", "erp", "billing"];
            let contacts: Vec<ProfileSource> = records
                .iter()
                .enumerate()
                .map(|(i, (s, t, given, lang, consent))| {
                    let mut c = contact(sources[*s], &format!("r{i}"), *t, given, lang);
                    c.fields.consents = consent
                        .iter()
                        .map(|ct| Consent {
                            purpose: ConsentPurpose::Surveys,
                            channel: ConsentChannel::Any,
                            status: if i % 2 == 0 { ConsentStatus::Granted } else { ConsentStatus::Denied },
                            given_at: at(*ct),
                        })
                        .collect();
                    c
                })
                .collect();
            let mut shuffled = contacts.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            let mut state = seed;
            for i in (1..n).rev() {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let j = usize::try_from(state >> 33).unwrap() % (i + 1);
                shuffled.swap(i, j);
            }
            let priority = SourcePriority::new();
            prop_assert_eq!(build_profile(&contacts, &priority), build_profile(&shuffled, &priority));
        }
    }
}
