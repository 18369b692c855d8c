"""Dataset files: the HDF5 layout, generation into it, and MAT export and import."""

from pipeline.datasets.generate import FORMATS, GeneratedDataset, generate_dataset
from pipeline.datasets.hdf5 import (
    SPLITS,
    DatasetWriter,
    SplitArrays,
    dataset_info,
    read_split,
    read_windows,
    split_indices,
    validate_dataset_file,
)
from pipeline.datasets.matio import (
    ImportedDataset,
    MatSignal,
    export_dataset_mat,
    export_mat,
    import_mat_files,
    read_mat,
    resolve_under_root,
)

__all__ = [
    "FORMATS",
    "SPLITS",
    "DatasetWriter",
    "GeneratedDataset",
    "ImportedDataset",
    "MatSignal",
    "SplitArrays",
    "dataset_info",
    "export_dataset_mat",
    "export_mat",
    "generate_dataset",
    "import_mat_files",
    "read_mat",
    "read_split",
    "read_windows",
    "resolve_under_root",
    "split_indices",
    "validate_dataset_file",
]
