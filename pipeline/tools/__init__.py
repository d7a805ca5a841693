"""Command-line tools that are not DVC stages (predict, imagenet_predict) and the test sandbox."""
