"""Where and when predict runs: the per-version batcher (queue, merge, deadlines,
instances) and the worker-process pool of ``execution: process``."""
