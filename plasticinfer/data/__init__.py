"""The data layer: the xarray schema, its validator, file loaders and writers, named datasets, and
the building blocks of synthetic data.

The everyday names (``load``, ``validate``, ``behaviour_dataset``, ``neural_dataset``,
``from_dataframe``, ``save_netcdf``, ``make_activity_data``, ``make_choice_data``, ``GaussianInputs``)
are also at the top level of ``plasticinfer``; the specialist ones are here. See ``docs/data-format.md``.
"""

from ._combine import concat_subjects as concat_subjects
from .._errors import (
    AmbiguousCodingWarning as AmbiguousCodingWarning,
    DatasetError as DatasetError,
    FileFormatError as FileFormatError,
    SchemaError as SchemaError,
)
from .._io import write_netcdf as write_netcdf
from .._simulate import AbstractEnvironment as AbstractEnvironment
from .._synthetic import (
    BaitedBandit as BaitedBandit,
    GaussianInputs as GaussianInputs,
    SyntheticActivity as SyntheticActivity,
    SyntheticChoices as SyntheticChoices,
    block_schedule as block_schedule,
    make_activity_data as make_activity_data,
    make_choice_data as make_choice_data,
    simulate_choices as simulate_choices,
)
from ._hdf5 import load_hdf5 as load_hdf5
from ._load import load as load, loader_for as loader_for
from ._matlab import load_mat as load_mat, read_mat as read_mat
from ._netcdf import load_netcdf as load_netcdf, save_netcdf as save_netcdf
from ._nwb import load_nwb as load_nwb
from ._schema import behaviour_dataset as behaviour_dataset, neural_dataset as neural_dataset
from ._matrices import from_matrices as from_matrices
from ._tables import from_dataframe as from_dataframe, load_table as load_table, to_dataframe as to_dataframe
from ._validate import schema_notes as schema_notes, validate as validate

__all__ = [
    # errors and warnings
    "AmbiguousCodingWarning",
    "DatasetError",
    "FileFormatError",
    "SchemaError",
    # loading
    "load",
    "loader_for",
    "load_hdf5",
    "load_mat",
    "load_netcdf",
    "load_nwb",
    "load_table",
    "read_mat",
    # building, converting, combining
    "behaviour_dataset",
    "neural_dataset",
    "from_dataframe",
    "from_matrices",
    "to_dataframe",
    "concat_subjects",
    # validation
    "validate",
    "schema_notes",
    # writing
    "save_netcdf",
    "write_netcdf",
    # synthetic data
    "AbstractEnvironment",
    "BaitedBandit",
    "GaussianInputs",
    "SyntheticActivity",
    "SyntheticChoices",
    "block_schedule",
    "make_activity_data",
    "make_choice_data",
    "simulate_choices",
]
