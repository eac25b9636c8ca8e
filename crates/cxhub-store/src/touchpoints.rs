//! Touchpoints: batch creation with in-batch parents, reads, keyset listings, updates with the
//! hierarchy rules, archive/restore (with cascade) and delete.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use cxhub_domain::page::{Page, PageRequest};
use cxhub_domain::repo::{Lookup, StateChange};
use cxhub_domain::touchpoint::{
    IntendedExperience, Key, LifecycleState, MAX_BATCH, MAX_DEPTH, NewTouchpoint, Node, ParentRef,
    Touchpoint, TouchpointFilter, TouchpointId, TouchpointPatch, check_etag, check_placement,
};
use cxhub_domain::{Error, Result, Violations};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::{journey, journey_stage_touchpoint as jst, touchpoint, touchpoint_label};
use crate::error::{DbResultExt, corrupt};
use crate::{IN_LIST_CHUNK, now, rows_per_statement};

use touchpoint::Column as Tp;

// ---------------------------------------------------------------------------------------------
// Conversions

pub(crate) fn parse_id(s: &str) -> Result<TouchpointId> {
    s.parse().map_err(corrupt)
}

pub(crate) fn parse_key(s: &str) -> Result<Key> {
    Key::parse(s).map_err(corrupt)
}

pub(crate) fn parse_state(s: &str) -> Result<LifecycleState> {
    s.parse().map_err(corrupt)
}

/// A stored row as a domain touchpoint; `parent_key` is the key of `m.parent_id`.
fn to_domain(m: touchpoint::Model, parent_key: Option<Key>) -> Result<Touchpoint> {
    let parent = match (m.parent_id.as_deref(), parent_key) {
        (None, _) => None,
        (Some(pid), Some(key)) => Some((parse_id(pid)?, key)),
        (Some(pid), None) => return Err(corrupt(format!("parent {pid} of {} is missing", m.key))),
    };
    Ok(Touchpoint {
        id: parse_id(&m.id)?,
        key: parse_key(&m.key)?,
        name: m.name,
        description: m.description,
        channel: m.channel.parse().map_err(corrupt)?,
        stage: m.stage.parse().map_err(corrupt)?,
        department: m.department,
        main: m.is_main,
        parent,
        intended: IntendedExperience {
            target_nps: m.target_nps,
            target_csat: m.target_csat,
            target_ces: m.target_ces,
        },
        labels: serde_json::from_str(&m.labels_json).map_err(corrupt)?,
        state: parse_state(&m.state)?,
        create_time: m.created_at,
        update_time: m.updated_at,
        revision: m.revision,
    })
}

/// Every column of a touchpoint, set.
fn to_row(tp: &Touchpoint) -> Result<touchpoint::ActiveModel> {
    Ok(touchpoint::ActiveModel {
        id: Set(tp.id.to_string()),
        key: Set(tp.key.as_str().to_owned()),
        name: Set(tp.name.clone()),
        description: Set(tp.description.clone()),
        channel: Set(tp.channel.as_str().to_owned()),
        stage: Set(tp.stage.as_str().to_owned()),
        department: Set(tp.department.clone()),
        is_main: Set(tp.main),
        parent_id: Set(tp.parent.as_ref().map(|(id, _)| id.to_string())),
        target_nps: Set(tp.intended.target_nps),
        target_csat: Set(tp.intended.target_csat),
        target_ces: Set(tp.intended.target_ces),
        labels_json: Set(serde_json::to_string(&tp.labels).map_err(corrupt)?),
        state: Set(tp.state.as_str().to_owned()),
        revision: Set(tp.revision),
        created_at: Set(tp.create_time),
        updated_at: Set(tp.update_time),
    })
}

fn label_rows(
    id: TouchpointId,
    labels: &BTreeMap<String, String>,
) -> impl Iterator<Item = touchpoint_label::ActiveModel> + '_ {
    labels
        .iter()
        .map(move |(k, v)| touchpoint_label::ActiveModel {
            touchpoint_id: Set(id.to_string()),
            key: Set(k.clone()),
            value: Set(v.clone()),
        })
}

/// Inserts labels rows with as few statements as the bind-parameter limit allows.
async fn insert_labels<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<touchpoint_label::ActiveModel>,
) -> Result<()> {
    let mut rows = rows.into_iter().peekable();
    let per_statement = rows_per_statement(3);
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(per_statement).collect();
        touchpoint_label::Entity::insert_many(chunk)
            .exec_without_returning(conn)
            .await
            .db()?;
    }
    Ok(())
}

