"""The bridge between the ns-3 world and the learners: LinkTraces, their cache, per-round masks."""

from bridge.link_source import LINK_MODELS, WorkerError, obtain_trace, trace_key
from bridge.trace import LinkTrace, RoundLinks, TraceFormatError

__all__ = ["LINK_MODELS", "LinkTrace", "RoundLinks", "TraceFormatError", "WorkerError", "obtain_trace", "trace_key"]
