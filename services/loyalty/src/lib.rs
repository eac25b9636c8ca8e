//! `cxhub.loyalty.v1.LoyaltyActionService`: loyalty actions (proposed, approved, sent…, every
//! move recorded), the guard rails that keep them sensible (erased customers, consent,
//! frequency caps, campaign budgets), and the points ledger. Handlers are thin: [`convert`]
//! validates, the store applies the domain rules (`cxhub_domain::loyalty`) transactionally.

pub mod convert;
pub mod effect;
pub mod executor;
pub mod programme;

use std::sync::Arc;

use cxhub_domain::Violations;
use cxhub_domain::loyalty::repo::{
    ActionFilter, ExpectedVersion, GuardConfig, LoyaltyRepo, MAX_DRY_RUN_CUSTOMERS,
    MAX_RECENT_ENTRIES, PointsOp, PointsPosting, SweepReport,
};
use cxhub_domain::loyalty::rule::{Rule, Trigger};
use cxhub_domain::page::{filter_fingerprint, next_page_token, page_request};
use cxhub_domain::repo::Lookup;
use cxhub_domain::touchpoint::Key;
use cxhub_proto::loyalty::v1 as pb;
use cxhub_proto::loyalty::v1::loyalty_action_service_server::{
    LoyaltyActionService, LoyaltyActionServiceServer, SERVICE_NAME,
};
use cxhub_server::{
    Access, Limits, MethodAccess, ServiceRegistration, request_key, to_status, validated,
};
use executor::WatchConfig;
use tonic::{Request, Response, Status};

const READ: Access = Access::Scope("loyalty:read");
const WRITE: Access = Access::Scope("loyalty:write");
const ADMIN: Access = Access::Scope("admin");

/// Every RPC of the service and the scope it needs.
pub const METHODS: &[MethodAccess] = &[
    MethodAccess {
        method: "ProposeAction",
        access: WRITE,
    },
    MethodAccess {
        method: "GetAction",
        access: READ,
    },
    MethodAccess {
        method: "ListActions",
        access: READ,
    },
    MethodAccess {
        method: "TransitionAction",
        access: WRITE,
    },
    MethodAccess {
        method: "WatchActions",
        access: READ,
    },
    MethodAccess {
        method: "ReportActionOutcome",
        access: WRITE,
    },
    MethodAccess {
        method: "CreateCampaign",
        access: WRITE,
    },
    MethodAccess {
        method: "GetCampaign",
        access: READ,
    },
    MethodAccess {
        method: "AccruePoints",
        access: WRITE,
    },
    MethodAccess {
        method: "RedeemPoints",
        access: WRITE,
    },
    MethodAccess {
        method: "ReversePoints",
        access: WRITE,
    },
    MethodAccess {
        method: "GetPointsBalance",
        access: READ,
    },
    MethodAccess {
        method: "CreateRule",
        access: WRITE,
    },
    MethodAccess {
        method: "UpdateRule",
        access: WRITE,
    },
    MethodAccess {
        method: "GetRule",
        access: READ,
    },
    MethodAccess {
        method: "ListRules",
        access: READ,
    },
    MethodAccess {
        method: "DryRunRule",
        access: READ,
    },
    MethodAccess {
        method: "RunRuleSweep",
        access: ADMIN,
    },
    MethodAccess {
        method: "SetPointsProgramme",
        access: WRITE,
    },
    MethodAccess {
        method: "GetPointsProgramme",
        access: READ,
    },
    MethodAccess {
        method: "EarnPoints",
        access: WRITE,
    },
    MethodAccess {
        method: "GetRuleEffectReport",
        access: READ,
    },
];

/// The service's name on the `--services` flag.
pub const SHORT_NAME: &str = "loyalty";

/// Default number of recent entries a balance read returns.
const DEFAULT_RECENT_ENTRIES: u32 = 20;

/// Default number of customers one dry-run call scans.
const DEFAULT_DRY_RUN_CUSTOMERS: u32 = 1000;

/// The registration the hub serves, over `repo`, with the frequency caps of `guard`.
pub fn registration(repo: Arc<dyn LoyaltyRepo>, guard: GuardConfig) -> ServiceRegistration {
    ServiceRegistration {
        short_name: SHORT_NAME,
        grpc_name: SERVICE_NAME,
        methods: METHODS,
        add: Box::new(move |routes, limits: &Limits| {
            routes.add_service(
                LoyaltyActionServiceServer::new(Loyalty {
                    watcher: executor::ActionWatcher::new(repo.clone(), WatchConfig::default()),
                    repo,
                    guard: Arc::new(guard),
                })
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(limits.max_message_bytes),
            );
        }),
    }
}

