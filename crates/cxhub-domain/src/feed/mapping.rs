//! Which touchpoint an interaction derived from a record lands on.
//!
//! Entries are keyed `"<record_type>"` or `"<record_type>.<qualifier>"`: the qualifier is the
//! channel of a support case or an order (`"support_case.phone"`, `"order.web"`) or the kind of
//! an activity (`"activity.call"`); the other types take none. The most specific entry wins,
//! falling back to the record type alone, which every type but contacts and survey responses has
//! ([`DEFAULT_TOUCHPOINTS`]). Configured entries are layered over the defaults, so an operator
//! only names what differs.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::body::ActivityKind;
use crate::error::{Result, Violations};
use crate::record::RecordType;
use crate::touchpoint::{Channel, Key};

/// The default mapping, `(entry, touchpoint key)`; every touchpoint exists in the demo
/// registry (a test of the registry checks it).
pub const DEFAULT_TOUCHPOINTS: &[(&str, &str)] = &[
    ("support_case", "contact-centre"),
    ("support_case.phone", "contact-centre.service-line"),
    ("support_case.store", "branch.service-desk"),
    (
        "support_case.web",
        "online-banking.servicing.secure-message",
    ),
    ("support_case.mobile_app", "mobile-app.help"),
    ("support_case.email", "contact-centre.correspondence.email"),
    (
        "support_case.letter",
        "contact-centre.correspondence.letter",
    ),
    ("support_case.chat", "chat.live-chat"),
    (
        "support_case.social",
        "marketing.social.public-question-reply",
    ),
    ("activity", "contact-centre"),
    ("activity.call", "contact-centre.service-line"),
    ("activity.meeting", "branch.advice"),
    ("activity.email", "contact-centre.correspondence.email"),
    ("activity.letter", "contact-centre.correspondence.letter"),
    ("order", "orders.checkout"),
    ("order.web", "orders.checkout.web-checkout"),
    ("order.mobile_app", "orders.checkout.app-checkout"),
    ("order.store", "orders.checkout.branch-order"),
    ("order.phone", "orders.checkout.phone-order"),
    ("shipment", "orders.delivery"),
    ("return", "orders.returns"),
    ("invoice", "billing.invoices"),
    ("payment", "billing.payments"),
    ("subscription_event", "billing.subscriptions"),
    ("refund", "billing.refunds"),
];

/// The touchpoints of one record type: its fallback and the ones per qualifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Targets {
    fallback: String,
    by_qualifier: BTreeMap<String, String>,
}

/// The configured mapping from record type (and qualifier) to touchpoint key. The default is
/// [`DEFAULT_TOUCHPOINTS`]; [`TouchpointMap::with_overrides`] layers configuration over it.
/// Serialises as the effective flat map, `{"order": "…", "order.web": "…", …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TouchpointMap {
    by_type: BTreeMap<RecordType, Targets>,
}

impl Default for TouchpointMap {
    fn default() -> Self {
        let mut map = Self {
            by_type: BTreeMap::new(),
        };
        for (entry, key) in DEFAULT_TOUCHPOINTS {
            // The table is checked by a test; an entry it could not parse would be skipped.
            if let Ok((record_type, qualifier)) = parse_entry(entry) {
                map.set(record_type, qualifier, (*key).to_owned());
            }
        }
        map
    }
}

impl TouchpointMap {
    /// The defaults with `entries` layered over them. Every entry is checked: an unknown
    /// record type (or `contact` or `survey_response`, which have no interaction), a
    /// qualifier the type does not take, or a malformed touchpoint key is reported at
    /// `{field}["{entry}"]`, all at once.
    pub fn with_overrides(entries: BTreeMap<String, String>, field: &str) -> Result<Self> {
        let mut map = Self::default();
        let mut v = Violations::new();
        for (entry, key) in entries {
            let path = || format!("{field}[\"{entry}\"]");
            let parsed = match parse_entry(&entry) {
                Ok(parsed) => Some(parsed),
                Err(problem) => {
                    v.add(path(), problem);
                    None
                }
            };
            if let Err(problem) = Key::parse(&key) {
                v.add(path(), format!("touchpoint key `{key}`: {problem}"));
                continue;
            }
            if let Some((record_type, qualifier)) = parsed {
                map.set(record_type, qualifier, key);
            }
        }
        v.into_result()?;
        Ok(map)
    }