/// Rows as domain touchpoints, with the keys of their parents (one query for the parents that
/// are not among the rows).
pub(crate) async fn hydrate<C: ConnectionTrait>(
    conn: &C,
    models: Vec<touchpoint::Model>,
) -> Result<Vec<Touchpoint>> {
    let mut keys: HashMap<String, String> = models
        .iter()
        .map(|m| (m.id.clone(), m.key.clone()))
        .collect();
    let missing: Vec<String> = models
        .iter()
        .filter_map(|m| m.parent_id.clone())
        .filter(|p| !keys.contains_key(p))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    for chunk in missing.chunks(IN_LIST_CHUNK) {
        let rows: Vec<(String, String)> = touchpoint::Entity::find()
            .select_only()
            .column(Tp::Id)
            .column(Tp::Key)
            .filter(Tp::Id.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(conn)
            .await
            .db()?;
        keys.extend(rows);
    }
    models
        .into_iter()
        .map(|m| {
            let parent_key = match m.parent_id.as_ref().and_then(|p| keys.get(p)) {
                Some(key) => Some(parse_key(key)?),
                None => None,
            };
            to_domain(m, parent_key)
        })
        .collect()
}

async fn hydrate_one<C: ConnectionTrait>(conn: &C, model: touchpoint::Model) -> Result<Touchpoint> {
    hydrate(conn, vec![model])
        .await?
        .pop()
        .ok_or_else(|| corrupt("hydrating one row gave none"))
}

async fn find<C: ConnectionTrait>(
    conn: &C,
    lookup: &Lookup<TouchpointId>,
) -> Result<touchpoint::Model> {
    let (query, name) = match lookup {
        Lookup::Id(id) => (
            touchpoint::Entity::find_by_id(id.to_string()),
            id.to_string(),
        ),
        Lookup::Key(key) => (
            touchpoint::Entity::find().filter(Tp::Key.eq(key.as_str())),
            key.to_string(),
        ),
    };
    query
        .one(conn)
        .await
        .db()?
        .ok_or_else(|| Error::not_found("touchpoint", name))
}

// ---------------------------------------------------------------------------------------------
// The hierarchy

/// A node of the hierarchy and its parent.
#[derive(Debug, Clone)]
struct Placed {
    node: Node,
    parent: Option<TouchpointId>,
}

type NodeTuple = (String, String, bool, String, Option<String>);

async fn load_nodes<C: ConnectionTrait>(conn: &C, condition: Condition) -> Result<Vec<Placed>> {
    let rows: Vec<NodeTuple> = touchpoint::Entity::find()
        .select_only()
        .columns([Tp::Id, Tp::Key, Tp::IsMain, Tp::State, Tp::ParentId])
        .filter(condition)
        .into_tuple()
        .all(conn)
        .await
        .db()?;
    rows.into_iter()
        .map(|(id, key, main, state, parent)| {
            Ok(Placed {
                node: Node {
                    id: parse_id(&id)?,
                    key: parse_key(&key)?,
                    main,
                    state: parse_state(&state)?,
                },
                parent: parent.as_deref().map(parse_id).transpose()?,
            })
        })
        .collect()
}

async fn load_node<C: ConnectionTrait>(conn: &C, condition: Condition) -> Result<Option<Placed>> {
    Ok(load_nodes(conn, condition).await?.pop())
}

/// Loads into `known` every ancestor of the nodes in `known`, one query per level.
async fn load_ancestry<C: ConnectionTrait>(
    conn: &C,
    known: &mut HashMap<TouchpointId, Placed>,
) -> Result<()> {
    let mut frontier: HashSet<TouchpointId> = known
        .values()
        .filter_map(|p| p.parent)
        .filter(|p| !known.contains_key(p))
        .collect();
    for _ in 0..=MAX_DEPTH {
        if frontier.is_empty() {
            break;
        }
        let ids: Vec<String> = frontier.iter().map(ToString::to_string).collect();
        let mut next = HashSet::new();
        for chunk in ids.chunks(IN_LIST_CHUNK) {
            for placed in load_nodes(conn, Tp::Id.is_in(chunk.iter().cloned()).into()).await? {
                next.extend(placed.parent);
                known.insert(placed.node.id, placed);
            }
        }
        next.retain(|id| !known.contains_key(id));
        frontier = next;
    }
    Ok(())
}

/// The chain of `first` and its ancestors, up to a root, at most `MAX_DEPTH + 1` long (enough
/// to refuse anything too deep); it stops at the first repeated node, which a cycle brings.
fn chain(known: &HashMap<TouchpointId, Placed>, first: TouchpointId) -> Vec<Node> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(first);
    while let Some(id) = next {
        if out.len() > MAX_DEPTH || !seen.insert(id) {
            break;
        }
        let Some(placed) = known.get(&id) else { break };
        out.push(placed.node.clone());
        next = placed.parent;
    }
    out
}