/// The gRPC handlers over a [`LoyaltyRepo`].
pub struct Loyalty {
    repo: Arc<dyn LoyaltyRepo>,
    guard: Arc<GuardConfig>,
    watcher: executor::ActionWatcher,
}

/// A ledger request id (same rules as every request id).
fn ledger_request_id(id: &str, v: &mut Violations) -> Option<String> {
    v.check(
        "request_id",
        cxhub_domain::idempotency::check_request_id(id),
    )
    .map(|()| id.to_owned())
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Customers one sweep transaction evaluates. Fewer, larger transactions sweep faster (100,000
/// customers on SQLite: 4.2 s at 500, 3.5 s at 2,000, 3.0 s at 5,000, one loaded machine, one
/// run), but a transaction holds the rule's lock, its customers' locks and, on SQLite, the one
/// writer: at 2,000 about 70 ms here, which ingestion then waits.
pub const SWEEP_BATCH: u32 = 2_000;

/// Runs the daily sweep of every enabled daily-sweep rule now (see
/// [`LoyaltyRepo::run_sweep`]), one rule after another, by rule id. The hub calls it once a day
/// from a background task; `RunRuleSweep` calls it on demand. A rule version acts on a customer
/// at most once per UTC day, so running it twice in a day is harmless.
pub async fn sweep_scheduled(
    repo: &dyn LoyaltyRepo,
    guard: &GuardConfig,
) -> cxhub_domain::Result<Vec<SweepReport>> {
    let mut reports = Vec::new();
    for rule in repo.scheduled_rules().await? {
        reports.push(repo.run_sweep(&rule, guard, now(), SWEEP_BATCH).await?);
    }
    Ok(reports)
}

/// A rule version to read: positive, or 0 for the current one.
fn version(value: i64, field: &str, v: &mut Violations) -> Option<Option<i64>> {
    match value {
        0 => Some(None),
        n if n > 0 => Some(Some(n)),
        n => {
            v.add(
                field,
                format!("must be positive, or 0 for the current version (got {n})"),
            );
            None
        }
    }
}

impl Loyalty {
    async fn post(&self, posting: PointsPosting) -> Result<(pb::PointsEntry, i64), Status> {
        let posted = self.repo.post_points(posting).await.map_err(to_status)?;
        Ok((convert::entry_to_pb(posted.entry), posted.balance))
    }
}

#[tonic::async_trait]
impl LoyaltyActionService for Loyalty {
    async fn propose_action(
        &self,
        req: Request<pb::ProposeActionRequest>,
    ) -> Result<Response<pb::ProposeActionResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "ProposeAction",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let action = v.required(req.get_ref().action.as_ref(), "action", |a, v| {
            convert::new_action(a, "action", v)
        });
        let (key, action) = validated(v, key.zip(action))?;
        let proposed = self
            .repo
            .propose_action(&key, action, &self.guard)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ProposeActionResponse {
            action: Some(convert::action_to_pb(proposed, now())),
        }))
    }

    async fn get_action(
        &self,
        req: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::GetActionResponse>, Status> {
        let mut v = Violations::new();
        let id = v.check("id", req.get_ref().id.parse());
        let id = validated(v, id)?;
        let action = self.repo.get_action(id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetActionResponse {
            action: Some(convert::action_to_pb(action, now())),
        }))
    }

    async fn list_actions(
        &self,
        req: Request<pb::ListActionsRequest>,
    ) -> Result<Response<pb::ListActionsResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let customer = if r.customer_id.is_empty() {
            Some(None)
        } else {
            convert::customer(&r.customer_id, "customer_id", &mut v).map(Some)
        };
        let state = convert::state(r.state, "state", false, &mut v);
        let kind = convert::kind(r.kind, &r.custom_kind, "kind", "custom_kind", false, &mut v);
        let assignee_team = (!r.assignee_team.is_empty()).then(|| r.assignee_team.clone());
        let filter = customer
            .zip(state)
            .zip(kind)
            .map(|((customer, state), kind)| ActionFilter {
                customer,
                state,
                kind,
                assignee_team,
                sla_breached_only: r.sla_breached_only,
            });
        let fingerprint = filter_fingerprint(&filter);
        let page = match page_request(r.page_size, &r.page_token, &fingerprint) {
            Ok(page) => Some(page),
            Err(err) => {
                for violation in Vec::from(err) {
                    v.add(violation.field, violation.description);
                }
                None
            }
        };
        let (filter, page) = validated(v, filter.zip(page))?;
        let at = now();
        let found = self
            .repo
            .list_actions(&filter, at, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListActionsResponse {
            next_page_token: next_page_token(found.next_after.as_deref(), &fingerprint),
            actions: found
                .items
                .into_iter()
                .map(|a| convert::action_to_pb(a, at))
                .collect(),
        }))
    }

    async fn transition_action(
        &self,
        req: Request<pb::TransitionActionRequest>,
    ) -> Result<Response<pb::TransitionActionResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "TransitionAction",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let r = req.get_ref();
        let id = v.check("action_id", r.action_id.parse());
        let to = convert::state(r.to_state, "to_state", true, &mut v).flatten();
        let ((key, id), to) = validated(v, key.zip(id).zip(to))?;
        let etag = (!r.etag.is_empty()).then_some(r.etag.as_str());
        let action = self
            .repo
            .transition_action(&key, id, to, etag)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::TransitionActionResponse {
            action: Some(convert::action_to_pb(action, now())),
        }))
    }

    type WatchActionsStream = executor::ActionStream;

    async fn watch_actions(
        &self,
        req: Request<pb::WatchActionsRequest>,
    ) -> Result<Response<Self::WatchActionsStream>, Status> {
        let stream = self.watcher.watch(req.get_ref()).await?;
        Ok(Response::new(stream))
    }

    async fn report_action_outcome(
        &self,
        req: Request<pb::ReportActionOutcomeRequest>,
    ) -> Result<Response<pb::ReportActionOutcomeResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "ReportActionOutcome",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let r = req.get_ref();
        let id = v.check("action_id", r.action_id.parse());
        let outcome = executor::new_outcome(r, &mut v);
        let ((key, id), outcome) = validated(v, key.zip(id).zip(outcome))?;
        let action = self
            .repo
            .report_outcome(&key, id, outcome)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReportActionOutcomeResponse {
            action: Some(convert::action_to_pb(action, now())),
        }))
    }

    async fn create_campaign(
        &self,
        req: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::CreateCampaignResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "CreateCampaign",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let campaign = v.required(req.get_ref().campaign.as_ref(), "campaign", |c, v| {
            convert::new_campaign(c, v)
        });
        let (key, campaign) = validated(v, key.zip(campaign))?;
        let created = self
            .repo
            .create_campaign(&key, campaign)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateCampaignResponse {
            campaign: Some(convert::campaign_to_pb(created)),
        }))
    }

    async fn get_campaign(
        &self,
        req: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::GetCampaignResponse>, Status> {
        use pb::get_campaign_request::Lookup as L;
        let mut v = Violations::new();
        let lookup = match &req.get_ref().lookup {
            Some(L::Id(id)) => v.check("id", id.parse()).map(Lookup::Id),
            Some(L::Key(key)) => v.check("key", Key::parse(key)).map(Lookup::Key),
            None => {
                v.add("lookup", "give exactly one of id or key");
                None
            }
        };
        let lookup = validated(v, lookup)?;
        let campaign = self.repo.get_campaign(&lookup).await.map_err(to_status)?;
        Ok(Response::new(pb::GetCampaignResponse {
            campaign: Some(convert::campaign_to_pb(campaign)),
        }))
    }

    async fn accrue_points(
        &self,
        req: Request<pb::AccruePointsRequest>,
    ) -> Result<Response<pb::AccruePointsResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let request_id = ledger_request_id(&r.request_id, &mut v);
        let customer = convert::customer(&r.customer_id, "customer_id", &mut v);
        let points = convert::points(r.points, &mut v);
        let source_ref = convert::source_ref(&r.source_ref, true, &mut v).flatten();
        let expires_at = convert::time(r.expires_at.as_ref(), "expires_at", false, &mut v);
        if let Some(Some(at)) = expires_at
            && at <= now()
        {
            v.add("expires_at", "must be in the future");
        }
        let posting = (|| {
            Some(PointsPosting {
                request_id: request_id?,
                customer: customer?,
                op: PointsOp::Accrue {
                    points: points?,
                    source_ref: source_ref?,
                    expires_at: expires_at?,
                },
            })
        })();
        let posting = validated(v, posting)?;
        let (entry, balance) = self.post(posting).await?;
        Ok(Response::new(pb::AccruePointsResponse {
            entry: Some(entry),
            balance,
        }))
    }

    async fn redeem_points(
        &self,
        req: Request<pb::RedeemPointsRequest>,
    ) -> Result<Response<pb::RedeemPointsResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let request_id = ledger_request_id(&r.request_id, &mut v);
        let customer = convert::customer(&r.customer_id, "customer_id", &mut v);
        let points = convert::points(r.points, &mut v);
        let source_ref = convert::source_ref(&r.source_ref, false, &mut v);
        let posting = (|| {
            Some(PointsPosting {
                request_id: request_id?,
                customer: customer?,
                op: PointsOp::Redeem {
                    points: points?,
                    source_ref: source_ref?,
                },
            })
        })();
        let posting = validated(v, posting)?;
        let (entry, balance) = self.post(posting).await?;
        Ok(Response::new(pb::RedeemPointsResponse {
            entry: Some(entry),
            balance,
        }))
    }

    async fn reverse_points(
        &self,
        req: Request<pb::ReversePointsRequest>,
    ) -> Result<Response<pb::ReversePointsResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let request_id = ledger_request_id(&r.request_id, &mut v);
        let customer = convert::customer(&r.customer_id, "customer_id", &mut v);
        let source_ref = convert::source_ref(&r.source_ref, true, &mut v).flatten();
        let points = convert::points(r.points, &mut v);
        let posting = (|| {
            Some(PointsPosting {
                request_id: request_id?,
                customer: customer?,
                op: PointsOp::Reverse {
                    source_ref: source_ref?,
                    points: points?,
                },
            })
        })();
        let posting = validated(v, posting)?;
        let (entry, balance) = self.post(posting).await?;
        Ok(Response::new(pb::ReversePointsResponse {
            entry: Some(entry),
            balance,
        }))
    }

    async fn get_points_balance(
        &self,
        req: Request<pb::GetPointsBalanceRequest>,
    ) -> Result<Response<pb::GetPointsBalanceResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let customer = convert::customer(&r.customer_id, "customer_id", &mut v);
        let recent = match u32::try_from(r.recent_entries) {
            Ok(0) => Some(DEFAULT_RECENT_ENTRIES),
            Ok(n) if n <= MAX_RECENT_ENTRIES => Some(n),
            _ => {
                v.add(
                    "recent_entries",
                    format!("must be between 0 and {MAX_RECENT_ENTRIES}"),
                );
                None
            }
        };
        let (customer, recent) = validated(v, customer.zip(recent))?;
        let balance = self
            .repo
            .points_balance(customer, recent)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetPointsBalanceResponse {
            tier: balance.tier.unwrap_or_default(),
            customer_id: balance.customer.to_string(),
            balance: balance.balance,
            entries: balance
                .recent
                .into_iter()
                .map(convert::entry_to_pb)
                .collect(),
        }))
    }

    async fn create_rule(
        &self,
        req: Request<pb::CreateRuleRequest>,
    ) -> Result<Response<pb::CreateRuleResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "CreateRule",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let rule = v.required(req.get_ref().rule.as_ref(), "rule", |r, v| {
            convert::rule_id(&r.id, "rule.id", v).zip(convert::rule_spec(r, "rule", v))
        });
        let (key, (id, spec)) = validated(v, key.zip(rule))?;
        let created = self
            .repo
            .create_rule(&key, id, spec)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateRuleResponse {
            rule: Some(convert::rule_to_pb(created)),
        }))
    }

    async fn update_rule(
        &self,
        req: Request<pb::UpdateRuleRequest>,
    ) -> Result<Response<pb::UpdateRuleResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "UpdateRule",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let r = req.get_ref();
        let mask: &[String] = r.update_mask.as_ref().map_or(&[], |m| m.paths.as_slice());
        let rule = v.required(r.rule.as_ref(), "rule", |rule, v| {
            convert::rule_id(&rule.id, "rule.id", v).zip(convert::rule_patch(rule, mask, "rule", v))
        });
        let expected_version = match r.expected_version {
            0 => Some(None),
            n if n > 0 => Some(Some(n)),
            n => {
                v.add(
                    "expected_version",
                    format!("must be positive, or 0 not to check (got {n})"),
                );
                None
            }
        };
        let ((key, (id, patch)), expected_version) =
            validated(v, key.zip(rule).zip(expected_version))?;
        let expected = ExpectedVersion {
            etag: (!r.etag.is_empty()).then(|| r.etag.clone()),
            version: expected_version,
        };
        let updated = self
            .repo
            .update_rule(&key, id, expected, patch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UpdateRuleResponse {
            rule: Some(convert::rule_to_pb(updated)),
        }))
    }

    async fn get_rule(
        &self,
        req: Request<pb::GetRuleRequest>,
    ) -> Result<Response<pb::GetRuleResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let id = convert::rule_id(&r.id, "id", &mut v);
        let version = version(r.version, "version", &mut v);
        let (id, version) = validated(v, id.zip(version))?;
        let rule = self.repo.get_rule(&id, version).await.map_err(to_status)?;
        Ok(Response::new(pb::GetRuleResponse {
            rule: Some(convert::rule_to_pb(rule)),
        }))
    }

    async fn list_rules(
        &self,
        req: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let r = req.get_ref();
        let fingerprint = filter_fingerprint(&"rules");
        let page = page_request(r.page_size, &r.page_token, &fingerprint).map_err(to_status)?;
        let found = self.repo.list_rules(&page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListRulesResponse {
            next_page_token: next_page_token(found.next_after.as_deref(), &fingerprint),
            rules: found.items.into_iter().map(convert::rule_to_pb).collect(),
        }))
    }

    async fn dry_run_rule(
        &self,
        req: Request<pb::DryRunRuleRequest>,
    ) -> Result<Response<pb::DryRunRuleResponse>, Status> {
        use pb::dry_run_rule_request::RuleSource as S;
        let r = req.get_ref();
        let mut v = Violations::new();
        let max = match u32::try_from(r.max_customers) {
            Ok(0) => Some(DEFAULT_DRY_RUN_CUSTOMERS),
            Ok(n) if n <= MAX_DRY_RUN_CUSTOMERS => Some(n),
            _ => {
                v.add(
                    "max_customers",
                    format!("must be between 0 and {MAX_DRY_RUN_CUSTOMERS}"),
                );
                None
            }
        };
        enum Source {
            Inline(Box<Rule>),
            Stored(cxhub_domain::touchpoint::Key, Option<i64>),
        }
        let source = match &r.rule_source {
            Some(S::Rule(rule)) => convert::rule_id(&rule.id, "rule.id", &mut v)
                .zip(convert::rule_spec(rule, "rule", &mut v))
                .map(|(id, spec)| {
                    Source::Inline(Box::new(Rule {
                        id,
                        version: 0,
                        spec,
                        created_by: String::new(),
                        created_at: now(),
                    }))
                }),
            Some(S::Stored(stored)) => convert::rule_id(&stored.id, "stored.id", &mut v)
                .zip(version(stored.version, "stored.version", &mut v))
                .map(|(id, version)| Source::Stored(id, version)),
            None => {
                v.add("rule_source", "give exactly one of rule or stored");
                None
            }
        };
        let (source, max) = validated(v, source.zip(max))?;
        let rule = match source {
            Source::Inline(rule) => *rule,
            Source::Stored(id, version) => {
                self.repo.get_rule(&id, version).await.map_err(to_status)?
            }
        };
        // The token is bound to the rule's definition: another rule cannot continue it.
        let fingerprint = filter_fingerprint(&(&rule.id, rule.version, &rule.spec));
        let page = page_request(0, &r.page_token, &fingerprint).map_err(to_status)?;
        let mut v = Violations::new();
        let after = match page.after.as_deref() {
            None => Some(None),
            Some(after) => v.check(
                "page_token",
                after
                    .parse()
                    .map(Some)
                    .map_err(|_: String| "not a token of this dry run".to_owned()),
            ),
        };
        let after = validated(v, after)?;
        let run = self
            .repo
            .dry_run_rule(&rule, &self.guard, after, max)
            .await
            .map_err(to_status)?;
        let next_after = run.next_after.map(|c| c.to_string());
        Ok(Response::new(pb::DryRunRuleResponse {
            rule: Some(convert::rule_to_pb(rule)),
            targets: run
                .targets
                .into_iter()
                .map(convert::dry_run_target_to_pb)
                .collect(),
            scanned: i32::try_from(run.scanned).unwrap_or(i32::MAX),
            next_page_token: next_page_token(next_after.as_deref(), &fingerprint),
        }))
    }

    async fn run_rule_sweep(
        &self,
        req: Request<pb::RunRuleSweepRequest>,
    ) -> Result<Response<pb::RunRuleSweepResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "RunRuleSweep",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let rule_id = &req.get_ref().rule_id;
        let rule = if rule_id.is_empty() {
            Some(None)
        } else {
            convert::rule_id(rule_id, "rule_id", &mut v).map(Some)
        };
        let (key, rule) = validated(v, key.zip(rule))?;
        let reports =
            cxhub_domain::idempotency::answer_once(self.repo.as_ref(), &key, self.sweep(rule))
                .await
                .map_err(to_status)?;
        Ok(sweep_response(reports))
    }

    async fn set_points_programme(
        &self,
        req: Request<pb::SetPointsProgrammeRequest>,
    ) -> Result<Response<pb::SetPointsProgrammeResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "SetPointsProgramme",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let programme = v.required(req.get_ref().programme.as_ref(), "programme", |p, v| {
            programme::programme(p, v)
        });
        let (key, programme) = validated(v, key.zip(programme))?;
        let stored = self
            .repo
            .set_programme(&key, programme)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SetPointsProgrammeResponse {
            programme: Some(programme::programme_to_pb(stored)),
        }))
    }

    async fn get_points_programme(
        &self,
        _req: Request<pb::GetPointsProgrammeRequest>,
    ) -> Result<Response<pb::GetPointsProgrammeResponse>, Status> {
        let stored = self.repo.get_programme().await.map_err(to_status)?;
        Ok(Response::new(pb::GetPointsProgrammeResponse {
            programme: Some(programme::programme_to_pb(stored)),
        }))
    }

    async fn earn_points(
        &self,
        req: Request<pb::EarnPointsRequest>,
    ) -> Result<Response<pb::EarnPointsResponse>, Status> {
        let mut v = Violations::new();
        let posting = programme::earning(req.get_ref(), &mut v);
        let posting = validated(v, posting)?;
        let (entry, balance) = self.post(posting).await?;
        Ok(Response::new(pb::EarnPointsResponse {
            entry: Some(entry),
            balance,
        }))
    }

    async fn get_rule_effect_report(
        &self,
        req: Request<pb::GetRuleEffectReportRequest>,
    ) -> Result<Response<pb::GetRuleEffectReportResponse>, Status> {
        effect::report(self.repo.as_ref(), req.get_ref(), now())
            .await
            .map(Response::new)
    }
}

