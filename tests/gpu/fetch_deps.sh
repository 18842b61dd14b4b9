#!/usr/bin/env bash
# Downloads, here where Debian's mirror is reachable, the Debian packages a GPU machine may lack (MPI, HDF5, Boost, JSON, GoogleTest) into .gpu-deps/debs for tests/gpu/run.sh.
# The GPU machine has no network: run.sh unpacks there (dpkg -x into a prefix) only what it is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.gpu-deps/debs
mkdir -p "$dest"

# Headers, static test libraries, wrappers and mpirun: taken whole, without their dependencies
# (compilers and -dev chains the build does not use).
build_packages="libopenmpi-dev openmpi-bin openmpi-common libhdf5-dev hdf5-helpers libboost-program-options1.74-dev libboost1.74-dev
  nlohmann-json3-dev libgtest-dev"
# Shared libraries, with everything they load, minus what every Linux system has (and must
# never be shadowed: libc, libstdc++) and what only optional plugins or ssh need.
runtime_roots="libopenmpi3 libhdf5-103-1 libhdf5-cpp-103-1 libhdf5-hl-100 libhdf5-hl-cpp-100 libboost-program-options1.74.0"
base='^(libc6|libgcc-s1|libstdc\+\+6|gcc-12-base|libcrypt1|adduser|cdebconf|debconf|dpkg|install-info|passwd|tar|libpam.*|libaudit.*|libselinux1|libsemanage.*|libsepol2|libdebian-installer4|libnewt0.52|libslang2|libtextwrap1|readline-common|libreadline8|libtinfo6|openssh-client|libfido2-1|libcbor0.8|libedit2|libbsd0|libmd0|libx11.*|libxau6|libxcb1|libxdmcp6|libxext6|libxnvctrl0|ocl-icd-libopencl1|libpciaccess0|libhwloc-plugins|libudev1|libuuid1|zlib1g|liblzma5|libzstd1|libbz2-1.0|libpcre2-8-0|libcap-ng0|libdb5.3|libsasl2-modules-db)$'
runtime=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
            --no-enhances --no-pre-depends $runtime_roots | grep -E '^[a-z0-9]' | sort -u | grep -Ev "$base")

cd "$dest"
rm -f ./*.deb
# shellcheck disable=SC2086
apt-get download $build_packages $runtime >/dev/null
echo "$build_packages" | tr ' ' '\n' | grep -v '^$' > build-packages.txt
ls ./*.deb | wc -l | xargs echo "packages:"
du -sh . | cut -f1 | xargs echo "size:"
