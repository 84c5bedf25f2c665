"""Animation: driving an avatar with another clip's (or a live camera's) expressions and head poses.

- :mod:`~invertavatar_core.animation.driving`: a driving signal (fitted frames) -> per-frame
  expression UV render and camera for an avatar, same-identity or cross-identity (relative pose),
  and the morphable-model check that refuses a driving fit of another model;
- :mod:`~invertavatar_core.animation.one_euro`: the one-euro filter that smooths live signals;
- :mod:`~invertavatar_core.animation.capture`: frames from a camera, a stream or a file, paced in real time;
- :mod:`~invertavatar_core.animation.live`: the live loop (track, fit, smooth, render) with its
  per-phase timing and jitter figures.
"""
