"""The lecture's utilities: hand-made filters, feature maps, convolution arithmetic, layer tables."""
