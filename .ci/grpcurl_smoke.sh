#!/usr/bin/env bash
# Smoke test of a running hub with grpcurl, over server reflection only (no .proto files).
#
#   .ci/grpcurl_smoke.sh HOST:PORT
#
# Expects a hub started with `--demo` on a plaintext port. Environment:
#   GRPCURL      the grpcurl binary (default: grpcurl on PATH)
#   CXHUB_TOKEN  a bearer token to send, when the hub has tokens configured
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 HOST:PORT" >&2
    exit 2
fi
target=$1
grpcurl_bin=${GRPCURL:-grpcurl}
service=cxhub.touchpoint.v1.TouchpointRegistryService

headers=()
if [[ -n ${CXHUB_TOKEN:-} ]]; then
    headers=(-H "authorization: Bearer ${CXHUB_TOKEN}")
fi

fail() {
    echo "grpcurl smoke: FAIL: $*" >&2
    exit 1
}

# call ARGS... : runs grpcurl, prints its output; fails on a non-zero exit.
call() {
    local out
    if ! out=$("$grpcurl_bin" -plaintext -max-time 10 "${headers[@]}" "$@" 2>&1); then
        printf '%s\n' "$out" >&2
        fail "grpcurl $* exited non-zero"
    fi
    printf '%s\n' "$out"
}

# expect OUTPUT NEEDLE WHAT : fails unless OUTPUT contains NEEDLE.
expect() {
    if [[ $1 != *"$2"* ]]; then
        printf '%s\n' "$1" >&2
        fail "$3: expected to find '$2'"
    fi
}

run_id="$(date +%s)-$$-${RANDOM}"

echo "--- list"
out=$(call "$target" list)
expect "$out" "$service" "list"
expect "$out" "grpc.health.v1.Health" "list"

echo "--- describe $service"
out=$(call "$target" describe "$service")
expect "$out" "rpc CreateTouchpoint" "describe"
expect "$out" "rpc GetTouchpointTree" "describe"

echo "--- health (overall and $service)"
out=$(call -d '{"service": ""}' "$target" grpc.health.v1.Health/Check)
expect "$out" '"SERVING"' "overall health"
out=$(call -d "{\"service\": \"$service\"}" "$target" grpc.health.v1.Health/Check)
expect "$out" '"SERVING"' "health of $service"

echo "--- CreateTouchpoint"
key="ci-smoke.run-${run_id}"
name="Smoke test ${run_id}"
out=$(call -d @ "$target" "$service/CreateTouchpoint" <<EOF
{
  "touchpoint": {
    "key": "$key",
    "name": "$name",
    "channel": "CHANNEL_WEB",
    "stage": "JOURNEY_STAGE_SUPPORT",
    "department": "digital",
    "main": true,
    "labels": {"source": "ci"}
  },
  "request_id": "ci-smoke-create-${run_id}"
}
EOF
)
expect "$out" "\"key\": \"$key\"" "CreateTouchpoint"
expect "$out" '"etag"' "CreateTouchpoint"

echo "--- GetTouchpoint by key"
out=$(call -d "{\"key\": \"$key\"}" "$target" "$service/GetTouchpoint")
expect "$out" "\"name\": \"$name\"" "GetTouchpoint"

echo "--- CreateTouchpoint with an invalid key is refused"
refused=0
out=$("$grpcurl_bin" -plaintext -max-time 10 "${headers[@]}" -d @ "$target" "$service/CreateTouchpoint" 2>&1 <<EOF
{
  "touchpoint": {
    "key": "Not A Valid Key",
    "name": "Refused",
    "channel": "CHANNEL_WEB",
    "stage": "JOURNEY_STAGE_SUPPORT",
    "department": "digital"
  },
  "request_id": "ci-smoke-refused-${run_id}"
}
EOF
) || refused=1
[[ $refused -eq 1 ]] || fail "an invalid key was accepted: $out"
expect "$out" "InvalidArgument" "invalid key refusal"
expect "$out" "touchpoint.key" "invalid key refusal (BadRequest field)"