/// Ancestors of `parent` (itself first), loaded from the database.
async fn db_chain<C: ConnectionTrait>(conn: &C, parent: &Placed) -> Result<Vec<Node>> {
    let mut known = HashMap::from([(parent.node.id, parent.clone())]);
    load_ancestry(conn, &mut known).await?;
    Ok(chain(&known, parent.node.id))
}

/// The descendants of `root`, level by level (each level ordered by key), following only
/// children in `state` when given.
async fn descendant_levels<C: ConnectionTrait>(
    conn: &C,
    root: TouchpointId,
    state: Option<LifecycleState>,
) -> Result<Vec<Vec<TouchpointId>>> {
    let mut levels: Vec<Vec<TouchpointId>> = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut frontier = vec![root.to_string()];
    while !frontier.is_empty() && levels.len() <= MAX_DEPTH {
        let mut level = Vec::new();
        for chunk in frontier.chunks(IN_LIST_CHUNK) {
            let mut query = touchpoint::Entity::find()
                .select_only()
                .column(Tp::Id)
                .filter(Tp::ParentId.is_in(chunk.iter().cloned()))
                .order_by_asc(Tp::Key);
            if let Some(state) = state {
                query = query.filter(Tp::State.eq(state.as_str()));
            }
            let ids: Vec<String> = query.into_tuple().all(conn).await.db()?;
            for id in ids {
                let id = parse_id(&id)?;
                if seen.insert(id) {
                    level.push(id);
                }
            }
        }
        if level.is_empty() {
            break;
        }
        frontier = level.iter().map(ToString::to_string).collect();
        levels.push(level);
    }
    Ok(levels)
}

fn key_taken(index: usize, message: String) -> Error {
    Error::AlreadyExists {
        reason: "TOUCHPOINT_KEY_TAKEN",
        field: format!("touchpoints[{index}].key"),
        message,
    }
}

fn archived(tp_key: &str) -> Error {
    Error::precondition(
        "TOUCHPOINT_ARCHIVED",
        format!("touchpoint {tp_key} is archived: restore it before changing it"),
    )
}

// ---------------------------------------------------------------------------------------------
// Writes

