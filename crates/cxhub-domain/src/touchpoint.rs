//! Touchpoints: where customer and company meet, in a main/sub hierarchy.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::uuid_id;
use crate::text_enum::text_enum;

/// Deepest a touchpoint hierarchy may go (a root is at depth 1).
pub const MAX_DEPTH: usize = 16;
/// Most touchpoints one batch may create.
pub const MAX_BATCH: usize = 1000;
/// Most labels on one touchpoint.
pub const MAX_LABELS: usize = 32;

uuid_id!(
    /// Server-assigned id of a touchpoint (a UUID v7, so ids sort by creation time).
    TouchpointId
);

/// A stable, unique, immutable key such as `store.checkout` (also used for journeys).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key(String);

impl Key {
    /// Longest key accepted.
    pub const MAX_LEN: usize = 128;

    /// Checks the form: lowercase dot-separated words of `a-z`, `0-9`, `_` and `-`, each
    /// starting with a letter, at most 128 characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("required".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!("at most {} characters", Self::MAX_LEN));
        }
        for word in s.split('.') {
            let mut chars = word.chars();
            match chars.next() {
                None => return Err("empty word between dots".into()),
                Some(c) if !c.is_ascii_lowercase() => {
                    return Err(format!(
                        "each dot-separated word must start with a lowercase letter (`{word}` does not)"
                    ));
                }
                Some(_) => {}
            }
            if let Some(bad) = chars
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
            {
                return Err(format!(
                    "only lowercase letters, digits, `_`, `-` and `.` are allowed (found `{bad}`)"
                ));
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

text_enum!(
    /// The channel of a touchpoint.
    Channel {
        /// A physical store or branch.
        Store = "store",
        /// The website.
        Web = "web",
        /// The mobile app.
        MobileApp = "mobile_app",
        /// A phone call.
        Phone = "phone",
        /// An e-mail.
        Email = "email",
        /// A letter.
        Letter = "letter",
        /// A chat.
        Chat = "chat",
        /// Social media.
        Social = "social",
        /// An ATM or kiosk.
        AtmKiosk = "atm_kiosk",
        /// Field service.
        FieldService = "field_service",
        /// A partner.
        Partner = "partner",
        /// Anything else.
        Other = "other",
    }
);

text_enum!(
    /// A stage of the customer journey.
    Stage {
        /// Awareness.
        Awareness = "awareness",
        /// Consideration.
        Consideration = "consideration",
        /// Purchase.
        Purchase = "purchase",
        /// Onboarding.
        Onboarding = "onboarding",
        /// Delivery.
        Delivery = "delivery",
        /// Usage.
        Usage = "usage",
        /// Support.
        Support = "support",
        /// Billing.
        Billing = "billing",
        /// Renewal.
        Renewal = "renewal",
        /// Return.
        Return = "return",
        /// Advocacy.
        Advocacy = "advocacy",
    }
);

text_enum!(
    /// Whether a touchpoint or journey is in use.
    LifecycleState {
        /// In use.
        Active = "active",
        /// Kept for history.
        Archived = "archived",
    }
);

/// The experience the company intends at a touchpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct IntendedExperience {
    /// Target NPS, -100..=100.
    pub target_nps: Option<i32>,
    /// Target CSAT, percent satisfied, 0..=100.
    pub target_csat: Option<f64>,
    /// Target CES mean, 1..=7.
    pub target_ces: Option<f64>,
}

/// Checks a target NPS.
pub fn check_target_nps(v: i32) -> Result<i32, String> {
    if (-100..=100).contains(&v) {
        Ok(v)
    } else {
        Err("must be between -100 and 100".into())
    }
}

/// Checks a target CSAT (percent).
pub fn check_target_csat(v: f64) -> Result<f64, String> {
    if v.is_finite() && (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be a percentage between 0 and 100".into())
    }
}

/// Checks a target CES (mean on 1–7).
pub fn check_target_ces(v: f64) -> Result<f64, String> {
    if v.is_finite() && (1.0..=7.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 1 and 7".into())
    }
}

/// Checks a required display name (1 to 200 characters, not blank).
pub fn check_name(s: &str) -> Result<String, String> {
    check_text(s, 200, true)
}

/// Checks an optional description (at most 2,000 characters).
pub fn check_description(s: &str) -> Result<String, String> {
    check_text(s, 2000, false)
}

/// Checks a required department name (1 to 100 characters).
pub fn check_department(s: &str) -> Result<String, String> {
    check_text(s, 100, true)
}

fn check_text(s: &str, max_chars: usize, required: bool) -> Result<String, String> {
    let trimmed = s.trim();
    if required && trimmed.is_empty() {
        return Err("required".into());
    }
    if trimmed.chars().count() > max_chars {
        return Err(format!("at most {max_chars} characters"));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("control characters are not allowed".into());
    }
    Ok(trimmed.to_owned())
}

/// Checks a label set: at most 32 labels, keys `[a-z0-9_.-]{1,63}` starting with a letter or
/// digit, values at most 256 characters. Returns every problem as (label key, description).
pub fn check_labels(labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if labels.len() > MAX_LABELS {
        problems.push((String::new(), format!("at most {MAX_LABELS} labels")));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && k.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
            });
        if !key_ok {
            problems.push((
                k.clone(),
                "label keys are 1 to 63 characters of `a-z`, `0-9`, `_`, `.`, `-`, starting with a letter or digit".into(),
            ));
        }
        if v.chars().count() > 256 {
            problems.push((k.clone(), "label values are at most 256 characters".into()));
        }
    }
    problems
}

