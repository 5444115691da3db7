"""The core map of a :class:`~neurocompile.hardware.mapping.ResourceMap` as a PNG: cores per layer, and each
chip's cores coloured by layer and filled to their utilization."""

from __future__ import annotations

from pathlib import Path

from neurocompile.files import save_figure
from neurocompile.hardware.mapping import ResourceMap

CHIPS_DRAWN = 4  # chips drawn in the core grid; the rest are counted in its title
GRID_COLUMNS = 16  # a chip's cores drawn as rows of this many


def _layer_panel(ax, resource_map: ResourceMap, colors: dict) -> None:
    """One bar per layer: its cores, labelled with its mean utilization, what bounds it and its model."""
    from matplotlib.ticker import MaxNLocator

    layers = resource_map.layers
    ax.barh(range(len(layers)), [layer.cores for layer in layers], color=[colors[layer.name] for layer in layers])
    for i, layer in enumerate(layers):
        cores = f"{layer.cores:,} core{'s' if layer.cores != 1 else ''}"
        bound = f", bound by {layer.bound_by}" if layer.bound_by != "-" else ""
        text = f" {cores}, {layer.utilization:.0%} used{bound}, {layer.model}"
        ax.text(layer.cores, i, text, va="center", fontsize=8)
    ax.set_yticks(range(len(layers)), [layer.name[:24] for layer in layers], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(layer.cores for layer in layers) * 2.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("neuro cores", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title(resource_map.summary(), fontsize=9, loc="left")


def _grid_panel(ax, resource_map: ResourceMap, colors: dict) -> None:
    """Each drawn chip as a block of cores: outline in the layer's colour, filled to the core's utilization."""
    from matplotlib.patches import Rectangle

    cores_per_chip = resource_map.limits.cores_per_chip
    rows = -(-cores_per_chip // GRID_COLUMNS)
    drawn = min(resource_map.chips, CHIPS_DRAWN)
    for chip in range(drawn):
        left = chip * (GRID_COLUMNS + 1)
        ax.add_patch(Rectangle((left - 0.1, -0.1), GRID_COLUMNS + 0.2, rows + 0.2, fill=False, lw=0.8, color="0.6"))
        for slot in range(cores_per_chip):  # free cores: faint outlines
            x, y = left + slot % GRID_COLUMNS, rows - 1 - slot // GRID_COLUMNS
            ax.add_patch(Rectangle((x + 0.05, y + 0.05), 0.9, 0.9, fill=False, lw=0.4, color="0.85"))
        ax.text(left + GRID_COLUMNS / 2, rows + 0.3, f"chip {chip}", ha="center", fontsize=8)
    for core in resource_map.cores:
        if core.chip >= drawn:
            break
        x = core.chip * (GRID_COLUMNS + 1) + core.core % GRID_COLUMNS
        y = rows - 1 - core.core // GRID_COLUMNS
        color = colors[core.layer]
        ax.add_patch(Rectangle((x + 0.05, y + 0.05), 0.9, 0.9, facecolor="0.95", edgecolor=color, lw=0.8))
        ax.add_patch(Rectangle((x + 0.05, y + 0.05), 0.9, 0.9 * min(core.utilization, 1.0), color=color, lw=0))
    ax.set_xlim(-0.5, drawn * (GRID_COLUMNS + 1))
    ax.set_ylim(-0.5, rows + 1)
    ax.set_aspect("equal")
    ax.axis("off")
    rest = resource_map.chips - drawn
    more = f"; {rest:,} more chip{'s' if rest != 1 else ''} not drawn" if rest > 0 else ""
    ax.set_title(f"cores by layer (colour), filled to their utilization{more}", fontsize=9, loc="left")


def plot_map(resource_map: ResourceMap, path) -> Path:
    """Write the core map of ``resource_map`` as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = plt.get_cmap("tab10").colors
    colors = {layer.name: palette[i % len(palette)] for i, layer in enumerate(resource_map.layers)}
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 2.2 + 0.32 * len(resource_map.layers) + 3.2), height_ratios=[1 + 0.3 * len(colors), 3]
    )
    _layer_panel(top, resource_map, colors)
    _grid_panel(bottom, resource_map, colors)
    fig.tight_layout()
    return save_figure(fig, path, "core map")
