//! What executors use: `WatchActions`, the action event log as a server stream, and the
//! conversions of `ReportActionOutcome`.
//!
//! A stream reads the log after its position in slices (the store filters by team, state,
//! kind and channel) and sends each slice that moved its position, with the token of the new
//! position; caught up, it looks again after `poll`. The position only moves forward, and the
//! log is numbered in commit order, so a consumer that resumes from its last token sees every
//! later event exactly once, whichever replica serves it. The stream is a plain future chain
//! polled by the server: when the client goes away it is dropped with its connection, and
//! nothing keeps running for it.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use cxhub_domain::loyalty::action::ActionState;
use cxhub_domain::loyalty::executor::{
    EventFilter, EventWithAction, NewOutcome, Outcome, OutcomeKind, check_event_resume,
    event_token, parse_event_token,
};
use cxhub_domain::loyalty::repo::{LoyaltyRepo, MAX_TEAM_LEN};
use cxhub_domain::{Error, Violations};
use cxhub_proto::loyalty::v1 as pb;
use cxhub_server::to_status;
use tonic::Status;
use tonic::codegen::tokio_stream::{self, Stream, StreamExt};

use crate::convert;

/// Events read per query.
const SLICE: u32 = 200;

/// How the action streams of one process behave.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// How often a caught-up stream looks for new events.
    pub poll: Duration,
    /// Most streams served at once by this process.
    pub max_watchers: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(200),
            max_watchers: 64,
        }
    }
}

/// The stream `WatchActions` answers.
pub type ActionStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchActionsResponse, Status>> + Send>>;

/// Serves action streams from a [`LoyaltyRepo`].
#[derive(Clone)]
pub struct ActionWatcher {
    repo: Arc<dyn LoyaltyRepo>,
    config: WatchConfig,
    active: Arc<AtomicUsize>,
}

/// One stream's place among the `max_watchers`, given back when the stream is dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ActionWatcher {
    /// A watcher over `repo`.
    pub fn new(repo: Arc<dyn LoyaltyRepo>, config: WatchConfig) -> Self {
        Self {
            repo,
            config,
            active: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Validates the request, checks the starting position, and starts the stream.
    pub async fn watch(&self, req: &pb::WatchActionsRequest) -> Result<ActionStream, Status> {
        let filter = filter(req).map_err(to_status)?;
        let max = self.config.max_watchers.max(1);
        if self.active.fetch_add(1, Ordering::SeqCst) >= max {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return Err(to_status(Error::ResourceExhausted {
                reason: "TOO_MANY_WATCHERS",
                message: format!(
                    "this server already streams actions to {max} watchers; retry later or on \
                     another replica"
                ),
                retry_after: Some(Duration::from_secs(5)),
            }));
        }
        let slot = Slot(self.active.clone());
        let first = self
            .repo
            .read_action_events(0, &filter, 0)
            .await
            .map_err(to_status)?;
        let after = if req.resume_token.is_empty() {
            if req.from_oldest {
                first.horizon
            } else {
                first.head
            }
        } else {
            let after = parse_event_token(&req.resume_token).map_err(to_status)?;
            check_event_resume(after, first.horizon, first.head).map_err(to_status)?;
            after
        };
        let follower = Follower {
            repo: self.repo.clone(),
            filter,
            after,
            poll: self.config.poll,
            done: false,
            _slot: slot,
        };
        Ok(Box::pin(Unfold {
            idle: Some(follower),
            busy: None,
        }))
    }
}

/// The filter of a request; every invalid field is reported.
fn filter(req: &pb::WatchActionsRequest) -> cxhub_domain::Result<EventFilter> {
    let mut v = Violations::new();
    let team = req.assignee_team.trim();
    if team.is_empty() {
        v.add(
            "assignee_team",
            "required: the team whose actions to stream, e.g. `care-lisbon`",
        );
    } else if team.chars().count() > MAX_TEAM_LEN {
        v.add(
            "assignee_team",
            format!("at most {MAX_TEAM_LEN} characters"),
        );
    }
    if req.from_oldest && !req.resume_token.is_empty() {
        v.add(
            "from_oldest",
            "give either a resume_token or from_oldest, not both",
        );
    }
    if !req.resume_token.is_empty()
        && let Err(Error::InvalidArgument { violations, .. }) = parse_event_token(&req.resume_token)
    {
        for f in violations {
            v.add(f.field, f.description);
        }
    }
    let mut kinds = BTreeSet::new();
    let mut any_custom = false;
    for (i, k) in req.kinds.iter().enumerate() {
        if *k == pb::ActionKind::Custom as i32 {
            any_custom = true;
        } else if let Some(Some(kind)) =
            convert::kind(*k, "", &format!("kinds[{i}]"), "", true, &mut v)
        {
            kinds.insert(kind);
        }
    }
    let mut channels = BTreeSet::new();
    for (i, c) in req.channels.iter().enumerate() {
        if let Some(channel) = convert::channel(*c, &format!("channels[{i}]"), &mut v) {
            channels.insert(channel);
        }
    }
    let mut states = BTreeSet::new();
    for (i, s) in req.states.iter().enumerate() {
        if let Some(Some(state)) = convert::state(*s, &format!("states[{i}]"), true, &mut v) {
            states.insert(state);
        }
    }
    if states.is_empty() {
        states.insert(ActionState::Approved);
    }
    v.into_result()?;
    Ok(EventFilter {
        team: team.to_owned(),
        kinds,
        any_custom,
        channels,
        states,
    })
}

/// One stream's state between two batches.
struct Follower {
    repo: Arc<dyn LoyaltyRepo>,
    filter: EventFilter,
    after: i64,
    poll: Duration,
    done: bool,
    _slot: Slot,
}

type Batch = Result<pb::WatchActionsResponse, Status>;

/// The next batch that moves the position: reads the log after it, waiting `poll` between
/// reads while nothing new was committed. `None` once the stream ended (after an error).
async fn next_batch(mut f: Follower) -> Option<(Batch, Follower)> {
    if f.done {
        return None;
    }
    loop {
        let read = f
            .repo
            .read_action_events(f.after, &f.filter, SLICE)
            .await
            .and_then(|slice| {
                check_event_resume(f.after, slice.horizon, slice.head).map(|()| slice)
            });
        let slice = match read {
            Ok(slice) => slice,
            Err(err) => {
                f.done = true;
                return Some((Err(to_status(err)), f));
            }
        };
        if slice.through > f.after {
            f.after = slice.through;
            let response = pb::WatchActionsResponse {
                events: slice.events.into_iter().map(event_to_pb).collect(),
                resume_token: event_token(f.after),
            };
            return Some((Ok(response), f));
        }
        sleep(f.poll).await;
    }
}

/// Waits `d` on the runtime's timer (through the stream utilities tonic re-exports).
async fn sleep(d: Duration) {
    let mut never = std::pin::pin!(tokio_stream::pending::<()>().timeout(d));
    let _ = never.next().await;
}

/// A [`next_batch`] in progress.
type NextBatch = Pin<Box<dyn Future<Output = Option<(Batch, Follower)>> + Send>>;

/// The stream of batches: one [`next_batch`] future at a time.
struct Unfold {
    idle: Option<Follower>,
    busy: Option<NextBatch>,
}

impl Stream for Unfold {
    type Item = Batch;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        let this = &mut *self;
        if this.busy.is_none() {
            match this.idle.take() {
                Some(follower) => this.busy = Some(Box::pin(next_batch(follower))),
                None => return Poll::Ready(None),
            }
        }
        let Some(busy) = this.busy.as_mut() else {
            return Poll::Ready(None);
        };
        match busy.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.busy = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some((batch, follower))) => {
                this.busy = None;
                this.idle = Some(follower);
                Poll::Ready(Some(batch))
            }
        }
    }
}

