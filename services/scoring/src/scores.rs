//! Customer scores: the full recompute (fit the models over the whole ledger, score every live
//! customer), the incremental recompute (rescore the customers the change log and new survey
//! responses name, with the stored models), and the wire form of scores.
//!
//! The incremental recompute starts at the first full recompute: until then no customer has
//! scores and there is nothing to keep current. Its position (the last change-log entry
//! handled and the receive time up to which survey responses are handled) is stored with the
//! scores, so a restarted hub resumes where it stopped. Rescoring is idempotent, so two
//! replicas following the log at once only do the work twice.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use cxhub_domain::Result;
use cxhub_domain::change::{ChangeKind, ChangeLogRepo};
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::money::Money;
use cxhub_domain::page::{Page, PageRequest};
use cxhub_domain::scoring::category::{CategoryRule, DatedAnswer};
use cxhub_domain::scoring::churn::{ChurnBand, Coefficients, Contribution};
use cxhub_domain::scoring::churn_fit::{
    ChurnFitConfig, ChurnFitReport, ChurnModel, ChurnModelRepo, example, fit_churn_model,
};
use cxhub_domain::scoring::metrics::CustomerCategory;
use cxhub_domain::scoring::rfm::RfmSegment;
use cxhub_domain::scoring::{
    CustomerFacts, CustomerScoreRepo, CustomerScores, FittedModels, ScoreConfig, ScoreFilter,
    ScoreOrder, ScorePosition, fit_models, score_customer,
};
use cxhub_proto::common::v1 as common;
use cxhub_proto::scoring::v1 as pb;
use cxhub_touchpoint_registry::convert::timestamp;

/// Customers read per batch (5,000 was tried for the full recompute: no faster on SQLite, and
/// the reads took 2.8 s instead of 1.7 s on PostgreSQL).
const BATCH: u32 = 500;
/// Live customer ids read per page by the full recompute before it reads their facts.
const LIVE_PAGE: u32 = 10_000;
/// Scores written per transaction: fewer, larger commits (each one a WAL sync on SQLite; 2,500
/// instead of 500 took the writes of a 30,000-customer recompute from 3.0 s to 2.0–2.5 s).
const WRITE_BATCH: usize = 2_500;
/// Change-log entries handled per incremental pass.
const CHANGES_PER_PASS: u32 = 1_000;
/// Survey responses are picked up once received this long ago, so a response whose
/// transaction commits a moment after its receive time is not passed over.
const RESPONSE_LAG_MS: i64 = 2_000;

/// What a full recompute did.
#[derive(Debug, Clone, PartialEq)]
pub struct Recomputed {
    /// The time the scores describe.
    pub as_of: DateTime<Utc>,
    /// Live customers scored.
    pub scored: u64,
    /// Of those, with a CLV.
    pub with_clv: u64,
    /// Scores deleted (customers merged away or erased).
    pub deleted: u64,
    /// The models fitted, each with the churn model.
    pub models: Vec<CurrencyModels>,
    /// The churn model decided (fitted or the defaults, and why).
    pub churn: Arc<ChurnModel>,
}

/// The models of one currency as a full recompute answers them: its CLV and RFM fit, and the
/// churn model the recompute decided (one for every currency: churn features are ratios and
/// counts, not amounts).
#[derive(Debug, Clone, PartialEq)]
pub struct CurrencyModels {
    /// BG/NBD, Gamma-Gamma and the RFM thresholds of the currency.
    pub fitted: FittedModels,
    /// The churn model.
    pub churn: Arc<ChurnModel>,
}

/// What one incremental pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Change-log entries read.
    pub changes: usize,
    /// Customers rescored.
    pub rescored: u64,
    /// Scores deleted.
    pub deleted: u64,
    /// Whether the pass was the periodic full recompute.
    pub full: bool,
}

