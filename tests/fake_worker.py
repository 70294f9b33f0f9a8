"""A stand-in for ``python -m ns3_scenarios.worker --serve`` that needs no ns-3 (online-mode plumbing tests).

Answers are a deterministic function of the slot and the payloads: j holds i's
message at payload_i / 1e5 + slot / 1e4 seconds. A payload of 666 bytes makes
it die the way a fatal ns-3 error does; 777 makes it hang.
"""

import json
import math
import sys
import time


def main() -> int:
    hello = json.loads(sys.stdin.readline())
    n = hello["scenario"]["devices"]
    pairs = [(i, j) for i in range(n) for j in range(n)]
    print("fake worker: scenario built", file=sys.stderr, flush=True)
    answer({"stats": {"idle_density": 1.0, "fake_worker": True},
            "idle_delivered": [i != j for i, j in pairs], "idle_rate": [float(i != j) for i, j in pairs]})
    for line in sys.stdin:
        request = json.loads(line)
        slot, payloads = request["slot"], request["payloads"]
        if 666 in payloads:
            print('msg="fake fatal error in slot %d", +1.0s' % slot, file=sys.stderr, flush=True)
            return 133
        if 777 in payloads:
            time.sleep(120)
        answer({"done_s": [payloads[i] / 1e5 + slot / 1e4 if i != j else math.nan for i, j in pairs],
                "rx_bytes": [payloads[i] if i != j else 0 for i, j in pairs],
                "intended": [i != j for i, j in pairs],
                "positions": [float(slot)] * (2 * n),
                "air_bytes": [sum(payloads)], "frames": [n], "retries": [0], "events": [10 * n],
                "radio_s": [b * 1e-6 for b in payloads for _ in range(4)],  # tx, rx, idle, sleep per device
                "radio_deadline_s": [b * 1e-6 for b in payloads for _ in range(4)],
                "clock_end_s": [max(payloads) / 1e5 + slot / 1e4], "source_deadline_j": [math.nan] * n})
    return 0


def answer(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
