//! The hub's background tasks of the points programme: accrual from ingested transactions and
//! the scheduled expiry of points (see `docs/loyalty.md`, "Automatic accrual").

use std::time::Duration;

use cxhub_store::Store;

/// How often the accrual looks for new transaction events when it has caught up.
const ACCRUAL_POLL: Duration = Duration::from_millis(200);
/// How often expired points are posted as expired.
const EXPIRY_EVERY: Duration = Duration::from_secs(3600);
/// Transaction events per accrual pass.
const ACCRUAL_BATCH: u32 = 500;
/// Customers per expiry transaction.
const EXPIRY_BATCH: u32 = 500;

/// Posts the points of ingested transactions (see [`Store::accrue_points`]), one pass after
/// another, pausing [`ACCRUAL_POLL`] when caught up, for as long as the hub serves. Stopped
/// between two passes.
pub(crate) async fn accrue_points(store: Store, mut stop: tokio::sync::oneshot::Receiver<()>) {
    loop {
        let pause = match store.accrue_points(ACCRUAL_BATCH).await {
            Ok(pass) if pass.read > 0 => Duration::ZERO,
            Ok(_) => ACCRUAL_POLL,
            Err(err) => {
                tracing::warn!(error = %err, "the points accrual failed; retrying");
                ACCRUAL_POLL * 10
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = &mut stop => return,
        }
    }
}

/// Posts the points that expired (see [`Store::expire_points`]) every [`EXPIRY_EVERY`], so
/// balances, breakage and tiers are right without waiting for the customer's next posting.
/// Waits first (a hub that lives for moments never starts one). Stopped between two runs.
pub(crate) async fn expire_points(store: Store, mut stop: tokio::sync::oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(EXPIRY_EVERY) => {}
            _ = &mut stop => return,
        }
        match store.expire_points(chrono::Utc::now(), EXPIRY_BATCH).await {
            Ok(0) => {}
            Ok(customers) => tracing::info!(customers, "expired points posted"),
            Err(err) => tracing::warn!(error = %err, "posting expired points failed"),
        }
    }
}