/// Computes and keeps customer scores.
#[derive(Clone)]
pub struct Scores {
    repo: Arc<dyn CustomerScoreRepo>,
    churn_models: Arc<dyn ChurnModelRepo>,
    log: Arc<dyn ChangeLogRepo>,
    config: ScoreConfig,
    fit: ChurnFitConfig,
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A task that panicked or was cancelled while doing `what`, as an internal error.
fn task_failed(
    what: &'static str,
) -> impl Fn(tokio::task::JoinError) -> cxhub_domain::Error + Copy {
    move |err| cxhub_domain::Error::internal(format!("{what} failed: {err}"))
}

impl Scores {
    /// Scores kept in `repo` (with the churn model), following `log`, computed with `config`;
    /// the churn model is fitted with the defaults of [`ChurnFitConfig`].
    pub fn new<R: CustomerScoreRepo + ChurnModelRepo + 'static>(
        repo: Arc<R>,
        log: Arc<dyn ChangeLogRepo>,
        config: ScoreConfig,
    ) -> Self {
        Self {
            repo: repo.clone(),
            churn_models: repo,
            log,
            config,
            fit: ChurnFitConfig::default(),
        }
    }

    /// The stored churn model; the defaults before the first full recompute.
    async fn churn_model(&self) -> Result<ChurnModel> {
        Ok(self.churn_models.churn_model().await?.unwrap_or_else(|| {
            ChurnModel::default_model(now(), "no full recompute has decided a churn model yet")
        }))
    }

    /// Fits the churn model on `facts` (read as of `as_of` with signals since the reference
    /// time's windows) and decides whether to use it; see `churn_fit`.
    fn decide_churn_model(
        &self,
        facts: &[CustomerFacts],
        as_of: DateTime<Utc>,
        recompute: i64,
    ) -> ChurnModel {
        let reference = as_of - chrono::Duration::days(self.fit.horizon_days);
        let mut examples = Vec::new();
        let mut unlabelled = 0u64;
        for f in facts {
            match example(f, reference, &self.config, &self.fit) {
                Some(e) => examples.push(e),
                None if f.orders.iter().any(|o| o.at <= reference) => unlabelled += 1,
                None => {}
            }
        }
        fit_churn_model(
            &examples, unlabelled, reference, recompute, as_of, &self.fit,
        )
    }

    /// The scores of a customer, following merges: the live id and its scores.
    pub async fn get(&self, customer: CustomerId) -> Result<(CustomerId, Option<CustomerScores>)> {
        self.repo.customer_scores(customer).await
    }

    /// A page of scored customers.
    pub async fn list(
        &self,
        filter: &ScoreFilter,
        order: ScoreOrder,
        page: &PageRequest,
    ) -> Result<Page<CustomerScores>> {
        self.repo.list_scores(filter, order, page).await
    }

    /// The facts of every live customer, in batches, with signals since `as_of − signal_days`.
    /// Two batches are read at a time (each in a snapshot of its own, on a reader of its own):
    /// on PostgreSQL a batch is a handful of round trips, which the other batch's overlap.
    async fn all_facts(
        &self,
        as_of: DateTime<Utc>,
        signal_days: i64,
    ) -> Result<Vec<CustomerFacts>> {
        let mut ids = Vec::new();
        let mut after: Option<CustomerId> = None;
        loop {
            let page = self.repo.live_customers(after, LIVE_PAGE).await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(*last);
            ids.extend(page);
        }
        let read = |chunk: &[CustomerId]| {
            let (repo, chunk) = (self.repo.clone(), chunk.to_vec());
            tokio::spawn(async move { repo.customer_facts(&chunk, as_of, signal_days).await })
        };
        let failed = task_failed("read");
        let mut facts = Vec::with_capacity(ids.len());
        let mut reading = None;
        for chunk in ids.chunks(BATCH as usize) {
            if let Some(earlier) = reading.replace(read(chunk)) {
                facts.extend(earlier.await.map_err(failed)??);
            }
        }
        if let Some(last) = reading {
            facts.extend(last.await.map_err(failed)??);
        }
        Ok(facts)
    }

