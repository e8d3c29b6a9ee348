# OpenBLAS and oneDNN as imported targets, found the same way when descent is built and
# when a project uses the installed package (descentConfig.cmake includes this file), so
# the exported target names descent::openblas / descent::dnnl, never a path of the
# machine that built it. Only the libraries: their headers are descent's private business
# (DESCENT_CBLAS_INCLUDE_DIR, DESCENT_DNNL_INCLUDE_DIR).
#
# OpenBLAS, the OpenMP build (libopenblas-openmp-dev): it runs on libgomp, the same thread
# pool as our own OpenMP loops, so the two never oversubscribe the cores.
if(NOT TARGET descent::openblas)
  find_path(DESCENT_CBLAS_INCLUDE_DIR cblas.h
    PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp /usr/include/openblas
    NO_DEFAULT_PATH)
  find_path(DESCENT_CBLAS_INCLUDE_DIR cblas.h)
  find_library(DESCENT_BLAS_LIBRARY NAMES openblas
    PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
  find_library(DESCENT_BLAS_LIBRARY NAMES openblas)
  if(DESCENT_CBLAS_INCLUDE_DIR AND DESCENT_BLAS_LIBRARY)
    add_library(descent::openblas UNKNOWN IMPORTED)
    set_target_properties(descent::openblas PROPERTIES
      IMPORTED_LOCATION "${DESCENT_BLAS_LIBRARY}")
  endif()
endif()

# oneDNN (libdnnl-dev): its direct AVX-512/AVX2 convolutions, chosen at run time for the CPU,
# run the float32 convolutions (src/autodiff/conv_dnnl.cpp); without it descent uses its own
# im2col + sgemm path for every convolution. A descent built with it needs it to link.
if(NOT TARGET descent::dnnl)
  find_path(DESCENT_DNNL_INCLUDE_DIR dnnl.hpp)
  find_library(DESCENT_DNNL_LIBRARY NAMES dnnl)
  if(DESCENT_DNNL_INCLUDE_DIR AND DESCENT_DNNL_LIBRARY)
    add_library(descent::dnnl UNKNOWN IMPORTED)
    set_target_properties(descent::dnnl PROPERTIES
      IMPORTED_LOCATION "${DESCENT_DNNL_LIBRARY}")
  endif()
endif()
