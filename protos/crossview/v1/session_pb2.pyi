from protos.crossview.v1 import common_pb2 as _common_pb2
from protos.crossview.v1 import edge_to_hub_pb2 as _edge_to_hub_pb2
from protos.crossview.v1 import hub_to_edge_pb2 as _hub_to_edge_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EdgeMessage(_message.Message):
    __slots__ = ("hello", "short_list", "search_result", "ack", "heartbeat")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    SHORT_LIST_FIELD_NUMBER: _ClassVar[int]
    SEARCH_RESULT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    hello: _edge_to_hub_pb2.Hello
    short_list: _edge_to_hub_pb2.ShortList
    search_result: _edge_to_hub_pb2.SearchResult
    ack: _edge_to_hub_pb2.EdgeAck
    heartbeat: _edge_to_hub_pb2.EdgeHeartbeat
    def __init__(self, hello: _Optional[_Union[_edge_to_hub_pb2.Hello, _Mapping]] = ..., short_list: _Optional[_Union[_edge_to_hub_pb2.ShortList, _Mapping]] = ..., search_result: _Optional[_Union[_edge_to_hub_pb2.SearchResult, _Mapping]] = ..., ack: _Optional[_Union[_edge_to_hub_pb2.EdgeAck, _Mapping]] = ..., heartbeat: _Optional[_Union[_edge_to_hub_pb2.EdgeHeartbeat, _Mapping]] = ...) -> None: ...

class HubMessage(_message.Message):
    __slots__ = ("sequence", "welcome", "gallery_delta", "search_job", "verdict", "ack", "heartbeat", "error")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    GALLERY_DELTA_FIELD_NUMBER: _ClassVar[int]
    SEARCH_JOB_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    welcome: _hub_to_edge_pb2.Welcome
    gallery_delta: _hub_to_edge_pb2.GalleryDelta
    search_job: _hub_to_edge_pb2.SearchJob
    verdict: _hub_to_edge_pb2.Verdict
    ack: _hub_to_edge_pb2.HubAck
    heartbeat: _hub_to_edge_pb2.HubHeartbeat
    error: _common_pb2.Error
    def __init__(self, sequence: _Optional[int] = ..., welcome: _Optional[_Union[_hub_to_edge_pb2.Welcome, _Mapping]] = ..., gallery_delta: _Optional[_Union[_hub_to_edge_pb2.GalleryDelta, _Mapping]] = ..., search_job: _Optional[_Union[_hub_to_edge_pb2.SearchJob, _Mapping]] = ..., verdict: _Optional[_Union[_hub_to_edge_pb2.Verdict, _Mapping]] = ..., ack: _Optional[_Union[_hub_to_edge_pb2.HubAck, _Mapping]] = ..., heartbeat: _Optional[_Union[_hub_to_edge_pb2.HubHeartbeat, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ...) -> None: ...