    /// Scores `facts` with `models` and the `churn` model and writes them in batches; answers
    /// (written, with CLV). The scoring runs on a blocking thread one batch ahead of the
    /// writes: a batch is scored while the one before it is written by the database.
    async fn write(
        &self,
        facts: Vec<CustomerFacts>,
        models: &[FittedModels],
        churn: &ChurnModel,
        as_of: DateTime<Utc>,
    ) -> Result<(u64, u64)> {
        let config = churn.config(&self.config);
        let (models, churn) = (models.to_vec(), churn.clone());
        let (batches, mut scored_batches) = tokio::sync::mpsc::channel(1);
        let scorer = tokio::task::spawn_blocking(move || {
            for chunk in facts.chunks(WRITE_BATCH) {
                let scores: Vec<CustomerScores> = chunk
                    .iter()
                    .map(|f| {
                        let mut s = score_customer(f, &models, as_of, &config);
                        churn.stamp(&mut s);
                        s
                    })
                    .collect();
                // The receiver is gone when a write failed: stop scoring.
                if batches.blocking_send(scores).is_err() {
                    break;
                }
            }
        });
        // Two batches are saved at a time: one is built while the other holds the writer. After
        // a failed save the one still in flight is waited for and the scoring stopped, so
        // nothing is written once this returns.
        let saved = |save: tokio::task::JoinHandle<Result<u64>>| async move {
            save.await.map_err(task_failed("saving scores"))?
        };
        let (mut scored, mut with_clv) = (0, 0);
        let mut saving = None;
        let mut failed = None;
        while let Some(scores) = scored_batches.recv().await {
            with_clv += scores.iter().filter(|s| s.clv.is_some()).count() as u64;
            let repo = self.repo.clone();
            let next = tokio::spawn(async move { repo.save_scores(scores).await });
            if let Some(earlier) = saving.replace(next) {
                match saved(earlier).await {
                    Ok(n) => scored += n,
                    Err(err) => {
                        failed = Some(err);
                        break;
                    }
                }
            }
        }
        if let Some(last) = saving {
            match saved(last).await {
                Ok(n) => scored += n,
                Err(err) => {
                    failed.get_or_insert(err);
                }
            }
        }
        // The scorer stops at its next batch once nothing receives them.
        drop(scored_batches);
        scorer.await.map_err(task_failed("scoring"))?;
        match failed {
            Some(err) => Err(err),
            None => Ok((scored, with_clv)),
        }
    }

