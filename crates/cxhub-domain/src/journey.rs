//! Journeys (experience maps): the ordered stages a customer goes through and the touchpoints
//! at each.

use crate::id::uuid_id;
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::touchpoint::{Key, LifecycleState, Stage};

/// Most stages in one journey.
pub const MAX_STAGES: usize = 50;
/// Most touchpoints in one stage.
pub const MAX_STAGE_TOUCHPOINTS: usize = 100;

uuid_id!(
    /// Server-assigned id of a journey.
    JourneyId
);

/// One stage of a journey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyMapStage {
    /// Display name.
    pub name: String,
    /// The journey stage it stands for.
    pub stage: Stage,
    /// Keys of its touchpoints, in order, no repeats.
    pub touchpoint_keys: Vec<Key>,
}

/// Checks the touchpoint list of one stage: 1 to 100 keys, no repeats. Returns the index and
/// description of each problem (index `None` for the list as a whole).
pub fn check_stage_touchpoints(keys: &[Key]) -> Vec<(Option<usize>, String)> {
    let mut problems = Vec::new();
    if keys.is_empty() {
        problems.push((None, "a stage needs at least one touchpoint".to_owned()));
    }
    if keys.len() > MAX_STAGE_TOUCHPOINTS {
        problems.push((
            None,
            format!("at most {MAX_STAGE_TOUCHPOINTS} touchpoints per stage"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, key) in keys.iter().enumerate() {
        if !seen.insert(key) {
            problems.push((
                Some(i),
                format!("touchpoint {key} is listed twice in this stage"),
            ));
        }
    }
    problems
}

/// A journey to create, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJourney {
    /// Unique key.
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Stages, 1 to 50.
    pub stages: Vec<JourneyMapStage>,
}

/// A stored journey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journey {
    /// Id.
    pub id: JourneyId,
    /// Unique key.
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Stages in order.
    pub stages: Vec<JourneyMapStage>,
    /// Lifecycle state.
    pub state: LifecycleState,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
    /// Revision; the etag derives from it.
    pub revision: i64,
}

impl Journey {
    /// The opaque etag of this revision.
    pub fn etag(&self) -> String {
        crate::touchpoint::etag(self.revision)
    }
}

/// Changes to a journey; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New stages (replacing all).
    pub stages: Option<Vec<JourneyMapStage>>,
}

impl JourneyPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Filters of a journey listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JourneyFilter {
    /// Only this state.
    pub state: Option<LifecycleState>,
    /// Only journeys containing this touchpoint.
    pub touchpoint_key: Option<Key>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_touchpoints_refuse_empty_and_repeats() {
        assert_eq!(check_stage_touchpoints(&[]).len(), 1);
        let a = Key::parse("web.login").expect("valid");
        let b = Key::parse("web.home").expect("valid");
        assert!(check_stage_touchpoints(&[a.clone(), b.clone()]).is_empty());
        let problems = check_stage_touchpoints(&[a.clone(), b, a]);
        assert_eq!(
            problems,
            vec![(
                Some(2),
                "touchpoint web.login is listed twice in this stage".to_owned()
            )]
        );
    }
}
