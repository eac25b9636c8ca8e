//! Feed records and the rules of exactly-once ingestion.
//!
//! A record is identified by its [`RecordKey`] (source, record type, the record's id in the
//! source) and versioned by the source's `updated_at`; its content is fingerprinted by a
//! [`ContentHash`] of a canonical encoding the caller chooses. [`decide`] compares an incoming
//! version with the stored one, so a re-sent record changes nothing, an older version never
//! overwrites a newer one whatever the arrival order, and the same version with other content is
//! a conflict. [`apply_order`] is the one order in which the records of a customer apply, and
//! [`wins`] decides, per [`FieldGroup`], whose value a profile field keeps.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::{Result, Violations};
use crate::text_enum::text_enum;

/// Longest source name accepted.
pub const MAX_SOURCE_LEN: usize = 64;
/// Longest record id accepted, in bytes of UTF-8.
pub const MAX_RECORD_ID_LEN: usize = 256;
/// Seconds from the Unix epoch to 1900-01-01T00:00:00Z, the earliest source timestamp accepted.
pub const EARLIEST_UNIX_SECONDS: i64 = -2_208_988_800;
/// How far in the future (by the hub's clock) a source timestamp may be: a day, for clock skew
/// and time zones mislabelled as UTC.
pub const MAX_FUTURE: TimeDelta = TimeDelta::days(1);

text_enum!(
    /// The type of a feed record, and so which system kind it comes from.
    RecordType {
        /// CRM: a contact (names, e-mails, phones, addresses, language, consents, account).
        Contact = "contact",
        /// CRM: a support case.
        SupportCase = "support_case",
        /// CRM: a logged activity (call, meeting, e-mail, letter).
        Activity = "activity",
        /// ERP: an order with lines.
        Order = "order",
        /// ERP: a shipment or delivery.
        Shipment = "shipment",
        /// ERP: a return.
        Return = "return",
        /// Billing: an invoice.
        Invoice = "invoice",
        /// Billing: a payment, succeeded or failed.
        Payment = "payment",
        /// Billing: a subscription event (started, renewed, cancelled…).
        SubscriptionEvent = "subscription_event",
        /// Billing: a refund.
        Refund = "refund",
        /// Surveys: a customer's response to a survey of the hub.
        SurveyResponse = "survey_response",
    }
);

text_enum!(
    /// A group of profile fields that one source sets together, and whose provenance and source
    /// priority are tracked together.
    FieldGroup {
        /// Given and family names.
        Name = "name",
        /// E-mail addresses.
        Email = "email",
        /// Phone numbers.
        Phone = "phone",
        /// Postal addresses.
        Address = "address",
        /// Preferred language.
        Language = "language",
        /// Consents per purpose and channel.
        Consent = "consent",
        /// Lifecycle stage.
        Lifecycle = "lifecycle",
        /// The account the customer belongs to.
        Account = "account",
    }
);

/// Checks a source name: 1 to 64 characters of `a-z`, `0-9` and `-`, such as `salesforce-eu`,
/// `sap-erp` or `stripe`.
pub fn check_source(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("required: the configured name of the source system, e.g. `sap-erp`".into());
    }
    if name.len() > MAX_SOURCE_LEN {
        return Err(format!("at most {MAX_SOURCE_LEN} characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "only lowercase letters, digits and `-` are allowed, e.g. `salesforce-eu` (found `{bad}`)"
        ));
    }
    Ok(())
}

/// Checks a record id (the record's id in its source): 1 to 256 bytes of printable text, no
/// control characters, no leading or trailing whitespace (which would make two ids that look the
/// same differ).
pub fn check_record_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("required: the record's id in its source system".into());
    }
    if id.len() > MAX_RECORD_ID_LEN {
        return Err(format!("at most {MAX_RECORD_ID_LEN} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err("only printable characters are allowed (found a control character)".into());
    }
    if id.starts_with(char::is_whitespace) || id.ends_with(char::is_whitespace) {
        return Err("must not start or end with whitespace".into());
    }
    Ok(())
}

/// Identifies one record of one source: the unit of exactly-once ingestion.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordKey {
    /// The configured source system name, e.g. `sap-erp`.
    pub source: String,
    /// The record type.
    pub record_type: RecordType,
    /// The record's id in the source.
    pub record_id: String,
}