    /// The full recompute; see the module documentation.
    pub async fn recompute_all(&self) -> Result<Recomputed> {
        let as_of = now();
        let started = std::time::Instant::now();
        // Changes up to here are covered by the facts read below.
        let head = self.log.read_changes(0, 0).await?.head;
        // Signals back to the windows of the churn fit's reference time (one read serves the
        // scores, the CLV fit and the churn fit).
        let facts = self
            .all_facts(
                as_of,
                self.config.signal_window_days() + self.fit.horizon_days,
            )
            .await?;
        let version = self
            .repo
            .fitted_models()
            .await?
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0)
            + 1;
        let read = started.elapsed();
        // The CLV/RFM fit and the churn fit are independent: each on a blocking thread of its
        // own, at the same time.
        let facts = Arc::new(facts);
        let clv_fit = tokio::task::spawn_blocking({
            let facts = facts.clone();
            move || {
                let fitting = std::time::Instant::now();
                (fit_models(&facts, as_of, version), fitting.elapsed())
            }
        });
        let churn_fit = tokio::task::spawn_blocking({
            let (facts, scores) = (facts.clone(), self.clone());
            move || {
                let fitting = std::time::Instant::now();
                let churn = scores.decide_churn_model(&facts, as_of, version);
                (churn, fitting.elapsed())
            }
        });
        let fit_failed = task_failed("fit");
        let (models, clv_fit) = clv_fit.await.map_err(fit_failed)?;
        let (churn, churn_fit) = churn_fit.await.map_err(fit_failed)?;
        let fitted = started.elapsed();
        let churn = Arc::new(churn);
        let facts = Arc::try_unwrap(facts).map_err(|_| {
            cxhub_domain::Error::internal("the facts are still shared after the fits")
        })?;
        self.churn_models.save_churn_model(&churn).await?;
        self.repo
            .save_models(
                &models,
                ScorePosition {
                    change_seq: head,
                    responses_through: as_of - chrono::Duration::milliseconds(RESPONSE_LAG_MS),
                },
            )
            .await?;
        let written_from = started.elapsed();
        // Every row is rewritten: the indexes are built once afterwards, not row by row.
        self.repo.pause_score_indexes().await?;
        let written = self.write(facts, &models, &churn, as_of).await;
        let indexed_from = started.elapsed();
        let restored = self.repo.restore_score_indexes().await;
        let indexes = started.elapsed() - indexed_from;
        let (scored, with_clv) = written?;
        restored?;
        // The rows not rewritten (customers merged away or erased meanwhile) are found through
        // the `computed_at` index, now rebuilt: without it the delete read the whole table.
        let deleted = self.repo.delete_scores_before(as_of).await?;
        tracing::info!(
            read_ms = read.as_millis(),
            clv_fit_ms = clv_fit.as_millis(),
            churn_fit_ms = churn_fit.as_millis(),
            fits_ms = (fitted - read).as_millis(),
            write_ms = (started.elapsed() - written_from).as_millis(),
            indexes_ms = indexes.as_millis(),
            customers = scored,
            with_clv,
            deleted,
            fit = version,
            currencies = models.len(),
            churn_model = %churn.version,
            churn_note = %churn.note,
            "customer scores recomputed"
        );
        Ok(Recomputed {
            as_of,
            scored,
            with_clv,
            deleted,
            models: models
                .into_iter()
                .map(|fitted| CurrencyModels {
                    fitted,
                    churn: churn.clone(),
                })
                .collect(),
            churn,
        })
    }

    /// Rescores `customers` with the stored models; deletes the scores of those no longer
    /// live. Answers (rescored, deleted).
    async fn rescore(
        &self,
        customers: &BTreeSet<CustomerId>,
        models: &[FittedModels],
        churn: &ChurnModel,
    ) -> Result<(u64, u64)> {
        let as_of = now();
        let (mut rescored, mut gone) = (0, Vec::new());
        let ids: Vec<CustomerId> = customers.iter().copied().collect();
        for chunk in ids.chunks(BATCH as usize) {
            let facts = self
                .repo
                .customer_facts(chunk, as_of, self.config.signal_window_days())
                .await?;
            let live: BTreeSet<CustomerId> = facts.iter().map(|f| f.customer).collect();
            gone.extend(chunk.iter().filter(|c| !live.contains(c)).copied());
            rescored += self.write(facts, models, churn, as_of).await?.0;
        }
        let deleted = self.repo.delete_scores(&gone).await?;
        Ok((rescored, deleted))
    }

    /// One incremental pass: the change-log entries after the stored position (at most
    /// [`CHANGES_PER_PASS`]) and the survey responses received since the last pass. Created,
    /// updated and split customers are rescored; the survivor of a merge is rescored and the
    /// absorbed customers' scores deleted; an erased customer's scores are deleted. When the
    /// log was pruned past the position, every live customer is rescored. Does nothing before
    /// the first full recompute.
    pub async fn follow_once(&self) -> Result<Pass> {
        let Some(position) = self.repo.score_position().await? else {
            return Ok(Pass::default());
        };
        let models = self.repo.fitted_models().await?;
        let fitted_at = models.iter().map(|m| m.fitted_at).max();
        if fitted_at.is_some_and(|at| self.config.full_recompute_due(at, now())) {
            let done = self.recompute_all().await?;
            return Ok(Pass {
                changes: 0,
                rescored: done.scored,
                deleted: done.deleted,
                full: true,
            });
        }
        let churn = self.churn_model().await?;
        let until = now() - chrono::Duration::milliseconds(RESPONSE_LAG_MS);
        let slice = self
            .log
            .read_changes(position.change_seq, CHANGES_PER_PASS)
            .await?;
        if position.change_seq < slice.horizon {
            tracing::warn!(
                position = position.change_seq,
                horizon = slice.horizon,
                "the change log was pruned past the scores' position: rescoring every customer"
            );
            let as_of = now();
            let facts = self
                .all_facts(as_of, self.config.signal_window_days())
                .await?;
            let (rescored, _) = self.write(facts, &models, &churn, as_of).await?;
            let deleted = self.repo.delete_scores_before(as_of).await?;
            self.repo
                .save_score_position(ScorePosition {
                    change_seq: slice.head,
                    responses_through: until.max(position.responses_through),
                })
                .await?;
            return Ok(Pass {
                changes: 0,
                rescored,
                deleted,
                full: false,
            });
        }
        let mut rescore = BTreeSet::new();
        let mut delete = Vec::new();
        for c in &slice.changes {
            let change = &c.change;
            match change.kind {
                ChangeKind::Created | ChangeKind::Updated => {
                    rescore.insert(change.customer);
                }
                ChangeKind::Merged => {
                    rescore.insert(change.customer);
                    delete.extend(change.related.iter().copied());
                }
                ChangeKind::Split => {
                    rescore.insert(change.customer);
                    rescore.extend(change.related.iter().copied());
                }
                ChangeKind::Erased => delete.push(change.customer),
                // Written by scoring itself: nothing new to score.
                ChangeKind::Rescored => {}
            }
        }
        if until > position.responses_through {
            rescore.extend(
                self.repo
                    .responding_customers(position.responses_through, until)
                    .await?,
            );
        }
        let mut deleted = self.repo.delete_scores(&delete).await?;
        let (rescored, gone) = self.rescore(&rescore, &models, &churn).await?;
        deleted += gone;
        self.repo
            .save_score_position(ScorePosition {
                change_seq: slice.changes.last().map_or(position.change_seq, |c| c.seq),
                responses_through: until.max(position.responses_through),
            })
            .await?;
        if rescored > 0 || deleted > 0 {
            tracing::info!(
                changes = slice.changes.len(),
                rescored,
                deleted,
                "customer scores updated"
            );
        }
        Ok(Pass {
            changes: slice.changes.len(),
            rescored,
            deleted,
            full: false,
        })
    }
}

