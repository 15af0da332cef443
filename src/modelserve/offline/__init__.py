"""Offline work on a model repository, beside serving: batch inference over files
(``offline.batch``) and conversion to ONNX with a parity report (``offline.convert``). It builds
the same runtimes, configurations and loading as the server, and imports its heavy dependencies
(pyarrow, dask, converters) only when a job runs."""
