//! `SurveyRepo` over [`Store`]: survey definitions, responses and the answer counts of score
//! reports.
//!
//! Survey writes run in a registry write transaction ([`Store::begin_write`]: on PostgreSQL
//! under the registry's advisory lock), so a key check and its insert, or a retirement and the
//! responses that check the survey's state, never interleave across replicas. A call of
//! `SubmitResponses` is one such transaction of a handful of statements whatever its size:
//! the surveys, touchpoints, earlier responses and live customers it names (one lookup each),
//! then one multi-row insert into `survey_responses` and one into `survey_answers` (one
//! statement for both on PostgreSQL).
//!
//! Reports never read answers one by one: [`count`] asks the database for the number of
//! answers of each value per (touchpoint, bucket, latest NPS, kind) — only the parts the
//! report groups by — and the domain merges those counts into the metric accumulators (rolling
//! sub-touchpoints up into their main ones, and touchpoints into channels, stages and
//! departments, from the registry: a few hundred rows, not a join per answer).

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cxhub_domain::error::{Error, FieldViolation, Result};
use cxhub_domain::feed::{IngestItem, SurveyResponse, survey_response_id};
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::page::{Page, PageRequest};
use cxhub_domain::repo::Lookup;
use cxhub_domain::scoring::survey::{
    AnswerCount, AnswerQuery, CheckedAnswer, NewResponse, NewSurvey, ResponseOutcome, Submitted,
    Survey, SurveyDefinition, SurveyFilter, SurveyId, SurveyRepo, SurveyState, TimeBucket,
    check_answers, check_response, epoch_day, epoch_month, kind_text,
};
use cxhub_domain::touchpoint::{Key, check_etag};
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult};

use crate::IN_LIST_CHUNK;
use crate::error::{DbResultExt, corrupt};
use crate::idempotency::idempotent;
use crate::sql::{
    Column, Inserts, Pg, Sql, boolean, bytes, col, int, nullable, text, text_opt, time, time_opt,
};
use crate::store::{Store, snapshot};

/// The columns of `survey_responses`, in the order rows are built. `language` is the one the
/// response named, else its survey's default; `language_given` says which (the category rule
/// detects the language of a comment whose response named none, as `SubmitResponses` does).
const RESPONSE_COLUMNS: [Column; 11] = [
    col("response_id", Pg::Text),
    col("survey_id", Pg::Text),
    col("customer_id", Pg::Text),
    col("touchpoint_id", Pg::Text),
    nullable("interaction_id", Pg::Text),
    col("language", Pg::Text),
    nullable("comment", Pg::Text),
    col("answered_at", Pg::Time),
    col("received_at", Pg::Time),
    col("content_hash", Pg::Bytes),
    col("language_given", Pg::Bool),
];

/// The columns of `survey_answers`, in the order rows are built.
const ANSWER_COLUMNS: [Column; 11] = [
    col("response_id", Pg::Text),
    col("position", Pg::Int),
    col("question_key", Pg::Text),
    col("kind", Pg::Text),
    col("value", Pg::Int),
    col("survey_id", Pg::Text),
    col("touchpoint_id", Pg::Text),
    col("customer_id", Pg::Text),
    col("answered_at", Pg::Time),
    col("answered_day", Pg::Int),
    col("answered_month", Pg::Int),
];

const SURVEY_COLUMNS: &str = "s.id, s.key, s.name, s.definition_json, s.state, s.revision, \
                              s.created_at, s.updated_at, s.retired_at";

#[async_trait]
impl SurveyRepo for Store {
    async fn create_survey(&self, req: &RequestKey, survey: NewSurvey) -> Result<Survey> {
        idempotent!(self, req, |txn| create(&txn, survey))
    }

    async fn get_survey(&self, lookup: &Lookup<SurveyId>) -> Result<Survey> {
        snapshot!(self, |txn| get(&txn, lookup))
    }

    async fn list_surveys(
        &self,
        filter: &SurveyFilter,
        page: &PageRequest,
    ) -> Result<Page<Survey>> {
        snapshot!(self, |txn| list(&txn, filter, page))
    }

