"""Batch inference on files (docs/batch.md): ``modelserve batch run``.

- ``sources``: input paths (files, globs, folders) into files of a known format, cut into shards;
- ``readers``: one shard's rows as an Arrow table (a per-record fallback finds bad rows);
- ``columns``: columns to the model's inputs, its outputs back to columns;
- ``predictors``: the model, loaded as the server loads it, with the server's input checks;
- ``runner``: one shard end to end (convert, predict in batches, bisect a failing batch, write);
- ``writer``: part files and error files, written atomically, with their checksums;
- ``manifest``: the output folder's record of the job and of every shard (resume);
- ``engines``: where shards run (in this process, or ``cluster`` for Dask);
- ``job``: the job itself: plan, resume, run, error budget, summary.

Nothing here is imported by ``import modelserve``; pyarrow and dask load when a job runs.
"""