/// How a request names the parent of a touchpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParentRef {
    /// No parent: a root touchpoint.
    Root,
    /// By id.
    Id(TouchpointId),
    /// By key (possibly of a touchpoint created in the same batch).
    Key(Key),
}

/// A touchpoint to create, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTouchpoint {
    /// Unique key.
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Channel.
    pub channel: Channel,
    /// Journey stage.
    pub stage: Stage,
    /// Owning department.
    pub department: String,
    /// Main (true) or sub (false) touchpoint.
    pub main: bool,
    /// Parent.
    pub parent: ParentRef,
    /// Intended experience.
    pub intended: IntendedExperience,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A stored touchpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Touchpoint {
    /// Id.
    pub id: TouchpointId,
    /// Unique key.
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Channel.
    pub channel: Channel,
    /// Journey stage.
    pub stage: Stage,
    /// Owning department.
    pub department: String,
    /// Main or sub touchpoint.
    pub main: bool,
    /// Parent id and key, if any.
    pub parent: Option<(TouchpointId, Key)>,
    /// Intended experience.
    pub intended: IntendedExperience,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Lifecycle state.
    pub state: LifecycleState,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
    /// Revision, incremented by every change; the etag is derived from it.
    pub revision: i64,
}

impl Touchpoint {
    /// The opaque etag of this revision.
    pub fn etag(&self) -> String {
        etag(self.revision)
    }
}

/// The etag of a revision.
pub fn etag(revision: i64) -> String {
    format!("r{revision}")
}

/// Refuses the write when the caller gave an etag that is not the current one.
pub fn check_etag(expected: Option<&str>, revision: i64, resource: &str) -> Result<()> {
    match expected {
        Some(given) if !given.is_empty() && given != etag(revision) => Err(Error::aborted(
            "ETAG_MISMATCH",
            format!(
                "the {resource} changed since it was read (etag {given}, current {}): read it again and retry",
                etag(revision)
            ),
        )),
        _ => Ok(()),
    }
}