    async fn surveys_by_keys(&self, keys: &[Key]) -> Result<Vec<Survey>> {
        snapshot!(self, |txn| by_keys(&txn, keys))
    }

    async fn retire_survey(
        &self,
        req: &RequestKey,
        id: SurveyId,
        etag: Option<&str>,
    ) -> Result<Survey> {
        idempotent!(self, req, |txn| retire(&txn, id, etag))
    }

    async fn submit_responses(&self, items: Vec<NewResponse>) -> Result<Vec<Submitted>> {
        let txn = self.begin_write().await?;
        match submit(&txn, &items).await {
            Ok(results) => {
                txn.commit().await.db()?;
                Ok(results)
            }
            Err(err) => {
                crate::store::rollback(txn).await;
                Err(err)
            }
        }
    }

    async fn count_answers(&self, query: &AnswerQuery) -> Result<Vec<AnswerCount>> {
        snapshot!(self, |txn| count(&txn, query))
    }
}

fn survey_from_row(row: &QueryResult, touchpoint_keys: Vec<Key>) -> Result<Survey> {
    let get_text = |c: &str| -> Result<String> { row.try_get("", c).map_err(corrupt) };
    let definition: SurveyDefinition =
        serde_json::from_str(&get_text("definition_json")?).map_err(corrupt)?;
    let created: DateTime<Utc> = row.try_get("", "created_at").map_err(corrupt)?;
    let updated: DateTime<Utc> = row.try_get("", "updated_at").map_err(corrupt)?;
    let retired: Option<DateTime<Utc>> = row.try_get("", "retired_at").map_err(corrupt)?;
    Ok(Survey {
        id: get_text("id")?.parse().map_err(corrupt)?,
        key: Key::parse(&get_text("key")?).map_err(corrupt)?,
        name: get_text("name")?,
        definition,
        touchpoint_keys,
        state: SurveyState::parse(&get_text("state")?).map_err(corrupt)?,
        create_time: created,
        update_time: updated,
        retire_time: retired,
        revision: row.try_get("", "revision").map_err(corrupt)?,
    })
}

/// Reads the surveys a `WHERE` clause (appended to the select by `filter`) finds, with their
/// touchpoint keys, in the order of the query.
async fn load<C: ConnectionTrait>(conn: &C, filter: impl FnOnce(&mut Sql)) -> Result<Vec<Survey>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!("SELECT {SURVEY_COLUMNS} FROM surveys s WHERE "),
    );
    filter(&mut sql);
    let rows = conn.query_all_raw(sql.build()).await.db()?;
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String>("", "id").map_err(corrupt))
        .collect::<Result<_>>()?;
    let mut keys: HashMap<String, Vec<Key>> = HashMap::new();
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            conn.get_database_backend(),
            "SELECT st.survey_id, t.key FROM survey_touchpoints st \
             JOIN touchpoints t ON t.id = st.touchpoint_id WHERE st.survey_id",
        );
        sql.in_texts(chunk.iter().cloned())
            .push(" ORDER BY st.survey_id, st.position");
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let survey: String = row.try_get("", "survey_id").map_err(corrupt)?;
            let key: String = row.try_get("", "key").map_err(corrupt)?;
            keys.entry(survey)
                .or_default()
                .push(Key::parse(&key).map_err(corrupt)?);
        }
    }
    rows.iter()
        .zip(ids)
        .map(|(row, id)| survey_from_row(row, keys.remove(&id).unwrap_or_default()))
        .collect()
}

async fn get<C: ConnectionTrait>(conn: &C, lookup: &Lookup<SurveyId>) -> Result<Survey> {
    let (column, value, name) = match lookup {
        Lookup::Id(id) => ("s.id = ", id.to_string(), id.to_string()),
        Lookup::Key(key) => ("s.key = ", key.as_str().to_owned(), key.to_string()),
    };
    load(conn, |sql| {
        sql.push(column).bind(text(value));
    })
    .await?
    .into_iter()
    .next()
    .ok_or_else(|| Error::not_found("survey", name))
}

