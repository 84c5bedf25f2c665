"""Training: the trainer loop, its resumable state, multi-process runtime, losses and the encoder stages."""