impl RecordKey {
    /// Checks `source` and `record_id`, reporting at `{field}.source` and `{field}.record_id`
    /// (`field` is the path of the record, e.g. `records[3]`, or empty).
    pub fn check(
        source: &str,
        record_type: RecordType,
        record_id: &str,
        field: &str,
        v: &mut Violations,
    ) -> Option<Self> {
        let source_ok = v
            .check(join(field, "source"), check_source(source))
            .is_some();
        let id_ok = v
            .check(join(field, "record_id"), check_record_id(record_id))
            .is_some();
        (source_ok && id_ok).then(|| Self {
            source: source.to_owned(),
            record_type,
            record_id: record_id.to_owned(),
        })
    }
}

impl fmt::Display for RecordKey {
    /// `source/record_type/record_id`, e.g. `sap-erp/order/4500012345`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.source, self.record_type, self.record_id)
    }
}

/// SHA-256 of a record's canonical encoding (the caller chooses the encoding; it must be the
/// same bytes for the same content). Shown and serialised as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash of `canonical`.
    pub fn of(canonical: &[u8]) -> Self {
        Self(Sha256::digest(canonical).into())
    }

    /// The 32 bytes, e.g. for a binary column.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads 32 bytes back, e.g. from a binary column.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, String> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| format!("a content hash is 32 bytes, not {}", bytes.len()))
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let bad = || format!("a content hash is 64 hex digits, not `{hex}`");
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.to_hex())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for ContentHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::from_hex(s)
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(deserializer)?;
        Self::from_hex(&hex).map_err(serde::de::Error::custom)
    }
}

/// One version of a record: the source's `updated_at` and the hash of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredVersion {
    /// The source's last-modified time of the record (see [`check_timestamp`]).
    pub updated_at: DateTime<Utc>,
    /// Hash of the record's canonical content.
    pub hash: ContentHash,
}

/// What ingesting one record version does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IngestOutcome {
    /// The record was not known: it is stored.
    Created,
    /// The record is newer than the stored version: it replaces it.
    Updated,
    /// Same version, same content (a re-send): nothing changes.
    Unchanged,
    /// Older than the stored version: nothing is overwritten.
    Stale,
    /// Same version, different content: nothing is overwritten, and the conflict is reported.
    Conflict,
    /// About an erased customer (an identifier of the record is suppressed): nothing is written.
    Suppressed,
}

impl IngestOutcome {
    /// Every outcome, in declaration order.
    pub const ALL: &'static [IngestOutcome] = &[
        IngestOutcome::Created,
        IngestOutcome::Updated,
        IngestOutcome::Unchanged,
        IngestOutcome::Stale,
        IngestOutcome::Conflict,
        IngestOutcome::Suppressed,
    ];

    /// The UPPER_SNAKE_CASE code callers see, e.g. `STALE`.
    pub fn as_str(self) -> &'static str {
        match self {
            IngestOutcome::Created => "CREATED",
            IngestOutcome::Updated => "UPDATED",
            IngestOutcome::Unchanged => "UNCHANGED",
            IngestOutcome::Stale => "STALE",
            IngestOutcome::Conflict => "CONFLICT",
            IngestOutcome::Suppressed => "SUPPRESSED",
        }
    }

    /// Whether the incoming version is written (it becomes the stored version).
    pub fn writes(self) -> bool {
        matches!(self, IngestOutcome::Created | IngestOutcome::Updated)
    }
}

