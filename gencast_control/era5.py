"""ERA5 from WeatherBench2: one import for the store and batch utilities.

`era5_store` opens and describes stores (registry in configs/stores.py);
`era5_schema` holds the name conversion, grid/time checks and forcings;
`era5_batches` converts WeatherBench2 data to GenCast batches and back and
stacks lat/lon states for the core.
"""

from gencast_control.era5_batches import (GENCAST_INPUTS, GENCAST_TARGETS,
                                          STATIC_VARIABLES, GenCastBatch,
                                          channel_names, from_gencast_output,
                                          latlon_state, to_gencast_batch)
from gencast_control.era5_schema import (PROGRESS_FORCINGS, WB2_TO_GENCAST,
                                         check_nans, check_variables,
                                         progress_forcings, standardize_grid,
                                         validate_gencast_dataset)
from gencast_control.era5_store import (StoreUnavailableError,
                                        describe_dataset, open_store,
                                        probe_store, resolve_store)

__all__ = [
    "GENCAST_INPUTS", "GENCAST_TARGETS", "PROGRESS_FORCINGS",
    "STATIC_VARIABLES", "WB2_TO_GENCAST", "GenCastBatch",
    "StoreUnavailableError",
    "channel_names", "check_nans", "check_variables", "describe_dataset",
    "from_gencast_output", "latlon_state", "open_store", "probe_store",
    "progress_forcings", "resolve_store", "standardize_grid",
    "to_gencast_batch", "validate_gencast_dataset",
]
