"""Data layer: readers per format -> ``Interactions`` (dense ids + the user's own ids) ->
k-core -> leave-one-out ``Split`` -> torch batches."""

from pitrec.data.errors import DataError
from pitrec.data.interactions import Interactions
from pitrec.data.split import Split, leave_one_out

__all__ = ["DataError", "Interactions", "Split", "leave_one_out"]
