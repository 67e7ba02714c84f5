"""Named datasets: ``plasticinfer.datasets.load("rajagopalan2023")``.

The description of each dataset (files, SHA-256 checksums, source, licence, citation) is a TOML
file beside this module. See ``docs/datasets.md`` for how to add one.
"""

from ..data._datasets import (
    DataFile as DataFile,
    DatasetInfo as DatasetInfo,
    cache_dir as cache_dir,
    candidate_dirs as candidate_dirs,
    download as download,
    info as info,
    load as load,
    locate as locate,
    names as names,
    verify as verify,
)

__all__ = ["DataFile", "DatasetInfo", "cache_dir", "candidate_dirs", "download", "info", "load", "locate", "names", "verify"]
