# Makes src_cy/fastconv a package for cimport (fastconv._runtime, fastconv._arrays): the build
# finds these .pxd files through include_path, with or without the source tree on sys.path.
