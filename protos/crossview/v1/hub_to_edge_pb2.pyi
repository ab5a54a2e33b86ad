import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from protos.crossview.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_CONFIRMED: _ClassVar[Decision]
    DECISION_REJECTED: _ClassVar[Decision]
    DECISION_NEW_IDENTITY: _ClassVar[Decision]
DECISION_UNSPECIFIED: Decision
DECISION_CONFIRMED: Decision
DECISION_REJECTED: Decision
DECISION_NEW_IDENTITY: Decision

class Welcome(_message.Message):
    __slots__ = ("hub_id", "server_time", "accepted_model_fingerprint", "resume_gallery_version", "resume_hub_sequence", "heartbeat_interval_ms", "max_message_bytes")
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    RESUME_GALLERY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESUME_HUB_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    hub_id: str
    server_time: _timestamp_pb2.Timestamp
    accepted_model_fingerprint: str
    resume_gallery_version: int
    resume_hub_sequence: int
    heartbeat_interval_ms: int
    max_message_bytes: int
    def __init__(self, hub_id: _Optional[str] = ..., server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., accepted_model_fingerprint: _Optional[str] = ..., resume_gallery_version: _Optional[int] = ..., resume_hub_sequence: _Optional[int] = ..., heartbeat_interval_ms: _Optional[int] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...

class IdentityUpsert(_message.Message):
    __slots__ = ("identity_id", "display_name", "watchlist_threshold", "vectors")
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    WATCHLIST_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    display_name: str
    watchlist_threshold: float
    vectors: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    def __init__(self, identity_id: _Optional[str] = ..., display_name: _Optional[str] = ..., watchlist_threshold: _Optional[float] = ..., vectors: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ...) -> None: ...

class GalleryDelta(_message.Message):
    __slots__ = ("from_version", "to_version", "upserts", "removals", "full_snapshot")
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPSERTS_FIELD_NUMBER: _ClassVar[int]
    REMOVALS_FIELD_NUMBER: _ClassVar[int]
    FULL_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    from_version: int
    to_version: int
    upserts: _containers.RepeatedCompositeFieldContainer[IdentityUpsert]
    removals: _containers.RepeatedScalarFieldContainer[str]
    full_snapshot: bool
    def __init__(self, from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., upserts: _Optional[_Iterable[_Union[IdentityUpsert, _Mapping]]] = ..., removals: _Optional[_Iterable[str]] = ..., full_snapshot: _Optional[bool] = ...) -> None: ...

class SearchJob(_message.Message):
    __slots__ = ("job_id", "queries", "top_k", "max_distance", "time_range", "camera_ids", "deadline", "text")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    queries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    top_k: int
    max_distance: float
    time_range: _common_pb2.TimeRange
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    deadline: _timestamp_pb2.Timestamp
    text: TextSearch
    def __init__(self, job_id: _Optional[str] = ..., queries: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., top_k: _Optional[int] = ..., max_distance: _Optional[float] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., camera_ids: _Optional[_Iterable[str]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., text: _Optional[_Union[TextSearch, _Mapping]] = ...) -> None: ...

class TextConstraint(_message.Message):
    __slots__ = ("kind", "name", "part", "positive", "source")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    part: str
    positive: bool
    source: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., part: _Optional[str] = ..., positive: _Optional[bool] = ..., source: _Optional[str] = ...) -> None: ...

class TextSearch(_message.Message):
    __slots__ = ("text", "constraints")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    text: str
    constraints: _containers.RepeatedCompositeFieldContainer[TextConstraint]
    def __init__(self, text: _Optional[str] = ..., constraints: _Optional[_Iterable[_Union[TextConstraint, _Mapping]]] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("idempotency_key", "decision", "identity_id", "stage2_score", "tracklet_id")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE2_SCORE_FIELD_NUMBER: _ClassVar[int]
    TRACKLET_ID_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    decision: Decision
    identity_id: str
    stage2_score: float
    tracklet_id: str
    def __init__(self, idempotency_key: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., identity_id: _Optional[str] = ..., stage2_score: _Optional[float] = ..., tracklet_id: _Optional[str] = ...) -> None: ...

class HubAck(_message.Message):
    __slots__ = ("idempotency_key", "status", "error_message")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    status: _common_pb2.AckStatus
    error_message: str
    def __init__(self, idempotency_key: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.AckStatus, str]] = ..., error_message: _Optional[str] = ...) -> None: ...

class HubHeartbeat(_message.Message):
    __slots__ = ("sent_at",)
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
