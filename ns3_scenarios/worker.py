"""Worker process: the only process that imports ns-3 (a fatal ns-3 error kills it, not the learner).

Offline, one request simulated whole::

    python -m ns3_scenarios.worker REQUEST.json OUT_DIR

REQUEST.json: {"scenario": {ScenarioConfig fields}, "seed": int,
               "slot_payloads": [[bytes each node sends in slot 0], [... in slot 1], ...]}
(a slot is one exchange of one round, in order; optional "first_slot" and "chunk" make
a trace chunk, ``bridge.chunks``), or, instead of slot_payloads,
"plan": {messages.schedules.Plan fields}: a message-core schedule
(``messages.schedules``: the local barrier, stale synchronous or free running), whose arrays (sent_s, arrival_s, finished_s, used,
intended, radio_s, positions) it writes instead. While it simulates, stdout
carries progress lines (``PROGRESS_PREFIX`` and a JSON object). OUT_DIR receives
``arrays.npz`` (per slot: every ``SLOT_SCHEMA`` field, stacked; once:
idle_delivered, idle_rate) and ``worker.json`` (ns-3
version, calibration, counts, timings).

Online, a long-lived simulation stepped one exchange at a time::

    python -m ns3_scenarios.worker --serve

JSON lines on stdin and stdout. The first request is {"scenario": {...},
"seed": int}; the answer carries "stats", "idle_delivered" and "idle_rate".
Every further request {"slot": s, "payloads": [N ints]} (slots in increasing
order) is simulated and answered with that slot's arrays, flattened
(the ``SLOT_SCHEMA`` fields by name; NaN = not delivered); or it is a request
of the message core ({"send"}, {"advance"}, {"sleep"}: ``answer_message_request``),
which a schedule drives through ``bridge.online.OnlineMessages``. End of input ends the process.
Anything ns-3 prints goes to stderr; stdout carries only the answers.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ns3_scenarios.scenario import SLOT_FIELDS, ScenarioConfig
from messages.schedules import Plan, schedule_of

# Offline, the worker's stdout carries only progress lines, each this prefix and a JSON object
# {"slots_done", "slots", "sim_s", "events"}; anything else there (a stray ns-3 print) is not one.
PROGRESS_PREFIX = "@nsdml-progress "
PROGRESS_INTERVAL_S = 0.25  # wall seconds between progress lines (and one after the last slot)


def simulate(config: ScenarioConfig, seed: int, slot_payloads: list[list[int]],
             progress=lambda report: None, first_slot: int = 0, chunk: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Node i sends slot_payloads[s][i] bytes in slot first_slot + s (0: nothing); all slots in one simulation.
    ``progress`` receives {"slots_done", "slots", "sim_s", "events"} at most every PROGRESS_INTERVAL_S.
    A trace chunk (``chunk`` > 0, ``first_slot`` its first slot) lets the idle network run to its first slot
    (the devices move as in the serial simulation) and draws its own traffic, MAC and fading numbers."""
    started = time.perf_counter()
    network = _open(config, seed, chunk)
    loaded = time.perf_counter()
    depleted_before = network.source_depletion_j()
    slots, events, reported = [], 0, 0.0
    progress({"slots_done": 0, "slots": len(slot_payloads), "sim_s": 0.0, "events": 0})
    for s, payloads in enumerate(slot_payloads):
        slots.append(network.run_slot(first_slot + s, payloads))
        events += int(slots[-1]["events"])
        if time.perf_counter() - reported >= PROGRESS_INTERVAL_S or s + 1 == len(slot_payloads):
            reported = time.perf_counter()
            progress({"slots_done": s + 1, "slots": len(slot_payloads),
                      "sim_s": (s + 1) * config.slot_period_s, "events": events})
    # What each device's ns-3 energy source lost over the slots (the check on the radios' seconds by state).
    source_depletion_j = (network.source_depletion_j() - depleted_before).tolist()
    pruned_events, jammer = network.pruned_events(), network.jammer()
    network.close()
    simulated = time.perf_counter()
    arrays = {name: np.stack([slot[name] for slot in slots]) if slots else np.zeros(0) for name in SLOT_FIELDS}
    arrays.update(idle_delivered=network.idle_delivered, idle_rate=network.idle_rate)
    stats = dict(network.stats, scenario=asdict(config), seed=seed, first_slot=first_slot, chunk=chunk,
                 events=int(arrays["events"].sum()), frames_sent=int(arrays["frames"].sum()),
                 source_depletion_j=source_depletion_j, pruned_events=pruned_events, **jammer,
                 peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 setup_seconds=loaded - started, simulate_seconds=simulated - loaded)
    return arrays, stats


