"""Reading and writing volumes and tables."""

from syngraph.io.volume import Layer, LayerInfo, VolumeError, create_layer, list_layers, open_layer

__all__ = ["Layer", "LayerInfo", "VolumeError", "create_layer", "list_layers", "open_layer"]
