"""Desktop stand-in for the glasses: window, keys, scenarios."""
