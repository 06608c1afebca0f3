"""One colour per regime family, the same in every figure of the project.

A trajectory's family comes from its structured metadata, never from its
label: trained regimes are grouped by optimizer and trained layers (a finite
network and its limit share a colour and differ by line style), each
baseline has its own colour. [`family`][infinite_width.workflow.palette.family] names the group,
[`color`][infinite_width.workflow.palette.color] gives its colour,
[`family_name`][infinite_width.workflow.palette.family_name] a legend text.
"""

from __future__ import annotations

__all__ = ["family", "color", "family_name", "COLORS", "LIMIT_NAMES"]

COLORS = {
    ("sgd", False): "#1f77b4",
    ("sgd", True): "#17becf",
    ("momentum", False): "#393b79",
    ("momentum", True): "#9c9ede",
    ("adam", False): "#d62728",
    ("adam", True): "#ff7f0e",
    ("sign", False): "#2ca02c",
    ("sign", True): "#98df8a",
    "nngp_posterior": "#9467bd",
    "ntk_ridge": "#8c564b",
    "nngp_ridge": "#e377c2",
    "nnpk_ridge": "#7f7f7f",
    "linearized_adam": "#bcbd22",  # finite Adam networks linearized at initialisation (no feature learning)
}
"""Colours of the families: (optimizer, readout_only) for trained regimes, the regime for baselines."""
LIMIT_NAMES = {"ntk": "NTK descent", "nngp": "NNGP descent", "adam_limit": "Adam-like limit"}
"""Names of the infinite-width regimes in legends."""
_FALLBACK = "#000000"


def family(metadata: dict):
    """``(optimizer name, readout_only)`` of a trained regime, or the baseline's regime name."""
    optimizer = metadata.get("optimizer")
    if optimizer is None:
        return metadata.get("regime", "unknown")
    return optimizer["name"], bool(metadata.get("readout_only", False))


def color(metadata: dict) -> str:
    """The colour of the trajectory whose metadata this is (black for an unknown family)."""
    return COLORS.get(family(metadata), _FALLBACK)


def family_name(metadata: dict) -> str:
    """Legend text of the family: ``"adam, readout only"``, ``"nngp_posterior"``."""
    group = family(metadata)
    if isinstance(group, str):
        return group
    optimizer, readout_only = group
    return f"{optimizer}, {'readout only' if readout_only else 'all layers'}"
