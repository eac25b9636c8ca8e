//! Journeys: the journey row, its stages and the touchpoints of each stage, written in batches
//! and read back with two queries per page.

use std::collections::{BTreeSet, HashMap};

use cxhub_domain::journey::{
    Journey, JourneyFilter, JourneyId, JourneyMapStage, JourneyPatch, NewJourney,
};
use cxhub_domain::page::{Page, PageRequest};
use cxhub_domain::repo::Lookup;
use cxhub_domain::touchpoint::{LifecycleState, TouchpointId, check_etag};
use cxhub_domain::{Error, Result, Violations};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::entity::{journey, journey_stage, journey_stage_touchpoint as jst, touchpoint};
use crate::error::{DbResultExt, corrupt};
use crate::touchpoints::{parse_id, parse_key, parse_state};
use crate::{IN_LIST_CHUNK, now, rows_per_statement};

use journey::Column as J;

fn parse_journey_id(s: &str) -> Result<JourneyId> {
    s.parse().map_err(corrupt)
}

fn to_domain(m: journey::Model, stages: Vec<JourneyMapStage>) -> Result<Journey> {
    Ok(Journey {
        id: parse_journey_id(&m.id)?,
        key: parse_key(&m.key)?,
        name: m.name,
        description: m.description,
        stages,
        state: parse_state(&m.state)?,
        create_time: m.created_at,
        update_time: m.updated_at,
        revision: m.revision,
    })
}

/// `journey_stage_touchpoints` joined with `touchpoints`, for the given journeys.
fn stage_touchpoints_of(journey_ids: &[String]) -> SelectStatement {
    Query::select()
        .column((jst::Entity, jst::Column::JourneyId))
        .column((jst::Entity, jst::Column::Position))
        .column((touchpoint::Entity, touchpoint::Column::Key))
        .from(jst::Entity)
        .inner_join(
            touchpoint::Entity,
            Expr::col((touchpoint::Entity, touchpoint::Column::Id))
                .equals((jst::Entity, jst::Column::TouchpointId)),
        )
        .and_where(
            Expr::col((jst::Entity, jst::Column::JourneyId)).is_in(journey_ids.iter().cloned()),
        )
        .order_by((jst::Entity, jst::Column::JourneyId), Order::Asc)
        .order_by((jst::Entity, jst::Column::Position), Order::Asc)
        .order_by((jst::Entity, jst::Column::Ordinal), Order::Asc)
        .to_owned()
}

/// Rows as domain journeys, with their stages (two queries per chunk of journeys).
async fn hydrate<C: ConnectionTrait>(
    conn: &C,
    models: Vec<journey::Model>,
) -> Result<Vec<Journey>> {
    let ids: Vec<String> = models.iter().map(|m| m.id.clone()).collect();
    let mut stages: HashMap<String, Vec<JourneyMapStage>> = HashMap::new();
    let mut index: HashMap<(String, i32), usize> = HashMap::new();
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        let rows = journey_stage::Entity::find()
            .filter(journey_stage::Column::JourneyId.is_in(chunk.iter().cloned()))
            .order_by_asc(journey_stage::Column::JourneyId)
            .order_by_asc(journey_stage::Column::Position)
            .all(conn)
            .await
            .db()?;
        for row in rows {
            let list = stages.entry(row.journey_id.clone()).or_default();
            index.insert((row.journey_id, row.position), list.len());
            list.push(JourneyMapStage {
                name: row.name,
                stage: row.stage.parse().map_err(corrupt)?,
                touchpoint_keys: Vec::new(),
            });
        }
        for row in conn.query_all(&stage_touchpoints_of(chunk)).await.db()? {
            let journey_id: String = row.try_get("", "journey_id").db()?;
            let position: i32 = row.try_get("", "position").db()?;
            let key: String = row.try_get("", "key").db()?;
            let slot = index
                .get(&(journey_id.clone(), position))
                .copied()
                .ok_or_else(|| corrupt("stage touchpoint without a stage"))?;
            if let Some(stage) = stages.get_mut(&journey_id).and_then(|l| l.get_mut(slot)) {
                stage.touchpoint_keys.push(parse_key(&key)?);
            }
        }
    }
    models
        .into_iter()
        .map(|m| {
            let list = stages.remove(&m.id).unwrap_or_default();
            to_domain(m, list)
        })
        .collect()
}

async fn hydrate_one<C: ConnectionTrait>(conn: &C, model: journey::Model) -> Result<Journey> {
    hydrate(conn, vec![model])
        .await?
        .pop()
        .ok_or_else(|| corrupt("hydrating one journey gave none"))
}

