//! `GetRuleEffectReport`: validates the request, reads what the report needs from the store
//! and computes it with [`cxhub_domain::loyalty::effect`]; this module only converts.

use chrono::{DateTime, Duration, Utc};
use cxhub_domain::Violations;
use cxhub_domain::loyalty::effect::{
    self, CategoryMoves, Comparison, Cost, DEFAULT_WINDOW, Difference, EffectParams, EffectReport,
    GroupEffect, MAX_WINDOW, MIN_WINDOW, Mean, Population, Proportion, Revenue,
};
use cxhub_domain::loyalty::repo::LoyaltyRepo;
use cxhub_domain::money::Currency;
use cxhub_domain::scoring::metrics::DEFAULT_SMALL_SAMPLE_BELOW;
use cxhub_domain::touchpoint::Key;
use cxhub_proto::loyalty::v1 as pb;
use cxhub_server::{to_status, validated};
use tonic::Status;

use crate::convert;

/// How far in the future `as_of` may be (clock skew between caller and hub).
const AS_OF_SKEW: Duration = Duration::minutes(1);

/// A validated request.
struct Query {
    rule: Key,
    version: Option<i64>,
    params: EffectParams,
}

fn query(r: &pb::GetRuleEffectReportRequest, now: DateTime<Utc>) -> Result<Query, Status> {
    let mut v = Violations::new();
    let rule = convert::rule_id(&r.rule_id, "rule_id", &mut v);
    let version = match r.rule_version {
        0 => Some(None),
        n if n > 0 => Some(Some(n)),
        n => {
            v.add(
                "rule_version",
                format!("must be positive, or 0 for every version (got {n})"),
            );
            None
        }
    };
    let window = match &r.window {
        None => Some(DEFAULT_WINDOW),
        Some(d) => match Duration::try_seconds(d.seconds) {
            Some(w) if d.nanos == 0 && (MIN_WINDOW..=MAX_WINDOW).contains(&w) => Some(w),
            _ => {
                v.add(
                    "window",
                    format!(
                        "must be whole seconds, from {} to {} days",
                        MIN_WINDOW.num_days(),
                        MAX_WINDOW.num_days()
                    ),
                );
                None
            }
        },
    };
    let as_of = match convert::time(r.as_of.as_ref(), "as_of", false, &mut v) {
        Some(Some(t)) if t > now + AS_OF_SKEW => {
            v.add("as_of", "must not be in the future");
            None
        }
        Some(t) => Some(t.unwrap_or(now)),
        None => None,
    };
    let currency = if r.currency_code.is_empty() {
        Some(None)
    } else {
        v.check("currency_code", Currency::parse(&r.currency_code))
            .map(Some)
    };
    let small_sample_below = match r.small_sample_below {
        0 => DEFAULT_SMALL_SAMPLE_BELOW,
        n => u64::from(n),
    };
    let (((rule, version), (window, as_of)), currency) =
        validated(v, rule.zip(version).zip(window.zip(as_of)).zip(currency))?;
    Ok(Query {
        rule,
        version,
        params: EffectParams {
            window,
            as_of,
            currency,
            small_sample_below,
        },
    })
}

/// Answers a `GetRuleEffectReport` as of `now`.
pub async fn report(
    repo: &dyn LoyaltyRepo,
    r: &pb::GetRuleEffectReportRequest,
    now: DateTime<Utc>,
) -> Result<pb::GetRuleEffectReportResponse, Status> {
    let q = query(r, now)?;
    // NOT_FOUND for an unknown rule, or an unknown version of it.
    let rule = repo.get_rule(&q.rule, q.version).await.map_err(to_status)?;
    let data = repo
        .rule_effect_data(&q.rule, q.version, q.params.as_of)
        .await
        .map_err(to_status)?;
    let report = effect::effect_report(&data, &q.params);
    tracing::info!(
        rule_id = %rule.id,
        version = q.version.unwrap_or(0),
        counted = report.population.counted,
        "rule effect reported"
    );
    Ok(to_pb(rule.id.as_str(), q.version, &q.params, report))
}