async fn by_keys<C: ConnectionTrait>(conn: &C, keys: &[Key]) -> Result<Vec<Survey>> {
    let keys: BTreeSet<String> = keys.iter().map(|k| k.as_str().to_owned()).collect();
    let keys: Vec<String> = keys.into_iter().collect();
    let mut out = Vec::new();
    for chunk in keys.chunks(IN_LIST_CHUNK) {
        out.extend(
            load(conn, |sql| {
                sql.push("s.key").in_texts(chunk.iter().cloned());
            })
            .await?,
        );
    }
    Ok(out)
}

async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &SurveyFilter,
    page: &PageRequest,
) -> Result<Page<Survey>> {
    let size = page.size.max(1) as usize;
    let mut surveys = load(conn, |sql| {
        sql.push("1 = 1");
        if let Some(state) = filter.state {
            sql.push(" AND s.state = ").bind(text(state.as_str()));
        }
        if let Some(key) = &filter.touchpoint_key {
            sql.push(
                " AND EXISTS (SELECT 1 FROM survey_touchpoints st JOIN touchpoints t \
                 ON t.id = st.touchpoint_id WHERE st.survey_id = s.id AND t.key = ",
            )
            .bind(text(key.as_str()))
            .push(")");
        }
        if let Some(after) = &page.after {
            sql.push(" AND s.key > ").bind(text(after.as_str()));
        }
        sql.push(" ORDER BY s.key")
            .limit(u64::try_from(size + 1).unwrap_or(u64::MAX));
    })
    .await?;
    let more = surveys.len() > size;
    surveys.truncate(size);
    let next_after = if more {
        surveys.last().map(|s| s.key.as_str().to_owned())
    } else {
        None
    };
    Ok(Page {
        items: surveys,
        next_after,
    })
}

/// The id and state of each touchpoint named, by key.
async fn touchpoints_by_key<C: ConnectionTrait>(
    conn: &C,
    keys: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, (String, String)>> {
    let keys: BTreeSet<String> = keys.into_iter().collect();
    let keys: Vec<String> = keys.into_iter().collect();
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            conn.get_database_backend(),
            "SELECT id, key, state FROM touchpoints WHERE key",
        );
        sql.in_texts(chunk.iter().cloned());
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let id: String = row.try_get("", "id").map_err(corrupt)?;
            let key: String = row.try_get("", "key").map_err(corrupt)?;
            let state: String = row.try_get("", "state").map_err(corrupt)?;
            out.insert(key, (id, state));
        }
    }
    Ok(out)
}

async fn create(txn: &DatabaseTransaction, survey: NewSurvey) -> Result<Survey> {
    let touchpoints = touchpoints_by_key(
        txn,
        survey.touchpoint_keys.iter().map(|k| k.as_str().to_owned()),
    )
    .await?;
    let mut violations = Vec::new();
    for (i, key) in survey.touchpoint_keys.iter().enumerate() {
        let field = format!("survey.touchpoint_keys[{i}]");
        match touchpoints.get(key.as_str()) {
            None => violations.push(FieldViolation {
                field,
                description: format!("no touchpoint has the key `{key}`"),
            }),
            Some((_, state)) if state != "active" => violations.push(FieldViolation {
                field,
                description: format!("touchpoint `{key}` is archived: restore it first"),
            }),
            Some(_) => {}
        }
    }
    if !violations.is_empty() {
        return Err(Error::invalid(violations));
    }
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "SELECT id FROM surveys WHERE key = ",
    );
    sql.bind(text(survey.key.as_str()));
    if txn.query_one_raw(sql.build()).await.db()?.is_some() {
        return Err(Error::AlreadyExists {
            reason: "SURVEY_KEY_TAKEN",
            field: "survey.key".into(),
            message: format!("a survey with the key `{}` exists already", survey.key),
        });
    }
    let now = crate::now();
    let id = SurveyId::generate();
    let definition = serde_json::to_string(&survey.definition).map_err(corrupt)?;
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "INSERT INTO surveys (id, key, name, definition_json, state, revision, created_at, \
         updated_at, retired_at) VALUES ",
    );
    sql.tuple([
        text(id.to_string()),
        text(survey.key.as_str()),
        text(survey.name.as_str()),
        text(definition),
        text(SurveyState::Active.as_str()),
        int(1),
        time(now),
        time(now),
        time_opt(None),
    ]);
    txn.execute_raw(sql.build()).await.db()?;
    let rows: Vec<Vec<sea_orm::Value>> = survey
        .touchpoint_keys
        .iter()
        .enumerate()
        .filter_map(|(i, key)| {
            touchpoints.get(key.as_str()).map(|(tp, _)| {
                vec![
                    text(id.to_string()),
                    text(tp.as_str()),
                    int(i64::try_from(i).unwrap_or(i64::MAX)),
                ]
            })
        })
        .collect();
    crate::sql::insert_rows(
        txn,
        "survey_touchpoints",
        &[
            col("survey_id", Pg::Text),
            col("touchpoint_id", Pg::Text),
            col("position", Pg::Int),
        ],
        rows,
        "",
    )
    .await
    .db()?;
    tracing::info!(survey_id = %id, key = %survey.key, "survey created");
    Ok(Survey {
        id,
        key: survey.key,
        name: survey.name,
        definition: survey.definition,
        touchpoint_keys: survey.touchpoint_keys,
        state: SurveyState::Active,
        create_time: now,
        update_time: now,
        retire_time: None,
        revision: 1,
    })
}