async fn find<C: ConnectionTrait>(conn: &C, lookup: &Lookup<JourneyId>) -> Result<journey::Model> {
    let (query, name) = match lookup {
        Lookup::Id(id) => (journey::Entity::find_by_id(id.to_string()), id.to_string()),
        Lookup::Key(key) => (
            journey::Entity::find().filter(J::Key.eq(key.as_str())),
            key.to_string(),
        ),
    };
    query
        .one(conn)
        .await
        .db()?
        .ok_or_else(|| Error::not_found("journey", name))
}

/// Resolves every touchpoint key of `stages` in one query per chunk of keys: unknown keys are
/// `InvalidArgument` (each as `journey.stages[i].touchpoint_keys[j]`), archived ones
/// `FailedPrecondition` `TOUCHPOINT_ARCHIVED`.
async fn resolve_touchpoints<C: ConnectionTrait>(
    conn: &C,
    stages: &[JourneyMapStage],
) -> Result<HashMap<String, TouchpointId>> {
    let keys: Vec<String> = stages
        .iter()
        .flat_map(|s| s.touchpoint_keys.iter().map(|k| k.as_str().to_owned()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut found: HashMap<String, (TouchpointId, LifecycleState)> = HashMap::new();
    for chunk in keys.chunks(IN_LIST_CHUNK) {
        let rows: Vec<(String, String, String)> = touchpoint::Entity::find()
            .select_only()
            .column(touchpoint::Column::Id)
            .column(touchpoint::Column::Key)
            .column(touchpoint::Column::State)
            .filter(touchpoint::Column::Key.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(conn)
            .await
            .db()?;
        for (id, key, state) in rows {
            found.insert(key, (parse_id(&id)?, parse_state(&state)?));
        }
    }
    let mut violations = Violations::new();
    for (i, stage) in stages.iter().enumerate() {
        for (j, key) in stage.touchpoint_keys.iter().enumerate() {
            if !found.contains_key(key.as_str()) {
                violations.add(
                    format!("journey.stages[{i}].touchpoint_keys[{j}]"),
                    format!("no touchpoint has key {key}"),
                );
            }
        }
    }
    violations.into_result()?;
    let archived: Vec<&str> = keys
        .iter()
        .filter(|k| matches!(found.get(k.as_str()), Some((_, LifecycleState::Archived))))
        .map(String::as_str)
        .collect();
    if !archived.is_empty() {
        return Err(Error::precondition(
            "TOUCHPOINT_ARCHIVED",
            format!(
                "touchpoints {} are archived: restore them or leave them out of the journey",
                archived.join(", ")
            ),
        ));
    }
    Ok(found.into_iter().map(|(k, (id, _))| (k, id)).collect())
}

/// Writes the stages of a journey: one multi-row insert for the stages, one per chunk for
/// their touchpoints.
async fn write_stages<C: ConnectionTrait>(
    conn: &C,
    journey_id: JourneyId,
    stages: &[JourneyMapStage],
    ids: &HashMap<String, TouchpointId>,
) -> Result<()> {
    let jid = journey_id.to_string();
    let mut stage_rows = Vec::with_capacity(stages.len());
    let mut touchpoint_rows = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        let position = i32::try_from(i).map_err(corrupt)?;
        stage_rows.push(journey_stage::ActiveModel {
            journey_id: Set(jid.clone()),
            position: Set(position),
            name: Set(stage.name.clone()),
            stage: Set(stage.stage.as_str().to_owned()),
        });
        for (j, key) in stage.touchpoint_keys.iter().enumerate() {
            let touchpoint_id = ids
                .get(key.as_str())
                .ok_or_else(|| corrupt("unresolved touchpoint key"))?;
            touchpoint_rows.push(jst::ActiveModel {
                journey_id: Set(jid.clone()),
                position: Set(position),
                ordinal: Set(i32::try_from(j).map_err(corrupt)?),
                touchpoint_id: Set(touchpoint_id.to_string()),
            });
        }
    }
    for chunk in stage_rows.chunks(rows_per_statement(4)) {
        journey_stage::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await
            .db()?;
    }
    for chunk in touchpoint_rows.chunks(rows_per_statement(4)) {
        jst::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await
            .db()?;
    }
    Ok(())
}

async fn delete_stages<C: ConnectionTrait>(conn: &C, journey_id: JourneyId) -> Result<()> {
    jst::Entity::delete_many()
        .filter(jst::Column::JourneyId.eq(journey_id.to_string()))
        .exec(conn)
        .await
        .db()?;
    journey_stage::Entity::delete_many()
        .filter(journey_stage::Column::JourneyId.eq(journey_id.to_string()))
        .exec(conn)
        .await
        .db()?;
    Ok(())
}

fn journey_archived(key: &str) -> Error {
    Error::precondition(
        "JOURNEY_ARCHIVED",
        format!("journey {key} is archived: restore it before changing it"),
    )
}

/// Creates a journey (see `TouchpointRepo::create_journey`).
pub(crate) async fn create<C: ConnectionTrait>(conn: &C, new: NewJourney) -> Result<Journey> {
    let taken = journey::Entity::find()
        .filter(J::Key.eq(new.key.as_str()))
        .count(conn)
        .await
        .db()?;
    if taken > 0 {
        return Err(Error::AlreadyExists {
            reason: "JOURNEY_KEY_TAKEN",
            field: "journey.key".into(),
            message: format!("a journey with key {} exists already", new.key),
        });
    }
    let ids = resolve_touchpoints(conn, &new.stages).await?;
    let at = now();
    let created = Journey {
        id: JourneyId::generate(),
        key: new.key,
        name: new.name,
        description: new.description,
        stages: new.stages,
        state: LifecycleState::Active,
        create_time: at,
        update_time: at,
        revision: 1,
    };
    journey::Entity::insert(journey::ActiveModel {
        id: Set(created.id.to_string()),
        key: Set(created.key.as_str().to_owned()),
        name: Set(created.name.clone()),
        description: Set(created.description.clone()),
        state: Set(created.state.as_str().to_owned()),
        revision: Set(created.revision),
        created_at: Set(created.create_time),
        updated_at: Set(created.update_time),
    })
    .exec_without_returning(conn)
    .await
    .db()?;
    write_stages(conn, created.id, &created.stages, &ids).await?;
    tracing::info!(journey = %created.key, stages = created.stages.len(), "journey created");
    Ok(created)
}

/// Applies a patch (see `TouchpointRepo::update_journey`).
pub(crate) async fn update<C: ConnectionTrait>(
    conn: &C,
    id: JourneyId,
    etag: Option<&str>,
    patch: JourneyPatch,
) -> Result<Journey> {
    let model = find(conn, &Lookup::Id(id)).await?;
    check_etag(etag, model.revision, "journey")?;
    if parse_state(&model.state)? == LifecycleState::Archived {
        return Err(journey_archived(&model.key));
    }
    let mut journey = hydrate_one(conn, model).await?;
    if patch.is_empty() {
        return Ok(journey);
    }
    if let Some(name) = patch.name {
        journey.name = name;
    }
    if let Some(description) = patch.description {
        journey.description = description;
    }
    if let Some(stages) = patch.stages {
        let ids = resolve_touchpoints(conn, &stages).await?;
        delete_stages(conn, id).await?;
        write_stages(conn, id, &stages, &ids).await?;
        journey.stages = stages;
    }
    let previous = journey.revision;
    journey.revision += 1;
    journey.update_time = now();
    let updated = journey::Entity::update_many()
        .col_expr(J::Name, Expr::value(journey.name.clone()))
        .col_expr(J::Description, Expr::value(journey.description.clone()))
        .col_expr(J::Revision, Expr::value(journey.revision))
        .col_expr(J::UpdatedAt, Expr::value(journey.update_time))
        .filter(J::Id.eq(id.to_string()))
        .filter(J::Revision.eq(previous))
        .exec(conn)
        .await
        .db()?;
    if updated.rows_affected != 1 {
        return Err(Error::aborted(
            "ETAG_MISMATCH",
            "the journey changed while it was being updated: read it again and retry",
        ));
    }
    tracing::info!(journey = %journey.key, revision = journey.revision, "journey updated");
    Ok(journey)
}

async fn set_state<C: ConnectionTrait>(
    conn: &C,
    id: JourneyId,
    state: LifecycleState,
) -> Result<Journey> {
    journey::Entity::update_many()
        .col_expr(J::State, Expr::value(state.as_str()))
        .col_expr(J::Revision, Expr::col(J::Revision).add(1))
        .col_expr(J::UpdatedAt, Expr::value(now()))
        .filter(J::Id.eq(id.to_string()))
        .exec(conn)
        .await
        .db()?;
    hydrate_one(conn, find(conn, &Lookup::Id(id)).await?).await
}

/// Archives a journey; archiving an archived journey changes nothing.
pub(crate) async fn archive<C: ConnectionTrait>(
    conn: &C,
    id: JourneyId,
    etag: Option<&str>,
) -> Result<Journey> {
    let model = find(conn, &Lookup::Id(id)).await?;
    check_etag(etag, model.revision, "journey")?;
    if parse_state(&model.state)? == LifecycleState::Archived {
        return hydrate_one(conn, model).await;
    }
    let journey = set_state(conn, id, LifecycleState::Archived).await?;
    tracing::info!(journey = %journey.key, "journey archived");
    Ok(journey)
}

/// Restores a journey whose touchpoints are all active; restoring an active journey changes
/// nothing.
pub(crate) async fn restore<C: ConnectionTrait>(
    conn: &C,
    id: JourneyId,
    etag: Option<&str>,
) -> Result<Journey> {
    let model = find(conn, &Lookup::Id(id)).await?;
    check_etag(etag, model.revision, "journey")?;
    if parse_state(&model.state)? == LifecycleState::Active {
        return hydrate_one(conn, model).await;
    }
    let archived: Vec<String> = touchpoint::Entity::find()
        .select_only()
        .column(touchpoint::Column::Key)
        .filter(touchpoint::Column::State.eq(LifecycleState::Archived.as_str()))
        .filter(
            touchpoint::Column::Id.in_subquery(
                Query::select()
                    .column(jst::Column::TouchpointId)
                    .from(jst::Entity)
                    .and_where(Expr::col(jst::Column::JourneyId).eq(id.to_string()))
                    .to_owned(),
            ),
        )
        .order_by_asc(touchpoint::Column::Key)
        .into_tuple()
        .all(conn)
        .await
        .db()?;
    if !archived.is_empty() {
        return Err(Error::precondition(
            "TOUCHPOINT_ARCHIVED",
            format!(
                "journey {} uses archived touchpoints {}: restore them or change the journey first",
                model.key,
                archived.join(", ")
            ),
        ));
    }
    let journey = set_state(conn, id, LifecycleState::Active).await?;
    tracing::info!(journey = %journey.key, "journey restored");
    Ok(journey)
}

/// Deletes a journey and its stages.
pub(crate) async fn delete<C: ConnectionTrait>(
    conn: &C,
    id: JourneyId,
    etag: Option<&str>,
) -> Result<()> {
    let model = find(conn, &Lookup::Id(id)).await?;
    check_etag(etag, model.revision, "journey")?;
    delete_stages(conn, id).await?;
    journey::Entity::delete_by_id(id.to_string())
        .exec(conn)
        .await
        .db()?;
    tracing::info!(journey = %model.key, "journey deleted");
    Ok(())
}

/// Reads one journey.
pub(crate) async fn get<C: ConnectionTrait>(
    conn: &C,
    lookup: &Lookup<JourneyId>,
) -> Result<Journey> {
    hydrate_one(conn, find(conn, lookup).await?).await
}

/// One page of journeys ordered by key.
pub(crate) async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &JourneyFilter,
    page: &PageRequest,
) -> Result<Page<Journey>> {
    let mut query = journey::Entity::find();
    if let Some(state) = filter.state {
        query = query.filter(J::State.eq(state.as_str()));
    }
    if let Some(key) = &filter.touchpoint_key {
        query = query.filter(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(jst::Entity)
                .inner_join(
                    touchpoint::Entity,
                    Expr::col((touchpoint::Entity, touchpoint::Column::Id))
                        .equals((jst::Entity, jst::Column::TouchpointId)),
                )
                .and_where(
                    Expr::col((jst::Entity, jst::Column::JourneyId))
                        .equals((journey::Entity, J::Id)),
                )
                .and_where(
                    Expr::col((touchpoint::Entity, touchpoint::Column::Key)).eq(key.as_str()),
                )
                .to_owned(),
        ));
    }
    if let Some(after) = &page.after {
        query = query.filter(J::Key.gt(after.as_str()));
    }
    let size = u64::from(Ord::max(page.size, 1));
    let mut rows = query
        .order_by_asc(J::Key)
        .limit(size + 1)
        .all(conn)
        .await
        .db()?;
    let more = rows.len() as u64 > size;
    rows.truncate(size as usize);
    let next_after = if more {
        rows.last().map(|m| m.key.clone())
    } else {
        None
    };
    Ok(Page {
        items: hydrate(conn, rows).await?,
        next_after,
    })
}
