"""Loading and serving model versions: the repository on disk, each loaded version
(``LoadedModel``), warm-up and the lifecycle (load, reload, unload, drain)."""
