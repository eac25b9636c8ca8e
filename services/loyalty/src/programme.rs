//! The points programme on the wire: `SetPointsProgramme`, `GetPointsProgramme` and the
//! validation of `EarnPoints`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use cxhub_domain::Violations;
use cxhub_domain::loyalty::action::CustomKind;
use cxhub_domain::loyalty::points::{EarningRule, MAX_ENTRY_POINTS, TierRule};
use cxhub_domain::loyalty::repo::{
    MAX_EXPIRY_MONTHS, MAX_TIER_NAME_LEN, PointsOp, PointsPosting, PointsProgramme, StoredProgramme,
};
use cxhub_domain::money::Currency;
use cxhub_proto::loyalty::v1 as pb;

use crate::convert;

/// Most points per currency unit.
const MAX_POINTS_PER_UNIT: i32 = 1_000_000;
/// Longest transaction id of an `EarnPoints` (its ledger request id, `earn:<id>`, stays within
/// the 128 characters of a request id).
const MAX_TRANSACTION_ID_LEN: usize = 123;
/// Largest tier multiplier, in percent.
const MAX_MULTIPLIER_PERCENT: i32 = 1_000;
/// Longest tier window, in days.
const MAX_WINDOW_DAYS: i32 = 3_660;

/// A tier name: the same rules as a custom action kind (`a-z`, `0-9`, `_`, from a letter).
fn tier_name(name: &str, field: &str, v: &mut Violations) -> Option<String> {
    if name.chars().count() > MAX_TIER_NAME_LEN {
        v.add(field, format!("at most {MAX_TIER_NAME_LEN} characters"));
        return None;
    }
    v.check(
        field,
        CustomKind::parse(name).map(|k| k.as_str().to_owned()),
    )
}

/// A programme to set; violations at `programme.<field>`.
pub fn programme(p: &pb::PointsProgramme, v: &mut Violations) -> Option<PointsProgramme> {
    let mut ok = true;
    if p.earning_rules.is_empty() {
        v.add(
            "programme.earning_rules",
            "at least one rule: how transactions in a currency earn points",
        );
        ok = false;
    }
    let mut rules = Vec::new();
    let mut currencies = BTreeSet::new();
    for (i, r) in p.earning_rules.iter().enumerate() {
        let f = |name: &str| format!("programme.earning_rules[{i}].{name}");
        let currency = v.check(f("currency_code"), Currency::parse(&r.currency_code));
        if let Some(c) = currency
            && !currencies.insert(c)
        {
            v.add(
                f("currency_code"),
                format!("a rule for {c} is already given"),
            );
            ok = false;
        }
        if !(1..=MAX_POINTS_PER_UNIT).contains(&r.points_per_unit) {
            v.add(
                f("points_per_unit"),
                format!("between 1 and {MAX_POINTS_PER_UNIT}"),
            );
            ok = false;
        }
        if !(0..=MAX_ENTRY_POINTS).contains(&r.max_points_per_transaction) {
            v.add(
                f("max_points_per_transaction"),
                format!("between 0 (no limit) and {MAX_ENTRY_POINTS}"),
            );
            ok = false;
        }
        let mut multipliers = BTreeMap::new();
        for (tier, percent) in &r.tier_multiplier_percent {
            let field = f(&format!("tier_multiplier_percent[{tier}]"));
            if !(0..=MAX_MULTIPLIER_PERCENT).contains(percent) {
                v.add(
                    field.clone(),
                    format!("between 0 and {MAX_MULTIPLIER_PERCENT} (×10)"),
                );
                ok = false;
            }
            if let Some(name) = tier_name(tier, &field, v) {
                multipliers.insert(name, u32::try_from(*percent).unwrap_or(0));
            } else {
                ok = false;
            }
        }
        if let Some(currency) = currency {
            rules.push(EarningRule {
                currency,
                points_per_unit: u32::try_from(r.points_per_unit).unwrap_or(0),
                tier_multiplier_percent: multipliers,
                max_points_per_transaction: (r.max_points_per_transaction > 0)
                    .then_some(r.max_points_per_transaction),
            });
        } else {
            ok = false;
        }
    }
    let expiry_months = match u32::try_from(p.expiry_months) {
        Ok(m) if m <= MAX_EXPIRY_MONTHS => Some(m),
        _ => {
            v.add(
                "programme.expiry_months",
                format!("between 0 (never) and {MAX_EXPIRY_MONTHS}"),
            );
            None
        }
    };
    let mut tiers = Vec::new();
    let mut names = BTreeSet::new();
    for (i, t) in p.tiers.iter().enumerate() {
        let f = |name: &str| format!("programme.tiers[{i}].{name}");
        let name = tier_name(&t.name, &f("name"), v);
        if let Some(n) = &name
            && !names.insert(n.clone())
        {
            v.add(f("name"), format!("tier {n} is already given"));
            ok = false;
        }
        if !(1..=MAX_ENTRY_POINTS).contains(&t.min_points_earned) {
            v.add(
                f("min_points_earned"),
                format!("between 1 and {MAX_ENTRY_POINTS}"),
            );
            ok = false;
        }
        if !(1..=MAX_WINDOW_DAYS).contains(&t.window_days) {
            v.add(f("window_days"), format!("between 1 and {MAX_WINDOW_DAYS}"));
            ok = false;
        }
        match name {
            Some(name) => tiers.push(TierRule {
                name,
                min_points_earned: t.min_points_earned,
                window: Duration::days(i64::from(t.window_days)),
            }),
            None => ok = false,
        }
    }
    if p.version != 0 || p.updated_at.is_some() {
        v.add(
            "programme.version",
            "output only: leave version and updated_at unset",
        );
        ok = false;
    }
    let expiry_months = expiry_months?;
    ok.then_some(PointsProgramme {
        earning_rules: rules,
        expiry_months,
        tiers,
    })
}