def simulate_barrier(config: ScenarioConfig, seed: int, plan: Plan,
                     progress=lambda report: None) -> tuple[dict[str, np.ndarray], dict]:
    """A message-core schedule (``messages.schedules``) on one ns-3 simulation, messages to every
    idle-probe neighbour; ``progress`` hears {"slots_done", "slots", "sim_s", "events"} with slots = steps."""
    started = time.perf_counter()
    network = _open(config, seed)
    loaded = time.perf_counter()
    neighbours = network.idle_delivered & ~np.eye(config.nodes, dtype=bool)
    messages = network.messages()
    origin, reported = messages.now_s(), [0.0]

    def report(steps_done: int) -> None:
        if time.perf_counter() - reported[0] >= PROGRESS_INTERVAL_S or steps_done == plan.steps:
            reported[0] = time.perf_counter()
            progress({"slots_done": steps_done, "slots": plan.steps, "sim_s": messages.now_s() - origin, "events": 0})

    depleted_before, seconds_before = network.source_depletion_j(), messages.radio_seconds()
    arrays = schedule_of(plan).run(messages, lambda step, exchange: neighbours, report)
    # The radios' seconds by state over the whole schedule and what the sources lost meanwhile (the check).
    radio_total_s = (messages.radio_seconds() - seconds_before).tolist()
    source_depletion_j = (network.source_depletion_j() - depleted_before).tolist()
    positions, sim_s = network.placement.positions_m, messages.now_s() - origin
    jammer = network.jammer()
    network.close()
    simulated = time.perf_counter()
    arrays.update(idle_delivered=network.idle_delivered, idle_rate=network.idle_rate, positions=positions)
    stats = dict(network.stats, scenario=asdict(config), seed=seed,
                 schedule=plan.schedule,
                 source_depletion_j=source_depletion_j, radio_total_s=radio_total_s, sim_s=sim_s, **jammer,
                 peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 setup_seconds=loaded - started, simulate_seconds=simulated - loaded)
    return arrays, stats


def inject_fault(fault: str) -> None:
    """Fault injection for the tests (environment NSDML_WORKER_FAULT); a real run never sets it.

    crash: the process is killed outright; hang: it never answers;
    fatal: a real ns-3 fatal error (an unknown attribute), which ends the process with code 133.
    """
    print(f"worker: injecting fault {fault!r}", file=sys.stderr, flush=True)
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "hang":
        time.sleep(10**6)
    elif fault == "fatal":
        from ns3_scenarios import ns3_loader

        cpp = ns3_loader.load()
        cpp.ns3.Config.SetDefault("ns3::WifiPhy::NoSuchAttribute", cpp.ns3.StringValue("1"))
    raise SystemExit(f"worker: unknown fault {fault!r}")


def _open(config: ScenarioConfig, seed: int, chunk: int = 0):
    from ns3_scenarios.network import Network  # imports ns-3

    return Network(config, seed, chunk)


def serve(requests, answers) -> int:
    """The online loop: one scenario, then one slot per request, until end of input."""
    first = requests.readline()
    if not first:
        return 0
    hello = json.loads(first)
    config = ScenarioConfig(**hello["scenario"])
    started = time.perf_counter()
    network = _open(config, int(hello["seed"]))
    _answer(answers, {"stats": dict(network.stats, scenario=asdict(config), seed=int(hello["seed"]),
                                    setup_seconds=time.perf_counter() - started),
                      "idle_delivered": network.idle_delivered.ravel().tolist(),
                      "idle_rate": network.idle_rate.ravel().tolist()})
    messages = network.messages()
    for line in requests:
        request = json.loads(line)
        if "slot" in request:
            result = network.run_slot(int(request["slot"]), [int(p) for p in request["payloads"]])
            _answer(answers, {name: np.asarray(values).ravel().tolist() for name, values in result.items()})
        else:
            _answer(answers, answer_message_request(messages, request))
    network.close()
    return 0


def answer_message_request(messages, request: dict) -> dict:
    """The message core over JSON lines: {"send": [sender, at_s, bytes], "targets": [j, ...] (optional: chosen
    receivers, unicast)} -> {"number"};
    {"advance": until_s} -> {"arrivals": [[number, receiver, t], ...]}; {"sleep": [device, from_s, until_s]};
    every answer carries "now_s", "radio_s" (``Messages.radio_seconds``, flattened) and "retries"."""
    answer = {}
    if "send" in request:
        sender, at_s, nbytes = request["send"]
        targets = request.get("targets")
        answer["number"] = messages.send(int(sender), float(at_s), int(nbytes), 0, 0,
                                         None if targets is None else [int(j) for j in targets])
    elif "advance" in request:
        answer["arrivals"] = [list(arrival) for arrival in messages.advance(float(request["advance"]))]
    elif "sleep" in request:
        device, from_s, until_s = request["sleep"]
        messages.sleep_between(int(device), float(from_s), float(until_s))
    else:
        raise SystemExit(f"worker: unknown request {sorted(request)}")
    return dict(answer, now_s=messages.now_s(), radio_s=messages.radio_seconds().ravel().tolist(),
                retries=messages.retries().tolist())


def _report(progress: dict) -> None:
    print(PROGRESS_PREFIX + json.dumps(progress), flush=True)


def _answer(answers, message: dict) -> None:
    answers.write(json.dumps(message) + "\n")
    answers.flush()


def main(argv: list[str]) -> int:
    if os.environ.get("NSDML_WORKER_FAULT"):
        inject_fault(os.environ["NSDML_WORKER_FAULT"])
    if argv == ["--serve"]:
        answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints (ns-3, cling) must not corrupt answers
        return serve(sys.stdin, answers)
    if len(argv) != 2:
        print("usage: python -m ns3_scenarios.worker REQUEST.json OUT_DIR | --serve", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text())
    config = ScenarioConfig(**request["scenario"])
    if "plan" in request:
        arrays, stats = simulate_barrier(config, int(request["seed"]), Plan.from_dict(request["plan"]),
                                         progress=_report)
    else:
        arrays, stats = simulate(config, int(request["seed"]), list(request["slot_payloads"]), progress=_report,
                                 first_slot=int(request.get("first_slot", 0)), chunk=int(request.get("chunk", 0)))
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "arrays.npz", **arrays)
    (out / "worker.json").write_text(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
