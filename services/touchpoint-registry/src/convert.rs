//! Wire types ↔ domain types. Validation of requests happens here, once, and collects every
//! violation with the path of its field, so a caller learns all of them in one answer.
//!
//! Free functions rather than `TryFrom`: the orphan rule forbids implementing a foreign trait
//! between two foreign types (`cxhub_proto` ↔ `cxhub_domain`), and the domain crate stays
//! free of wire types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cxhub_domain::identifier::{
    Classified, CustomerId, Identifier, JunkPolicy, classify_source_id,
};
use cxhub_domain::interaction::{CustomerRef, NewInteraction, check_outcome};
use cxhub_domain::journey::{self, Journey, JourneyMapStage, JourneyPatch, NewJourney};
use cxhub_domain::record::{ContentHash, check_record_id, check_source, check_unix_timestamp};
use cxhub_domain::touchpoint::{
    self as tp, Channel, IntendedExperience, Key, LifecycleState, NewTouchpoint, ParentRef, Stage,
    Touchpoint, TouchpointPatch, TreeNode,
};
use cxhub_domain::{FieldViolation, Violations};
use cxhub_proto::touchpoint::v1 as pb;

/// A protobuf timestamp from a UTC time.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The wire channel of a domain channel.
pub fn channel_to_pb(c: Channel) -> pb::Channel {
    match c {
        Channel::Store => pb::Channel::Store,
        Channel::Web => pb::Channel::Web,
        Channel::MobileApp => pb::Channel::MobileApp,
        Channel::Phone => pb::Channel::Phone,
        Channel::Email => pb::Channel::Email,
        Channel::Letter => pb::Channel::Letter,
        Channel::Chat => pb::Channel::Chat,
        Channel::Social => pb::Channel::Social,
        Channel::AtmKiosk => pb::Channel::AtmKiosk,
        Channel::FieldService => pb::Channel::FieldService,
        Channel::Partner => pb::Channel::Partner,
        Channel::Other => pb::Channel::Other,
    }
}

/// The domain channel of a wire value; `Ok(None)` for UNSPECIFIED.
pub fn channel_from_pb(v: i32) -> Result<Option<Channel>, String> {
    let c = pb::Channel::try_from(v).map_err(|_| format!("unknown channel {v}"))?;
    Ok(Channel::ALL
        .iter()
        .copied()
        .find(|d| channel_to_pb(*d) == c))
}

/// The wire stage of a domain stage.
pub fn stage_to_pb(s: Stage) -> pb::JourneyStage {
    match s {
        Stage::Awareness => pb::JourneyStage::Awareness,
        Stage::Consideration => pb::JourneyStage::Consideration,
        Stage::Purchase => pb::JourneyStage::Purchase,
        Stage::Onboarding => pb::JourneyStage::Onboarding,
        Stage::Delivery => pb::JourneyStage::Delivery,
        Stage::Usage => pb::JourneyStage::Usage,
        Stage::Support => pb::JourneyStage::Support,
        Stage::Billing => pb::JourneyStage::Billing,
        Stage::Renewal => pb::JourneyStage::Renewal,
        Stage::Return => pb::JourneyStage::Return,
        Stage::Advocacy => pb::JourneyStage::Advocacy,
    }
}

/// The domain stage of a wire value; `Ok(None)` for UNSPECIFIED.
pub fn stage_from_pb(v: i32) -> Result<Option<Stage>, String> {
    let s = pb::JourneyStage::try_from(v).map_err(|_| format!("unknown journey stage {v}"))?;
    Ok(Stage::ALL.iter().copied().find(|d| stage_to_pb(*d) == s))
}

/// The wire state of a domain state.
pub fn state_to_pb(s: LifecycleState) -> pb::LifecycleState {
    match s {
        LifecycleState::Active => pb::LifecycleState::Active,
        LifecycleState::Archived => pb::LifecycleState::Archived,
    }
}