echo "--- ListTouchpoints page_size 5"
out=$(call -d '{"page_size": 5}' "$target" "$service/ListTouchpoints")
expect "$out" '"nextPageToken"' "ListTouchpoints over the demo registry"
count=$(grep -c '"key":' <<<"$out" || true)
[[ $count -eq 5 ]] || fail "ListTouchpoints page_size 5 returned $count touchpoints"

feeds=cxhub.feeds.v1.FeedService
profile=cxhub.profile.v1.CustomerProfileService

echo "--- IngestRecords: a contact and an order of one person, plus an invalid record"
batch=$(cat <<EOF
{"records": [
  {"source": "crm", "record_id": "ci-${run_id}", "updated_at": "2026-01-02T03:04:05Z",
   "customer": {"source_customer_id": "ci-${run_id}", "emails": ["CI.${run_id}@Correio.PT"]},
   "contact": {"given_name": "Grpcurl", "family_name": "Smoke"}},
  {"source": "erp", "record_id": "ci-order-${run_id}", "updated_at": "2026-01-02T03:04:05Z",
   "customer": {"source_customer_id": "k-${run_id}", "emails": ["ci.${run_id}@correio.pt"]},
   "order": {"ordered_at": "2026-01-02T03:04:05Z", "channel": "CHANNEL_WEB", "status": "ORDER_STATUS_PLACED",
             "lines": [{"sku": "CD", "quantity": 2, "unit_price": {"amount_minor": 1299, "currency_code": "USD"}}]}},
  {"source": "erp", "record_id": "ci-bad-${run_id}", "updated_at": "1850-01-01T00:00:00Z",
   "customer": {"source_customer_id": "k-${run_id}"},
   "order": {"ordered_at": "2026-01-02T03:04:05Z", "channel": "CHANNEL_WEB", "status": "ORDER_STATUS_PLACED",
             "lines": [{"sku": "CD", "quantity": 1, "unit_price": {"amount_minor": 100, "currency_code": "EURO"}}]}}
]}
EOF
)
out=$(call -d "$batch" "$target" "$feeds/IngestRecords")
[[ $(grep -c '"RECORD_OUTCOME_CREATED"' <<<"$out") -eq 2 ]] || { printf '%s\n' "$out" >&2; fail "IngestRecords: expected 2 CREATED"; }
expect "$out" '"RECORD_OUTCOME_REJECTED"' "IngestRecords"
expect "$out" 'order.lines[0].unit_price.currency_code' "IngestRecords violation path"
customers=$(grep -o '"customerId": "[^"]*"' <<<"$out" | sort -u | wc -l)
[[ $customers -eq 1 ]] || fail "the contact and the order resolved to $customers customers"
cid=$(grep -o '"customerId": "[^"]*"' <<<"$out" | head -1 | cut -d'"' -f4)

echo "--- IngestRecords again: UNCHANGED"
out=$(call -d "$batch" "$target" "$feeds/IngestRecords")
[[ $(grep -c '"RECORD_OUTCOME_UNCHANGED"' <<<"$out") -eq 2 ]] || { printf '%s\n' "$out" >&2; fail "a re-send must be UNCHANGED"; }

echo "--- GetCustomer"
out=$(call -d "{\"customer_id\": \"$cid\"}" "$target" "$profile/GetCustomer")
expect "$out" '"givenName": "Grpcurl"' "GetCustomer"
expect "$out" "ci.${run_id}@correio.pt" "GetCustomer (normalised e-mail)"
expect "$out" '"recordCount": "2"' "GetCustomer"

scoring=cxhub.scoring.v1.ScoringService

echo "--- CreateSurvey on a demo touchpoint"
survey=$(cat <<EOF
{"survey": {"key": "ci.survey-${run_id}", "name": "CI",
  "questions": [{"key": "q", "kind": "QUESTION_KIND_NPS", "text": {"en": "Recommend?"}}],
  "languages": ["en"], "touchpoint_keys": ["branch.teller"]},
 "request_id": "ci-survey-${run_id}"}
EOF
)
out=$(call -d "$survey" "$target" "$scoring/CreateSurvey")
expect "$out" "\"ci.survey-${run_id}\"" "CreateSurvey"