/// Creates a batch (see `TouchpointRepo::create_touchpoints`).
pub(crate) async fn create<C: ConnectionTrait>(
    conn: &C,
    items: Vec<NewTouchpoint>,
) -> Result<Vec<Touchpoint>> {
    if items.len() > MAX_BATCH {
        return Err(Error::invalid_field(
            "touchpoints",
            format!("at most {MAX_BATCH} touchpoints per batch"),
        ));
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }

    // Keys repeated in the batch, then keys in use.
    let mut index_of: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match index_of.entry(item.key.as_str()) {
            Entry::Occupied(first) => {
                return Err(key_taken(
                    i,
                    format!(
                        "key {} is repeated in the batch (first at touchpoints[{}].key)",
                        item.key,
                        first.get()
                    ),
                ));
            }
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
    let keys: Vec<&str> = items.iter().map(|item| item.key.as_str()).collect();
    let mut taken = HashSet::new();
    for chunk in keys.chunks(IN_LIST_CHUNK) {
        let rows: Vec<String> = touchpoint::Entity::find()
            .select_only()
            .column(Tp::Key)
            .filter(Tp::Key.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(conn)
            .await
            .db()?;
        taken.extend(rows);
    }
    if let Some(i) = items
        .iter()
        .position(|item| taken.contains(item.key.as_str()))
    {
        return Err(key_taken(
            i,
            format!("a touchpoint with key {} exists already", items[i].key),
        ));
    }

    // Ids first, so parents in the batch can be named by id before anything is written.
    let ids: Vec<TouchpointId> = items.iter().map(|_| TouchpointId::generate()).collect();

    // Parents outside the batch, in one query.
    let mut db_keys = Vec::new();
    let mut db_ids = Vec::new();
    for item in &items {
        match &item.parent {
            ParentRef::Key(key) if !index_of.contains_key(key.as_str()) => {
                db_keys.push(key.as_str().to_owned());
            }
            ParentRef::Id(id) => db_ids.push(id.to_string()),
            _ => {}
        }
    }
    let mut known: HashMap<TouchpointId, Placed> = HashMap::new();
    let mut id_of_key: HashMap<String, TouchpointId> = HashMap::new();
    if !db_keys.is_empty() || !db_ids.is_empty() {
        let condition = Condition::any()
            .add(Tp::Key.is_in(db_keys))
            .add(Tp::Id.is_in(db_ids));
        for placed in load_nodes(conn, condition).await? {
            id_of_key.insert(placed.node.key.as_str().to_owned(), placed.node.id);
            known.insert(placed.node.id, placed);
        }
    }
    let mut violations = Violations::new();
    let mut parents: Vec<Option<TouchpointId>> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let parent = match &item.parent {
            ParentRef::Root => None,
            ParentRef::Key(key) => match index_of.get(key.as_str()) {
                Some(&j) => Some(ids[j]),
                None => match id_of_key.get(key.as_str()) {
                    Some(id) => Some(*id),
                    None => {
                        violations.add(
                            format!("touchpoints[{i}].parent_key"),
                            format!(
                                "no touchpoint has key {key}, in the registry or in this batch"
                            ),
                        );
                        None
                    }
                },
            },
            ParentRef::Id(id) => {
                if known.contains_key(id) {
                    Some(*id)
                } else {
                    violations.add(
                        format!("touchpoints[{i}].parent_id"),
                        format!("no touchpoint has id {id}"),
                    );
                    None
                }
            }
        };
        parents.push(parent);
    }
    violations.into_result()?;

    // The hierarchy rules, over the stored ancestors and the batch itself.
    load_ancestry(conn, &mut known).await?;
    for (i, item) in items.iter().enumerate() {
        known.insert(
            ids[i],
            Placed {
                node: Node {
                    id: ids[i],
                    key: item.key.clone(),
                    main: item.main,
                    state: LifecycleState::Active,
                },
                parent: parents[i],
            },
        );
    }
    for (i, parent) in parents.iter().enumerate() {
        if let (Some(parent), Some(child)) = (parent, known.get(&ids[i])) {
            check_placement(&child.node, 1, &chain(&known, *parent))?;
        }
    }

    // Build, then write parents before children (a chunked insert must not reference a row
    // of a later chunk), two multi-row statements per chunk at most.
    let position: HashMap<TouchpointId, usize> =
        ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let depth_in_batch = |i: usize| {
        let mut depth = 0;
        let mut next = parents[i];
        while let Some(p) = next.and_then(|p| position.get(&p)) {
            depth += 1;
            if depth > MAX_DEPTH {
                break;
            }
            next = parents[*p];
        }
        depth
    };
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_cached_key(|&i| depth_in_batch(i));

    let at = now();
    let mut created = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let parent = match parents[i] {
            None => None,
            Some(p) => {
                let key = known
                    .get(&p)
                    .map(|placed| placed.node.key.clone())
                    .ok_or_else(|| corrupt("resolved parent vanished"))?;
                Some((p, key))
            }
        };
        created.push(Touchpoint {
            id: ids[i],
            key: item.key,
            name: item.name,
            description: item.description,
            channel: item.channel,
            stage: item.stage,
            department: item.department,
            main: item.main,
            parent,
            intended: item.intended,
            labels: item.labels,
            state: LifecycleState::Active,
            create_time: at,
            update_time: at,
            revision: 1,
        });
    }
    let rows = order
        .iter()
        .map(|&i| to_row(&created[i]))
        .collect::<Result<Vec<_>>>()?;
    for chunk in rows.chunks(rows_per_statement(17)) {
        touchpoint::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await
            .db()?;
    }
    let labels: Vec<_> = created
        .iter()
        .flat_map(|tp| label_rows(tp.id, &tp.labels))
        .collect();
    insert_labels(conn, labels).await?;
    tracing::info!(created = created.len(), "touchpoints created");
    Ok(created)
}

