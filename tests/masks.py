"""Masks for unit tests, written as edge lists."""

import torch


def mask_from_edges(n, edges, both_ways=True):
    """Bool (n, n) mask with mask[i, j] = True for each (i, j) in edges (and (j, i) when both_ways)."""
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i, j in edges:
        mask[i, j] = True
        if both_ways:
            mask[j, i] = True
    return mask