// ------------------------------------------------------------------------------------------------
// Wire form

/// The wire category of a domain category.
pub fn category_to_pb(c: CustomerCategory) -> pb::CustomerCategory {
    match c {
        CustomerCategory::Negative => pb::CustomerCategory::Negative,
        CustomerCategory::Neutral => pb::CustomerCategory::Neutral,
        CustomerCategory::Advocate => pb::CustomerCategory::Advocate,
    }
}

/// The wire band of a domain band.
pub fn band_to_pb(b: ChurnBand) -> pb::ChurnBand {
    match b {
        ChurnBand::Low => pb::ChurnBand::Low,
        ChurnBand::Medium => pb::ChurnBand::Medium,
        ChurnBand::High => pb::ChurnBand::High,
    }
}

/// The domain band of a wire band; `None` for UNSPECIFIED, `Err` for an unknown value.
pub fn band_from_pb(v: i32) -> std::result::Result<Option<ChurnBand>, String> {
    match pb::ChurnBand::try_from(v) {
        Ok(pb::ChurnBand::Unspecified) => Ok(None),
        Ok(pb::ChurnBand::Low) => Ok(Some(ChurnBand::Low)),
        Ok(pb::ChurnBand::Medium) => Ok(Some(ChurnBand::Medium)),
        Ok(pb::ChurnBand::High) => Ok(Some(ChurnBand::High)),
        Err(_) => Err(format!("unknown churn band {v}")),
    }
}

/// The domain category of a wire category; `None` for UNSPECIFIED, `Err` for UNKNOWN (not a
/// category a customer can be in) or an unknown value.
pub fn category_from_pb(v: i32) -> std::result::Result<Option<CustomerCategory>, String> {
    match pb::CustomerCategory::try_from(v) {
        Ok(pb::CustomerCategory::Unspecified) => Ok(None),
        Ok(pb::CustomerCategory::Negative) => Ok(Some(CustomerCategory::Negative)),
        Ok(pb::CustomerCategory::Neutral) => Ok(Some(CustomerCategory::Neutral)),
        Ok(pb::CustomerCategory::Advocate) => Ok(Some(CustomerCategory::Advocate)),
        Ok(pb::CustomerCategory::Unknown) | Err(_) => Err(format!(
            "not a customer category: give NEGATIVE, NEUTRAL or ADVOCATE (or UNSPECIFIED for any), not {v}"
        )),
    }
}

