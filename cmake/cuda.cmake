# The CUDA backend (cuda/): decides PF_CUDA_ENABLED from PF_CUDA.
#   AUTO  build it when nvcc and cuBLAS are found (not under sanitizers or
#         fuzzing: those builds test the CPU paths, and ASan/TSan do not
#         work with the CUDA driver's memory mappings)
#   ON    build it; a configure error when the toolkit is missing
#   OFF   never
# The backend is compiled on machines without a GPU too, so that CI keeps it
# compiling (with the same warnings-as-errors as the C code); its tests then
# skip. Architectures: sm_90 (H100/H200) machine code plus compute_75 PTX,
# which the driver compiles for any other GPU CUDA 13 supports. Override
# with -DCMAKE_CUDA_ARCHITECTURES=... (e.g. "native" on a GPU machine).
set(PF_CUDA_ENABLED OFF)
string(TOUPPER "${PF_CUDA}" pf_cuda_mode)
if(NOT pf_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "PF_CUDA is '${PF_CUDA}'; expected AUTO, ON or OFF")
endif()
if(pf_cuda_mode STREQUAL "AUTO" AND (PF_SANITIZE OR PF_BUILD_FUZZ))
  message(STATUS "CUDA backend: off (AUTO skips it in sanitizer and fuzz "
                 "builds; -DPF_CUDA=ON forces it)")
  set(pf_cuda_mode OFF)
endif()

if(NOT pf_cuda_mode STREQUAL "OFF")
  # nvcc is often not on PATH: look where the toolkit installs itself.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(PF_NVCC nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH
                 PATHS /usr/local/cuda/bin PATH_SUFFIXES bin)
    if(PF_NVCC)
      set(ENV{CUDACXX} ${PF_NVCC})
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  set(pf_cuda_missing "")
  if(NOT CMAKE_CUDA_COMPILER)
    string(CONCAT pf_cuda_missing "no CUDA compiler (nvcc) found: set "
           "CUDACXX or CMAKE_CUDA_COMPILER, or install the CUDA toolkit")
  else()
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90-real 75-virtual)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit)
    if(NOT TARGET CUDA::cudart OR NOT TARGET CUDA::cublas)
      string(CONCAT pf_cuda_missing "nvcc ${CMAKE_CUDA_COMPILER} found, but "
             "not the CUDA runtime and cuBLAS libraries beside it")
    endif()
  endif()
  if(pf_cuda_missing)
    if(pf_cuda_mode STREQUAL "ON")
      message(FATAL_ERROR "PF_CUDA=ON: ${pf_cuda_missing}")
    endif()
    message(STATUS "CUDA backend: off (${pf_cuda_missing})")
  else()
    set(PF_CUDA_ENABLED ON)
    message(STATUS "CUDA backend: on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
                   "architectures ${CMAKE_CUDA_ARCHITECTURES})")
  endif()
endif()
