"""Facts of the canonical (tri-plane) space that the prior, UV maps and fitting must agree on.

EG3D convention: the tri-plane box is [-0.5, 0.5]^3 (box_warp 1). Plane 0 (XY) image columns
follow +x and rows follow +y. The face window is the part of plane 0 the face module writes:
rows 57-184 and columns 64-191 of a 256 plane (docs/design/prior.md), i.e. x in [-0.25, 0.25) and
y in [-0.27734375, 0.22265625). The expression UV render covers exactly this window at twice
the plane resolution (an orthographic render of the whole box at 512 cropped to rows 114-369,
columns 128-383).
"""

from dataclasses import dataclass

__all__ = ["FACE_WINDOW_256", "FaceWindow", "face_window"]

FACE_WINDOW_256 = (57, 185, 64, 192)
"""(row0, row1, col0, col1), end-exclusive, of the face window in a 256 plane (docs/design/prior.md)."""


@dataclass(frozen=True)
class FaceWindow:
    """The face window of plane 0 at one plane resolution, in pixels and canonical units."""

    row0: int
    row1: int
    col0: int
    col1: int
    resolution: int

    @property
    def size(self) -> int:
        """Side of the (square) window in plane pixels."""
        return self.row1 - self.row0

    @property
    def x_range(self) -> tuple[float, float]:
        """Canonical x covered by the window's columns."""
        return (self.col0 / self.resolution - 0.5, self.col1 / self.resolution - 0.5)

    @property
    def y_range(self) -> tuple[float, float]:
        """Canonical y covered by the window's rows."""
        return (self.row0 / self.resolution - 0.5, self.row1 / self.resolution - 0.5)


def face_window(resolution: int) -> FaceWindow:
    """The face window for a plane of ``resolution``; below 256 the start row rounds to a pixel."""
    r0, r1, c0, _ = FACE_WINDOW_256
    scale = resolution / 256
    row0 = round(r0 * scale)
    col0 = round(c0 * scale)
    size = round((r1 - r0) * scale)
    return FaceWindow(row0, row0 + size, col0, col0 + size, resolution)
