// XXH64 (the xxHash 64-bit algorithm, written from its specification): the checksum recorded for every checkpoint file.
#include "runtime/checkpoint/xxhash64.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/input_file.h"

namespace mpitrain::checkpoint {

namespace {

constexpr std::uint64_t kPrime1 = 0x9E3779B185EBCA87ull, kPrime2 = 0xC2B2AE3D27D4EB4Full,
                        kPrime3 = 0x165667B19E3779F9ull, kPrime4 = 0x85EBCA77C2B2AE63ull,
                        kPrime5 = 0x27D4EB2F165667C5ull;

std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
std::uint64_t read64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);  // little-endian hosts only, like the safetensors format itself
  return v;
}
std::uint32_t read32(const unsigned char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
std::uint64_t round(std::uint64_t acc, std::uint64_t input) { return rotl(acc + input * kPrime2, 31) * kPrime1; }
std::uint64_t merge(std::uint64_t acc, std::uint64_t value) { return (acc ^ round(0, value)) * kPrime1 + kPrime4; }

}  // namespace

Xxh64::Xxh64(std::uint64_t seed)
    : seed_(seed), v_{seed + kPrime1 + kPrime2, seed + kPrime2, seed, seed - kPrime1}, buffer_{} {}

void Xxh64::update(const void* data, std::size_t length) {
  const auto* p = static_cast<const unsigned char*>(data);
  total_ += length;
  if (buffered_ + length < 32) {
    std::memcpy(buffer_ + buffered_, p, length);
    buffered_ += length;
    return;
  }
  if (buffered_ > 0) {  // complete the pending stripe
    const auto fill = 32 - buffered_;
    std::memcpy(buffer_ + buffered_, p, fill);
    for (int i = 0; i < 4; ++i) v_[i] = round(v_[i], read64(buffer_ + 8 * i));
    p += fill;
    length -= fill;
    buffered_ = 0;
  }
  for (; length >= 32; p += 32, length -= 32)
    for (int i = 0; i < 4; ++i) v_[i] = round(v_[i], read64(p + 8 * i));
  std::memcpy(buffer_, p, length);
  buffered_ = length;
}

std::uint64_t Xxh64::digest() const {
  std::uint64_t h;
  if (total_ >= 32) {
    h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
    for (int i = 0; i < 4; ++i) h = merge(h, v_[i]);
  } else {
    h = seed_ + kPrime5;
  }
  h += total_;
  const unsigned char* p = buffer_;
  std::size_t left = buffered_;
  for (; left >= 8; p += 8, left -= 8) h = rotl(h ^ round(0, read64(p)), 27) * kPrime1 + kPrime4;
  if (left >= 4) {
    h = rotl(h ^ (static_cast<std::uint64_t>(read32(p)) * kPrime1), 23) * kPrime2 + kPrime3;
    p += 4;
    left -= 4;
  }
  for (; left > 0; ++p, --left) h = rotl(h ^ (*p * kPrime5), 11) * kPrime1;
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

std::uint64_t xxh64(const void* data, std::size_t length, std::uint64_t seed) {
  Xxh64 state(seed);
  state.update(data, length);
  return state.digest();
}

std::string file_xxh64(const std::string& path) {
  const int fd = open_regular_file(path);
  Xxh64 state;
  std::vector<unsigned char> chunk(8u << 20);
  while (true) {
    const auto n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      throw CheckpointError(path, std::string("read failed: ") + std::strerror(errno));
    }
    if (n == 0) break;
    state.update(chunk.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return xxh64_hex(state.digest());
}

std::string xxh64_hex(std::uint64_t digest) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(digest));
  return hex;
}

}  // namespace mpitrain::checkpoint
