"""The bridge between the ns-3 world and the learners: LinkTraces, their cache, per-round masks."""

from bridge.link_models import LINK_MODELS, LinkModel
from bridge.link_source import MODES, WorkerError, obtain_trace, open_links, trace_key
from bridge.stats import link_stats, pair_delivery_rates
from bridge.trace import LinkTrace, RoundLinks, TraceFormatError

__all__ = ["LINK_MODELS", "LinkModel", "MODES", "LinkTrace", "RoundLinks", "TraceFormatError",
           "WorkerError", "link_stats", "obtain_trace", "open_links", "pair_delivery_rates", "trace_key"]