/// The wire programme.
pub fn programme_to_pb(p: StoredProgramme) -> pb::PointsProgramme {
    pb::PointsProgramme {
        earning_rules: p
            .programme
            .earning_rules
            .into_iter()
            .map(|r| pb::EarningRule {
                currency_code: r.currency.code().to_owned(),
                points_per_unit: i32::try_from(r.points_per_unit).unwrap_or(i32::MAX),
                tier_multiplier_percent: r
                    .tier_multiplier_percent
                    .into_iter()
                    .map(|(k, p)| (k, i32::try_from(p).unwrap_or(i32::MAX)))
                    .collect(),
                max_points_per_transaction: r.max_points_per_transaction.unwrap_or(0),
            })
            .collect(),
        expiry_months: i32::try_from(p.programme.expiry_months).unwrap_or(i32::MAX),
        tiers: p
            .programme
            .tiers
            .into_iter()
            .map(|t| pb::Tier {
                name: t.name,
                min_points_earned: t.min_points_earned,
                window_days: i32::try_from(t.window.num_days()).unwrap_or(i32::MAX),
            })
            .collect(),
        version: p.version,
        updated_at: Some(convert::ts(p.updated_at)),
    }
}

/// The posting of an `EarnPoints`: idempotent per transaction, its ledger request id is
/// `earn:<transaction_id>`.
pub fn earning(r: &pb::EarnPointsRequest, v: &mut Violations) -> Option<PointsPosting> {
    let customer = convert::customer(&r.customer_id, "customer_id", v);
    let transaction = {
        let id = r.transaction_id.as_str();
        let fine = (1..=MAX_TRANSACTION_ID_LEN).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_graphic());
        if fine {
            Some(id.to_owned())
        } else {
            v.add(
                "transaction_id",
                format!(
                    "required: the order or payment that earns the points, 1 to \
                     {MAX_TRANSACTION_ID_LEN} printable ASCII characters without spaces"
                ),
            );
            None
        }
    };
    let amount = match &r.amount {
        Some(m) => {
            let amount = convert::money(m, "amount", v);
            if m.amount_minor == 0 {
                v.add("amount.amount_minor", "must be positive");
                None
            } else {
                amount
            }
        }
        None => {
            v.add("amount", "required: what the transaction was worth");
            None
        }
    };
    let (customer, transaction) = (customer?, transaction?);
    Some(PointsPosting {
        request_id: format!("earn:{transaction}"),
        customer,
        op: PointsOp::Earn {
            transaction,
            amount: amount?,
        },
    })
}
