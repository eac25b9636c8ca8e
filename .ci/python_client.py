#!/usr/bin/env python3
"""A real Python client against a running hub, with stubs generated from proto/.

    python .ci/python_client.py HOST:PORT

Run from anywhere; needs `grpcio`, `grpcio-tools` and `grpcio-status` (see .ci/run). Expects
a hub started with `--demo`. Set CXHUB_TOKEN to send a bearer token. Exits non-zero on the
first failed check.
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import uuid

import grpc
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

REPO = pathlib.Path(__file__).resolve().parent.parent
PROTO = REPO / "proto"


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def generate_stubs(out_dir):
    """Compiles every file under proto/ into out_dir and makes it importable."""
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    check(files, f"no .proto files under {PROTO}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *files,
        ],
        check=True,
    )
    sys.path.insert(0, str(out_dir))


def status_details(error):
    """The google.rpc.Status of a failed call, from the grpc-status-details-bin trailer."""
    status = rpc_status.from_call(error)
    check(status is not None, f"{error.code()} carries no google.rpc.Status details")
    return status


def detail(status, message_type):
    """The first detail of the given type in a google.rpc.Status, or None."""
    for any_detail in status.details:
        if any_detail.Is(message_type.DESCRIPTOR):
            found = message_type()
            any_detail.Unpack(found)
            return found
    return None


def expect_error(code, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        check(error.code() == code, f"expected {code}, got {error.code()}: {error.details()}")
        return error
    raise CheckFailed(f"expected {code}, the call succeeded")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} HOST:PORT", file=sys.stderr)
        return 2
    target = sys.argv[1]

    with tempfile.TemporaryDirectory(prefix="cxhub-py-") as out_dir:
        generate_stubs(out_dir)
        from cxhub.touchpoint.v1 import touchpoint_service_pb2 as pb
        from cxhub.touchpoint.v1 import touchpoint_service_pb2_grpc as pb_grpc

        token = os.environ.get("CXHUB_TOKEN")
        metadata = [("authorization", f"Bearer {token}")] if token else []

        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            stub = pb_grpc.TouchpointRegistryServiceStub(channel)

            def rpc(name, request):
                return getattr(stub, name)(request, metadata=metadata, timeout=30)

            run = uuid.uuid4().hex[:12]

            # Create, and a retry with the same request_id returns the first result.
            key = f"ci-python.run-{run}"
            create = pb.CreateTouchpointRequest(
                touchpoint=pb.Touchpoint(
                    key=key,
                    name="Python client touchpoint",
                    channel=pb.CHANNEL_MOBILE_APP,
                    stage=pb.JOURNEY_STAGE_USAGE,
                    department="digital",
                    main=True,
                    intended_experience=pb.IntendedExperience(target_nps=40, target_ces=6.0),
                    labels={"source": "ci"},
                ),
                request_id=str(uuid.uuid4()),
            )
            created = rpc("CreateTouchpoint", create).touchpoint
            check(created.id and created.etag, "created touchpoint has no id or etag")
            check(created.key == key, f"created key {created.key!r}")
            check(created.state == pb.LIFECYCLE_STATE_ACTIVE, "created touchpoint is not active")
            retried = rpc("CreateTouchpoint", create).touchpoint
            check(retried.id == created.id, "a retry with the same request_id created another")

            # Get by key.
            got = rpc("GetTouchpoint", pb.GetTouchpointRequest(key=key)).touchpoint
            check(got.id == created.id and got.name == "Python client touchpoint", "get by key")
            check(got.intended_experience.target_nps == 40, "intended experience not kept")

            # Update the name with a field mask and the current etag.
            update = pb.UpdateTouchpointRequest(
                touchpoint=pb.Touchpoint(id=created.id, name="Renamed by Python", etag=got.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
                request_id=str(uuid.uuid4()),
            )
            updated = rpc("UpdateTouchpoint", update).touchpoint
            check(updated.name == "Renamed by Python", f"updated name {updated.name!r}")
            check(updated.etag and updated.etag != got.etag, "etag did not change on update")
            check(updated.department == "digital", "a field outside the mask changed")

            # The same update with the now stale etag is ABORTED (ETAG_MISMATCH).
            stale = pb.UpdateTouchpointRequest(
                touchpoint=pb.Touchpoint(id=created.id, name="Lost update", etag=got.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
                request_id=str(uuid.uuid4()),
            )
            error = expect_error(grpc.StatusCode.ABORTED, rpc, "UpdateTouchpoint", stale)
            info = detail(status_details(error), error_details_pb2.ErrorInfo)
            check(info is not None and info.reason == "ETAG_MISMATCH", f"stale etag: {info}")

            # Page through everything: no key twice, the whole demo registry seen.
            seen = []
            page_token = ""
            pages = 0
            while True:
                page = rpc(
                    "ListTouchpoints",
                    pb.ListTouchpointsRequest(page_size=50, page_token=page_token),
                )
                pages += 1
                check(len(page.touchpoints) <= 50, f"page of {len(page.touchpoints)} > 50")
                seen.extend(page.touchpoints)
                page_token = page.next_page_token
                if not page_token:
                    break
                check(pages < 1000, "paging does not end")
            keys = [tp.key for tp in seen]
            check(len(keys) == len(set(keys)), "a key was listed twice while paging")
            check(keys == sorted(keys), "touchpoints are not ordered by key")
            check(len(keys) >= 300, f"only {len(keys)} touchpoints listed (demo data missing?)")
            check(key in keys, "the created touchpoint was not listed")

            # The tree of root touchpoints.
            tree = rpc("GetTouchpointTree", pb.GetTouchpointTreeRequest())
            check(len(tree.roots) > 0, "the tree has no roots")
            check(all(not r.touchpoint.parent_id for r in tree.roots), "a root has a parent")
            check(any(r.children for r in tree.roots), "no root has children")

            # A journey over two demo touchpoints.
            demo = [tp.key for tp in seen if tp.parent_key and not tp.key.startswith("ci-")]
            check(len(demo) >= 2, "no demo sub-touchpoints to build a journey on")
            journey_key = f"ci-python.journey-{run}"
            journey = rpc(
                "CreateJourney",
                pb.CreateJourneyRequest(
                    journey=pb.Journey(
                        key=journey_key,
                        name="Python client journey",
                        stages=[
                            pb.JourneyMapStage(
                                name="Try it",
                                stage=pb.JOURNEY_STAGE_USAGE,
                                touchpoint_keys=demo[:2],
                            )
                        ],
                    ),
                    request_id=str(uuid.uuid4()),
                ),
            ).journey
            check(journey.id and journey.key == journey_key, "journey not created")
            check(list(journey.stages[0].touchpoint_keys) == demo[:2], "journey stage keys")

            # INVALID_ARGUMENT carries a google.rpc.BadRequest naming the field.
            bad = pb.CreateTouchpointRequest(
                touchpoint=pb.Touchpoint(
                    key="Not A Valid Key",
                    name="Refused",
                    channel=pb.CHANNEL_WEB,
                    stage=pb.JOURNEY_STAGE_SUPPORT,
                    department="digital",
                ),
                request_id=str(uuid.uuid4()),
            )
            error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, rpc, "CreateTouchpoint", bad)
            bad_request = detail(status_details(error), error_details_pb2.BadRequest)
            check(bad_request is not None, "INVALID_ARGUMENT without a BadRequest detail")
            fields = [v.field for v in bad_request.field_violations]
            check("touchpoint.key" in fields, f"BadRequest fields {fields}")

        from cxhub.common.v1 import common_pb2 as common
        from cxhub.feeds.v1 import feeds_service_pb2 as feeds
        from cxhub.feeds.v1 import feeds_service_pb2_grpc as feeds_grpc
        from cxhub.profile.v1 import profile_service_pb2 as profile
        from cxhub.profile.v1 import profile_service_pb2_grpc as profile_grpc
        from google.protobuf import timestamp_pb2

        with grpc.insecure_channel(target) as channel:
            feed_stub = feeds_grpc.FeedServiceStub(channel)
            profile_stub = profile_grpc.CustomerProfileServiceStub(channel)

            def at(seconds):
                return timestamp_pb2.Timestamp(seconds=seconds)

            def contact(source, sid, t, emails=(), phones=(), given=""):
                return feeds.Record(
                    source=source,
                    record_id=f"{sid}-contact",
                    updated_at=at(t),
                    customer=common.SourceCustomer(
                        source_customer_id=sid, emails=list(emails), phones=list(phones)
                    ),
                    contact=feeds.Contact(given_name=given),
                )

            # Two customers, then a record linking them: a merge; then its exact undoing.
            email, phone = f"py-{run}@correio.pt", "+351 93" + str(1000000 + int(run[:6], 16) % 8999999)
            first = feed_stub.IngestRecords(
                feeds.IngestRecordsRequest(
                    records=[
                        contact("crm", f"py-{run}-a", 1_760_000_000, [email], given="Ana"),
                        contact("shop", f"py-{run}-b", 1_760_000_001, phones=[phone], given="A."),
                    ]
                ),
                metadata=metadata,
                timeout=30,
            ).results
            check(all(r.outcome == feeds.RECORD_OUTCOME_CREATED for r in first), f"{first}")
            a, b = first[0].customer_id, first[1].customer_id
            check(a != b, "two unrelated contacts became one customer")
            linking = feed_stub.IngestRecords(
                feeds.IngestRecordsRequest(
                    records=[contact("billing", f"py-{run}-c", 1_760_000_002, [email], [phone])]
                ),
                metadata=metadata,
                timeout=30,
            ).results[0]
            check(list(linking.merged_customer_ids) == [b], f"merge result {linking}")
            redirected = profile_stub.GetCustomer(
                profile.GetCustomerRequest(customer_id=b), metadata=metadata, timeout=30
            )
            check(redirected.redirected and redirected.customer.customer_id == a, "redirect")
            merges = profile_stub.ListCustomerMerges(
                profile.ListCustomerMergesRequest(customer_id=a), metadata=metadata, timeout=30
            ).merges
            check(len(merges) == 1 and merges[0].rule in ("SAME_EMAIL", "SAME_PHONE"), f"{merges}")
            split = profile_stub.SplitCustomer(
                profile.SplitCustomerRequest(merge_id=merges[0].merge_id, request_id=str(uuid.uuid4())),
                metadata=metadata,
                timeout=30,
            )
            check(split.merge.HasField("split_at"), "split_at not set")
            restored = profile_stub.GetCustomer(
                profile.GetCustomerRequest(customer_id=b), metadata=metadata, timeout=30
            )
            check(not restored.redirected and restored.customer.given_name == "A.", "restore")

            # The change feed tells the same story: filtered to customer B, its creation, the
            # merge that absorbed it and the split that restored it, in order; then resuming
            # after the merge gives only the split.
            stream = profile_stub.WatchCustomerChanges(
                profile.WatchCustomerChangesRequest(from_oldest=True, customer_ids=[b]),
                metadata=metadata,
                timeout=30,
            )
            story = []
            for response in stream:
                story.extend(response.changes)
                if len(story) >= 3:
                    break
            stream.cancel()
            kinds = [c.kind for c in story]
            check(
                kinds
                == [
                    profile.CUSTOMER_CHANGE_KIND_CREATED,
                    profile.CUSTOMER_CHANGE_KIND_MERGED,
                    profile.CUSTOMER_CHANGE_KIND_SPLIT,
                ],
                f"change feed of B: {story}",
            )
            check(story[1].customer_id == a and list(story[1].related_customer_ids) == [b], f"{story[1]}")
            resumed = profile_stub.WatchCustomerChanges(
                profile.WatchCustomerChangesRequest(
                    resume_token=story[1].resume_token, customer_ids=[b]
                ),
                metadata=metadata,
                timeout=30,
            )
            first_after = next(iter(resumed)).changes
            resumed.cancel()
            check(
                [c.sequence for c in first_after] == [story[2].sequence],
                f"resumed after the merge: {first_after}",
            )
            changes_seen = len(story)

            # A rejected record carries a BadRequest-like violation list per record.
            bad = feed_stub.IngestRecords(
                feeds.IngestRecordsRequest(
                    records=[feeds.Record(source="Bad Source", record_id="x", updated_at=at(-2_300_000_000))]
                ),
                metadata=metadata,
                timeout=30,
            ).results[0]
            check(bad.outcome == feeds.RECORD_OUTCOME_REJECTED, f"{bad}")
            bad_fields = sorted(v.field for v in bad.violations)
            check("source" in bad_fields and "updated_at" in bad_fields, f"{bad_fields}")

    print(
        f"python client: OK: created {key}, updated with etag, stale etag ABORTED, "
        f"merged and split customers {a} and {b} ({changes_seen} changes watched), "
        f"rejected record fields {bad_fields}, "
        f"{len(keys)} touchpoints over {pages} pages, {len(tree.roots)} roots, "
        f"journey {journey_key}, BadRequest names {fields}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as failure:
        print(f"python client: FAIL: {failure}", file=sys.stderr)
        sys.exit(1)
    except grpc.RpcError as error:
        print(f"python client: FAIL: {error.code()}: {error.details()}", file=sys.stderr)
        sys.exit(1)