/// Applies a patch (see `TouchpointRepo::update_touchpoint`).
pub(crate) async fn update<C: ConnectionTrait>(
    conn: &C,
    id: TouchpointId,
    etag: Option<&str>,
    patch: TouchpointPatch,
) -> Result<Touchpoint> {
    let model = find(conn, &Lookup::Id(id)).await?;
    check_etag(etag, model.revision, "touchpoint")?;
    if parse_state(&model.state)? == LifecycleState::Archived {
        return Err(archived(&model.key));
    }
    let mut tp = hydrate_one(conn, model).await?;
    if patch.is_empty() {
        return Ok(tp);
    }
    let was_main = tp.main;
    let old_parent = tp.parent.as_ref().map(|(p, _)| *p);
    patch.apply_fields(&mut tp);

    let new_parent = match &patch.parent {
        None => None,
        Some(ParentRef::Root) => {
            tp.parent = None;
            None
        }
        Some(ParentRef::Id(pid)) => {
            let parent = load_node(conn, Tp::Id.eq(pid.to_string()).into())
                .await?
                .ok_or_else(|| {
                    Error::invalid_field(
                        "touchpoint.parent_id",
                        format!("no touchpoint has id {pid}"),
                    )
                })?;
            tp.parent = Some((parent.node.id, parent.node.key.clone()));
            Some(parent)
        }
        Some(ParentRef::Key(key)) => {
            let parent = load_node(conn, Tp::Key.eq(key.as_str()).into())
                .await?
                .ok_or_else(|| {
                    Error::invalid_field(
                        "touchpoint.parent_key",
                        format!("no touchpoint has key {key}"),
                    )
                })?;
            tp.parent = Some((parent.node.id, parent.node.key.clone()));
            Some(parent)
        }
    };
    let moved = tp.parent.as_ref().map(|(p, _)| *p) != old_parent;

    if was_main && !tp.main {
        let main_children = touchpoint::Entity::find()
            .filter(Tp::ParentId.eq(id.to_string()))
            .filter(Tp::IsMain.eq(true))
            .count(conn)
            .await
            .db()?;
        if main_children > 0 {
            return Err(Error::precondition(
                "MAIN_BELOW_SUB",
                format!(
                    "touchpoint {} has {main_children} main children: a sub-touchpoint cannot have main children",
                    tp.key
                ),
            ));
        }
    }
    if moved || was_main != tp.main {
        let chain = match (&new_parent, &tp.parent) {
            (Some(parent), _) => db_chain(conn, parent).await?,
            (None, Some((pid, _))) => {
                match load_node(conn, Tp::Id.eq(pid.to_string()).into()).await? {
                    Some(parent) => db_chain(conn, &parent).await?,
                    None => return Err(corrupt("parent vanished")),
                }
            }
            (None, None) => Vec::new(),
        };
        let height = if moved {
            1 + descendant_levels(conn, id, None).await?.len()
        } else {
            1
        };
        let node = Node {
            id,
            key: tp.key.clone(),
            main: tp.main,
            state: LifecycleState::Active,
        };
        check_placement(&node, height, &chain)?;
    }

    let previous = tp.revision;
    tp.revision += 1;
    tp.update_time = now();
    let mut row = to_row(&tp)?;
    row.id = NotSet;
    row.key = NotSet;
    row.created_at = NotSet;
    let updated = touchpoint::Entity::update_many()
        .set(row)
        .filter(Tp::Id.eq(id.to_string()))
        .filter(Tp::Revision.eq(previous))
        .exec(conn)
        .await
        .db()?;
    if updated.rows_affected != 1 {
        return Err(Error::aborted(
            "ETAG_MISMATCH",
            "the touchpoint changed while it was being updated: read it again and retry",
        ));
    }
    if let Some(labels) = &patch.labels {
        touchpoint_label::Entity::delete_many()
            .filter(touchpoint_label::Column::TouchpointId.eq(id.to_string()))
            .exec(conn)
            .await
            .db()?;
        insert_labels(conn, label_rows(id, labels).collect()).await?;
    }
    tracing::info!(touchpoint = %tp.key, revision = tp.revision, "touchpoint updated");
    Ok(tp)
}

