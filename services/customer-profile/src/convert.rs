//! Wire ↔ domain for the read RPCs: request validation (every violation collected, with its
//! field path) and the wire form of what the reads return.

use chrono::{DateTime, SubsecRound, Utc};
use cxhub_domain::customer_query::{
    Customer360, CustomerSummary, DEFAULT_RECENT_INTERACTIONS, InteractionView, InvoiceTotals,
    MAX_BATCH_GET, MAX_PREFIX, MAX_RECENT_INTERACTIONS, RowKey, SearchBy, SearchFilter,
    SourceIdentities, SubscriptionView, SupportCaseView, TimeRange, TransactionSummary,
    TransactionView, search_key,
};
use cxhub_domain::feed::{
    CasePriority, CaseStatus, LifecycleStage, SubscriptionEventKind, TransactionKind,
};
use cxhub_domain::identifier::{
    CustomerId, Identifier, normalise_email, normalise_phone, normalise_source_id,
};
use cxhub_domain::money::Money;
use cxhub_domain::page::{PageRequest, filter_fingerprint, page_request};
use cxhub_domain::touchpoint::Channel;
use cxhub_domain::{Error, Result, Violations};
use cxhub_feeds::convert::lifecycle_stage_to_pb;
use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::profile::v1 as pb;
use cxhub_proto::touchpoint::v1 as touchpoint;
use cxhub_scoring::scores::{band_from_pb, category_from_pb, scores_to_pb};
use unicode_normalization::UnicodeNormalization;

/// A protobuf timestamp from a UTC time.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A hub customer id from `field`.
pub fn customer_id(v: &mut Violations, field: &str, value: &str) -> Option<CustomerId> {
    if value.is_empty() {
        v.add(field, "required");
        return None;
    }
    v.check(field, value.parse::<CustomerId>())
}

/// The ids of a `BatchGetCustomers`: 1 to [`MAX_BATCH_GET`], each well-formed
/// (`customer_ids[i]` names a bad one).
pub fn batch_ids(ids: &[String]) -> Result<Vec<CustomerId>> {
    let mut v = Violations::new();
    if ids.is_empty() {
        v.add("customer_ids", "required: 1 to 100 ids");
    } else if ids.len() > MAX_BATCH_GET {
        v.add(
            "customer_ids",
            format!(
                "{} ids: at most {MAX_BATCH_GET} per call, split the list",
                ids.len()
            ),
        );
    }
    let parsed: Vec<Option<CustomerId>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| customer_id(&mut v, &format!("customer_ids[{i}]"), id))
        .collect();
    v.into_result()?;
    Ok(parsed.into_iter().flatten().collect())
}

/// The identifier of a `LookupCustomer`, normalised as ingestion does.
pub fn lookup_identifier(
    req: &pb::LookupCustomerRequest,
    default_region: &str,
) -> Result<Identifier> {
    let mut v = Violations::new();
    let by_source = !req.source.is_empty() || !req.source_customer_id.is_empty();
    let given = [by_source, !req.email.is_empty(), !req.phone.is_empty()];
    let count = given.iter().filter(|g| **g).count();
    if count == 0 {
        v.add(
            "source_customer_id",
            "give one identifier: source with source_customer_id, email, or phone",
        );
        return Err(Error::invalid(v.into_vec()));
    }
    if count > 1 {
        for (field, set) in [
            ("source_customer_id", by_source),
            ("email", !req.email.is_empty()),
            ("phone", !req.phone.is_empty()),
        ] {
            if set {
                v.add(
                    field,
                    "give exactly one identifier: source with source_customer_id, email, or phone",
                );
            }
        }
        return Err(Error::invalid(v.into_vec()));
    }
    let problem = |p: cxhub_domain::identifier::IdentifierProblem| p.description();
    let identifier = if by_source {
        if req.source.trim().is_empty() {
            v.add("source", "required with source_customer_id");
        }
        if req.source_customer_id.trim().is_empty() {
            v.add("source_customer_id", "required with source");
        }
        v.into_result()?;
        normalise_source_id(&req.source, &req.source_customer_id)
            .map_err(|p| Error::invalid_field("source_customer_id", problem(p)))?
    } else if !req.email.is_empty() {
        normalise_email(&req.email).map_err(|p| Error::invalid_field("email", problem(p)))?
    } else {
        normalise_phone(&req.phone, default_region)
            .map_err(|p| Error::invalid_field("phone", problem(p)))?
    };
    Ok(identifier)
}

