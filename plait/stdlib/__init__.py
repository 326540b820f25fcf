"""The standard library of tools and the registry they live in."""