/// Sets the state of `ids`, bumping their revisions.
async fn set_state<C: ConnectionTrait>(
    conn: &C,
    ids: &[TouchpointId],
    state: LifecycleState,
) -> Result<()> {
    let at = now();
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        touchpoint::Entity::update_many()
            .col_expr(Tp::State, Expr::value(state.as_str()))
            .col_expr(Tp::Revision, Expr::col(Tp::Revision).add(1))
            .col_expr(Tp::UpdatedAt, Expr::value(at))
            .filter(Tp::Id.is_in(chunk.iter().cloned()))
            .exec(conn)
            .await
            .db()?;
    }
    Ok(())
}

/// Archives (see `TouchpointRepo::archive_touchpoint`).
pub(crate) async fn archive<C: ConnectionTrait>(
    conn: &C,
    id: TouchpointId,
    etag: Option<&str>,
    cascade: bool,
) -> Result<StateChange> {
    let model = find(conn, &Lookup::Id(id)).await?;
    check_etag(etag, model.revision, "touchpoint")?;
    if parse_state(&model.state)? == LifecycleState::Archived {
        return Ok(StateChange {
            touchpoint: hydrate_one(conn, model).await?,
            changed: Vec::new(),
        });
    }
    let levels = descendant_levels(conn, id, Some(LifecycleState::Active)).await?;
    if let Some(children) = levels.first().filter(|_| !cascade) {
        return Err(Error::precondition(
            "ACTIVE_CHILDREN",
            format!(
                "touchpoint {} has {} active {}: archive them first, or archive with cascade",
                model.key,
                children.len(),
                if children.len() == 1 {
                    "child"
                } else {
                    "children"
                }
            ),
        ));
    }
    let changed: Vec<TouchpointId> = std::iter::once(id)
        .chain(levels.into_iter().flatten())
        .collect();
    set_state(conn, &changed, LifecycleState::Archived).await?;
    let touchpoint = hydrate_one(conn, find(conn, &Lookup::Id(id)).await?).await?;
    tracing::info!(touchpoint = %touchpoint.key, archived = changed.len(), "touchpoint archived");
    Ok(StateChange {
        touchpoint,
        changed,
    })
}

/// Restores (see `TouchpointRepo::restore_touchpoint`).
pub(crate) async fn restore<C: ConnectionTrait>(
    conn: &C,
    id: TouchpointId,
    etag: Option<&str>,
    cascade: bool,
) -> Result<StateChange> {
    let model = find(conn, &Lookup::Id(id)).await?;
    check_etag(etag, model.revision, "touchpoint")?;
    if parse_state(&model.state)? == LifecycleState::Active {
        return Ok(StateChange {
            touchpoint: hydrate_one(conn, model).await?,
            changed: Vec::new(),
        });
    }
    if let Some(pid) = &model.parent_id {
        let Some(parent) = load_node(conn, Tp::Id.eq(pid.as_str()).into()).await? else {
            return Err(corrupt("parent vanished"));
        };
        let node = Node {
            id,
            key: parse_key(&model.key)?,
            main: model.is_main,
            state: LifecycleState::Active,
        };
        check_placement(&node, 1, &db_chain(conn, &parent).await?)?;
    }
    let levels = if cascade {
        descendant_levels(conn, id, Some(LifecycleState::Archived)).await?
    } else {
        Vec::new()
    };
    let changed: Vec<TouchpointId> = std::iter::once(id)
        .chain(levels.into_iter().flatten())
        .collect();
    set_state(conn, &changed, LifecycleState::Active).await?;
    let touchpoint = hydrate_one(conn, find(conn, &Lookup::Id(id)).await?).await?;
    tracing::info!(touchpoint = %touchpoint.key, restored = changed.len(), "touchpoint restored");
    Ok(StateChange {
        touchpoint,
        changed,
    })
}

