"""Parser fuzz targets, shared by the property tests and the fuzzing script."""
