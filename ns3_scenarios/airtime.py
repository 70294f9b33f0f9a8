"""An 802.11a airtime model: how long a message occupies the channel when nothing collides.

Used by the control link models (``bridge/controls.py``) for their exchange
durations, and checked against ns-3 itself (a device sending alone on an idle
channel completes within 5 % of it, ``tests/test_controls.py``). Pure Python.

Per frame (IEEE 802.11-2020 clause 17, OFDM PHY, 20 MHz; the values ns-3 uses):

    t_frame = DIFS + mean backoff + PLCP preamble + SIGNAL + data symbols
            = 34 µs  + 7.5 x 9 µs  + 16 µs          + 4 µs  + 4 µs x ceil((16 + 8 PSDU + 6) / N_DBPS)

with DIFS = SIFS (16 µs) + 2 slots (9 µs), the mean of a uniform backoff over
[0, CWmin = 15] slots, a 16-bit SERVICE field and 6 tail bits, N_DBPS the data
bits per OFDM symbol of the rate (24 at 6 Mbps ... 216 at 54 Mbps), and the PSDU
a UDP datagram plus 64 bytes of headers (MAC header 24, FCS 4, LLC/SNAP 8,
IPv4 20, UDP 8). A unicast frame is followed by SIFS and an ACK (14 bytes) at
the same rate, per target (broadcast: one frame for every receiver, no ACK).
TCP is estimated as unicast (its handshake and ACK segments are left out).

A message of B bytes is ceil(B / datagram_bytes) datagrams; a sender paces
them ``datagram_interval_s`` apart (as the ns-3 scenario does), so alone it lasts

    t_message = max(copies x k x t_frame, (copies x k - 1) x interval + t_frame)

where copies = 1 for broadcast and the number of targets otherwise. The controls time every message so,
from its send, under every schedule (they leave out contention).
"""

from __future__ import annotations

import math

SIFS_S = 16e-6
SLOT_S = 9e-6
DIFS_S = SIFS_S + 2 * SLOT_S
CW_MIN = 15
MEAN_BACKOFF_S = CW_MIN / 2 * SLOT_S
PREAMBLE_S = 16e-6
SIGNAL_S = 4e-6
SYMBOL_S = 4e-6
SERVICE_AND_TAIL_BITS = 16 + 6
UDP_FRAME_OVERHEAD_BYTES = 24 + 4 + 8 + 20 + 8  # MAC header, FCS, LLC/SNAP, IPv4, UDP
ACK_BYTES = 14
DATA_BITS_PER_SYMBOL = {6: 24, 9: 36, 12: 48, 18: 72, 24: 96, 36: 144, 48: 192, 54: 216}


def rate_mbps(phy_mode: str) -> int:
    """``OfdmRate24Mbps`` -> 24."""
    return int(phy_mode.removeprefix("OfdmRate").removesuffix("Mbps"))


def ppdu_s(psdu_bytes: int, phy_mode: str) -> float:
    """Preamble, SIGNAL and data symbols of one PSDU at the rate of ``phy_mode``."""
    symbols = math.ceil((SERVICE_AND_TAIL_BITS + 8 * psdu_bytes) / DATA_BITS_PER_SYMBOL[rate_mbps(phy_mode)])
    return PREAMBLE_S + SIGNAL_S + SYMBOL_S * symbols


def frame_s(datagram_bytes: int, phy_mode: str, acknowledged: bool) -> float:
    """Channel time of one UDP datagram: access (DIFS + mean backoff), the frame, and SIFS + ACK if unicast."""
    busy = DIFS_S + MEAN_BACKOFF_S + ppdu_s(datagram_bytes + UDP_FRAME_OVERHEAD_BYTES, phy_mode)
    return busy + (SIFS_S + ppdu_s(ACK_BYTES, phy_mode) if acknowledged else 0.0)


def frames_of(payload_bytes: int, datagram_bytes: int, phy_mode: str, copies: int = 1,
              acknowledged: bool = False) -> list[float]:
    """Channel time of each frame of one message, in sending order."""
    full, last = divmod(payload_bytes, datagram_bytes)
    sizes = [datagram_bytes] * full + ([last] if last else [])
    return [frame_s(size, phy_mode, acknowledged) for size in sizes for _ in range(copies)]


def message_radio_s(payload_bytes: int, datagram_bytes: int, phy_mode: str) -> tuple[float, float]:
    """(data PPDU seconds of one copy of a message, ACK PPDU seconds for all its frames): the time a radio is
    in TX or RX for it, without channel access (DIFS and backoff are idle or CCA-busy time)."""
    full, last = divmod(payload_bytes, datagram_bytes)
    sizes = [datagram_bytes] * full + ([last] if last else [])
    data = sum(ppdu_s(size + UDP_FRAME_OVERHEAD_BYTES, phy_mode) for size in sizes)
    return data, len(sizes) * ppdu_s(ACK_BYTES, phy_mode)


def message_s(payload_bytes: int, datagram_bytes: int, phy_mode: str, interval_s: float, copies: int = 1,
              acknowledged: bool = False) -> float:
    """Time from a sender's first datagram to the end of its last, alone on the channel."""
    frames = frames_of(payload_bytes, datagram_bytes, phy_mode, copies, acknowledged)
    return max(sum(frames), (len(frames) - 1) * interval_s + frames[-1])