/// The filter of a `SearchCustomers`.
pub fn search_filter(req: &pb::SearchCustomersRequest) -> Result<SearchFilter> {
    let mut v = Violations::new();
    let stage = v
        .check(
            "lifecycle_stage",
            lifecycle_stage_from_pb(req.lifecycle_stage),
        )
        .flatten();
    let category = v
        .check("category", category_from_pb(req.category))
        .flatten();
    let churn_band = v
        .check("churn_band", band_from_pb(req.churn_band))
        .flatten();
    let prefixes = [
        ("name_prefix", &req.name_prefix),
        ("email_prefix", &req.email_prefix),
        ("phone_prefix", &req.phone_prefix),
    ];
    let given: Vec<&str> = prefixes
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(f, _)| *f)
        .collect();
    if given.len() > 1 {
        for field in &given {
            v.add(
                *field,
                "give at most one of name_prefix, email_prefix, phone_prefix",
            );
        }
    }
    for (field, p) in prefixes {
        if p.chars().count() > MAX_PREFIX {
            v.add(field, format!("at most {MAX_PREFIX} characters"));
        }
    }
    let by = if !req.name_prefix.is_empty() {
        let key = search_key(&req.name_prefix);
        if key.is_empty() {
            v.add("name_prefix", "holds no letter or digit to search for");
        }
        SearchBy::Name(key)
    } else if !req.email_prefix.is_empty() {
        let prefix: String = req
            .email_prefix
            .trim()
            .nfc()
            .collect::<String>()
            .to_lowercase();
        if prefix.is_empty() {
            v.add("email_prefix", "holds nothing but whitespace");
        }
        SearchBy::Email(prefix)
    } else if !req.phone_prefix.is_empty() {
        match phone_prefix(&req.phone_prefix) {
            Ok(prefix) => SearchBy::Phone(prefix),
            Err(problem) => {
                v.add("phone_prefix", problem);
                SearchBy::Any
            }
        }
    } else {
        if stage.is_none() && category.is_none() && churn_band.is_none() && v.is_empty() {
            v.add(
                "name_prefix",
                "give a name, e-mail or phone prefix, or a lifecycle stage, category or churn band",
            );
        }
        SearchBy::Any
    };
    v.into_result()?;
    Ok(SearchFilter {
        by,
        lifecycle_stage: stage,
        category,
        churn_band,
    })
}

/// An E.164 prefix: `+` (or `00`) then 1 to 15 digits, separators dropped.
fn phone_prefix(raw: &str) -> std::result::Result<String, String> {
    let compact: String = raw
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')')))
        .collect();
    let digits = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"))
        .ok_or("an E.164 prefix starts with + (or 00) and its country code")?;
    if digits.is_empty() || digits.len() > 15 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(
            "after the + come 1 to 15 digits (spaces, dots, dashes and parentheses are ignored)"
                .into(),
        );
    }
    Ok(format!("+{digits}"))
}

fn lifecycle_stage_from_pb(v: i32) -> std::result::Result<Option<LifecycleStage>, String> {
    match feeds::LifecycleStage::try_from(v) {
        Ok(feeds::LifecycleStage::Unspecified) => Ok(None),
        Ok(feeds::LifecycleStage::Lead) => Ok(Some(LifecycleStage::Lead)),
        Ok(feeds::LifecycleStage::Prospect) => Ok(Some(LifecycleStage::Prospect)),
        Ok(feeds::LifecycleStage::Customer) => Ok(Some(LifecycleStage::Customer)),
        Ok(feeds::LifecycleStage::FormerCustomer) => Ok(Some(LifecycleStage::FormerCustomer)),
        Err(_) => Err(format!("unknown lifecycle stage {v}")),
    }
}