async fn retire(txn: &DatabaseTransaction, id: SurveyId, etag: Option<&str>) -> Result<Survey> {
    let survey = get(txn, &Lookup::Id(id)).await?;
    check_etag(etag, survey.revision, "survey")?;
    if survey.state == SurveyState::Retired {
        return Ok(survey);
    }
    let now = crate::now();
    let mut sql = Sql::new(txn.get_database_backend(), "UPDATE surveys SET state = ");
    sql.bind(text(SurveyState::Retired.as_str()))
        .push(", revision = revision + 1, updated_at = ")
        .bind(time(now))
        .push(", retired_at = ")
        .bind(time(now))
        .push(" WHERE id = ")
        .bind(text(id.to_string()));
    txn.execute_raw(sql.build()).await.db()?;
    tracing::info!(survey_id = %id, "survey retired");
    Ok(Survey {
        state: SurveyState::Retired,
        update_time: now,
        retire_time: Some(now),
        revision: survey.revision + 1,
        ..survey
    })
}

fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        description: description.into(),
    }
}

async fn submit(txn: &DatabaseTransaction, items: &[NewResponse]) -> Result<Vec<Submitted>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let survey_keys: Vec<Key> = items.iter().map(|i| i.survey_key.clone()).collect();
    let surveys: HashMap<Key, Survey> = by_keys(txn, &survey_keys)
        .await?
        .into_iter()
        .map(|s| (s.key.clone(), s))
        .collect();
    let touchpoints = touchpoints_by_key(
        txn,
        items.iter().map(|i| i.touchpoint_key.as_str().to_owned()),
    )
    .await?;
    let mut stored = stored_responses(txn, items).await?;
    let live = crate::interactions::live_customers(txn, items.iter().map(|i| i.customer).collect())
        .await?;

    let mut results = Vec::with_capacity(items.len());
    let mut responses = Vec::new();
    let mut answers = Vec::new();
    let received = crate::now();
    for item in items {
        // Stored before (or earlier in this call): the hash tells a re-send from a conflict.
        if let Some((hash, customer)) = stored.get(&item.response_id) {
            let outcome = if hash.as_slice() == item.hash.as_bytes() {
                ResponseOutcome::Unchanged
            } else {
                ResponseOutcome::Conflict
            };
            results.push(Ok((outcome, *customer)));
            continue;
        }
        let mut violations = Vec::new();
        let customer = live.get(&item.customer).copied();
        if customer.is_none() {
            violations.push(violation(
                "customer_id",
                format!("no customer has the id {}", item.customer),
            ));
        }
        let fit = check_against(
            &surveys,
            &touchpoints,
            &item.survey_key,
            &item.touchpoint_key,
            |survey| check_response(survey, item),
            &mut violations,
        );
        let (Some(customer), Some((touchpoint, survey_id, checked, language))) = (customer, fit)
        else {
            results.push(Err(violations));
            continue;
        };
        stored.insert(
            item.response_id.clone(),
            (item.hash.as_bytes().to_vec(), customer),
        );
        responses.push(vec![
            text(item.response_id.as_str()),
            text(survey_id.to_string()),
            text(customer.to_string()),
            text(touchpoint.as_str()),
            text_opt(item.interaction_id.clone()),
            text(language),
            text_opt(item.comment.clone()),
            time(item.answered_at),
            time(received),
            bytes(item.hash.as_bytes().to_vec()),
            boolean(item.language.is_some()),
        ]);
        let (day, month) = (epoch_day(item.answered_at), epoch_month(item.answered_at));
        for answer in checked {
            answers.push(vec![
                text(item.response_id.as_str()),
                int(i64::try_from(answer.position).unwrap_or(i64::MAX)),
                text(answer.question_key),
                text(kind_text(answer.kind)),
                int(i64::from(answer.value)),
                text(survey_id.to_string()),
                text(touchpoint.as_str()),
                text(customer.to_string()),
                time(item.answered_at),
                int(day),
                int(month),
            ]);
        }
        results.push(Ok((ResponseOutcome::Created, customer)));
    }
    // Every response id written is new: the write lock keeps other submitters out until this
    // commits. DO NOTHING is a safety net, not a path.
    let mut inserts = Inserts::new(txn);
    inserts
        .add(
            "survey_responses",
            &RESPONSE_COLUMNS,
            responses,
            "ON CONFLICT (response_id) DO NOTHING",
        )
        .await
        .db()?;
    inserts
        .add(
            "survey_answers",
            &ANSWER_COLUMNS,
            answers,
            "ON CONFLICT (response_id, position) DO NOTHING",
        )
        .await
        .db()?;
    inserts.run().await.db()?;
    Ok(results)
}

