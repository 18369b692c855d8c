"""Hand-crafted features of vibration windows: extraction, selection, importance, storage.

``extract_features`` computes the 36 features of DOMAIN.md (time, frequency, envelope,
wavelet/cepstral, bispectrum) vectorised over windows; ``save_feature_set`` and
``load_feature_set`` persist them. Ranking lives in ``pipeline.features.selection`` and
``pipeline.features.importance`` (scikit-learn), drawing in ``pipeline.features.plots``
(matplotlib): import those modules directly, so that importing this package stays light.
"""

from __future__ import annotations

from pipeline.features.extract import (
    DOMAINS,
    FEATURE_NAMES,
    FeatureMatrix,
    extract_features,
    extract_features_loop,
    feature_names,
)
from pipeline.features.store import FeatureSet, load_feature_set, save_feature_set

__all__ = [
    "DOMAINS",
    "FEATURE_NAMES",
    "FeatureMatrix",
    "FeatureSet",
    "extract_features",
    "extract_features_loop",
    "feature_names",
    "load_feature_set",
    "save_feature_set",
]
