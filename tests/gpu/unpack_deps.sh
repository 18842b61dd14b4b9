#!/usr/bin/env bash
# Source it: unpacks into .gpu-deps/root the carried Debian packages (tests/gpu/fetch_deps.sh) this machine lacks, and exports what finds them.
# MPITRAIN_FORCE_DEPS=1 unpacks all of them (a rehearsal on a machine that has them). Prints what it used.
deps_root="$(pwd)/.gpu-deps/root"
deps_debs="$(pwd)/.gpu-deps/debs"
rm -rf "$deps_root"  # never reuse an unpacking made elsewhere (its wrappers name that place)
mkdir -p "$deps_root"
deps_ldcache=$(ldconfig -p)
# Each stack (Open MPI, HDF5, Boost) is taken whole or not at all: a machine with only the
# runtime of one (mpi4py's libmpi.so.40, no mpicxx) would otherwise get the carried -dev
# package's links pointing at a runtime left out, and OPAL_PREFIX at a tree without plugins.
# An mpirun that is not Open MPI's (MPICH) counts as missing: the tests pass it Open MPI flags.
deps_need_openmpi() {
  ! command -v mpicxx >/dev/null || ! command -v mpirun >/dev/null || ! mpirun --version 2>&1 | grep -q 'Open MPI'
}
deps_need_hdf5() { [ ! -f /usr/include/hdf5/serial/H5Cpp.h ] && [ ! -f /usr/include/H5Cpp.h ]; }
# Headers alone are not Boost.Program_options: an image with libboost-dev but not its
# program_options library and CMake package (Ubuntu 24.04's, seen on the H200) needs ours.
deps_need_boost() {
  [ ! -f /usr/include/boost/program_options.hpp ] ||
    ! compgen -G "/usr/lib/x86_64-linux-gnu/cmake/boost_program_options-*/boost_program_options-config.cmake" >/dev/null
}
# A build package is taken when the machine lacks what it provides.
deps_missing() {
  [ "${MPITRAIN_FORCE_DEPS:-0}" = 1 ] && return 0
  case "$1" in
    libopenmpi-dev|openmpi-bin|openmpi-common) deps_need_openmpi ;;
    libopenmpi3|libpmix2|libhwloc15|libevent-core-2.1-7|libevent-pthreads-2.1-7) deps_need_openmpi ;;
    libhdf5-dev|hdf5-helpers|libhdf5-103-1|libhdf5-cpp-103-1|libhdf5-hl-100|libhdf5-hl-cpp-100) deps_need_hdf5 ;;
    libboost-program-options1.74-dev|libboost1.74-dev|libboost-program-options1.74.0) deps_need_boost ;;
    nlohmann-json3-dev) [ ! -f /usr/include/nlohmann/json.hpp ] ;;
    libgtest-dev) [ ! -f /usr/include/gtest/gtest.h ] ;;
    *) # a library package: taken unless one of the libraries it puts in the loader's own
       # directories is known here, by file name or by soname (libfoo.so.N). One is enough:
       # compatibility links (libhdf5_cpp.so.103) are never in the loader's cache.
       local name
       for name in $(dpkg-deb -c "$2" | grep -oE '\./(usr/)?lib/x86_64-linux-gnu/[^/ ]+\.so\.[0-9][0-9.]*' |
                     sed 's|.*/||' | sort -u); do
         grep -q "^[[:space:]]*$name " <<<"$deps_ldcache" && return 1
         grep -q "^[[:space:]]*$(sed -E 's/(\.so\.[0-9]+).*/\1/' <<<"$name") " <<<"$deps_ldcache" && return 1
       done
       return 0 ;;
  esac
}
deps_used=""
for deb in "$deps_debs"/*.deb; do
  name=$(dpkg-deb -f "$deb" Package)
  if deps_missing "$name" "$deb"; then
    dpkg -x "$deb" "$deps_root"
    deps_used="$deps_used $name"
  fi
done
usr="$deps_root/usr"
arch_lib="$usr/lib/x86_64-linux-gnu"
# dpkg -x runs no maintainer scripts: make the links update-alternatives would, and turn
# absolute links into links inside the prefix.
if [ -d "$usr/bin" ]; then
  for tool in mpirun mpiexec mpicc mpicxx mpic++; do
    [ -e "$usr/bin/$tool.openmpi" ] && [ ! -e "$usr/bin/$tool" ] && ln -s "$tool.openmpi" "$usr/bin/$tool"
  done
  # h5cc names its prefix literally, and the libraries a static HDF5 would need (libcurl,
  # libcrypto: unversioned .so files a machine without their -dev packages lacks; the shared
  # libhdf5 loads its own).
  for wrapper in "$usr"/bin/h5cc "$usr"/bin/h5c++; do
    [ -f "$wrapper" ] && sed -i -e "s|^prefix=\"/usr\"|prefix=\"$usr\"|" -e 's|^H5BLD_LIBS=.*|H5BLD_LIBS=""|' "$wrapper"
  done
fi
find "$deps_root" -type l -lname '/*' | while read -r link; do
  ln -sfn "$deps_root$(readlink "$link")" "$link"
done
if echo " $deps_used " | grep -q " libopenmpi3 \| openmpi-bin "; then
  export OPAL_PREFIX="$usr"  # Open MPI finds its plugins, help files and orted under it
fi
if echo " $deps_used " | grep -q " libboost-program-options1.74-dev "; then
  export Boost_ROOT="$usr" BOOST_ROOT="$usr"  # ours, not a system Boost whose program_options is absent
fi
export PATH="$usr/bin:$PATH"
# libfabric's PSM provider library sits where only update-alternatives would link it from.
export LD_LIBRARY_PATH="$arch_lib:$arch_lib/openmpi/lib:$arch_lib/hdf5/serial:$usr/lib/libpsm1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CMAKE_PREFIX_PATH="$usr${CMAKE_PREFIX_PATH:+;$CMAKE_PREFIX_PATH}"
echo "deps: unpacked${deps_used:- nothing} into $deps_root"