const SEGMENTS: [(RfmSegment, pb::RfmSegment); 11] = [
    (RfmSegment::Champions, pb::RfmSegment::Champions),
    (RfmSegment::Loyal, pb::RfmSegment::Loyal),
    (
        RfmSegment::PotentialLoyalist,
        pb::RfmSegment::PotentialLoyalist,
    ),
    (RfmSegment::NewCustomers, pb::RfmSegment::NewCustomers),
    (RfmSegment::Promising, pb::RfmSegment::Promising),
    (RfmSegment::NeedAttention, pb::RfmSegment::NeedAttention),
    (RfmSegment::AboutToSleep, pb::RfmSegment::AboutToSleep),
    (RfmSegment::AtRisk, pb::RfmSegment::AtRisk),
    (RfmSegment::CantLoseThem, pb::RfmSegment::CantLoseThem),
    (RfmSegment::Hibernating, pb::RfmSegment::Hibernating),
    (RfmSegment::Lost, pb::RfmSegment::Lost),
];

/// The wire segment of a domain segment.
pub fn segment_to_pb(s: RfmSegment) -> pb::RfmSegment {
    SEGMENTS
        .iter()
        .find(|(d, _)| *d == s)
        .map_or(pb::RfmSegment::Unspecified, |(_, p)| *p)
}

/// The domain segment of a wire segment; `None` for UNSPECIFIED, `Err` for an unknown value.
pub fn segment_from_pb(v: i32) -> std::result::Result<Option<RfmSegment>, String> {
    if v == pb::RfmSegment::Unspecified as i32 {
        return Ok(None);
    }
    SEGMENTS
        .iter()
        .find(|(_, p)| *p as i32 == v)
        .map(|(d, _)| Some(*d))
        .ok_or_else(|| format!("unknown RFM segment {v}"))
}

fn rule_to_pb(r: CategoryRule) -> pb::CategoryRule {
    match r {
        CategoryRule::LatestNps => pb::CategoryRule::LatestNps,
        CategoryRule::LatestCsat => pb::CategoryRule::LatestCsat,
        CategoryRule::CommentSentiment => pb::CategoryRule::CommentSentiment,
        CategoryRule::Complaints => pb::CategoryRule::Complaints,
        CategoryRule::NoSignal => pb::CategoryRule::NoSignal,
    }
}

fn money(m: Money) -> common::Money {
    common::Money {
        amount_minor: m.amount_minor,
        currency_code: m.currency.code().to_owned(),
    }
}

fn answer(a: Option<DatedAnswer>) -> Option<pb::DatedAnswer> {
    a.map(|a| pb::DatedAnswer {
        value: a.value,
        answer_time: Some(timestamp(a.answered_at)),
    })
}

fn reason(c: &Contribution) -> pb::ChurnReason {
    pb::ChurnReason {
        factor: c.factor.as_str().to_owned(),
        contribution: c.contribution,
        reason: c.reason.clone(),
    }
}

/// The wire form of a customer's scores.
pub fn scores_to_pb(s: &CustomerScores) -> pb::CustomerScores {
    let c = &s.category;
    let churn = &s.churn;
    pb::CustomerScores {
        customer_id: s.customer.to_string(),
        as_of: Some(timestamp(s.as_of)),
        model_version: s.model_version.clone(),
        category: Some(pb::CategoryScore {
            category: category_to_pb(c.category) as i32,
            rule: rule_to_pb(c.rule) as i32,
            explanation: c.explanation.clone(),
            latest_nps: answer(c.inputs.latest_nps),
            latest_csat: answer(c.inputs.latest_csat),
            open_cases: c.inputs.open_cases,
            recent_cases: c.inputs.recent_cases,
            latest_comment: c
                .inputs
                .latest_comment
                .as_ref()
                .map(crate::convert::dated_comment_to_pb),
        }),
        churn: Some(pb::ChurnScore {
            probability: churn.probability,
            band: band_to_pb(churn.band) as i32,
            top_reasons: churn.top_reasons(3).map(reason).collect(),
            contributions: churn.contributions.iter().map(reason).collect(),
            intercept: churn.intercept,
            days_since_last_purchase: churn.inputs.days_since_last_purchase,
            usual_interval_days: churn.inputs.usual_interval_days,
            model_version: churn.model_version.clone(),
        }),
        clv: s.clv.as_ref().map(|v| pb::ClvScore {
            value: Some(money(Money::new(v.value_minor, v.currency))),
            expected_purchases: v.expected_purchases,
            p_alive: v.p_alive,
            expected_spend: Some(money(Money::new(v.expected_spend_minor, v.currency))),
            horizon_weeks: v.horizon_weeks,
            annual_discount_rate: v.annual_discount_rate,
            frequency: v.summary.frequency,
            recency_weeks: v.summary.recency,
            age_weeks: v.summary.age,
            mean_repeat_value_minor: v.summary.monetary,
            fit_version: v.fit_version,
        }),
        rfm: s.rfm.as_ref().map(|r| pb::RfmScore {
            recency: u32::from(r.r),
            frequency: u32::from(r.f),
            monetary: u32::from(r.m),
            segment: segment_to_pb(r.segment) as i32,
            segment_rule: r.segment_rule.clone(),
            reasons: r.reasons.clone(),
            recency_days: r.input.recency_days,
            purchase_days: r.input.frequency,
            monetary_minor: r.input.monetary,
            fit_version: r.fit_version,
        }),
    }
}

