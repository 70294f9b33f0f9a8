"""Examples that ship with nsdml: a plugin algorithm (``my_gossip.py``) and a notebook that reads a sweep."""
