"""The inversion methods: ours (incremental), the per-frame-mean and PTI baselines, and copy-the-source."""