impl fmt::Display for IngestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares an incoming version of a record with the stored one (if any). Only
/// [`IngestOutcome::Created`] and [`IngestOutcome::Updated`] write; so, whatever the arrival
/// order, the stored version only moves forward in `updated_at`, and a re-send changes nothing.
pub fn decide(stored: Option<&StoredVersion>, incoming: &StoredVersion) -> IngestOutcome {
    let Some(stored) = stored else {
        return IngestOutcome::Created;
    };
    match incoming.updated_at.cmp(&stored.updated_at) {
        Ordering::Greater => IngestOutcome::Updated,
        Ordering::Less => IngestOutcome::Stale,
        Ordering::Equal if incoming.hash == stored.hash => IngestOutcome::Unchanged,
        Ordering::Equal => IngestOutcome::Conflict,
    }
}

/// What [`apply_order`] sorts by: a record's key and version time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordMeta {
    /// Which record.
    pub key: RecordKey,
    /// The source's `updated_at`.
    pub updated_at: DateTime<Utc>,
}

/// The order in which the records of one customer apply, whatever order they arrived in:
/// by `updated_at`, then source, then record type (by its stored text), then record id, so the
/// last one applied is the last writer. The same order is
/// `ORDER BY updated_at, source, record_type, record_id` over the stored columns (with a binary
/// collation).
pub fn apply_order(a: &RecordMeta, b: &RecordMeta) -> Ordering {
    (
        a.updated_at,
        a.key.source.as_str(),
        a.key.record_type.as_str(),
        a.key.record_id.as_str(),
    )
        .cmp(&(
            b.updated_at,
            b.key.source.as_str(),
            b.key.record_type.as_str(),
            b.key.record_id.as_str(),
        ))
}

