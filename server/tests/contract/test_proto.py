"""Contract test: proto/spooled/v1/spooled.proto matches shared/contract/grpc.md sections 1 and 2.

The proto is compiled with grpc_tools.protoc into a temporary directory and the
generated module is imported under a private name, so this test never depends on
(or clashes with) any checked-in generated code.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_FILE = "spooled/v1/spooled.proto"


@pytest.fixture(scope="module")
def pb2(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    out = tmp_path_factory.mktemp("spooled_pb")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out}",
            str(PROTO_ROOT / PROTO_FILE),
        ]
    )
    assert rc == 0, f"protoc failed with exit code {rc}"
    generated = out / "spooled" / "v1" / "spooled_pb2.py"
    spec = importlib.util.spec_from_file_location("_contract_spooled_pb2", generated)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fd(pb2: ModuleType) -> FileDescriptor:
    return pb2.DESCRIPTOR


def msg(fd: FileDescriptor, name: str) -> Descriptor:
    return fd.message_types_by_name[name]


def numbers(d: Descriptor) -> dict[str, int]:
    return {f.name: f.number for f in d.fields}


def test_file_header(fd: FileDescriptor) -> None:
    assert fd.package == "spooled.v1"
    assert fd.name == PROTO_FILE
    deps = {d.name for d in fd.dependencies}
    assert deps == {"google/protobuf/timestamp.proto", "google/protobuf/struct.proto"}
    proto = descriptor_pb2.FileDescriptorProto()
    fd.CopyToProto(proto)
    assert proto.syntax == "proto3"
    assert proto.options.go_package == "github.com/spooled-dev/spooled/sdks/go/spooledpb;spooledpb"


def test_job_status_values(fd: FileDescriptor) -> None:
    values = {v.name: v.number for v in fd.enum_types_by_name["JobStatus"].values}
    assert values == {
        "JOB_STATUS_UNSPECIFIED": 0,
        "JOB_STATUS_PENDING": 1,
        "JOB_STATUS_SCHEDULED": 2,
        "JOB_STATUS_PROCESSING": 3,
        "JOB_STATUS_COMPLETED": 4,
        "JOB_STATUS_FAILED": 5,
        "JOB_STATUS_DEADLETTER": 6,
        "JOB_STATUS_CANCELLED": 7,
    }


JOB_FIELDS: dict[str, tuple[int, str]] = {
    "id": (1, "string"),
    "organization_id": (2, "string"),
    "queue_name": (3, "string"),
    "status": (4, "spooled.v1.JobStatus"),
    "payload": (5, "google.protobuf.Struct"),
    "result": (6, "google.protobuf.Struct"),
    "retry_count": (7, "int32"),
    "max_retries": (8, "int32"),
    "last_error": (9, "string"),
    "priority": (10, "int32"),
    "timeout_seconds": (11, "int32"),
    "created_at": (12, "google.protobuf.Timestamp"),
    "scheduled_at": (13, "google.protobuf.Timestamp"),
    "started_at": (14, "google.protobuf.Timestamp"),
    "completed_at": (15, "google.protobuf.Timestamp"),
    "lease_expires_at": (16, "google.protobuf.Timestamp"),
    "assigned_worker_id": (17, "string"),
    "idempotency_key": (18, "string"),
    "lease_id": (19, "string"),
}

_SCALAR_NAMES = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_BOOL: "bool",
}


def type_name(f: FieldDescriptor) -> str:
    if f.message_type is not None:
        return str(f.message_type.full_name)
    if f.enum_type is not None:
        return str(f.enum_type.full_name)
    return _SCALAR_NAMES[f.type]


def test_job_every_field(fd: FileDescriptor) -> None:
    job = msg(fd, "Job")
    got = {f.name: (f.number, type_name(f)) for f in job.fields}
    assert got == JOB_FIELDS
    assert not any(f.is_repeated for f in job.fields)


def test_enqueue_request(fd: FileDescriptor) -> None:
    req = msg(fd, "EnqueueRequest")
    assert numbers(req) == {
        "queue_name": 1,
        "payload": 2,
        "priority": 3,
        "max_retries": 4,
        "timeout_seconds": 5,
        "scheduled_at": 6,
        "idempotency_key": 7,
        "tags": 8,
    }
    tags = req.fields_by_name["tags"]
    assert tags.message_type.GetOptions().map_entry
    entry = tags.message_type.fields_by_name
    assert type_name(entry["key"]) == "string" and type_name(entry["value"]) == "string"


def test_dequeue_request(fd: FileDescriptor) -> None:
    req = msg(fd, "DequeueRequest")
    assert numbers(req) == {
        "queue_name": 1,
        "worker_id": 2,
        "lease_duration_secs": 3,
        "batch_size": 4,
        "batch_response": 5,
    }
    assert type_name(req.fields_by_name["batch_response"]) == "bool"


def test_fail_request_retry_is_proto3_optional(fd: FileDescriptor) -> None:
    req = msg(fd, "FailRequest")
    assert numbers(req) == {"job_id": 1, "worker_id": 2, "error": 3, "retry": 4, "lease_id": 5}
    retry = req.fields_by_name["retry"]
    assert type_name(retry) == "bool"
    assert retry.has_presence
    # Plain proto3 scalars have no presence.
    assert not req.fields_by_name["error"].has_presence


def test_fail_request_retry_presence_roundtrip(pb2: ModuleType) -> None:
    absent = pb2.FailRequest(job_id="j")
    assert not absent.HasField("retry")
    explicit_false = pb2.FailRequest.FromString(pb2.FailRequest(retry=False).SerializeToString())
    assert explicit_false.HasField("retry") and explicit_false.retry is False


def test_lease_id_fields(fd: FileDescriptor) -> None:
    assert msg(fd, "CompleteRequest").fields_by_name["lease_id"].number == 4
    assert msg(fd, "FailRequest").fields_by_name["lease_id"].number == 5
    assert msg(fd, "RenewLeaseRequest").fields_by_name["lease_id"].number == 4
    assert msg(fd, "Job").fields_by_name["lease_id"].number == 19


def test_process_request_oneof(fd: FileDescriptor) -> None:
    req = msg(fd, "ProcessRequest")
    oneof = req.oneofs_by_name["request"]
    got = {f.name: (f.number, f.message_type.name) for f in oneof.fields}
    assert got == {
        "dequeue": (1, "DequeueRequest"),
        "complete": (2, "CompleteRequest"),
        "fail": (3, "FailRequest"),
        "renew_lease": (4, "RenewLeaseRequest"),
        "settle_batch": (5, "SettleBatchRequest"),  # our extension (proto/README.md)
    }


def test_process_response_oneof(fd: FileDescriptor) -> None:
    resp = msg(fd, "ProcessResponse")
    oneof = resp.oneofs_by_name["response"]
    got = {f.name: (f.number, f.message_type.name) for f in oneof.fields}
    assert got == {
        "job": (1, "Job"),
        "complete": (2, "CompleteResponse"),
        "fail": (3, "FailResponse"),
        "renew_lease": (4, "RenewLeaseResponse"),
        "error": (5, "ErrorResponse"),
        "job_batch": (6, "JobBatch"),
        "settle_batch": (7, "SettleBatchResponse"),  # our extension (proto/README.md)
    }
    settlement = msg(fd, "Settlement").oneofs_by_name["settlement"]
    assert {f.name: f.number for f in settlement.fields} == {"complete": 1, "fail": 2}
    result = msg(fd, "SettlementResult").oneofs_by_name["result"]
    assert {f.name: (f.number, f.message_type.name) for f in result.fields} == {
        "complete": (1, "CompleteResponse"), "fail": (2, "FailResponse"), "error": (3, "ErrorResponse")}
    jobs = msg(fd, "JobBatch").fields_by_name["jobs"]
    assert jobs.number == 1 and jobs.is_repeated and jobs.message_type.name == "Job"
    assert numbers(msg(fd, "ErrorResponse")) == {"code": 1, "message": 2}


def test_register_worker_request(fd: FileDescriptor) -> None:
    req = msg(fd, "RegisterWorkerRequest")
    assert numbers(req) == {
        "queue_name": 1,
        "hostname": 2,
        "worker_type": 3,
        "max_concurrency": 4,
        "version": 5,
        "metadata": 6,
        "worker_id": 7,
    }
    worker_id = req.fields_by_name["worker_id"]
    assert type_name(worker_id) == "string" and worker_id.has_presence


def test_queue_stats_response(fd: FileDescriptor) -> None:
    resp = msg(fd, "GetQueueStatsResponse")
    names = ["pending", "scheduled", "processing", "completed", "failed", "deadletter", "total"]
    expected = {"queue_name": 1, **{n: i for i, n in enumerate(names, start=2)}, "max_age_ms": 9}
    assert numbers(resp) == expected
    assert all(type_name(resp.fields_by_name[n]) == "int64" for n in [*names, "max_age_ms"])


def test_small_messages(fd: FileDescriptor) -> None:
    expected: dict[str, dict[str, int]] = {
        "EnqueueResponse": {"job_id": 1, "created": 2},
        "DequeueResponse": {"jobs": 1},
        "CompleteRequest": {"job_id": 1, "worker_id": 2, "result": 3, "lease_id": 4},
        "CompleteResponse": {"success": 1},
        "FailResponse": {"success": 1, "will_retry": 2, "next_retry_delay_secs": 3},
        "RenewLeaseRequest": {"job_id": 1, "worker_id": 2, "extension_secs": 3, "lease_id": 4},
        "RenewLeaseResponse": {"success": 1, "new_expires_at": 2},
        "GetJobRequest": {"job_id": 1},
        "GetJobResponse": {"job": 1},
        "GetQueueStatsRequest": {"queue_name": 1},
        "StreamJobsRequest": {"queue_name": 1, "worker_id": 2, "lease_duration_secs": 3},
        "RegisterWorkerResponse": {
            "worker_id": 1,
            "lease_duration_secs": 2,
            "heartbeat_interval_secs": 3,
        },
        "HeartbeatRequest": {"worker_id": 1, "current_jobs": 2, "status": 3, "metadata": 4},
        "HeartbeatResponse": {"acknowledged": 1, "should_drain": 2},
        "DeregisterRequest": {"worker_id": 1},
        "DeregisterResponse": {"success": 1},
    }
    for name, fields in expected.items():
        assert numbers(msg(fd, name)) == fields, name


# (input, output, client_streaming, server_streaming)
SERVICES: dict[str, dict[str, tuple[str, str, bool, bool]]] = {
    "QueueService": {
        "Enqueue": ("EnqueueRequest", "EnqueueResponse", False, False),
        "Dequeue": ("DequeueRequest", "DequeueResponse", False, False),
        "Complete": ("CompleteRequest", "CompleteResponse", False, False),
        "Fail": ("FailRequest", "FailResponse", False, False),
        "RenewLease": ("RenewLeaseRequest", "RenewLeaseResponse", False, False),
        "GetJob": ("GetJobRequest", "GetJobResponse", False, False),
        "GetQueueStats": ("GetQueueStatsRequest", "GetQueueStatsResponse", False, False),
        "StreamJobs": ("StreamJobsRequest", "Job", False, True),
        "ProcessJobs": ("ProcessRequest", "ProcessResponse", True, True),
    },
    "WorkerService": {
        "Register": ("RegisterWorkerRequest", "RegisterWorkerResponse", False, False),
        "Heartbeat": ("HeartbeatRequest", "HeartbeatResponse", False, False),
        "Deregister": ("DeregisterRequest", "DeregisterResponse", False, False),
    },
}


def test_services(fd: FileDescriptor) -> None:
    assert set(fd.services_by_name) == set(SERVICES)
    for service_name, methods in SERVICES.items():
        service = descriptor_pb2.ServiceDescriptorProto()
        fd.services_by_name[service_name].CopyToProto(service)
        got = {
            m.name: (
                m.input_type.removeprefix(".spooled.v1."),
                m.output_type.removeprefix(".spooled.v1."),
                m.client_streaming,
                m.server_streaming,
            )
            for m in service.method
        }
        assert got == methods, service_name
