"""Route modules; each has `register(reg)` adding its routes to the registry."""
