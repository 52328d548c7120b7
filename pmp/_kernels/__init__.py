"""pmp's jitted core: every ``@njit`` function lives in this package (policy: ``_jit``)."""