fn coefficients_to_pb(k: &Coefficients) -> pb::ChurnCoefficients {
    pb::ChurnCoefficients {
        intercept: k.intercept,
        overdue: k.overdue,
        no_purchase: k.no_purchase,
        frequency: k.frequency,
        spend_trend: k.spend_trend,
        negative: k.negative,
        advocate: k.advocate,
        open_case: k.open_case,
        failed_payment: k.failed_payment,
        downgrade: k.downgrade,
        cancellation: k.cancellation,
        late_delivery: k.late_delivery,
        r#return: k.r#return,
    }
}

fn fit_report_to_pb(r: &ChurnFitReport) -> pb::ChurnFitReport {
    pb::ChurnFitReport {
        reference_time: Some(timestamp(r.reference_time)),
        horizon_days: r.horizon_days,
        labelled: r.labelled,
        unlabelled: r.unlabelled,
        train_churned: r.train_churned,
        train_retained: r.train_retained,
        holdout_churned: r.holdout_churned,
        holdout_retained: r.holdout_retained,
        fitted_log_loss: r.fitted_log_loss,
        default_log_loss: r.default_log_loss,
        fitted_auc: r.fitted_auc,
        default_auc: r.default_auc,
        iterations: r.iterations,
    }
}

/// The wire form of a churn model.
pub fn churn_model_to_pb(m: &ChurnModel) -> pb::ChurnModel {
    pb::ChurnModel {
        version: m.version.clone(),
        fitted: m.fitted,
        coefficients: Some(coefficients_to_pb(&m.coefficients)),
        candidate: m.candidate.as_ref().map(coefficients_to_pb),
        decide_time: Some(timestamp(m.decided_at)),
        report: m.report.as_ref().map(fit_report_to_pb),
        note: m.note.clone(),
    }
}