impl Loyalty {
    /// Runs the sweep a `RunRuleSweep` asks for: the current version of `rule`, or every
    /// enabled daily-sweep rule.
    async fn sweep(&self, rule: Option<Key>) -> cxhub_domain::Result<Vec<SweepReport>> {
        let Some(id) = rule else {
            return sweep_scheduled(self.repo.as_ref(), &self.guard).await;
        };
        let rule = self.repo.get_rule(&id, None).await?;
        if rule.spec.trigger != Trigger::DailySweep {
            return Err(cxhub_domain::Error::precondition(
                "NOT_SCHEDULED",
                format!(
                    "rule `{id}` acts on the event `{}`, not on a daily sweep",
                    rule.spec.trigger
                ),
            ));
        }
        if !rule.spec.enabled {
            return Err(cxhub_domain::Error::precondition(
                "RULE_DISABLED",
                format!("rule `{id}` is disabled: enable it with UpdateRule first"),
            ));
        }
        Ok(vec![
            self.repo
                .run_sweep(&rule, &self.guard, now(), SWEEP_BATCH)
                .await?,
        ])
    }
}

/// The answer of `RunRuleSweep`.
fn sweep_response(reports: Vec<SweepReport>) -> Response<pb::RunRuleSweepResponse> {
    Response::new(pb::RunRuleSweepResponse {
        results: reports.into_iter().map(convert::sweep_to_pb).collect(),
    })
}
