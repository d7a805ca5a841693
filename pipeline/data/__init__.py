"""Image sources, splits and the on-disk array format of prepared datasets."""
