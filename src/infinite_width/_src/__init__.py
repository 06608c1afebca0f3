"""Private helpers of [`infinite_width`][], imported by the package only.

Names inside are public within the package (no leading underscore) but not
part of the library's API:

* `checks`: every argument check, so the same bad input gets the same error everywhere;
* `numerics`: the full-precision policy (``precision_scope``), float64 results, and row padding;
* `memory`: free memory, for the plans that refuse before allocating;
* `rng`: the one derivation of keys and minibatch orders;
* `nt`: the only module that imports neural-tangents, and the architecture -> stax translation;
* `files`: atomic file writes;
* `memory`: the memory a computation can still allocate (for memory plans);
* `records`: resumable experiment records (one JSON per point, with its settings) and their timing.
"""
