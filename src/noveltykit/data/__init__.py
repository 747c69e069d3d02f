"""Datasets: loading, fetching (with verified caching) and the user's own image folders."""
from .datasets import DATASET_NAMES, dataset_info, fetch_dataset, load_dataset
from .images import ImageDataset, to_float
from .preprocess import resize_uint8
from .sources import DataUnavailableError

__all__ = ["ImageDataset", "to_float", "load_dataset", "fetch_dataset", "dataset_info", "DataUnavailableError",
           "resize_uint8", "DATASET_NAMES"]