/// What a response that fits its survey is stored with: the touchpoint's id, the survey's
/// id, the answers in question order and the language.
type Fit = (String, SurveyId, Vec<CheckedAnswer>, String);

/// Checks a response's touchpoint and survey against the stored ones (`surveys` by key,
/// `touchpoints` as [`touchpoints_by_key`] reads them): the touchpoint exists and is active,
/// the survey exists, and the response fits it (`check`, [`check_response`] or
/// [`check_answers`]). Violations go to `violations`, paths from the response.
fn check_against(
    surveys: &HashMap<Key, Survey>,
    touchpoints: &HashMap<String, (String, String)>,
    survey_key: &Key,
    touchpoint_key: &Key,
    check: impl FnOnce(
        &Survey,
    ) -> std::result::Result<(Vec<CheckedAnswer>, String), Vec<FieldViolation>>,
    violations: &mut Vec<FieldViolation>,
) -> Option<Fit> {
    let touchpoint = match touchpoints.get(touchpoint_key.as_str()) {
        None => {
            violations.push(violation(
                "touchpoint_key",
                format!("no touchpoint has the key `{touchpoint_key}`"),
            ));
            None
        }
        Some((_, state)) if state != "active" => {
            violations.push(violation(
                "touchpoint_key",
                format!("touchpoint `{touchpoint_key}` is archived: restore it first"),
            ));
            None
        }
        Some((id, _)) => Some(id.clone()),
    };
    let checked = match surveys.get(survey_key) {
        None => {
            violations.push(violation(
                "survey_key",
                format!("no survey has the key `{survey_key}`"),
            ));
            None
        }
        Some(survey) => match check(survey) {
            Ok(checked) => Some((survey.id, checked)),
            Err(found) => {
                // The touchpoint's own refusal (unknown, archived) says more than "not
                // attached"; keep one violation per field.
                violations.extend(
                    found
                        .into_iter()
                        .filter(|f| f.field != "touchpoint_key" || touchpoint.is_some()),
                );
                None
            }
        },
    };
    let (touchpoint, (survey_id, (answers, language))) = (touchpoint?, checked?);
    Some((touchpoint, survey_id, answers, language))
}

// ---------------------------------------------------------------------------------------------
// Survey responses of feed records
// ---------------------------------------------------------------------------------------------

