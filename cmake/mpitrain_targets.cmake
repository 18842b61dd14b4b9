# Helpers that give every mpitrain library the same warnings, includes and torch set-up.

# Torch's exported flags carry -D_GLIBCXX_USE_CXX11_ABI; its include dirs are made SYSTEM so
# that warnings inside torch headers do not count against ours.
add_library(mpitrain_torch INTERFACE)
target_link_libraries(mpitrain_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(mpitrain_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
target_compile_options(mpitrain_torch INTERFACE ${TORCH_CXX_FLAGS})

function(mpitrain_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE ${MPITRAIN_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_PUBLIC_DEPS})
endfunction()

# <torch/torch.h> is compiled once, by mpitrain_checkpoint_torch; every other torch library and
# test reuses that precompiled header (their flags match). Targets with other definitions
# (Boost's, in the launcher) compile their own.
function(mpitrain_use_torch_pch target)
  if(target STREQUAL "mpitrain_checkpoint_torch")
    target_precompile_headers(${target} PRIVATE <torch/torch.h>)
  else()
    target_precompile_headers(${target} REUSE_FROM mpitrain_checkpoint_torch)
  endif()
endfunction()
