"""invertavatar-faceverse: Morphable face models (procedural, ICT Face Model Light, FaceVerse), UV maps and landmark fitting."""

__all__: list[str] = []