/// 1900-01-01T00:00:00Z, the earliest source timestamp accepted.
pub fn earliest_timestamp() -> DateTime<Utc> {
    DateTime::from_timestamp(EARLIEST_UNIX_SECONDS, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `t` truncated to whole microseconds, the precision both storage engines keep. Versions are
/// compared at this precision, so a re-sent record compares equal to what was stored.
pub fn to_storage_precision(t: DateTime<Utc>) -> DateTime<Utc> {
    let extra_nanos = i64::from(t.timestamp_subsec_nanos() % 1_000);
    t.checked_sub_signed(TimeDelta::nanoseconds(extra_nanos))
        .unwrap_or(t)
}

/// Checks a source timestamp against the hub's clock `now`: refused (at `field`) before
/// 1900-01-01 or more than a day in the future. Returns it truncated to microseconds (see
/// [`to_storage_precision`]).
pub fn check_timestamp(
    t: DateTime<Utc>,
    field: &str,
    now: DateTime<Utc>,
    v: &mut Violations,
) -> Option<DateTime<Utc>> {
    let earliest = earliest_timestamp();
    if t < earliest {
        v.add(
            field,
            format!(
                "{} is before 1900-01-01T00:00:00Z: a source timestamp must be a real date (is the field unset or a placeholder?)",
                rfc3339(t)
            ),
        );
        return None;
    }
    let latest = now.checked_add_signed(MAX_FUTURE).unwrap_or(now);
    if t > latest {
        v.add(
            field,
            format!(
                "{} is more than 1 day after the hub's time {}: check the source system's clock and time zone",
                rfc3339(t),
                rfc3339(now)
            ),
        );
        return None;
    }
    Some(to_storage_precision(t))
}

/// Checks a timestamp given as Unix seconds and nanoseconds (a `google.protobuf.Timestamp`),
/// then as [`check_timestamp`] does.
pub fn check_unix_timestamp(
    seconds: i64,
    nanos: i32,
    field: &str,
    now: DateTime<Utc>,
    v: &mut Violations,
) -> Option<DateTime<Utc>> {
    let Some(nanos) = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000) else {
        v.add(
            field,
            format!("nanos must be from 0 to 999999999 (got {nanos})"),
        );
        return None;
    };
    let Some(t) = DateTime::from_timestamp(seconds, nanos) else {
        v.add(field, format!("{seconds} seconds is out of range"));
        return None;
    };
    check_timestamp(t, field, now, v)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Where a profile field's value came from: which source, which record, which version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Provenance {
    /// The source system that set the value.
    pub source: String,
    /// The source's `updated_at` of the record that set it.
    pub updated_at: DateTime<Utc>,
    /// The id of that record in the source.
    pub record_id: String,
}

/// Which source wins a field group: per group, sources from the highest priority down. A source
/// listed for a group beats every source listed after it and every unlisted source, whatever the
/// times; sources of equal priority (the same source, or two unlisted ones) are decided by
/// time (see [`wins`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourcePriority(BTreeMap<FieldGroup, Vec<String>>);

impl SourcePriority {
    /// No priorities: the latest version wins every group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds priorities from lists, checking every source name and refusing a source listed
    /// twice for one group; violations are reported at `{field}.{group}[i]`.
    pub fn from_lists(lists: BTreeMap<FieldGroup, Vec<String>>, field: &str) -> Result<Self> {
        let mut v = Violations::new();
        for (group, sources) in &lists {
            let mut seen = BTreeSet::new();
            for (i, source) in sources.iter().enumerate() {
                let path = format!("{}[{i}]", join(field, group.as_str()));
                if v.check(path.as_str(), check_source(source)).is_some()
                    && !seen.insert(source.as_str())
                {
                    v.add(path, format!("`{source}` is listed twice for {group}"));
                }
            }
        }
        v.into_result()?;
        Ok(Self(lists))
    }

    /// The sources listed for `group`, highest priority first.
    pub fn sources(&self, group: FieldGroup) -> &[String] {
        self.0.get(&group).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The position of `source` in the list of `group` (0 is the highest priority), or `None`
    /// when it is unlisted (the lowest priority).
    pub fn rank(&self, group: FieldGroup, source: &str) -> Option<usize> {
        self.sources(group).iter().position(|s| s == source)
    }

    fn precedence<'a>(
        &self,
        group: FieldGroup,
        p: &'a Provenance,
    ) -> (Option<Reverse<usize>>, DateTime<Utc>, &'a str, &'a str) {
        (
            self.rank(group, &p.source).map(Reverse),
            p.updated_at,
            p.source.as_str(),
            p.record_id.as_str(),
        )
    }
}

/// Whether a value with provenance `incoming` replaces the current value (provenance `current`)
/// of a field in `group`. The higher-priority source wins regardless of time; at equal priority
/// the later `updated_at` wins, then the greater source name, then the greater record id (the
/// same tie-break as [`apply_order`], so the last record applied is the winner). This is a strict
/// total order on provenances: the final value does not depend on arrival order, and an equal
/// provenance (a re-send) does not win.
pub fn wins(
    current: &Provenance,
    incoming: &Provenance,
    group: FieldGroup,
    priority: &SourcePriority,
) -> bool {
    priority.precedence(group, incoming) > priority.precedence(group, current)
}

fn join(field: &str, name: &str) -> String {
    if field.is_empty() {
        name.to_owned()
    } else {
        format!("{field}.{name}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::Error;
    use proptest::prelude::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn version(seconds: i64, content: &str) -> StoredVersion {
        StoredVersion {
            updated_at: at(seconds),
            hash: ContentHash::of(content.as_bytes()),
        }
    }

    #[test]
    fn record_types_and_groups_round_trip_through_their_text() {
        for t in RecordType::ALL {
            assert_eq!(t.as_str().parse::<RecordType>(), Ok(*t));
        }
        for g in FieldGroup::ALL {
            assert_eq!(g.as_str().parse::<FieldGroup>(), Ok(*g));
        }
        assert_eq!(RecordType::SubscriptionEvent.as_str(), "subscription_event");
        let err = "Order".parse::<RecordType>().unwrap_err();
        assert!(err.contains("unknown RecordType `Order`"), "{err}");
        assert_eq!(
            serde_json::to_string(&RecordType::SupportCase).unwrap(),
            r#""support_case""#
        );
    }

    #[test]
    fn decide_covers_every_outcome() {
        let stored = version(10, "a");
        assert_eq!(decide(None, &stored), IngestOutcome::Created);
        assert_eq!(
            decide(Some(&stored), &version(11, "b")),
            IngestOutcome::Updated
        );
        assert_eq!(
            decide(Some(&stored), &version(10, "a")),
            IngestOutcome::Unchanged
        );
        assert_eq!(
            decide(Some(&stored), &version(10, "b")),
            IngestOutcome::Conflict
        );
        assert_eq!(
            decide(Some(&stored), &version(9, "a")),
            IngestOutcome::Stale
        );
        assert_eq!(
            decide(Some(&stored), &version(9, "z")),
            IngestOutcome::Stale
        );
        let codes: Vec<_> = IngestOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            codes,
            [
                "CREATED",
                "UPDATED",
                "UNCHANGED",
                "STALE",
                "CONFLICT",
                "SUPPRESSED"
            ]
        );
        for o in IngestOutcome::ALL {
            assert_eq!(serde_json::to_string(o).unwrap(), format!("\"{o}\""));
        }
        let writers: Vec<_> = IngestOutcome::ALL.iter().filter(|o| o.writes()).collect();
        assert_eq!(writers, [&IngestOutcome::Created, &IngestOutcome::Updated]);
    }

    #[test]
    fn v2_then_v1_keeps_v2() {
        let v1 = version(1, "v1");
        let v2 = version(2, "v2");
        assert_eq!(decide(None, &v2), IngestOutcome::Created);
        assert_eq!(decide(Some(&v2), &v1), IngestOutcome::Stale);
    }

    #[test]
    fn content_hash_is_sha256_and_round_trips() {
        let h = ContentHash::of(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(ContentHash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(h.to_string().parse::<ContentHash>(), Ok(h));
        assert_eq!(ContentHash::from_slice(h.as_bytes()), Ok(h));
        assert!(ContentHash::from_slice(&[0; 31]).is_err());
        assert!(ContentHash::from_hex("zz").is_err());
        assert!(ContentHash::from_hex(&"g".repeat(64)).is_err());
        assert!(ContentHash::from_hex(&"é".repeat(32)).is_err());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), h);
    }

    #[test]
    fn source_names() {
        for ok in [
            "salesforce-eu",
            "sap-erp",
            "stripe",
            "crm2",
            &"a".repeat(64),
        ] {
            assert_eq!(check_source(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("", "required"),
            ("Stripe", "found `S`"),
            ("sap_erp", "found `_`"),
            ("sap erp", "found ` `"),
            ("sap:erp", "found `:`"),
            (&"a".repeat(65), "at most 64"),
        ] {
            let err = check_source(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn record_ids() {
        for ok in [
            "0035g00000XyZ",
            "INV 2024/001",
            "Überweisung-7",
            &"x".repeat(256),
        ] {
            assert_eq!(check_record_id(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("", "required"),
            (&"x".repeat(257) as &str, "at most 256"),
            ("a\nb", "control character"),
            ("a\u{0}", "control character"),
            (" 42", "whitespace"),
            ("42 ", "whitespace"),
        ] {
            let err = check_record_id(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn record_key_check_collects_every_violation() {
        let mut v = Violations::new();
        let key = RecordKey::check(
            "sap-erp",
            RecordType::Order,
            "4500012345",
            "records[0]",
            &mut v,
        );
        assert_eq!(
            key.map(|k| k.to_string()).as_deref(),
            Some("sap-erp/order/4500012345")
        );
        assert_eq!(
            RecordKey::check("SAP", RecordType::Order, "", "records[1]", &mut v),
            None
        );
        let fields: Vec<_> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["records[1].source", "records[1].record_id"]);
    }

    #[test]
    fn timestamps_before_1900_or_far_ahead_are_refused() {
        let now = at(0);
        let mut v = Violations::new();
        let t = DateTime::from_timestamp(EARLIEST_UNIX_SECONDS, 0).unwrap();
        assert_eq!(check_timestamp(t, "a", now, &mut v), Some(t));
        let day = now + TimeDelta::days(1);
        assert_eq!(check_timestamp(day, "b", now, &mut v), Some(day));
        assert!(v.is_empty());

        let before = t - TimeDelta::seconds(1);
        assert_eq!(check_timestamp(before, "c", now, &mut v), None);
        let ahead = day + TimeDelta::seconds(1);
        assert_eq!(check_timestamp(ahead, "d", now, &mut v), None);
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(check_timestamp(epoch, "e", now, &mut v), Some(epoch));
        let violations = v.into_vec();
        assert_eq!(violations.len(), 2);
        assert_eq!(violations[0].field, "c");
        assert!(
            violations[0]
                .description
                .contains("1899-12-31T23:59:59Z is before 1900-01-01"),
            "{}",
            violations[0].description
        );
        assert_eq!(violations[1].field, "d");
        assert!(
            violations[1].description.contains("more than 1 day after"),
            "{}",
            violations[1].description
        );
    }

    #[test]
    fn timestamps_are_kept_to_the_microsecond() {
        let now = at(0);
        let mut v = Violations::new();
        let t = DateTime::from_timestamp(1_600_000_000, 123_456_789).unwrap();
        let kept = check_timestamp(t, "t", now, &mut v).unwrap();
        assert_eq!(kept.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(
            check_unix_timestamp(1_600_000_000, 123_456_789, "t", now, &mut v),
            Some(kept)
        );
        assert_eq!(check_unix_timestamp(0, -1, "u", now, &mut v), None);
        assert_eq!(check_unix_timestamp(i64::MAX, 0, "w", now, &mut v), None);
        assert_eq!(
            check_unix_timestamp(-3_000_000_000, 0, "x", now, &mut v),
            None
        );
        let fields: Vec<_> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["u", "w", "x"]);
    }

    fn meta(seconds: i64, source: &str, record_type: RecordType, id: &str) -> RecordMeta {
        RecordMeta {
            key: RecordKey {
                source: source.into(),
                record_type,
                record_id: id.into(),
            },
            updated_at: at(seconds),
        }
    }

    #[test]
    fn apply_order_is_time_then_source_type_id() {
        let mut records = [
            meta(2, "a", RecordType::Contact, "1"),
            meta(1, "b", RecordType::Refund, "1"),
            meta(1, "b", RecordType::Order, "2"),
            meta(1, "b", RecordType::Order, "10"),
            meta(1, "a", RecordType::Payment, "9"),
        ];
        records.sort_by(apply_order);
        let keys: Vec<_> = records.iter().map(|m| m.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "a/payment/9",
                "b/order/10",
                "b/order/2",
                "b/refund/1",
                "a/contact/1"
            ]
        );
    }

    fn prov(source: &str, seconds: i64, id: &str) -> Provenance {
        Provenance {
            source: source.into(),
            updated_at: at(seconds),
            record_id: id.into(),
        }
    }

    fn priority() -> SourcePriority {
        SourcePriority::from_lists(
            BTreeMap::from([(
                FieldGroup::Email,
                vec!["salesforce-eu".to_owned(), "stripe".to_owned()],
            )]),
            "source_priority",
        )
        .unwrap()
    }

    #[test]
    fn higher_priority_wins_regardless_of_time() {
        let p = priority();
        let crm = prov("salesforce-eu", 1, "c1");
        let billing = prov("stripe", 100, "b1");
        let erp = prov("sap-erp", 200, "e1");
        assert!(!wins(&crm, &billing, FieldGroup::Email, &p));
        assert!(wins(&billing, &crm, FieldGroup::Email, &p));
        assert!(
            !wins(&billing, &erp, FieldGroup::Email, &p),
            "unlisted is lowest"
        );
        assert!(wins(&erp, &billing, FieldGroup::Email, &p));
        // No list for the group: the latest wins.
        assert!(wins(&crm, &billing, FieldGroup::Name, &p));
        assert!(!wins(&billing, &crm, FieldGroup::Name, &p));
        assert_eq!(p.rank(FieldGroup::Email, "stripe"), Some(1));
        assert_eq!(p.rank(FieldGroup::Email, "sap-erp"), None);
    }

    #[test]
    fn equal_priority_goes_to_the_latest_then_the_greater_source() {
        let p = SourcePriority::new();
        let g = FieldGroup::Address;
        assert!(wins(&prov("a", 1, "1"), &prov("a", 2, "1"), g, &p));
        assert!(!wins(&prov("a", 2, "1"), &prov("a", 1, "1"), g, &p));
        assert!(wins(&prov("a", 1, "1"), &prov("b", 1, "1"), g, &p));
        assert!(!wins(&prov("b", 1, "1"), &prov("a", 1, "1"), g, &p));
        assert!(wins(&prov("a", 1, "1"), &prov("a", 1, "2"), g, &p));
        assert!(
            !wins(&prov("a", 1, "1"), &prov("a", 1, "1"), g, &p),
            "a re-send"
        );
    }

    #[test]
    fn priority_lists_are_checked() {
        let err = SourcePriority::from_lists(
            BTreeMap::from([
                (
                    FieldGroup::Email,
                    vec!["crm".into(), "Bad".into(), "crm".into()],
                ),
                (FieldGroup::Phone, vec!["".into()]),
            ]),
            "feeds.source_priority",
        )
        .unwrap_err();
        let Error::InvalidArgument { violations, .. } = err else {
            panic!("expected InvalidArgument, got {err:?}");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "feeds.source_priority.email[1]",
                "feeds.source_priority.email[2]",
                "feeds.source_priority.phone[0]"
            ]
        );
        assert!(violations[1].description.contains("listed twice"));
    }

    /// Versions of one record: the content is a function of the time, as for a well-behaved
    /// source; duplicates are re-sends.
    fn consistent_versions() -> impl Strategy<Value = Vec<StoredVersion>> {
        proptest::collection::vec(0i64..20, 1..12)
            .prop_map(|times| {
                times
                    .into_iter()
                    .map(|t| version(t, &format!("content at {t}")))
                    .collect::<Vec<_>>()
            })
            .prop_shuffle()
    }

    /// Folds `decide` over arrivals, keeping the winner; checks that only a strictly newer
    /// version ever overwrites.
    fn ingest_all(arrivals: &[StoredVersion]) -> (Option<StoredVersion>, Vec<IngestOutcome>) {
        let mut stored: Option<StoredVersion> = None;
        let mut outcomes = Vec::new();
        for incoming in arrivals {
            let outcome = decide(stored.as_ref(), incoming);
            if outcome.writes() {
                if let Some(old) = stored {
                    assert!(
                        incoming.updated_at > old.updated_at,
                        "overwrote with an older version"
                    );
                }
                stored = Some(*incoming);
            }
            outcomes.push(outcome);
        }
        (stored, outcomes)
    }

    fn provenances() -> impl Strategy<Value = Vec<Provenance>> {
        let sources = prop_oneof![Just("crm"), Just("erp"), Just("billing"), Just("web")];
        proptest::collection::vec((sources, 0i64..5, 0u8..3), 1..10).prop_map(|items| {
            items
                .into_iter()
                .map(|(s, t, id)| prov(s, t, &id.to_string()))
                .collect()
        })
    }

    fn priorities() -> impl Strategy<Value = SourcePriority> {
        proptest::sample::subsequence(vec!["crm", "erp", "billing", "web"], 0..=4)
            .prop_shuffle()
            .prop_map(|list| {
                SourcePriority::from_lists(
                    BTreeMap::from([(
                        FieldGroup::Email,
                        list.into_iter().map(str::to_owned).collect(),
                    )]),
                    "",
                )
                .unwrap()
            })
    }

    fn final_winner(arrivals: &[Provenance], p: &SourcePriority) -> Provenance {
        let mut current = arrivals[0].clone();
        for incoming in &arrivals[1..] {
            if wins(&current, incoming, FieldGroup::Email, p) {
                current = incoming.clone();
            }
        }
        current
    }

    proptest! {
        #[test]
        fn any_arrival_order_ends_with_the_newest_version(
            arrivals in consistent_versions(),
            seed in any::<u64>(),
        ) {
            let (stored, outcomes) = ingest_all(&arrivals);
            let newest = arrivals.iter().max_by_key(|v| v.updated_at).copied();
            prop_assert_eq!(stored, newest);
            prop_assert!(!outcomes.contains(&IngestOutcome::Conflict));
            // Another permutation, another history, the same end.
            let mut other = arrivals.clone();
            let n = other.len();
            other.rotate_left((seed as usize) % n);
            other.reverse();
            prop_assert_eq!(ingest_all(&other).0, newest);
            // A re-send of everything changes nothing.
            let mut again = vec![];
            if let Some(s) = stored { again.push(s); }
            again.extend(arrivals.iter().copied());
            let (resent, outcomes) = ingest_all(&again);
            prop_assert_eq!(resent, newest);
            prop_assert!(outcomes[1..].iter().all(|o| !o.writes()));
        }

        #[test]
        fn conflicting_versions_never_move_the_version_back(
            raw in proptest::collection::vec((0i64..6, 0u8..3), 1..12),
        ) {
            let arrivals: Vec<_> =
                raw.iter().map(|(t, c)| version(*t, &format!("{c}"))).collect();
            let (stored, outcomes) = ingest_all(&arrivals);
            let stored = stored.unwrap();
            let newest = arrivals.iter().map(|v| v.updated_at).max().unwrap();
            prop_assert_eq!(stored.updated_at, newest);
            // Every arrival at the newest time with other content is reported as a conflict.
            for (incoming, outcome) in arrivals.iter().zip(&outcomes) {
                if incoming.updated_at == newest && incoming.hash != stored.hash {
                    prop_assert_eq!(*outcome, IngestOutcome::Conflict);
                }
            }
        }

        #[test]
        fn wins_picks_the_same_winner_whatever_the_arrival_order(
            arrivals in provenances().prop_shuffle(),
            p in priorities(),
            rotate in any::<usize>(),
        ) {
            let first = final_winner(&arrivals, &p);
            let mut other = arrivals.clone();
            other.reverse();
            let n = other.len();
            other.rotate_left(rotate % n);
            prop_assert_eq!(&final_winner(&other, &p), &first);
            // The winner beats or equals every candidate: no candidate would replace it.
            for candidate in &arrivals {
                prop_assert!(!wins(&first, candidate, FieldGroup::Email, &p));
            }
        }

        #[test]
        fn wins_is_a_strict_total_order(
            pair in provenances(),
            p in priorities(),
        ) {
            for a in &pair {
                for b in &pair {
                    let forward = wins(a, b, FieldGroup::Email, &p);
                    let backward = wins(b, a, FieldGroup::Email, &p);
                    prop_assert_eq!(forward || backward, a != b);
                    prop_assert!(!(forward && backward));
                }
            }
        }

        #[test]
        fn apply_order_is_independent_of_arrival(
            raw in proptest::collection::vec((0i64..3, 0usize..2, 0usize..3, 0u8..3), 0..12)
                .prop_shuffle(),
        ) {
            let sources = ["crm", "erp"];
            let types = [RecordType::Contact, RecordType::Order, RecordType::Refund];
            let records: Vec<_> = raw
                .iter()
                .map(|(t, s, r, id)| meta(*t, sources[*s], types[*r], &id.to_string()))
                .collect();
            let mut a = records.clone();
            a.sort_by(apply_order);
            let mut b = records;
            b.reverse();
            b.sort_by(apply_order);
            prop_assert_eq!(a, b);
        }
    }
}