echo "--- SubmitResponses: one valid, one out of scale"
responses=$(cat <<EOF
{"responses": [
  {"response_id": "ci-r1-${run_id}", "customer_id": "$cid", "survey_key": "ci.survey-${run_id}",
   "touchpoint_key": "branch.teller", "answers": [{"question_key": "q", "value": 9}],
   "answered_at": "2026-11-20T10:00:00Z"},
  {"response_id": "ci-r2-${run_id}", "customer_id": "$cid", "survey_key": "ci.survey-${run_id}",
   "touchpoint_key": "branch.teller", "answers": [{"question_key": "q", "value": 11}],
   "answered_at": "2026-11-20T10:00:00Z"}
]}
EOF
)
out=$(call -d "$responses" "$target" "$scoring/SubmitResponses")
expect "$out" '"RESPONSE_OUTCOME_CREATED"' "SubmitResponses"
expect "$out" '"RESPONSE_OUTCOME_REJECTED"' "SubmitResponses (out of scale)"
expect "$out" 'answers[0].value' "SubmitResponses violation path"

echo "--- GetScoreReport over the survey"
report=$(cat <<EOF
{"range": {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
 "filter": {"survey_keys": ["ci.survey-${run_id}"]}, "group_by": ["GROUP_BY_TOUCHPOINT"]}
EOF
)
out=$(call -d "$report" "$target" "$scoring/GetScoreReport")
expect "$out" '"touchpointKey": "branch.teller"' "GetScoreReport group"
expect "$out" '"smallSample": true' "GetScoreReport small-sample flag"

loyalty=cxhub.loyalty.v1.LoyaltyActionService
echo "--- loyalty: campaign, action approved within budget, illegal move refused, points"
out=$(call -d "{\"request_id\": \"ci-camp-${run_id}\", \"campaign\": {\"key\": \"ci.camp-${run_id}\", \"name\": \"CI\", \"budget\": {\"amount_minor\": 1000, \"currency_code\": \"EUR\"}}}" "$target" "$loyalty/CreateCampaign")
camp=$(grep -o '"id": "[^"]*"' <<<"$out" | head -1 | cut -d'"' -f4)
[[ -n $camp ]] || fail "CreateCampaign: no id"
action=$(cat <<EOF
{"request_id": "ci-act-${run_id}", "action": {"customer_id": "$cid", "kind": "ACTION_KIND_GOODWILL_CREDIT",
 "reason": "ci", "channel": "CONTACT_CHANNEL_PHONE", "value": {"amount_minor": 600, "currency_code": "EUR"},
 "campaign_id": "$camp", "due_at": "2030-01-01T00:00:00Z", "assignee_team": "ci"}}
EOF
)
out=$(call -d "$action" "$target" "$loyalty/ProposeAction")
expect "$out" '"ACTION_STATE_PROPOSED"' "ProposeAction"
aid=$(grep -o '"id": "[^"]*"' <<<"$out" | head -1 | cut -d'"' -f4)
out=$(call -d "{\"request_id\": \"ci-mv1-${run_id}\", \"action_id\": \"$aid\", \"to_state\": \"ACTION_STATE_APPROVED\"}" "$target" "$loyalty/TransitionAction")
expect "$out" '"ACTION_STATE_APPROVED"' "TransitionAction (approve)"
out=$("$grpcurl_bin" -plaintext -max-time 10 "${headers[@]}" -d "{\"request_id\": \"ci-mv2-${run_id}\", \"action_id\": \"$aid\", \"to_state\": \"ACTION_STATE_REDEEMED\"}" "$target" "$loyalty/TransitionAction" 2>&1 || true)
expect "$out" "FailedPrecondition" "TransitionAction (illegal)"
expect "$out" "ILLEGAL_TRANSITION" "TransitionAction (illegal) reason"
out=$(call -d "{\"id\": \"$camp\"}" "$target" "$loyalty/GetCampaign")
expect "$out" '"amountMinor": "600"' "GetCampaign reserved"
out=$(call -d "{\"request_id\": \"ci-pts-${run_id}\", \"customer_id\": \"$cid\", \"points\": 50, \"source_ref\": \"ci-order\"}" "$target" "$loyalty/AccruePoints")
expect "$out" '"balance": "50"' "AccruePoints"

echo "grpcurl smoke: OK (list, describe, health, create, get, refusal, list, ingest, re-send, customer, survey, responses, report, loyalty)"
