"""Per-prompt features for contextual selectors: the feature file format and the sources that fill it.

- :mod:`mopps.features.files`: ``save_features`` / ``load_features`` (numpy only);
- :mod:`mopps.features.columns`: features from dataset columns (one-hot categories, standardised
  numbers, prompt length), read from a file written by ``mopps data``;
- :mod:`mopps.features.embeddings`: mean-pooled hidden states of a frozen HF causal LM
  (``mopps features --model ...``; torch and transformers are imported only when it runs).

This layer sits beside ``tasks``: it reads the files ``mopps data`` writes but imports nothing of
ours except ``core``. The loop, the adapters, the testbed and the bench may import it.
"""

from mopps.features.columns import column_features, encode_columns, vector_column
from mopps.features.embeddings import compute_embedding_features, embed_prompts
from mopps.features.files import (
    FEATURES_FORMAT,
    FEATURES_VERSION,
    Features,
    load_features,
    load_features_for,
    save_features,
)

__all__ = [
    "FEATURES_FORMAT", "FEATURES_VERSION", "Features", "column_features", "compute_embedding_features",
    "embed_prompts", "encode_columns", "load_features", "load_features_for", "save_features", "vector_column",
]
