"""Offline work on a model repository, beside serving: batch inference over files
(``offline.batch``). It builds the same runtimes, configurations and loading as the server, and
imports its heavy dependencies (pyarrow, dask) only when a job runs."""