/// The survey response of a feed record that fits its survey, waiting for its customer.
#[derive(Debug, Clone)]
pub(crate) struct FeedResponse {
    touchpoint_id: String,
    survey_id: SurveyId,
    answers: Vec<CheckedAnswer>,
    language: String,
}

/// The survey response of each feed record of `items` that is one (by position in `items`),
/// checked against the stored surveys and touchpoints with the rules of `SubmitResponses`:
/// ready to write, or every violation with paths from the record
/// (`survey_response.answers[0].value`). Two statements, whatever the number of responses.
pub(crate) async fn check_feed_responses(
    txn: &DatabaseTransaction,
    items: &[IngestItem],
) -> Result<HashMap<usize, std::result::Result<FeedResponse, Vec<FieldViolation>>>> {
    let responses: Vec<(usize, &SurveyResponse)> = items
        .iter()
        .enumerate()
        .filter_map(|(pos, item)| item.derived.survey_response.as_ref().map(|r| (pos, r)))
        .collect();
    if responses.is_empty() {
        return Ok(HashMap::new());
    }
    let survey_keys: Vec<Key> = responses
        .iter()
        .map(|(_, r)| r.survey_key.clone())
        .collect();
    let surveys: HashMap<Key, Survey> = by_keys(txn, &survey_keys)
        .await?
        .into_iter()
        .map(|s| (s.key.clone(), s))
        .collect();
    let touchpoints = touchpoints_by_key(
        txn,
        responses
            .iter()
            .map(|(_, r)| r.touchpoint_key.as_str().to_owned()),
    )
    .await?;
    let mut out = HashMap::with_capacity(responses.len());
    for (pos, r) in responses {
        let mut violations = Vec::new();
        let fit = check_against(
            &surveys,
            &touchpoints,
            &r.survey_key,
            &r.touchpoint_key,
            |survey| {
                check_answers(
                    survey,
                    &r.touchpoint_key,
                    &r.answer_pairs(),
                    r.comment.as_deref(),
                    r.language.as_deref(),
                )
            },
            &mut violations,
        );
        let checked = match fit {
            Some((touchpoint_id, survey_id, answers, language)) if violations.is_empty() => {
                Ok(FeedResponse {
                    touchpoint_id,
                    survey_id,
                    answers,
                    language,
                })
            }
            _ => Err(violations
                .into_iter()
                .map(|v| FieldViolation {
                    field: format!("survey_response.{}", v.field),
                    description: v.description,
                })
                .collect()),
        };
        out.insert(pos, checked);
    }
    Ok(out)
}