/// Deletes (see `TouchpointRepo::delete_touchpoint`).
pub(crate) async fn delete<C: ConnectionTrait>(
    conn: &C,
    id: TouchpointId,
    etag: Option<&str>,
) -> Result<()> {
    let model = find(conn, &Lookup::Id(id)).await?;
    check_etag(etag, model.revision, "touchpoint")?;
    let children = touchpoint::Entity::find()
        .filter(Tp::ParentId.eq(id.to_string()))
        .count(conn)
        .await
        .db()?;
    let journeys: Vec<String> = journey::Entity::find()
        .select_only()
        .column(journey::Column::Key)
        .filter(
            journey::Column::Id.in_subquery(
                Query::select()
                    .column(jst::Column::JourneyId)
                    .from(jst::Entity)
                    .and_where(Expr::col(jst::Column::TouchpointId).eq(id.to_string()))
                    .to_owned(),
            ),
        )
        .order_by_asc(journey::Column::Key)
        .into_tuple()
        .all(conn)
        .await
        .db()?;
    if children > 0 || !journeys.is_empty() {
        let mut reasons = Vec::new();
        if children > 0 {
            let noun = if children == 1 { "child" } else { "children" };
            reasons.push(format!("has {children} {noun}"));
        }
        if !journeys.is_empty() {
            reasons.push(format!("is used by journeys {}", journeys.join(", ")));
        }
        return Err(Error::precondition(
            "TOUCHPOINT_REFERENCED",
            format!(
                "touchpoint {} {}: {} first",
                model.key,
                reasons.join(" and "),
                match (children > 0, !journeys.is_empty()) {
                    (true, true) => "move or delete its children and remove it from those journeys",
                    (true, false) => "move or delete its children",
                    _ => "remove it from those journeys",
                }
            ),
        ));
    }
    touchpoint_label::Entity::delete_many()
        .filter(touchpoint_label::Column::TouchpointId.eq(id.to_string()))
        .exec(conn)
        .await
        .db()?;
    touchpoint::Entity::delete_by_id(id.to_string())
        .exec(conn)
        .await
        .db()?;
    tracing::info!(touchpoint = %model.key, "touchpoint deleted");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reads

/// Reads one touchpoint.
pub(crate) async fn get<C: ConnectionTrait>(
    conn: &C,
    lookup: &Lookup<TouchpointId>,
) -> Result<Touchpoint> {
    hydrate_one(conn, find(conn, lookup).await?).await
}

/// One page of touchpoints ordered by key.
pub(crate) async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &TouchpointFilter,
    page: &PageRequest,
) -> Result<Page<Touchpoint>> {
    let mut query = touchpoint::Entity::find();
    if let Some(channel) = filter.channel {
        query = query.filter(Tp::Channel.eq(channel.as_str()));
    }
    if let Some(stage) = filter.stage {
        query = query.filter(Tp::Stage.eq(stage.as_str()));
    }
    if let Some(department) = &filter.department {
        query = query.filter(Tp::Department.eq(department.as_str()));
    }
    if let Some(parent) = filter.parent_id {
        query = query.filter(Tp::ParentId.eq(parent.to_string()));
    }
    if filter.roots_only {
        query = query.filter(Tp::ParentId.is_null());
    }
    if let Some(state) = filter.state {
        query = query.filter(Tp::State.eq(state.as_str()));
    }
    if filter.main_only {
        query = query.filter(Tp::IsMain.eq(true));
    }
    for (key, value) in &filter.labels {
        use touchpoint_label::Column as L;
        query = query.filter(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(touchpoint_label::Entity)
                .and_where(
                    Expr::col((touchpoint_label::Entity, L::TouchpointId))
                        .equals((touchpoint::Entity, Tp::Id)),
                )
                .and_where(Expr::col((touchpoint_label::Entity, L::Key)).eq(key.as_str()))
                .and_where(Expr::col((touchpoint_label::Entity, L::Value)).eq(value.as_str()))
                .to_owned(),
        ));
    }
    if let Some(after) = &page.after {
        query = query.filter(Tp::Key.gt(after.as_str()));
    }
    let size = u64::from(Ord::max(page.size, 1));
    let mut rows = query
        .order_by_asc(Tp::Key)
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

/// Every touchpoint ordered by key (archived ones only if asked).
pub(crate) async fn all<C: ConnectionTrait>(
    conn: &C,
    include_archived: bool,
) -> Result<Vec<Touchpoint>> {
    let mut query = touchpoint::Entity::find();
    if !include_archived {
        query = query.filter(Tp::State.eq(LifecycleState::Active.as_str()));
    }
    let rows = query.order_by_asc(Tp::Key).all(conn).await.db()?;
    hydrate(conn, rows).await
}