    /// The touchpoint key for a record of `record_type` with `qualifier` (see
    /// [`super::RecordBody::qualifier`]): the entry of the qualifier if there is one, else the
    /// record type's. Empty for a contact or a survey response, which become no interaction.
    pub fn touchpoint_for(&self, record_type: RecordType, qualifier: Option<&str>) -> &str {
        let Some(targets) = self.by_type.get(&record_type) else {
            return "";
        };
        qualifier
            .and_then(|q| targets.by_qualifier.get(q))
            .unwrap_or(&targets.fallback)
    }

    /// Every entry, `(record type, qualifier, touchpoint key)`, by record type then qualifier
    /// (the record type's own entry first).
    pub fn iter(&self) -> impl Iterator<Item = (RecordType, Option<&str>, &str)> {
        self.by_type.iter().flat_map(|(record_type, targets)| {
            std::iter::once((*record_type, None, targets.fallback.as_str())).chain(
                targets
                    .by_qualifier
                    .iter()
                    .map(|(q, key)| (*record_type, Some(q.as_str()), key.as_str())),
            )
        })
    }

    fn set(&mut self, record_type: RecordType, qualifier: Option<&str>, key: String) {
        let targets = self.by_type.entry(record_type).or_default();
        match qualifier {
            None => targets.fallback = key,
            Some(q) => {
                targets.by_qualifier.insert(q.to_owned(), key);
            }
        }
    }
}

impl Serialize for TouchpointMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter().map(|(record_type, qualifier, key)| {
            let entry = match qualifier {
                None => record_type.as_str().to_owned(),
                Some(q) => format!("{record_type}.{q}"),
            };
            (entry, key)
        }))
    }
}

/// Reads `"<record_type>"` or `"<record_type>.<qualifier>"`, checking that the type becomes
/// an interaction and takes that qualifier.
fn parse_entry(entry: &str) -> std::result::Result<(RecordType, Option<&str>), String> {
    let (type_text, qualifier) = match entry.split_once('.') {
        Some((t, q)) => (t, Some(q)),
        None => (entry, None),
    };
    let record_type = RecordType::from_str(type_text)?;
    let Some(q) = qualifier else {
        return match record_type {
            RecordType::Contact => Err(no_interaction()),
            RecordType::SurveyResponse => Err(no_survey_interaction()),
            _ => Ok((record_type, None)),
        };
    };
    let checked = match record_type {
        RecordType::Contact => Err(no_interaction()),
        RecordType::SurveyResponse => Err(no_survey_interaction()),
        RecordType::SupportCase | RecordType::Order => Channel::from_str(q).map(|_| ()),
        RecordType::Activity => ActivityKind::from_str(q).map(|_| ()),
        _ => Err(format!(
            "`{record_type}` takes no qualifier: only support_case and order are refined by channel (`order.web`) and activity by kind (`activity.call`)"
        )),
    };
    checked.map(|()| (record_type, Some(q)))
}

fn no_interaction() -> String {
    "contacts become profile fields, not interactions: they land on no touchpoint".to_owned()
}

