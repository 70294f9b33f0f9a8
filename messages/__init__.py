"""The message core, the bottom floor (numpy only): a network that sends and delivers messages, the schedules
that decide when each device sends and when a message it received counts, and the asynchronous message log.

``ns3_scenarios`` (ns-3's network, in its worker) and ``bridge`` (the control link models) implement
``network.Messages``; ``schedules`` drives any of them; ``log`` is the record a free-running run learns from.
Nothing here imports another package of nsdml."""
