//! `WatchCustomerChanges`: the change log as a server stream. Each stream reads the log after
//! its position in slices, sends what passes its filters, and polls for new entries when it has
//! caught up. The position only moves forward and every entry is read from the log in order,
//! so a consumer that resumes from its last token sees every later change exactly once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cxhub_domain::change::{
    ChangeFilter, ChangeKind, ChangeLogRepo, check_resume, parse_resume_token, resume_token,
};
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::{Error, Violations};
use cxhub_proto::profile::v1 as pb;
use cxhub_server::to_status;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Most customer ids in one filter.
pub const MAX_FILTER_CUSTOMERS: usize = 1_000;
/// Log entries read per query.
const SLICE: u32 = 500;

/// How the change streams of one process behave.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// How often a caught-up stream looks for new changes.
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

/// Serves change streams from a [`ChangeLogRepo`].
#[derive(Clone)]
pub struct Watcher {
    log: Arc<dyn ChangeLogRepo>,
    config: WatchConfig,
    slots: Arc<Semaphore>,
}

/// The stream a watch call answers.
pub type ChangeStream = ReceiverStream<Result<pb::WatchCustomerChangesResponse, Status>>;

impl Watcher {
    /// A watcher over `log`.
    pub fn new(log: Arc<dyn ChangeLogRepo>, config: WatchConfig) -> Self {
        Self {
            log,
            slots: Arc::new(Semaphore::new(config.max_watchers.max(1))),
            config,
        }
    }

    /// Validates the request, checks the starting position, and starts the stream.
    pub async fn watch(
        &self,
        req: &pb::WatchCustomerChangesRequest,
    ) -> Result<ChangeStream, Status> {
        let filter = filter(req).map_err(to_status)?;
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            to_status(Error::ResourceExhausted {
                reason: "TOO_MANY_WATCHERS",
                message: format!(
                    "this server already streams changes to {} watchers; retry later or on \
                     another replica",
                    self.config.max_watchers
                ),
                retry_after: Some(Duration::from_secs(5)),
            })
        })?;
        let first = self.log.read_changes(0, 0).await.map_err(to_status)?;
        let after = if req.resume_token.is_empty() {
            if req.from_oldest {
                first.horizon
            } else {
                first.head
            }
        } else {
            let after = parse_resume_token(&req.resume_token).map_err(to_status)?;
            check_resume(after, &first).map_err(to_status)?;
            after
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(follow(
            self.log.clone(),
            self.config,
            filter,
            after,
            tx,
            slot,
        ));
        Ok(ReceiverStream::new(rx))
    }
}

fn filter(req: &pb::WatchCustomerChangesRequest) -> cxhub_domain::Result<ChangeFilter> {
    let mut v = Violations::new();
    if req.from_oldest && !req.resume_token.is_empty() {
        v.add(
            "from_oldest",
            "give either a resume_token or from_oldest, not both",
        );
    }
    if !req.resume_token.is_empty()
        && let Err(Error::InvalidArgument { violations, .. }) =
            parse_resume_token(&req.resume_token)
    {
        for f in violations {
            v.add(f.field, f.description);
        }
    }
    if req.customer_ids.len() > MAX_FILTER_CUSTOMERS {
        v.add(
            "customer_ids",
            format!("at most {MAX_FILTER_CUSTOMERS} customers"),
        );
    }
    let mut customers = BTreeSet::new();
    for (i, id) in req.customer_ids.iter().enumerate() {
        if let Some(c) = v.check(format!("customer_ids[{i}]"), id.parse::<CustomerId>()) {
            customers.insert(c);
        }
    }
    let mut kinds = BTreeSet::new();
    for (i, k) in req.kinds.iter().enumerate() {
        match kind_from_pb(*k) {
            Some(kind) => {
                kinds.insert(kind);
            }
            None => v.add(format!("kinds[{i}]"), "unknown or unspecified change kind"),
        }
    }
    v.into_result()?;
    Ok(ChangeFilter { customers, kinds })
}

/// Reads the log after `after` and sends what passes, until the receiver goes away or the log
/// is pruned past the position (then the stream ends with OUT_OF_RANGE).
async fn follow(
    log: Arc<dyn ChangeLogRepo>,
    config: WatchConfig,
    filter: ChangeFilter,
    mut after: i64,
    tx: mpsc::Sender<Result<pb::WatchCustomerChangesResponse, Status>>,
    _slot: OwnedSemaphorePermit,
) {
    loop {
        let slice = match log.read_changes(after, SLICE).await {
            Ok(slice) => slice,
            Err(err) => {
                let _ = tx.send(Err(to_status(err))).await;
                return;
            }
        };
        if let Err(err) = check_resume(after, &slice) {
            let _ = tx.send(Err(to_status(err))).await;
            return;
        }
        let Some(last) = slice.changes.last().map(|c| c.seq) else {
            tokio::select! {
                () = tokio::time::sleep(config.poll) => continue,
                () = tx.closed() => return,
            }
        };
        let changes: Vec<pb::CustomerChange> = slice
            .changes
            .into_iter()
            .filter(|c| filter.matches(&c.change))
            .map(change_to_pb)
            .collect();
        after = last;
        let response = pb::WatchCustomerChangesResponse {
            changes,
            resume_token: resume_token(after),
        };
        if tx.send(Ok(response)).await.is_err() {
            return;
        }
    }
}

fn change_to_pb(c: cxhub_domain::change::Change) -> pb::CustomerChange {
    pb::CustomerChange {
        resume_token: resume_token(c.seq),
        sequence: c.seq,
        customer_id: c.change.customer.to_string(),
        kind: kind_to_pb(c.change.kind) as i32,
        changed_fields: c.change.fields,
        related_customer_ids: c.change.related.iter().map(ToString::to_string).collect(),
        merge_id: c.change.merge.map(|m| m.to_string()).unwrap_or_default(),
        occurred_at: Some(crate::timestamp(c.at)),
    }
}

fn kind_to_pb(kind: ChangeKind) -> pb::CustomerChangeKind {
    match kind {
        ChangeKind::Created => pb::CustomerChangeKind::Created,
        ChangeKind::Updated => pb::CustomerChangeKind::Updated,
        ChangeKind::Merged => pb::CustomerChangeKind::Merged,
        ChangeKind::Split => pb::CustomerChangeKind::Split,
        ChangeKind::Erased => pb::CustomerChangeKind::Erased,
        ChangeKind::Rescored => pb::CustomerChangeKind::Rescored,
    }
}

fn kind_from_pb(value: i32) -> Option<ChangeKind> {
    match pb::CustomerChangeKind::try_from(value).ok()? {
        pb::CustomerChangeKind::Unspecified => None,
        pb::CustomerChangeKind::Created => Some(ChangeKind::Created),
        pb::CustomerChangeKind::Updated => Some(ChangeKind::Updated),
        pb::CustomerChangeKind::Merged => Some(ChangeKind::Merged),
        pb::CustomerChangeKind::Split => Some(ChangeKind::Split),
        pb::CustomerChangeKind::Erased => Some(ChangeKind::Erased),
        pb::CustomerChangeKind::Rescored => Some(ChangeKind::Rescored),
    }
}
