"""Files: model checkpoints, atomic writes, images and video, third-party weight files."""