/// The wire form of a currency's models with the churn model.
pub fn models_to_pb(models: &CurrencyModels) -> pb::FittedModels {
    let m = &models.fitted;
    pb::FittedModels {
        currency_code: m.currency.code().to_owned(),
        version: m.version,
        fit_time: Some(timestamp(m.fitted_at)),
        customers: m.customers,
        repeat_customers: m.repeat_customers,
        bg_nbd: m.bg_nbd.map(|b| pb::BgNbdParameters {
            r: b.r,
            alpha: b.alpha,
            a: b.a,
            b: b.b,
        }),
        gamma_gamma: m.gamma_gamma.map(|g| pb::GammaGammaParameters {
            p: g.p,
            q: g.q,
            gamma: g.gamma,
        }),
        rfm: m.rfm.map(|t| pb::RfmThresholds {
            recency_days: t.recency_days.to_vec(),
            frequency: t.frequency.to_vec(),
            monetary_minor: t.monetary.to_vec(),
        }),
        notes: m.notes.clone(),
        churn_model: Some(churn_model_to_pb(&models.churn)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use cxhub_domain::Error;
    use cxhub_domain::change::ChangeSlice;

    use super::*;

    /// Scores that only `write` uses: its saves, counted as they start and finish. The second
    /// save fails at once; the third takes a while, so it is still running when the failure
    /// arrives. Everything else answers an error: `write` must not call it.
    #[derive(Default)]
    struct Saves {
        started: AtomicUsize,
        finished: AtomicUsize,
    }

    fn unused<T>() -> Result<T> {
        Err(Error::internal("not used by the write"))
    }

    #[tonic::async_trait]
    impl CustomerScoreRepo for Saves {
        async fn live_customers(&self, _: Option<CustomerId>, _: u32) -> Result<Vec<CustomerId>> {
            unused()
        }
        async fn customer_facts(
            &self,
            _: &[CustomerId],
            _: DateTime<Utc>,
            _: i64,
        ) -> Result<Vec<CustomerFacts>> {
            unused()
        }
        async fn save_models(&self, _: &[FittedModels], _: ScorePosition) -> Result<()> {
            unused()
        }
        async fn fitted_models(&self) -> Result<Vec<FittedModels>> {
            unused()
        }
        async fn save_scores(&self, scores: Vec<CustomerScores>) -> Result<u64> {
            let call = self.started.fetch_add(1, Ordering::SeqCst) + 1;
            let outcome = match call {
                2 => Err(Error::internal("the disk is full")),
                3 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(scores.len() as u64)
                }
                _ => Ok(scores.len() as u64),
            };
            self.finished.fetch_add(1, Ordering::SeqCst);
            outcome
        }
        async fn delete_scores(&self, _: &[CustomerId]) -> Result<u64> {
            unused()
        }
        async fn delete_scores_before(&self, _: DateTime<Utc>) -> Result<u64> {
            unused()
        }
        async fn pause_score_indexes(&self) -> Result<()> {
            unused()
        }
        async fn restore_score_indexes(&self) -> Result<()> {
            unused()
        }
        async fn customer_scores(
            &self,
            _: CustomerId,
        ) -> Result<(CustomerId, Option<CustomerScores>)> {
            unused()
        }
        async fn list_scores(
            &self,
            _: &ScoreFilter,
            _: ScoreOrder,
            _: &PageRequest,
        ) -> Result<Page<CustomerScores>> {
            unused()
        }
        async fn score_position(&self) -> Result<Option<ScorePosition>> {
            unused()
        }
        async fn save_score_position(&self, _: ScorePosition) -> Result<()> {
            unused()
        }
        async fn responding_customers(
            &self,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<Vec<CustomerId>> {
            unused()
        }
    }

    #[tonic::async_trait]
    impl ChurnModelRepo for Saves {
        async fn save_churn_model(&self, _: &ChurnModel) -> Result<()> {
            unused()
        }
        async fn churn_model(&self) -> Result<Option<ChurnModel>> {
            unused()
        }
    }

    #[tonic::async_trait]
    impl ChangeLogRepo for Saves {
        async fn read_changes(&self, _: i64, _: u32) -> Result<ChangeSlice> {
            unused()
        }
        async fn prune_changes(&self, _: DateTime<Utc>) -> Result<u64> {
            unused()
        }
    }

    /// A failed save ends the write with its error, and only once nothing more is written:
    /// the save in flight beside it has finished and no later batch is saved.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_save_ends_the_write_once_nothing_more_is_written() {
        let saves = Arc::new(Saves::default());
        let scores = Scores::new(saves.clone(), saves.clone(), ScoreConfig::default());
        let as_of = now();
        let facts: Vec<CustomerFacts> = (0..5 * WRITE_BATCH)
            .map(|_| CustomerFacts {
                customer: CustomerId::generate(),
                orders: Vec::new(),
                latest_nps: None,
                latest_csat: None,
                latest_comment: None,
                signals: Vec::new(),
            })
            .collect();
        let churn = ChurnModel::default_model(as_of, "defaults for the test");

        let err = scores.write(facts, &[], &churn, as_of).await.unwrap_err();

        assert!(err.to_string().contains("the disk is full"), "{err}");
        let at_answer = (
            saves.started.load(Ordering::SeqCst),
            saves.finished.load(Ordering::SeqCst),
        );
        assert_eq!(
            at_answer.1, at_answer.0,
            "a save was still running when write answered"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = (
            saves.started.load(Ordering::SeqCst),
            saves.finished.load(Ordering::SeqCst),
        );
        assert_eq!(later, at_answer, "a save ran after write answered");
        // The first, the failed one and the one in flight beside it; no batch after them.
        assert_eq!(at_answer.0, 3);
    }
}