/// The interaction count of a `GetCustomer360` (0: the default).
pub fn interaction_count(v: &mut Violations, n: i32) -> u32 {
    match u32::try_from(n) {
        Ok(0) => DEFAULT_RECENT_INTERACTIONS,
        Ok(n) if n <= MAX_RECENT_INTERACTIONS => n,
        _ => {
            v.add(
                "interaction_count",
                format!("must be between 0 and {MAX_RECENT_INTERACTIONS}"),
            );
            DEFAULT_RECENT_INTERACTIONS
        }
    }
}

/// A `[from, to)` range; `to` must be after `from`.
pub fn time_range(
    v: &mut Violations,
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
) -> TimeRange {
    let from = from.and_then(|t| v.check("from", time(t)));
    let to = to.and_then(|t| v.check("to", time(t)));
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        v.add("to", "must be after `from`");
    }
    TimeRange { from, to }
}

/// A protobuf timestamp as a UTC time at storage precision (microseconds).
fn time(t: &prost_types::Timestamp) -> std::result::Result<DateTime<Utc>, String> {
    let nanos = u32::try_from(t.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or("nanos must be 0 to 999,999,999")?;
    DateTime::from_timestamp(t.seconds, nanos)
        .filter(|d| (1..=9999).contains(&chrono::Datelike::year(d)))
        .map(|d| d.trunc_subsecs(6))
        .ok_or_else(|| "outside the years 1 to 9999".to_owned())
}

/// Merges the violations of two validations into one `InvalidArgument`.
fn merge_errors(errors: impl IntoIterator<Item = Option<Error>>) -> Result<()> {
    let mut v = Violations::new();
    for err in errors.into_iter().flatten() {
        match err {
            Error::InvalidArgument { violations, .. } => {
                for f in violations {
                    v.add(f.field, f.description);
                }
            }
            other => return Err(other),
        }
    }
    v.into_result()
}

/// The filter and page of a `SearchCustomers`, and the fingerprint its tokens are bound to.
pub fn search_request(
    r: &pb::SearchCustomersRequest,
) -> Result<(SearchFilter, PageRequest, String)> {
    let filter = search_filter(r);
    let fingerprint = filter.as_ref().map(filter_fingerprint).unwrap_or_default();
    // With invalid filters only the page size is checked: the token's filters cannot be.
    let token = if filter.is_ok() {
        r.page_token.as_str()
    } else {
        ""
    };
    let page = page_request(r.page_size, token, &fingerprint);
    match (filter, page) {
        (Ok(filter), Ok(page)) => Ok((filter, page, fingerprint)),
        (filter, page) => {
            merge_errors([filter.err(), page.err()])?;
            Err(Error::internal("validation failed without a violation"))
        }
    }
}

/// The customer and interaction count of a `GetCustomer360`.
pub fn customer_360_request(r: &pb::GetCustomer360Request) -> Result<(CustomerId, u32)> {
    let mut v = Violations::new();
    let id = customer_id(&mut v, "customer_id", &r.customer_id);
    let count = interaction_count(&mut v, r.interaction_count);
    v.into_result()?;
    id.map(|id| (id, count))
        .ok_or_else(|| Error::internal("validation failed without a violation"))
}

/// The customer, range and page of a `ListCustomerInteractions` or `ListCustomerTransactions`,
/// and the fingerprint its tokens are bound to (the customer asked for and the range).
pub fn history_request(
    customer: &str,
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
    page_size: i32,
    page_token: &str,
) -> Result<(CustomerId, TimeRange, PageRequest, String)> {
    let mut v = Violations::new();
    let id = customer_id(&mut v, "customer_id", customer);
    let range = time_range(&mut v, from, to);
    let fingerprint = filter_fingerprint(&(customer, &range));
    let token = if v.is_empty() { page_token } else { "" };
    let page = page_request(page_size, token, &fingerprint);
    let checked = v.into_result();
    match (id, checked, page) {
        (Some(id), Ok(()), Ok(page)) => Ok((id, range, page, fingerprint)),
        (_, checked, page) => {
            merge_errors([checked.err(), page.err()])?;
            Err(Error::internal("validation failed without a violation"))
        }
    }
}

/// The wire form of a 360° view of `requested`.
pub fn customer_360_to_pb(requested: CustomerId, view: Customer360) -> pb::GetCustomer360Response {
    pb::GetCustomer360Response {
        requested_id: requested.to_string(),
        redirected: view.customer.id != requested,
        customer: Some(crate::customer_to_pb(view.customer)),
        sources: view.sources.into_iter().map(sources_to_pb).collect(),
        recent_interactions: view
            .recent_interactions
            .into_iter()
            .map(interaction_to_pb)
            .collect(),
        transactions: Some(summary_of_transactions_to_pb(view.transactions)),
        open_cases: view.open_cases.into_iter().map(case_to_pb).collect(),
        active_subscriptions: view
            .active_subscriptions
            .into_iter()
            .map(subscription_to_pb)
            .collect(),
        scores: view.scores.as_ref().map(scores_to_pb),
    }
}

/// The wire form of a search hit.
pub fn summary_to_pb(s: CustomerSummary) -> pb::CustomerSummary {
    pb::CustomerSummary {
        customer_id: s.id.to_string(),
        given_name: s.given_name,
        family_name: s.family_name,
        lifecycle_stage: lifecycle_stage_to_pb(s.lifecycle_stage) as i32,
        matched: s.matched,
        updated_at: Some(timestamp(s.updated_at)),
    }
}

/// The wire form of an identifier.
pub fn identity_to_pb(id: &Identifier, linking: bool) -> pb::Identity {
    let kind = match id {
        Identifier::SourceId { .. } => pb::IdentityKind::SourceId,
        Identifier::Email(_) => pb::IdentityKind::Email,
        Identifier::Phone(_) => pb::IdentityKind::Phone,
    };
    pb::Identity {
        kind: kind as i32,
        value: id.value(),
        linking,
    }
}

fn channel_to_pb(c: Channel) -> i32 {
    let name = format!("CHANNEL_{}", c.as_str().to_ascii_uppercase());
    touchpoint::Channel::from_str_name(&name).unwrap_or(touchpoint::Channel::Other) as i32
}

fn money_to_pb(m: Money) -> common::Money {
    common::Money {
        amount_minor: m.amount_minor,
        currency_code: m.currency.code().to_owned(),
    }
}

fn record_to_pb(k: RowKey) -> pb::RecordRef {
    pb::RecordRef {
        source: k.source,
        record_type: k.record_type,
        record_id: k.record_id,
    }
}

/// The wire form of an interaction.
pub fn interaction_to_pb(i: InteractionView) -> pb::CustomerInteraction {
    pb::CustomerInteraction {
        record: Some(record_to_pb(i.key)),
        touchpoint_key: i.touchpoint_key,
        channel: channel_to_pb(i.channel),
        occurred_at: Some(timestamp(i.occurred_at)),
        outcome: i.outcome,
    }
}

/// The wire form of a ledger entry.
pub fn transaction_to_pb(t: TransactionView) -> pb::CustomerTransaction {
    let kind = match t.kind {
        TransactionKind::Order => pb::TransactionKind::Order,
        TransactionKind::Invoice => pb::TransactionKind::Invoice,
        TransactionKind::Payment => pb::TransactionKind::Payment,
        TransactionKind::Refund => pb::TransactionKind::Refund,
    };
    pb::CustomerTransaction {
        record: Some(record_to_pb(t.key)),
        kind: kind as i32,
        amount: Some(money_to_pb(t.amount)),
        occurred_at: Some(timestamp(t.occurred_at)),
        status: t.status,
        due_at: t.due_at.map(timestamp),
    }
}

fn invoices_to_pb(t: InvoiceTotals) -> pb::InvoiceTotals {
    pb::InvoiceTotals {
        count: t.count,
        amounts: t.amounts.into_iter().map(money_to_pb).collect(),
    }
}

/// The wire form of a transaction summary.
pub fn summary_of_transactions_to_pb(s: TransactionSummary) -> pb::TransactionSummary {
    pb::TransactionSummary {
        lifetime_revenue: s.lifetime_revenue.into_iter().map(money_to_pb).collect(),
        order_count: s.order_count,
        last_purchase_at: s.last_purchase_at.map(timestamp),
        open_invoices: Some(invoices_to_pb(s.open_invoices)),
        overdue_invoices: Some(invoices_to_pb(s.overdue_invoices)),
        failed_payments_last_90_days: s.failed_payments_recent,
    }
}

/// The wire form of the source identities of a customer.
pub fn sources_to_pb(s: SourceIdentities) -> pb::SourceIdentities {
    pb::SourceIdentities {
        source: s.source,
        source_customer_ids: s.source_customer_ids,
        record_count: s.record_count,
    }
}

/// The wire form of an open case.
pub fn case_to_pb(c: SupportCaseView) -> pb::OpenSupportCase {
    let status = match c.status {
        CaseStatus::Open => feeds::CaseStatus::Open,
        CaseStatus::Pending => feeds::CaseStatus::Pending,
        CaseStatus::Resolved => feeds::CaseStatus::Resolved,
        CaseStatus::Closed => feeds::CaseStatus::Closed,
    };
    let priority = match c.priority {
        CasePriority::Low => feeds::CasePriority::Low,
        CasePriority::Normal => feeds::CasePriority::Normal,
        CasePriority::High => feeds::CasePriority::High,
        CasePriority::Urgent => feeds::CasePriority::Urgent,
    };
    pb::OpenSupportCase {
        source: c.source,
        record_id: c.record_id,
        status: status as i32,
        priority: priority as i32,
        category: c.category,
        channel: channel_to_pb(c.channel),
        opened_at: Some(timestamp(c.opened_at)),
    }
}

/// The wire form of an active subscription.
pub fn subscription_to_pb(s: SubscriptionView) -> pb::ActiveSubscription {
    let last_event = match s.last_event {
        SubscriptionEventKind::Started => feeds::SubscriptionEventKind::Started,
        SubscriptionEventKind::Renewed => feeds::SubscriptionEventKind::Renewed,
        SubscriptionEventKind::Upgraded => feeds::SubscriptionEventKind::Upgraded,
        SubscriptionEventKind::Downgraded => feeds::SubscriptionEventKind::Downgraded,
        SubscriptionEventKind::Paused => feeds::SubscriptionEventKind::Paused,
        SubscriptionEventKind::Cancelled => feeds::SubscriptionEventKind::Cancelled,
    };
    pb::ActiveSubscription {
        source: s.source,
        subscription_id: s.subscription_id,
        plan: s.plan,
        recurring_amount: s.recurring_amount.map(money_to_pb),
        since: Some(timestamp(s.since)),
        last_event: last_event as i32,
        last_event_at: Some(timestamp(s.last_event_at)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fields(err: Error) -> Vec<String> {
        Vec::from(err).into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn phone_prefixes_are_e164_with_separators_dropped() {
        assert_eq!(phone_prefix("+351 91-2").unwrap(), "+351912");
        assert_eq!(phone_prefix("0044 (20)").unwrap(), "+4420");
        assert!(phone_prefix("912").is_err());
        assert!(phone_prefix("+").is_err());
        assert!(phone_prefix("+35a").is_err());
    }

    #[test]
    fn every_channel_has_its_wire_value() {
        for c in Channel::ALL {
            assert_ne!(
                channel_to_pb(*c),
                touchpoint::Channel::Unspecified as i32,
                "{c}"
            );
        }
        assert_eq!(
            channel_to_pb(Channel::MobileApp),
            touchpoint::Channel::MobileApp as i32
        );
    }

    #[test]
    fn searches_need_one_criterion_and_at_most_one_prefix() {
        let none = pb::SearchCustomersRequest::default();
        assert_eq!(fields(search_filter(&none).unwrap_err()), ["name_prefix"]);
        let two = pb::SearchCustomersRequest {
            name_prefix: "ann".into(),
            phone_prefix: "+351".into(),
            lifecycle_stage: 99,
            ..Default::default()
        };
        assert_eq!(
            fields(search_filter(&two).unwrap_err()),
            ["lifecycle_stage", "name_prefix", "phone_prefix"]
        );
        let stage_only = pb::SearchCustomersRequest {
            lifecycle_stage: feeds::LifecycleStage::Lead as i32,
            ..Default::default()
        };
        assert_eq!(search_filter(&stage_only).unwrap().by, SearchBy::Any);
        let name = pb::SearchCustomersRequest {
            name_prefix: " ÁNA ".into(),
            ..Default::default()
        };
        assert_eq!(
            search_filter(&name).unwrap().by,
            SearchBy::Name("ana".into())
        );
    }
}