/// Writes the survey responses of feed records among `inserts`: `(item, its checked response,
/// customer)` each, stored under [`survey_response_id`] and received `now`. A response stored
/// before under the same id (an earlier version of the record, or the same response sent
/// through `SubmitResponses`) is replaced: its answers are deleted first (at once), then the
/// response is upserted and its answers inserted.
pub(crate) async fn write_feed_responses(
    txn: &DatabaseTransaction,
    inserts: &mut Inserts<'_, DatabaseTransaction>,
    rows: Vec<(&IngestItem, &FeedResponse, CustomerId)>,
    now: DateTime<Utc>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = rows
        .iter()
        .map(|(item, _, _)| survey_response_id(&item.key))
        .collect();
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            txn.get_database_backend(),
            "DELETE FROM survey_answers WHERE response_id",
        );
        sql.in_texts(chunk.iter().cloned());
        txn.execute_raw(sql.build()).await.db()?;
    }
    let mut responses = Vec::with_capacity(rows.len());
    let mut answers = Vec::new();
    for ((item, checked, customer), id) in rows.into_iter().zip(ids) {
        let Some(r) = &item.derived.survey_response else {
            continue;
        };
        responses.push(vec![
            text(id.as_str()),
            text(checked.survey_id.to_string()),
            text(customer.to_string()),
            text(checked.touchpoint_id.as_str()),
            text_opt(r.interaction_id.clone()),
            text(checked.language.as_str()),
            text_opt(r.comment.clone()),
            time(r.answered_at),
            time(now),
            bytes(item.version.hash.as_bytes().to_vec()),
            boolean(r.language.is_some()),
        ]);
        let (day, month) = (epoch_day(r.answered_at), epoch_month(r.answered_at));
        for answer in &checked.answers {
            answers.push(vec![
                text(id.as_str()),
                int(i64::try_from(answer.position).unwrap_or(i64::MAX)),
                text(answer.question_key.as_str()),
                text(kind_text(answer.kind)),
                int(i64::from(answer.value)),
                text(checked.survey_id.to_string()),
                text(checked.touchpoint_id.as_str()),
                text(customer.to_string()),
                time(r.answered_at),
                int(day),
                int(month),
            ]);
        }
    }
    inserts
        .add(
            "survey_responses",
            &RESPONSE_COLUMNS,
            responses,
            "ON CONFLICT (response_id) DO UPDATE SET survey_id = excluded.survey_id, \
             customer_id = excluded.customer_id, touchpoint_id = excluded.touchpoint_id, \
             interaction_id = excluded.interaction_id, language = excluded.language, \
             comment = excluded.comment, answered_at = excluded.answered_at, \
             received_at = excluded.received_at, content_hash = excluded.content_hash, \
             language_given = excluded.language_given",
        )
        .await
        .db()?;
    inserts
        .add(
            "survey_answers",
            &ANSWER_COLUMNS,
            answers,
            "ON CONFLICT (response_id, position) DO UPDATE SET \
             question_key = excluded.question_key, kind = excluded.kind, value = excluded.value, \
             survey_id = excluded.survey_id, touchpoint_id = excluded.touchpoint_id, \
             customer_id = excluded.customer_id, answered_at = excluded.answered_at, \
             answered_day = excluded.answered_day, answered_month = excluded.answered_month",
        )
        .await
        .db()
}

/// The responses of `items` stored already: content hash and customer by response id.
async fn stored_responses(
    txn: &DatabaseTransaction,
    items: &[NewResponse],
) -> Result<HashMap<String, (Vec<u8>, CustomerId)>> {
    let ids: BTreeSet<String> = items.iter().map(|i| i.response_id.clone()).collect();
    let ids: Vec<String> = ids.into_iter().collect();
    let mut out = HashMap::new();
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            txn.get_database_backend(),
            "SELECT response_id, content_hash, customer_id FROM survey_responses WHERE response_id",
        );
        sql.in_texts(chunk.iter().cloned());
        for row in txn.query_all_raw(sql.build()).await.db()? {
            let id: String = row.try_get("", "response_id").map_err(corrupt)?;
            let hash: Vec<u8> = row.try_get("", "content_hash").map_err(corrupt)?;
            let customer: String = row.try_get("", "customer_id").map_err(corrupt)?;
            out.insert(id, (hash, customer.parse().map_err(corrupt)?));
        }
    }
    Ok(out)
}

