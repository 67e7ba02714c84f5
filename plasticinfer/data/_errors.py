"""Error types of the data layer. All are `plasticinfer.DataError`s."""

from __future__ import annotations

from .._errors import DataError


class SchemaError(DataError):
    """A dataset does not follow the plasticinfer schema (see ``docs/data-format.md``)."""


class FileFormatError(DataError):
    """A file could not be read, or its contents do not fit the layout its loader expects."""


class DatasetError(DataError):
    """A named dataset is unknown, cannot be found, or fails its checksum."""
