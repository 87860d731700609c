# CMake toolchain file for grpcio-sys's build of the vendored gRPC C core in
# the test and CI scripts: the dev profile builds it as CMake's Debug type,
# whose -g makes a 600 MB static library that takes longer to compile and to
# link into every test binary. Nobody steps through the C core in a test
# run; without -g it is 200 MB. Only CMake's per-type flags change (-O0 and
# everything else stay), and grpcio-sys does not watch this variable, so an
# existing build is not redone.
set(CMAKE_C_FLAGS_DEBUG "" CACHE STRING "no debug info for the vendored C core")
set(CMAKE_CXX_FLAGS_DEBUG "" CACHE STRING "no debug info for the vendored C core")