/// The domain state of a wire value; `Ok(None)` for UNSPECIFIED.
pub fn state_from_pb(v: i32) -> Result<Option<LifecycleState>, String> {
    match pb::LifecycleState::try_from(v) {
        Ok(pb::LifecycleState::Unspecified) => Ok(None),
        Ok(pb::LifecycleState::Active) => Ok(Some(LifecycleState::Active)),
        Ok(pb::LifecycleState::Archived) => Ok(Some(LifecycleState::Archived)),
        Err(_) => Err(format!("unknown lifecycle state {v}")),
    }
}

fn required<T>(value: Result<Option<T>, String>) -> Result<T, String> {
    value?.ok_or_else(|| "required".to_owned())
}

/// Joins a field path: `join("touchpoint", "key")` is `touchpoint.key`.
pub fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Checks the parent of a touchpoint given on the wire (`parent_id` or `parent_key`).
fn parent_ref(
    parent_id: &str,
    parent_key: &str,
    prefix: &str,
    v: &mut Violations,
) -> Option<ParentRef> {
    match (parent_id.is_empty(), parent_key.is_empty()) {
        (true, true) => Some(ParentRef::Root),
        (false, true) => v
            .check(join(prefix, "parent_id"), parent_id.parse())
            .map(ParentRef::Id),
        (true, false) => v
            .check(join(prefix, "parent_key"), Key::parse(parent_key))
            .map(ParentRef::Key),
        (false, false) => {
            v.add(
                join(prefix, "parent_key"),
                "give parent_id or parent_key, not both",
            );
            None
        }
    }
}

fn intended(
    pb_intended: Option<&pb::IntendedExperience>,
    prefix: &str,
    v: &mut Violations,
) -> IntendedExperience {
    let Some(x) = pb_intended else {
        return IntendedExperience::default();
    };
    let prefix = join(prefix, "intended_experience");
    IntendedExperience {
        target_nps: x
            .target_nps
            .and_then(|n| v.check(join(&prefix, "target_nps"), tp::check_target_nps(n))),
        target_csat: x
            .target_csat
            .and_then(|n| v.check(join(&prefix, "target_csat"), tp::check_target_csat(n))),
        target_ces: x
            .target_ces
            .and_then(|n| v.check(join(&prefix, "target_ces"), tp::check_target_ces(n))),
    }
}

fn labels(
    labels: &BTreeMap<String, String>,
    prefix: &str,
    v: &mut Violations,
) -> BTreeMap<String, String> {
    for (key, problem) in tp::check_labels(labels) {
        let field = if key.is_empty() {
            join(prefix, "labels")
        } else {
            format!("{}[{key}]", join(prefix, "labels"))
        };
        v.add(field, problem);
    }
    labels.clone()
}

/// Validates a touchpoint to create. Output-only fields are ignored. Violations are recorded
/// under `prefix` (e.g. `touchpoint` or `touchpoints[3]`).
pub fn new_touchpoint(
    t: &pb::Touchpoint,
    prefix: &str,
    v: &mut Violations,
) -> Option<NewTouchpoint> {
    let key = v.check(join(prefix, "key"), Key::parse(&t.key));
    let name = v.check(join(prefix, "name"), tp::check_name(&t.name));
    let description = v.check(
        join(prefix, "description"),
        tp::check_description(&t.description),
    );
    let channel = v.check(
        join(prefix, "channel"),
        required(channel_from_pb(t.channel)),
    );
    let stage = v.check(join(prefix, "stage"), required(stage_from_pb(t.stage)));
    let department = v.check(
        join(prefix, "department"),
        tp::check_department(&t.department),
    );
    let parent = parent_ref(&t.parent_id, &t.parent_key, prefix, v);
    let intended = intended(t.intended_experience.as_ref(), prefix, v);
    let labels = labels(&t.labels, prefix, v);
    Some(NewTouchpoint {
        key: key?,
        name: name?,
        description: description?,
        channel: channel?,
        stage: stage?,
        department: department?,
        main: t.main,
        parent: parent?,
        intended,
        labels,
    })
}