/// Changes to a touchpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TouchpointPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New channel.
    pub channel: Option<Channel>,
    /// New stage.
    pub stage: Option<Stage>,
    /// New department.
    pub department: Option<String>,
    /// New main flag.
    pub main: Option<bool>,
    /// New parent.
    pub parent: Option<ParentRef>,
    /// New target NPS (`Some(None)` clears it).
    pub target_nps: Option<Option<i32>>,
    /// New target CSAT (`Some(None)` clears it).
    pub target_csat: Option<Option<f64>>,
    /// New target CES (`Some(None)` clears it).
    pub target_ces: Option<Option<f64>>,
    /// New labels (replacing all).
    pub labels: Option<BTreeMap<String, String>>,
}

impl TouchpointPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the scalar fields (not the parent, which the repository resolves) to `tp`.
    pub fn apply_fields(&self, tp: &mut Touchpoint) {
        if let Some(v) = &self.name {
            tp.name = v.clone();
        }
        if let Some(v) = &self.description {
            tp.description = v.clone();
        }
        if let Some(v) = self.channel {
            tp.channel = v;
        }
        if let Some(v) = self.stage {
            tp.stage = v;
        }
        if let Some(v) = &self.department {
            tp.department = v.clone();
        }
        if let Some(v) = self.main {
            tp.main = v;
        }
        if let Some(v) = self.target_nps {
            tp.intended.target_nps = v;
        }
        if let Some(v) = self.target_csat {
            tp.intended.target_csat = v;
        }
        if let Some(v) = self.target_ces {
            tp.intended.target_ces = v;
        }
        if let Some(v) = &self.labels {
            tp.labels = v.clone();
        }
    }
}

/// What the hierarchy rules need to know about one touchpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Id.
    pub id: TouchpointId,
    /// Key, for messages.
    pub key: Key,
    /// Main flag.
    pub main: bool,
    /// Lifecycle state.
    pub state: LifecycleState,
}

/// Checks placing `child` under the parent whose ancestry is `parent_chain` (the parent first,
/// then its parent, up to a root).
///
/// Rules: the parent must be in the same lifecycle state as the child (an active touchpoint
/// cannot sit below an archived one); no cycles (the child cannot be its own ancestor); a main
/// touchpoint cannot sit below a sub-touchpoint; the hierarchy is at most [`MAX_DEPTH`] deep,
/// counting `child_height` levels at and below the child.
pub fn check_placement(child: &Node, child_height: usize, parent_chain: &[Node]) -> Result<()> {
    let Some(parent) = parent_chain.first() else {
        return Ok(());
    };
    if parent_chain.iter().any(|n| n.id == child.id) {
        return Err(Error::precondition(
            "HIERARCHY_CYCLE",
            format!(
                "touchpoint {} cannot be placed below {}: it is an ancestor of it",
                child.key, parent.key
            ),
        ));
    }
    if parent.state != child.state {
        return Err(Error::precondition(
            "PARENT_ARCHIVED",
            format!(
                "touchpoint {} is {} but its parent {} is {}: both must be in the same state",
                child.key,
                child.state.as_str(),
                parent.key,
                parent.state.as_str()
            ),
        ));
    }
    if child.main && !parent.main {
        return Err(Error::precondition(
            "MAIN_BELOW_SUB",
            format!(
                "main touchpoint {} cannot sit below sub-touchpoint {}",
                child.key, parent.key
            ),
        ));
    }
    if parent_chain.len() + child_height > MAX_DEPTH {
        return Err(Error::precondition(
            "HIERARCHY_TOO_DEEP",
            format!("the touchpoint hierarchy may be at most {MAX_DEPTH} levels deep"),
        ));
    }
    Ok(())
}

/// Filters of a touchpoint listing; every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TouchpointFilter {
    /// Only this channel.
    pub channel: Option<Channel>,
    /// Only this stage.
    pub stage: Option<Stage>,
    /// Only this department.
    pub department: Option<String>,
    /// Only children of this touchpoint.
    pub parent_id: Option<TouchpointId>,
    /// Only roots.
    pub roots_only: bool,
    /// Only this state.
    pub state: Option<LifecycleState>,
    /// Only with every one of these labels.
    pub labels: BTreeMap<String, String>,
    /// Only main touchpoints.
    pub main_only: bool,
}