/// The answer counts of a report: one `GROUP BY` over the answers in the range, by the parts
/// the report needs, the kind and the value. The range (by month, then exactly), touchpoint
/// and every grouped column are read from `survey_answers_report_idx` alone (a survey filter
/// or the category also read the table). The respondent's latest NPS answer before the end of the range comes from a
/// window over that customer's NPS answers (`survey_answers_customer_kind_time_idx`).
async fn count<C: ConnectionTrait>(conn: &C, query: &AnswerQuery) -> Result<Vec<AnswerCount>> {
    if query.survey_ids.as_ref().is_some_and(Vec::is_empty)
        || query.touchpoint_ids.as_ref().is_some_and(Vec::is_empty)
    {
        return Ok(Vec::new());
    }
    let backend = conn.get_database_backend();
    // The bucket first: grouped by month, then touchpoint, kind and value, the groups come in
    // the order of `survey_answers_report_idx`, and SQLite counts them as it reads the index
    // instead of sorting every answer first.
    let mut parts: Vec<&str> = Vec::new();
    let bucket = match query.bucket {
        None => None,
        Some(TimeBucket::Day) => Some("a.answered_day"),
        Some(TimeBucket::Week) => Some("(a.answered_day + 3) / 7"),
        Some(TimeBucket::Month) => Some("a.answered_month"),
    };
    if let Some(bucket) = bucket {
        parts.push(bucket);
    }
    if query.by_touchpoint {
        parts.push("a.touchpoint_id");
    }
    if query.by_latest_nps {
        parts.push("l.value");
    }
    let mut select: Vec<String> = Vec::new();
    if query.by_touchpoint {
        select.push("a.touchpoint_id AS touchpoint_id".into());
    }
    if let Some(bucket) = bucket {
        select.push(format!("{bucket} AS bucket"));
    }
    if query.by_latest_nps {
        select.push("l.value AS latest_nps".into());
    }
    // One row per (parts, kind, value): how many answers, and how many of them open their
    // response. Only `COUNT` and one `SUM` per row: 10–25 % faster than one row per (parts,
    // kind) with a conditional sum per value 0–10 (13 expressions a row) on both backends; the
    // at most eleven rows per group cost nothing to return. See docs/scoring-models.md,
    // "Score reports: performance".
    select.push("a.kind AS kind".into());
    select.push("a.value AS value".into());
    select.push("COUNT(*) AS answers".into());
    select.push(
        "CAST(SUM(CASE WHEN a.position = 0 THEN 1 ELSE 0 END) AS BIGINT) AS responses".into(),
    );
    let mut sql = Sql::new(
        backend,
        &format!("SELECT {} FROM survey_answers a", select.join(", ")),
    );
    if query.by_latest_nps {
        sql.push(
            " LEFT JOIN (SELECT customer_id, value FROM (SELECT customer_id, value, \
             ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY answered_at DESC, \
             response_id DESC, position) AS rn FROM survey_answers WHERE kind = 'nps' \
             AND answered_at < ",
        )
        .bind(time(query.range.to))
        .push(") ranked WHERE rn = 1) l ON l.customer_id = a.customer_id");
    }
    // The months of the range, implied by the range itself (`answered_month` is the month of
    // `answered_at`), make the range a prefix of `survey_answers_report_idx`.
    sql.push(" WHERE a.answered_month BETWEEN ")
        .bind(int(epoch_month(query.range.from)))
        .push(" AND ")
        .bind(int(epoch_month(query.range.to)))
        .push(" AND a.answered_at >= ")
        .bind(time(query.range.from))
        .push(" AND a.answered_at < ")
        .bind(time(query.range.to));
    if let Some(ids) = &query.survey_ids {
        sql.push(" AND a.survey_id")
            .in_texts(ids.iter().map(|id| id.to_string()));
    }
    if let Some(ids) = &query.touchpoint_ids {
        sql.push(" AND a.touchpoint_id")
            .in_texts(ids.iter().map(|id| id.to_string()));
    }
    parts.push("a.kind");
    parts.push("a.value");
    sql.push(&format!(" GROUP BY {}", parts.join(", ")));
    let rows = conn.query_all_raw(sql.build()).await.db()?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let touchpoint = if query.by_touchpoint {
            let id: String = row.try_get("", "touchpoint_id").map_err(corrupt)?;
            Some(id.parse().map_err(corrupt)?)
        } else {
            None
        };
        let bucket = if bucket.is_some() {
            Some(row.try_get::<i64>("", "bucket").map_err(corrupt)?)
        } else {
            None
        };
        let latest_nps = if query.by_latest_nps {
            row.try_get::<Option<i32>>("", "latest_nps")
                .map_err(corrupt)?
        } else {
            None
        };
        let kind: String = row.try_get("", "kind").map_err(corrupt)?;
        let value: i32 = row.try_get("", "value").map_err(corrupt)?;
        let answers: i64 = row.try_get("", "answers").map_err(corrupt)?;
        let responses: i64 = row.try_get("", "responses").map_err(corrupt)?;
        // Custom-scale answers come out too: no metric counts them, their responses count.
        out.push(AnswerCount {
            touchpoint,
            bucket,
            latest_nps,
            kind,
            value,
            answers: u64::try_from(answers).unwrap_or(0),
            responses: u64::try_from(responses).unwrap_or(0),
        });
    }
    Ok(out)
}