fn event_to_pb(e: EventWithAction) -> pb::ActionEvent {
    let now = chrono::Utc::now();
    pb::ActionEvent {
        resume_token: event_token(e.event.seq),
        sequence: e.event.seq,
        from_state: e
            .event
            .from
            .map_or(pb::ActionState::Unspecified, convert::state_to_pb) as i32,
        to_state: convert::state_to_pb(e.event.to) as i32,
        principal: e.event.principal,
        occurred_at: Some(convert::ts(e.event.at)),
        action: Some(convert::action_to_pb(e.action, now)),
    }
}

/// An outcome kind (required).
pub fn outcome_kind(value: i32, v: &mut Violations) -> Option<OutcomeKind> {
    use pb::ActionOutcomeKind as K;
    match K::try_from(value) {
        Ok(K::Sent) => Some(OutcomeKind::Sent),
        Ok(K::Accepted) => Some(OutcomeKind::Accepted),
        Ok(K::Declined) => Some(OutcomeKind::Declined),
        Ok(K::Expired) => Some(OutcomeKind::Expired),
        Ok(K::Redeemed) => Some(OutcomeKind::Redeemed),
        Ok(K::FailedToDeliver) => Some(OutcomeKind::FailedToDeliver),
        Ok(K::Unspecified) => {
            v.add("outcome", "required: what happened to the action");
            None
        }
        Err(_) => {
            v.add("outcome", format!("unknown outcome {value}"));
            None
        }
    }
}

/// The wire outcome kind.
fn outcome_kind_to_pb(kind: OutcomeKind) -> pb::ActionOutcomeKind {
    use pb::ActionOutcomeKind as K;
    match kind {
        OutcomeKind::Sent => K::Sent,
        OutcomeKind::Accepted => K::Accepted,
        OutcomeKind::Declined => K::Declined,
        OutcomeKind::Expired => K::Expired,
        OutcomeKind::Redeemed => K::Redeemed,
        OutcomeKind::FailedToDeliver => K::FailedToDeliver,
    }
}

/// A report (validated): the outcome with its texts.
pub fn new_outcome(r: &pb::ReportActionOutcomeRequest, v: &mut Violations) -> Option<NewOutcome> {
    let kind = outcome_kind(r.outcome, v);
    // The texts are checked whatever the kind, so that every problem is reported at once.
    let checked = NewOutcome::check(
        kind.unwrap_or(OutcomeKind::Sent),
        &r.reason,
        &r.external_ref,
        &r.note,
        v,
    );
    kind.and(checked)
}

/// The wire outcome.
pub fn outcome_to_pb(o: Outcome) -> pb::ActionOutcome {
    pb::ActionOutcome {
        kind: outcome_kind_to_pb(o.outcome.kind) as i32,
        reason: o.outcome.reason.unwrap_or_default(),
        external_ref: o.outcome.external_ref.unwrap_or_default(),
        note: o.outcome.note.unwrap_or_default(),
        principal: o.principal,
        reported_at: Some(convert::ts(o.at)),
    }
}
