//! Loyalty actions: the lifecycle of an action, the guard rails that keep actions sensible
//! (frequency caps, budgets, consent, holdout groups), the points ledger of the loyalty
//! programme, and the small condition language rules are written in. Pure rules over plain data;
//! the loyalty service and the store apply them transactionally.

pub mod action;
pub mod condition;
pub mod effect;
pub mod executor;
pub mod guard;
pub mod points;
pub mod repo;
pub mod rule;
