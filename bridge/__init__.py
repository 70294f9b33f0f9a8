"""The bridge between the ns-3 world and the learners: LinkTraces, their cache, per-round masks."""

from bridge.link_source import LINK_MODELS, MODES, PLACED_LINK_MODELS, WorkerError, obtain_trace, open_links, trace_key
from bridge.stats import link_stats, pair_delivery_rates
from bridge.trace import LinkTrace, RoundLinks, TraceFormatError

__all__ = ["LINK_MODELS", "MODES", "PLACED_LINK_MODELS", "LinkTrace", "RoundLinks", "TraceFormatError",
           "WorkerError", "link_stats", "obtain_trace", "open_links", "pair_delivery_rates", "trace_key"]
