# Finds what the GPU path needs: sets MPITRAIN_HAVE_CUDA (CUDA runtime + NCCL found),
# MPITRAIN_TORCH_CUDA (this LibTorch was built with CUDA), NCCL_INCLUDE_DIR and NCCL_LIBRARY.
set(MPITRAIN_HAVE_CUDA OFF)
set(MPITRAIN_TORCH_CUDA OFF)
if(TORCH_CUDA_LIBRARIES)
  set(MPITRAIN_TORCH_CUDA ON)
endif()
if(NOT MPITRAIN_WITH_CUDA)
  return()
endif()
find_package(CUDAToolkit QUIET)
if(NOT CUDAToolkit_FOUND)
  return()
endif()

# NCCL: $NCCL_ROOT first, then pip's nvidia-nccl package (the library a pip LibTorch itself
# loads: two different libnccl.so.2 in one process would clash), then the CUDA toolkit's.
set(nccl_hints "")
if(DEFINED ENV{NCCL_ROOT})
  list(APPEND nccl_hints "$ENV{NCCL_ROOT}")
endif()
# A pip LibTorch sits in site-packages/torch, beside site-packages/nvidia; python3's own
# nvidia packages are the fallback (the same ones when it is the interpreter torch came from).
set(pip_nvidia "")
if(TORCH_INSTALL_PREFIX AND EXISTS "${TORCH_INSTALL_PREFIX}/../nvidia")
  get_filename_component(torch_nvidia "${TORCH_INSTALL_PREFIX}/../nvidia" ABSOLUTE)
  list(APPEND pip_nvidia "${torch_nvidia}")
endif()
find_package(Python3 QUIET COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  execute_process(COMMAND ${Python3_EXECUTABLE} -c "import nvidia; print(';'.join(nvidia.__path__))"
                  OUTPUT_VARIABLE python_nvidia OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  list(APPEND pip_nvidia ${python_nvidia})
endif()
if(pip_nvidia)
  foreach(dir IN LISTS pip_nvidia)
    file(GLOB_RECURSE pip_nccl_headers "${dir}/*/nccl.h")
    foreach(header IN LISTS pip_nccl_headers)
      get_filename_component(include_dir "${header}" DIRECTORY)
      get_filename_component(root "${include_dir}" DIRECTORY)
      list(APPEND nccl_hints "${root}")
    endforeach()
  endforeach()
endif()
list(APPEND nccl_hints "${CUDAToolkit_LIBRARY_ROOT}" "${CUDAToolkit_TARGET_DIR}")
find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${nccl_hints} PATH_SUFFIXES include)
# pip ships only libnccl.so.2 (no unversioned link). NAMES_PER_DIR: the hinted directories
# (pip's, next to its nccl.h) first, whatever the name; else a toolkit's libnccl.so elsewhere
# would win over pip's and pair another NCCL's library with pip's header.
find_library(NCCL_LIBRARY NAMES libnccl.so.2 nccl NAMES_PER_DIR HINTS ${nccl_hints} PATH_SUFFIXES lib lib64)
if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
  # The CUDA runtime we link must be the one LibTorch loads (same soname), else two coexist.
  if(MPITRAIN_TORCH_CUDA AND CUDA_VERSION AND NOT CUDA_VERSION MATCHES "^${CUDAToolkit_VERSION_MAJOR}\\.")
    message(WARNING "mpitrain: CUDA toolkit ${CUDAToolkit_VERSION} differs from LibTorch's CUDA ${CUDA_VERSION}")
  endif()
  set(MPITRAIN_HAVE_CUDA ON)
  message(STATUS "mpitrain: NCCL ${NCCL_LIBRARY} (headers ${NCCL_INCLUDE_DIR})")
endif()