/// Validates an update: the mask paths and the new values they name. Field paths are relative
/// to the request (`touchpoint.name`, `update_mask`).
pub fn touchpoint_patch(
    t: &pb::Touchpoint,
    mask: Option<&prost_types::FieldMask>,
    v: &mut Violations,
) -> TouchpointPatch {
    let mut patch = TouchpointPatch::default();
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "name at least one field to change");
    }
    let parent_paths = paths
        .iter()
        .filter(|p| *p == "parent_id" || *p == "parent_key")
        .count();
    if parent_paths > 1 {
        v.add("update_mask", "name parent_id or parent_key, not both");
    }
    let given = t.intended_experience.unwrap_or_default();
    for path in paths {
        let field = join("touchpoint", path);
        match path.as_str() {
            "name" => patch.name = v.check(field, tp::check_name(&t.name)),
            "description" => {
                patch.description = v.check(field, tp::check_description(&t.description))
            }
            "channel" => patch.channel = v.check(field, required(channel_from_pb(t.channel))),
            "stage" => patch.stage = v.check(field, required(stage_from_pb(t.stage))),
            "department" => patch.department = v.check(field, tp::check_department(&t.department)),
            "main" => patch.main = Some(t.main),
            "parent_id" => {
                patch.parent = if t.parent_id.is_empty() {
                    Some(ParentRef::Root)
                } else {
                    v.check(field, t.parent_id.parse()).map(ParentRef::Id)
                }
            }
            "parent_key" => {
                patch.parent = if t.parent_key.is_empty() {
                    Some(ParentRef::Root)
                } else {
                    v.check(field, Key::parse(&t.parent_key))
                        .map(ParentRef::Key)
                }
            }
            "intended_experience" => {
                let checked = intended(t.intended_experience.as_ref(), "touchpoint", v);
                patch.target_nps = Some(checked.target_nps);
                patch.target_csat = Some(checked.target_csat);
                patch.target_ces = Some(checked.target_ces);
            }
            "intended_experience.target_nps" => {
                patch.target_nps = Some(
                    given
                        .target_nps
                        .and_then(|n| v.check(&field, tp::check_target_nps(n))),
                );
            }
            "intended_experience.target_csat" => {
                patch.target_csat = Some(
                    given
                        .target_csat
                        .and_then(|n| v.check(&field, tp::check_target_csat(n))),
                );
            }
            "intended_experience.target_ces" => {
                patch.target_ces = Some(
                    given
                        .target_ces
                        .and_then(|n| v.check(&field, tp::check_target_ces(n))),
                );
            }
            "labels" => patch.labels = Some(labels(&t.labels, "touchpoint", v)),
            "key" => v.add(
                field,
                "the key is immutable: create a new touchpoint instead",
            ),
            "id" | "state" | "create_time" | "update_time" | "etag" => v.add(
                field,
                "output only: cannot be changed with UpdateTouchpoint",
            ),
            other => v.add("update_mask", format!("unknown field `{other}`")),
        }
    }
    patch
}

/// The wire form of a touchpoint.
pub fn touchpoint_to_pb(t: Touchpoint) -> pb::Touchpoint {
    let etag = t.etag();
    let (parent_id, parent_key) = t
        .parent
        .map(|(id, key)| (id.to_string(), key.to_string()))
        .unwrap_or_default();
    let intended =
        (t.intended != IntendedExperience::default()).then_some(pb::IntendedExperience {
            target_nps: t.intended.target_nps,
            target_csat: t.intended.target_csat,
            target_ces: t.intended.target_ces,
        });
    pb::Touchpoint {
        id: t.id.to_string(),
        key: t.key.to_string(),
        name: t.name,
        description: t.description,
        channel: channel_to_pb(t.channel) as i32,
        stage: stage_to_pb(t.stage) as i32,
        department: t.department,
        main: t.main,
        parent_id,
        parent_key,
        intended_experience: intended,
        labels: t.labels,
        state: state_to_pb(t.state) as i32,
        create_time: Some(timestamp(t.create_time)),
        update_time: Some(timestamp(t.update_time)),
        etag,
    }
}

