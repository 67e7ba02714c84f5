"""The data layer: the xarray schema, its validator, file loaders and named datasets.

Users import these names from ``plasticinfer``; see ``docs/data-format.md``.
"""

from ._combine import concat_subjects as concat_subjects
from .._errors import DatasetError as DatasetError, FileFormatError as FileFormatError, SchemaError as SchemaError
from ._hdf5 import load_hdf5 as load_hdf5
from ._load import load as load, loader_for as loader_for
from ._matlab import load_mat as load_mat, read_mat as read_mat
from ._netcdf import load_netcdf as load_netcdf, save_netcdf as save_netcdf
from ._nwb import load_nwb as load_nwb
from ._schema import behaviour_dataset as behaviour_dataset, neural_dataset as neural_dataset
from ._matrices import from_matrices as from_matrices
from ._tables import from_dataframe as from_dataframe, load_table as load_table, to_dataframe as to_dataframe
from ._validate import schema_notes as schema_notes, validate as validate