fn to_pb(
    rule: &str,
    version: Option<i64>,
    params: &EffectParams,
    r: EffectReport,
) -> pb::GetRuleEffectReportResponse {
    pb::GetRuleEffectReportResponse {
        rule_id: rule.to_owned(),
        rule_version: version.unwrap_or(0),
        window: Some(prost_types::Duration {
            seconds: params.window.num_seconds(),
            nanos: 0,
        }),
        as_of: Some(convert::ts(params.as_of)),
        population: Some(population(r.population)),
        treated: Some(group(&r.treated)),
        intent_to_treat: Some(group(&r.intent_to_treat)),
        control: Some(group(&r.control)),
        treated_vs_control: Some(comparison(&r.treated_vs_control)),
        intent_to_treat_vs_control: Some(comparison(&r.intent_to_treat_vs_control)),
        cost: Some(cost(r.cost)),
    }
}

fn population(p: Population) -> pb::EffectPopulation {
    pb::EffectPopulation {
        target_records: p.target_records,
        customers: p.customers,
        counted: p.counted,
        still_observing: p.still_observing,
        erased: p.erased,
        crossed_over: p.crossed_over,
    }
}

fn proportion(p: Proportion) -> pb::EffectProportion {
    pb::EffectProportion {
        successes: p.successes,
        customers: p.n,
        rate: p.rate,
        ci_low: p.ci_low,
        ci_high: p.ci_high,
        small_sample: p.small_sample,
    }
}

fn mean(m: Mean) -> pb::EffectMean {
    let (ci_low, ci_high) = m.ci.unwrap_or((m.mean, m.mean));
    pb::EffectMean {
        customers: m.n,
        mean: m.mean,
        std_dev: m.std_dev.unwrap_or(0.0),
        has_interval: m.ci.is_some(),
        ci_low,
        ci_high,
        small_sample: m.small_sample,
    }
}

fn moves(m: CategoryMoves) -> pb::CategoryMoves {
    pb::CategoryMoves {
        customers: m.n,
        improved: m.improved,
        unchanged: m.unchanged,
        worsened: m.worsened,
        improved_share: m.improved_share.map(proportion),
        detractors_recovered: m.detractors_recovered.map(proportion),
    }
}

fn revenue(r: &Revenue) -> pb::EffectRevenue {
    pb::EffectRevenue {
        currency_code: r.currency.code().to_owned(),
        total_minor: r.total_minor,
        per_customer_minor: Some(mean(r.per_customer)),
    }
}

fn group(g: &GroupEffect) -> pb::EffectGroup {
    pb::EffectGroup {
        customers: g.customers,
        small_sample: g.small_sample,
        retention: g.retention.map(proportion),
        nps_change: g.nps_change.map(mean),
        category_moves: Some(moves(g.category_moves)),
        revenue: g.revenue.iter().map(revenue).collect(),
    }
}

fn difference(d: Difference) -> pb::EffectDifference {
    pb::EffectDifference {
        estimate: d.estimate,
        ci_low: d.ci_low,
        ci_high: d.ci_high,
        significant: d.significant(),
        method: d.method.as_str().to_owned(),
    }
}

fn comparison(c: &Comparison) -> pb::EffectComparison {
    pb::EffectComparison {
        retention: c.retention.map(difference),
        nps_change: c.nps_change.map(difference),
        category_improved: c.category_improved.map(difference),
        revenue_per_customer: c
            .revenue_per_customer
            .iter()
            .map(|(currency, d)| pb::EffectRevenueDifference {
                currency_code: currency.code().to_owned(),
                difference: d.map(difference),
            })
            .collect(),
    }
}

fn cost(c: Cost) -> pb::EffectCost {
    pb::EffectCost {
        actions: c.actions,
        cancelled: c.cancelled,
        redeemed: c.redeemed,
        committed: c.committed.into_iter().map(convert::money_to_pb).collect(),
        spent: c.spent.into_iter().map(convert::money_to_pb).collect(),
        spent_per_extra_retained: c
            .spent_per_extra_retained
            .into_iter()
            .map(convert::money_to_pb)
            .collect(),
    }
}
