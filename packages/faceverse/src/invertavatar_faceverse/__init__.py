"""invertavatar-faceverse: morphable face models, landmark fitting, synthetic heads and the fit command.

Models: the procedural head (generated in code), ICT Face Model Light and FaceVerse v3.1.
"""

__all__: list[str] = []
