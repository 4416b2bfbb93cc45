"""gnn_inn: knowledge-graph link prediction with GNN encoders and invertible relation decoders."""

from __future__ import annotations

__version__ = "0.1.0"
