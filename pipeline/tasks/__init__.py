"""What each task does around its network: losses, fitting, evaluation, task metrics, samples."""
