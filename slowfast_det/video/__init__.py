"""Video in and out: the first step of the data flow (video -> frames).

Modules:

* ``probe``: :class:`~slowfast_det.video.probe.VideoInfo` and :func:`~slowfast_det.video.probe.probe_video`,
  what a container says about a video (size, rotation, clock, frame rate, duration);
* ``sources``: :class:`~slowfast_det.video.sources.FrameSource`, an iterator of upright timed frames, with the
  video file as its first implementation (:class:`~slowfast_det.video.sources.FileSource`);
* ``live``: :class:`~slowfast_det.video.live.StreamSource`, live streams, capture devices and pipes as frame
  sources (not seekable; reconnectable);
* ``stream``: :class:`~slowfast_det.video.stream.ClipStream`, keyframe clips sampled by time from any frame
  source with bounded memory (``detect-video``);
* ``reader``: random access by seeking in a file (AVA training and testing straight from videos);
* ``render``: boxes, ids and actions drawn back onto a video.

The PyAV container helpers shared with the torch-free ``ava_tools`` live in :mod:`ava_tools.video_io`.
Importing this package imports no submodule.
"""