/// A touchpoint with its subtree.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeNode {
    /// The touchpoint.
    pub touchpoint: Touchpoint,
    /// Its children, ordered by key.
    pub children: Vec<TreeNode>,
}

/// Builds the tree below `root` (or the forest of roots when `None`) from `all` touchpoints,
/// children ordered by key, cut `max_depth` levels below the top (0 = no cut).
pub fn build_tree(
    all: Vec<Touchpoint>,
    root: Option<TouchpointId>,
    max_depth: usize,
) -> Vec<TreeNode> {
    let mut children: BTreeMap<Option<TouchpointId>, Vec<Touchpoint>> = BTreeMap::new();
    let mut top = Vec::new();
    for tp in all {
        if Some(tp.id) == root {
            top.push(tp.clone());
        }
        children
            .entry(tp.parent.as_ref().map(|(id, _)| *id))
            .or_default()
            .push(tp);
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| a.key.cmp(&b.key));
    }
    if root.is_none() {
        top = children.remove(&None).unwrap_or_default();
    }
    fn grow(
        tp: Touchpoint,
        children: &BTreeMap<Option<TouchpointId>, Vec<Touchpoint>>,
        depth_left: Option<usize>,
    ) -> TreeNode {
        let kids = match depth_left {
            Some(0) => Vec::new(),
            _ => children
                .get(&Some(tp.id))
                .map(|list| {
                    list.iter()
                        .map(|c| grow(c.clone(), children, depth_left.map(|d| d - 1)))
                        .collect()
                })
                .unwrap_or_default(),
        };
        TreeNode {
            touchpoint: tp,
            children: kids,
        }
    }
    let depth = (max_depth > 0).then_some(max_depth);
    top.into_iter()
        .map(|tp| grow(tp, &children, depth))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(main: bool, state: LifecycleState) -> Node {
        let id = TouchpointId::generate();
        Node {
            id,
            key: Key::parse(&format!("k{}", id.0.simple())).expect("valid key"),
            main,
            state,
        }
    }

    #[test]
    fn keys_accept_dotted_lowercase_words() {
        for ok in [
            "store",
            "store.checkout",
            "branch.teller.cash-deposit",
            "a1_b.c-2",
        ] {
            assert!(Key::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn keys_refuse_bad_forms_with_a_reason() {
        for bad in [
            "", "Store", "store.", ".store", "store..x", "1store", "store.9", "sto re", "störe",
        ] {
            assert!(Key::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Key::parse(&"a".repeat(129)).is_err());
        assert!(Key::parse(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn placement_refuses_cycles() {
        let a = node(true, LifecycleState::Active);
        let b = node(true, LifecycleState::Active);
        // placing a below b, where b is already below a
        let err = check_placement(&a, 1, &[b, a.clone()]).expect_err("cycle");
        assert!(matches!(
            err,
            Error::FailedPrecondition {
                reason: "HIERARCHY_CYCLE",
                ..
            }
        ));
        let err = check_placement(&a, 1, std::slice::from_ref(&a)).expect_err("self parent");
        assert!(matches!(
            err,
            Error::FailedPrecondition {
                reason: "HIERARCHY_CYCLE",
                ..
            }
        ));
    }

    #[test]
    fn placement_refuses_other_state_and_main_below_sub() {
        let child = node(false, LifecycleState::Active);
        let archived = node(true, LifecycleState::Archived);
        assert!(matches!(
            check_placement(&child, 1, &[archived]),
            Err(Error::FailedPrecondition {
                reason: "PARENT_ARCHIVED",
                ..
            })
        ));
        let main_child = node(true, LifecycleState::Active);
        let sub_parent = node(false, LifecycleState::Active);
        assert!(matches!(
            check_placement(&main_child, 1, &[sub_parent]),
            Err(Error::FailedPrecondition {
                reason: "MAIN_BELOW_SUB",
                ..
            })
        ));
        let main_parent = node(true, LifecycleState::Active);
        assert!(check_placement(&child, 1, &[main_parent]).is_ok());
    }

    #[test]
    fn placement_limits_depth() {
        let chain: Vec<Node> = (0..MAX_DEPTH - 1)
            .map(|_| node(true, LifecycleState::Active))
            .collect();
        let child = node(false, LifecycleState::Active);
        assert!(check_placement(&child, 1, &chain).is_ok());
        assert!(matches!(
            check_placement(&child, 2, &chain),
            Err(Error::FailedPrecondition {
                reason: "HIERARCHY_TOO_DEEP",
                ..
            })
        ));
    }

    #[test]
    fn etag_check() {
        assert!(check_etag(None, 3, "touchpoint").is_ok());
        assert!(check_etag(Some(""), 3, "touchpoint").is_ok());
        assert!(check_etag(Some("r3"), 3, "touchpoint").is_ok());
        assert!(matches!(
            check_etag(Some("r2"), 3, "touchpoint"),
            Err(Error::Aborted {
                reason: "ETAG_MISMATCH",
                ..
            })
        ));
    }

    #[test]
    fn labels_are_checked() {
        let mut labels = BTreeMap::new();
        labels.insert("segment".to_owned(), "retail".to_owned());
        assert!(check_labels(&labels).is_empty());
        labels.insert("Bad Key".to_owned(), "x".to_owned());
        labels.insert("long".to_owned(), "x".repeat(257));
        assert_eq!(check_labels(&labels).len(), 2);
    }

    fn tp(key: &str, parent: Option<&Touchpoint>) -> Touchpoint {
        let now = Utc::now();
        Touchpoint {
            id: TouchpointId::generate(),
            key: Key::parse(key).expect("valid key"),
            name: key.to_owned(),
            description: String::new(),
            channel: Channel::Web,
            stage: Stage::Usage,
            department: "digital".into(),
            main: parent.is_none(),
            parent: parent.map(|p| (p.id, p.key.clone())),
            intended: IntendedExperience::default(),
            labels: BTreeMap::new(),
            state: LifecycleState::Active,
            create_time: now,
            update_time: now,
            revision: 1,
        }
    }

    #[test]
    fn tree_orders_children_and_cuts_depth() {
        let web = tp("web", None);
        let login = tp("web.login", Some(&web));
        let checkout = tp("web.checkout", Some(&web));
        let pay = tp("web.checkout.pay", Some(&checkout));
        let store = tp("store", None);
        let all = vec![
            pay.clone(),
            login.clone(),
            web.clone(),
            store.clone(),
            checkout.clone(),
        ];

        let forest = build_tree(all.clone(), None, 0);
        let roots: Vec<_> = forest.iter().map(|n| n.touchpoint.key.as_str()).collect();
        assert_eq!(roots, ["store", "web"]);
        let web_kids: Vec<_> = forest[1]
            .children
            .iter()
            .map(|n| n.touchpoint.key.as_str())
            .collect();
        assert_eq!(web_kids, ["web.checkout", "web.login"]);
        assert_eq!(
            forest[1].children[0].children[0].touchpoint.key.as_str(),
            "web.checkout.pay"
        );

        let cut = build_tree(all.clone(), Some(web.id), 1);
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].children.len(), 2);
        assert!(cut[0].children.iter().all(|n| n.children.is_empty()));
    }

    proptest! {
        #[test]
        fn parsed_keys_are_canonical(s in "[a-z][a-z0-9_-]{0,10}(\\.[a-z][a-z0-9_-]{0,10}){0,4}") {
            let key = Key::parse(&s).expect("generated keys are valid");
            prop_assert_eq!(key.as_str(), s.as_str());
        }

        #[test]
        fn keys_never_accept_uppercase_or_spaces(s in ".*[A-Z ].*") {
            prop_assert!(Key::parse(&s).is_err());
        }
    }
}
