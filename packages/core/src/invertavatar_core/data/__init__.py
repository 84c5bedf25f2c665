"""Training and evaluation data: fitted datasets on disk and samples synthesised by the prior."""