/// The wire form of a tree.
pub fn tree_to_pb(node: TreeNode) -> pb::TouchpointNode {
    pb::TouchpointNode {
        touchpoint: Some(touchpoint_to_pb(node.touchpoint)),
        children: node.children.into_iter().map(tree_to_pb).collect(),
    }
}

fn stages(
    stages: &[pb::JourneyMapStage],
    prefix: &str,
    v: &mut Violations,
) -> Option<Vec<JourneyMapStage>> {
    let field = join(prefix, "stages");
    if stages.is_empty() {
        v.add(&field, "a journey needs at least one stage");
    }
    if stages.len() > journey::MAX_STAGES {
        v.add(&field, format!("at most {} stages", journey::MAX_STAGES));
    }
    let mut out = Vec::with_capacity(stages.len());
    let mut ok = true;
    for (i, s) in stages.iter().enumerate() {
        let sp = format!("{field}[{i}]");
        let name = v.check(join(&sp, "name"), tp::check_name(&s.name));
        let stage = v.check(join(&sp, "stage"), required(stage_from_pb(s.stage)));
        let mut keys = Vec::with_capacity(s.touchpoint_keys.len());
        for (j, k) in s.touchpoint_keys.iter().enumerate() {
            match Key::parse(k) {
                Ok(key) => keys.push(key),
                Err(e) => {
                    v.add(format!("{sp}.touchpoint_keys[{j}]"), e);
                    ok = false;
                }
            }
        }
        for (j, problem) in journey::check_stage_touchpoints(&keys) {
            let f = match j {
                Some(j) => format!("{sp}.touchpoint_keys[{j}]"),
                None => join(&sp, "touchpoint_keys"),
            };
            v.add(f, problem);
            ok = false;
        }
        match (name, stage) {
            (Some(name), Some(stage)) => out.push(JourneyMapStage {
                name,
                stage,
                touchpoint_keys: keys,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// Validates a journey to create.
pub fn new_journey(j: &pb::Journey, prefix: &str, v: &mut Violations) -> Option<NewJourney> {
    let key = v.check(join(prefix, "key"), Key::parse(&j.key));
    let name = v.check(join(prefix, "name"), tp::check_name(&j.name));
    let description = v.check(
        join(prefix, "description"),
        tp::check_description(&j.description),
    );
    let stages = stages(&j.stages, prefix, v);
    Some(NewJourney {
        key: key?,
        name: name?,
        description: description?,
        stages: stages?,
    })
}

/// Validates a journey update.
pub fn journey_patch(
    j: &pb::Journey,
    mask: Option<&prost_types::FieldMask>,
    v: &mut Violations,
) -> JourneyPatch {
    let mut patch = JourneyPatch::default();
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "name at least one field to change");
    }
    for path in paths {
        let field = join("journey", path);
        match path.as_str() {
            "name" => patch.name = v.check(field, tp::check_name(&j.name)),
            "description" => {
                patch.description = v.check(field, tp::check_description(&j.description))
            }
            "stages" => patch.stages = stages(&j.stages, "journey", v),
            "key" => v.add(field, "the key is immutable: create a new journey instead"),
            "id" | "state" | "create_time" | "update_time" | "etag" => {
                v.add(field, "output only: cannot be changed with UpdateJourney")
            }
            other => v.add("update_mask", format!("unknown field `{other}`")),
        }
    }
    patch
}

/// The wire form of a journey.
pub fn journey_to_pb(j: Journey) -> pb::Journey {
    let etag = j.etag();
    pb::Journey {
        id: j.id.to_string(),
        key: j.key.to_string(),
        name: j.name,
        description: j.description,
        stages: j
            .stages
            .into_iter()
            .map(|s| pb::JourneyMapStage {
                name: s.name,
                stage: stage_to_pb(s.stage) as i32,
                touchpoint_keys: s
                    .touchpoint_keys
                    .into_iter()
                    .map(|k| k.to_string())
                    .collect(),
            })
            .collect(),
        state: state_to_pb(j.state) as i32,
        create_time: Some(timestamp(j.create_time)),
        update_time: Some(timestamp(j.update_time)),
        etag,
    }
}

/// Validates one `InteractionInput` (every violation, paths from the interaction) into what
/// the store records; the content hash is that of its canonical encoding (prost's, for a
/// decoded message: fields in number order, unknown fields dropped), so a re-send hashes the
/// same.
///
/// A source customer id is read as a feed record's is: normalised, and refused when it is junk
/// (`unknown`, `guest`, `0`, `-1`… or on `junk`'s block list), since every interaction naming
/// it would otherwise land on one shared customer.
pub fn new_interaction(
    input: &pb::InteractionInput,
    index: usize,
    now: DateTime<Utc>,
    junk: &JunkPolicy,
) -> Result<NewInteraction, Vec<FieldViolation>> {
    use cxhub_proto::common::v1::customer_ref::Ref;
    use prost::Message;

    let mut v = Violations::new();
    v.check("source", check_source(&input.source));
    v.check("interaction_id", check_record_id(&input.interaction_id));
    let customer = match input.customer.as_ref().and_then(|c| c.r#ref.as_ref()) {
        None => {
            v.add("customer", "required: a customer_id or a source_ref");
            None
        }
        Some(Ref::CustomerId(id)) => v
            .check("customer.customer_id", id.parse::<CustomerId>())
            .map(CustomerRef::Id),
        Some(Ref::SourceRef(r)) => source_customer(&r.source, &r.id, junk, &mut v),
    };
    let touchpoint_key = v.check("touchpoint_key", Key::parse(&input.touchpoint_key));
    let occurred_at = match &input.occurred_at {
        None => {
            v.add("occurred_at", "required");
            None
        }
        Some(t) => check_unix_timestamp(t.seconds, t.nanos, "occurred_at", now, &mut v),
    };
    let channel = v.check("channel", channel_from_pb(input.channel)).flatten();
    v.check("outcome", check_outcome(&input.outcome));
    match (v.into_result(), customer, touchpoint_key, occurred_at) {
        (Ok(()), Some(customer), Some(touchpoint_key), Some(occurred_at)) => Ok(NewInteraction {
            index,
            source: input.source.clone(),
            interaction_id: input.interaction_id.clone(),
            customer,
            touchpoint_key,
            occurred_at,
            channel,
            outcome: input.outcome.clone(),
            hash: ContentHash::of(&input.encode_to_vec()),
        }),
        (Err(err), ..) => Err(Vec::from(err)),
        // Every missing value recorded a violation above.
        (Ok(()), ..) => Err(vec![FieldViolation {
            field: "interaction".into(),
            description: "incomplete".into(),
        }]),
    }
}

/// The customer named by a source's id for them, normalised as a feed record's source customer
/// id is; violations at `customer.source_ref.*`.
fn source_customer(
    source: &str,
    id: &str,
    junk: &JunkPolicy,
    v: &mut Violations,
) -> Option<CustomerRef> {
    const FIELD: &str = "customer.source_ref.id";
    let source_ok = v
        .check("customer.source_ref.source", check_source(source))
        .is_some();
    if id.trim().is_empty() {
        v.add(FIELD, "required: the customer's id in that source");
        return None;
    }
    // With a bad source name (reported above) the id is still checked, under a valid stand-in
    // name; only the configured block list, which holds `source:id` values, depends on it.
    match classify_source_id(if source_ok { source } else { "-" }, id, junk) {
        Classified::Usable(Identifier::SourceId { source, id }) if source_ok => {
            Some(CustomerRef::Source { source, id })
        }
        Classified::Usable(_) => None,
        Classified::Junk(reason) => {
            v.add(
                FIELD,
                format!(
                    "{} ({}): an interaction needs the real id of its customer in the source, or it would land on one customer shared by everyone the source cannot name",
                    reason.description(),
                    reason.as_str()
                ),
            );
            None
        }
        Classified::Invalid(problem) => {
            v.add(FIELD, problem.description());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_enum_value_maps_both_ways() {
        for c in Channel::ALL {
            assert_eq!(channel_from_pb(channel_to_pb(*c) as i32), Ok(Some(*c)));
        }
        for s in Stage::ALL {
            assert_eq!(stage_from_pb(stage_to_pb(*s) as i32), Ok(Some(*s)));
        }
        assert_eq!(channel_from_pb(0), Ok(None));
        assert!(channel_from_pb(99).is_err());
        assert!(stage_from_pb(-1).is_err());
    }

    #[test]
    fn a_bad_touchpoint_reports_every_field() {
        let t = pb::Touchpoint {
            key: "Bad Key".into(),
            name: " ".into(),
            channel: 0,
            stage: 42,
            department: String::new(),
            parent_id: "not-a-uuid".into(),
            intended_experience: Some(pb::IntendedExperience {
                target_nps: Some(101),
                target_csat: Some(f64::NAN),
                target_ces: Some(0.5),
            }),
            ..Default::default()
        };
        let mut v = Violations::new();
        assert!(new_touchpoint(&t, "touchpoints[2]", &mut v).is_none());
        let fields: Vec<String> = v.into_vec().into_iter().map(|x| x.field).collect();
        assert_eq!(
            fields,
            [
                "touchpoints[2].key",
                "touchpoints[2].name",
                "touchpoints[2].channel",
                "touchpoints[2].stage",
                "touchpoints[2].department",
                "touchpoints[2].parent_id",
                "touchpoints[2].intended_experience.target_nps",
                "touchpoints[2].intended_experience.target_csat",
                "touchpoints[2].intended_experience.target_ces",
            ]
        );
    }

    #[test]
    fn update_masks_refuse_immutable_output_only_and_unknown_paths() {
        let mask = prost_types::FieldMask {
            paths: vec!["key".into(), "etag".into(), "colour".into(), "name".into()],
        };
        let t = pb::Touchpoint {
            name: "Checkout".into(),
            ..Default::default()
        };
        let mut v = Violations::new();
        let patch = touchpoint_patch(&t, Some(&mask), &mut v);
        let fields: Vec<String> = v.into_vec().into_iter().map(|x| x.field).collect();
        assert_eq!(fields, ["touchpoint.key", "touchpoint.etag", "update_mask"]);
        assert_eq!(patch.name.as_deref(), Some("Checkout"));

        let mut v = Violations::new();
        touchpoint_patch(&t, None, &mut v);
        assert!(!v.is_empty());
    }

    fn input(customer: cxhub_proto::common::v1::customer_ref::Ref) -> pb::InteractionInput {
        pb::InteractionInput {
            source: "web-analytics".into(),
            interaction_id: "pv-1".into(),
            customer: Some(cxhub_proto::common::v1::CustomerRef {
                r#ref: Some(customer),
            }),
            touchpoint_key: "website.products".into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_760_000_000,
                nanos: 0,
            }),
            channel: 0,
            outcome: "VISITED".into(),
        }
    }

    fn by_source(source: &str, id: &str) -> pb::InteractionInput {
        input(cxhub_proto::common::v1::customer_ref::Ref::SourceRef(
            cxhub_proto::common::v1::SourceRef {
                source: source.into(),
                id: id.into(),
            },
        ))
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_760_000_000, 0).unwrap_or_default()
    }

    fn violations(input: &pb::InteractionInput, junk: &JunkPolicy) -> Vec<(String, String)> {
        match new_interaction(input, 0, now(), junk) {
            Ok(item) => panic!("expected violations, got {item:?}"),
            Err(v) => v.into_iter().map(|v| (v.field, v.description)).collect(),
        }
    }

    #[test]
    fn source_customer_ids_are_normalised_and_junk_ones_refused() {
        let junk = JunkPolicy::default();
        let item = new_interaction(&by_source("crm", "\u{200b}C-1 "), 0, now(), &junk)
            .unwrap_or_else(|v| panic!("{v:?}"));
        assert_eq!(
            item.customer,
            CustomerRef::Source {
                source: "crm".into(),
                id: "C-1".into()
            },
            "the id a feed record would store"
        );
        for id in ["unknown", "GUEST", "0", "-1", "n/a"] {
            let v = violations(&by_source("web", id), &junk);
            assert_eq!(v.len(), 1, "{id}: {v:?}");
            assert_eq!(v[0].0, "customer.source_ref.id", "{id}");
            assert!(v[0].1.contains("PLACEHOLDER"), "{id}: {}", v[0].1);
        }
        let mut blocked = JunkPolicy::default();
        blocked.block(&Identifier::SourceId {
            source: "pos".into(),
            id: "WALKIN-01".into(),
        });
        assert!(new_interaction(&by_source("pos", "WALKIN-01"), 0, now(), &junk).is_ok());
        let v = violations(&by_source("pos", "WALKIN-01"), &blocked);
        assert!(v[0].1.contains("BLOCKED"), "{v:?}");
        assert!(new_interaction(&by_source("crm", "WALKIN-01"), 0, now(), &blocked).is_ok());
    }

    #[test]
    fn a_bad_interaction_reports_every_field() {
        let junk = JunkPolicy::default();
        let mut bad = by_source("Bad Source", "");
        bad.source = String::new();
        bad.interaction_id = " x".into();
        bad.touchpoint_key = "Not A Key".into();
        bad.occurred_at = None;
        bad.channel = 99;
        bad.outcome = "visited".into();
        let fields: Vec<String> = violations(&bad, &junk).into_iter().map(|v| v.0).collect();
        assert_eq!(
            fields,
            [
                "source",
                "interaction_id",
                "customer.source_ref.source",
                "customer.source_ref.id",
                "touchpoint_key",
                "occurred_at",
                "channel",
                "outcome",
            ]
        );
        // A junk id is reported beside a bad source name.
        let fields: Vec<String> = violations(&by_source("Bad Source", "unknown"), &junk)
            .into_iter()
            .map(|v| v.0)
            .collect();
        assert_eq!(
            fields,
            ["customer.source_ref.source", "customer.source_ref.id"]
        );
        let mut nobody = by_source("crm", "c-1");
        nobody.customer = Some(cxhub_proto::common::v1::CustomerRef { r#ref: None });
        assert_eq!(violations(&nobody, &junk)[0].0, "customer");
        let by_id = input(cxhub_proto::common::v1::customer_ref::Ref::CustomerId(
            "not-a-uuid".into(),
        ));
        assert_eq!(violations(&by_id, &junk)[0].0, "customer.customer_id");
    }

    #[test]
    fn the_hash_is_of_the_content_whatever_the_position() {
        let junk = JunkPolicy::default();
        let a = new_interaction(&by_source("crm", "c-1"), 0, now(), &junk);
        let b = new_interaction(&by_source("crm", "c-1"), 7, now(), &junk);
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("both valid")
        };
        assert_eq!(a.hash, b.hash);
        let mut other = by_source("crm", "c-1");
        other.outcome = "ABANDONED_CART".into();
        let c = new_interaction(&other, 0, now(), &junk).unwrap_or_else(|v| panic!("{v:?}"));
        assert_ne!(a.hash, c.hash);
    }
}