fn no_survey_interaction() -> String {
    "survey responses become survey responses, not interactions: each names its own touchpoint"
        .to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::Error;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_defaults_parse_and_cover_every_type_but_contacts() {
        for (entry, key) in DEFAULT_TOUCHPOINTS {
            assert!(parse_entry(entry).is_ok(), "{entry}");
            assert!(Key::parse(key).is_ok(), "{key}");
        }
        let map = TouchpointMap::default();
        assert_eq!(map.iter().count(), DEFAULT_TOUCHPOINTS.len());
        for record_type in RecordType::ALL {
            let key = map.touchpoint_for(*record_type, None);
            assert_eq!(
                key.is_empty(),
                matches!(
                    record_type,
                    RecordType::Contact | RecordType::SurveyResponse
                ),
                "{record_type}"
            );
        }
    }

    #[test]
    fn the_most_specific_entry_wins_and_unknown_qualifiers_fall_back() {
        let map = TouchpointMap::default();
        assert_eq!(
            map.touchpoint_for(RecordType::Order, Some("web")),
            "orders.checkout.web-checkout"
        );
        assert_eq!(
            map.touchpoint_for(RecordType::Order, Some("partner")),
            "orders.checkout"
        );
        assert_eq!(
            map.touchpoint_for(RecordType::Order, None),
            "orders.checkout"
        );
        assert_eq!(
            map.touchpoint_for(RecordType::Activity, Some("meeting")),
            "branch.advice"
        );
        assert_eq!(
            map.touchpoint_for(RecordType::Refund, Some("web")),
            "billing.refunds"
        );
        assert_eq!(map.touchpoint_for(RecordType::Contact, None), "");
    }

    #[test]
    fn overrides_are_layered_over_the_defaults() {
        let map = TouchpointMap::with_overrides(
            overrides(&[
                ("order", "shop.orders"),
                ("order.partner", "shop.marketplace"),
                ("activity.call", "sales.calls"),
            ]),
            "feeds.touchpoints",
        )
        .unwrap();
        assert_eq!(map.touchpoint_for(RecordType::Order, None), "shop.orders");
        assert_eq!(
            map.touchpoint_for(RecordType::Order, Some("partner")),
            "shop.marketplace"
        );
        // A default qualifier entry stays more specific than an overridden fallback.
        assert_eq!(
            map.touchpoint_for(RecordType::Order, Some("web")),
            "orders.checkout.web-checkout"
        );
        assert_eq!(
            map.touchpoint_for(RecordType::Activity, Some("call")),
            "sales.calls"
        );
        assert_eq!(
            map.touchpoint_for(RecordType::Invoice, None),
            "billing.invoices"
        );
    }

    #[test]
    fn every_bad_entry_is_reported_at_its_path() {
        let err = TouchpointMap::with_overrides(
            overrides(&[
                ("contact", "crm.contacts"),
                ("invoice.email", "billing.invoices"),
                ("order", "Not A Key"),
                ("order.carrier-pigeon", "orders.checkout"),
                ("activity.sms", "x"),
                ("tweet", "social"),
                ("refund", "billing.refunds"),
                ("survey_response", "branch.teller"),
            ]),
            "feeds.touchpoints",
        )
        .unwrap_err();
        let Error::InvalidArgument { violations, .. } = err else {
            panic!("expected InvalidArgument, got {err:?}");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                r#"feeds.touchpoints["activity.sms"]"#,
                r#"feeds.touchpoints["contact"]"#,
                r#"feeds.touchpoints["invoice.email"]"#,
                r#"feeds.touchpoints["order"]"#,
                r#"feeds.touchpoints["order.carrier-pigeon"]"#,
                r#"feeds.touchpoints["survey_response"]"#,
                r#"feeds.touchpoints["tweet"]"#,
            ]
        );
        assert!(violations[1].description.contains("profile fields"));
        assert!(violations[2].description.contains("takes no qualifier"));
        assert!(violations[3].description.contains("touchpoint key"));
        assert!(violations[5].description.contains("its own touchpoint"));
        assert!(violations[6].description.contains("unknown RecordType"));
    }

    #[test]
    fn serialises_as_the_effective_flat_map() {
        let map =
            TouchpointMap::with_overrides(overrides(&[("order.partner", "shop.marketplace")]), "")
                .unwrap();
        let json = serde_json::to_value(&map).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), DEFAULT_TOUCHPOINTS.len() + 1);
        assert_eq!(object["order.partner"], "shop.marketplace");
        assert_eq!(object["return"], "orders.returns");
        assert_eq!(object["support_case.phone"], "contact-centre.service-line");
    }
}
