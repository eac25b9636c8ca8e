//! Scoring math: customer lifetime value (BG/NBD and Gamma-Gamma), survey metrics (NPS, CSAT,
//! CES with confidence intervals and trend tests) and RFM segments. Pure functions over plain
//! numbers; the scoring service feeds them from the transactions ledger and survey responses.

pub mod clv;
pub mod metrics;
pub mod rfm;
pub mod survey;
