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

class CameraState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMERA_STATE_UNSPECIFIED: _ClassVar[CameraState]
    CAMERA_STATE_STARTING: _ClassVar[CameraState]
    CAMERA_STATE_RUNNING: _ClassVar[CameraState]
    CAMERA_STATE_NO_FRAMES: _ClassVar[CameraState]
    CAMERA_STATE_RECONNECTING: _ClassVar[CameraState]
    CAMERA_STATE_FINISHED: _ClassVar[CameraState]
    CAMERA_STATE_FAILED: _ClassVar[CameraState]
    CAMERA_STATE_STOPPED: _ClassVar[CameraState]
CAMERA_STATE_UNSPECIFIED: CameraState
CAMERA_STATE_STARTING: CameraState
CAMERA_STATE_RUNNING: CameraState
CAMERA_STATE_NO_FRAMES: CameraState
CAMERA_STATE_RECONNECTING: CameraState
CAMERA_STATE_FINISHED: CameraState
CAMERA_STATE_FAILED: CameraState
CAMERA_STATE_STOPPED: CameraState

class CameraInfo(_message.Message):
    __slots__ = ("camera_id", "name", "description", "fps")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    name: str
    description: str
    fps: float
    def __init__(self, camera_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., fps: _Optional[float] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("edge_id", "site", "auth_token", "cameras", "model_fingerprint", "gallery_version", "last_acked_hub_sequence", "embedding_dim", "software_version")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    GALLERY_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_ACKED_HUB_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    site: str
    auth_token: str
    cameras: _containers.RepeatedCompositeFieldContainer[CameraInfo]
    model_fingerprint: str
    gallery_version: int
    last_acked_hub_sequence: int
    embedding_dim: int
    software_version: str
    def __init__(self, edge_id: _Optional[str] = ..., site: _Optional[str] = ..., auth_token: _Optional[str] = ..., cameras: _Optional[_Iterable[_Union[CameraInfo, _Mapping]]] = ..., model_fingerprint: _Optional[str] = ..., gallery_version: _Optional[int] = ..., last_acked_hub_sequence: _Optional[int] = ..., embedding_dim: _Optional[int] = ..., software_version: _Optional[str] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("identity_id", "stage1_distance", "rank", "cosine_distance")
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE1_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    COSINE_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    stage1_distance: float
    rank: int
    cosine_distance: float
    def __init__(self, identity_id: _Optional[str] = ..., stage1_distance: _Optional[float] = ..., rank: _Optional[int] = ..., cosine_distance: _Optional[float] = ...) -> None: ...

class ShortList(_message.Message):
    __slots__ = ("idempotency_key", "edge_id", "camera_id", "tracklet_id", "track_id", "span", "query_crops", "query_vector", "candidates", "created_at", "gallery_version", "attributes")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    TRACKLET_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_FIELD_NUMBER: _ClassVar[int]
    QUERY_CROPS_FIELD_NUMBER: _ClassVar[int]
    QUERY_VECTOR_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    GALLERY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    edge_id: str
    camera_id: str
    tracklet_id: str
    track_id: int
    span: _common_pb2.TimeRange
    query_crops: _containers.RepeatedCompositeFieldContainer[_common_pb2.CropImage]
    query_vector: _common_pb2.Vector
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    created_at: _timestamp_pb2.Timestamp
    gallery_version: int
    attributes: _common_pb2.Attributes
    def __init__(self, idempotency_key: _Optional[str] = ..., edge_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., tracklet_id: _Optional[str] = ..., track_id: _Optional[int] = ..., span: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., query_crops: _Optional[_Iterable[_Union[_common_pb2.CropImage, _Mapping]]] = ..., query_vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gallery_version: _Optional[int] = ..., attributes: _Optional[_Union[_common_pb2.Attributes, _Mapping]] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("tracklet_id", "camera_id", "span", "stage1_distance", "crop", "vector", "attributes", "text_score")
    TRACKLET_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_FIELD_NUMBER: _ClassVar[int]
    STAGE1_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TEXT_SCORE_FIELD_NUMBER: _ClassVar[int]
    tracklet_id: str
    camera_id: str
    span: _common_pb2.TimeRange
    stage1_distance: float
    crop: _common_pb2.CropImage
    vector: _common_pb2.Vector
    attributes: _common_pb2.Attributes
    text_score: float
    def __init__(self, tracklet_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., span: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., stage1_distance: _Optional[float] = ..., crop: _Optional[_Union[_common_pb2.CropImage, _Mapping]] = ..., vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., attributes: _Optional[_Union[_common_pb2.Attributes, _Mapping]] = ..., text_score: _Optional[float] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("job_id", "edge_id", "hits", "batch_index", "done", "error", "idempotency_key", "notes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    BATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    edge_id: str
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    batch_index: int
    done: bool
    error: _common_pb2.Error
    idempotency_key: str
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., edge_id: _Optional[str] = ..., hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., batch_index: _Optional[int] = ..., done: _Optional[bool] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class EdgeAck(_message.Message):
    __slots__ = ("hub_sequence", "gallery_version", "idempotency_key", "status", "error_message")
    HUB_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    GALLERY_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    hub_sequence: int
    gallery_version: int
    idempotency_key: str
    status: _common_pb2.AckStatus
    error_message: str
    def __init__(self, hub_sequence: _Optional[int] = ..., gallery_version: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.AckStatus, str]] = ..., error_message: _Optional[str] = ...) -> None: ...

class CameraStats(_message.Message):
    __slots__ = ("camera_id", "fps", "active_tracks", "dropped_frames", "state", "gap_since")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TRACKS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    GAP_SINCE_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    fps: float
    active_tracks: int
    dropped_frames: int
    state: CameraState
    gap_since: _timestamp_pb2.Timestamp
    def __init__(self, camera_id: _Optional[str] = ..., fps: _Optional[float] = ..., active_tracks: _Optional[int] = ..., dropped_frames: _Optional[int] = ..., state: _Optional[_Union[CameraState, str]] = ..., gap_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EdgeHeartbeat(_message.Message):
    __slots__ = ("sent_at", "cameras", "outbox_depth", "gallery_version")
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    GALLERY_VERSION_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    cameras: _containers.RepeatedCompositeFieldContainer[CameraStats]
    outbox_depth: int
    gallery_version: int
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cameras: _Optional[_Iterable[_Union[CameraStats, _Mapping]]] = ..., outbox_depth: _Optional[int] = ..., gallery_version: _Optional[int] = ...) -> None: ...
