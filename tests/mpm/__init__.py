import os

# Taichi's offline kernel cache holds 100 MB by default and evicts the least recently used quarter when it is full.
# The project's kernels together exceed that, so "warm" runs recompiled the MPM adjoints (about a minute each). A
# larger cache keeps them; better set once in diffsim.runtime.init (reported to the lead).
os.environ.setdefault("TI_OFFLINE_CACHE_MAX_SIZE_OF_FILES", str(1024**3))
