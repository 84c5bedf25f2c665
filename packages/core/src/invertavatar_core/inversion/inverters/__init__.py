"""The inversion methods: ours (incremental) and the per-frame-mean and PTI baselines."""
