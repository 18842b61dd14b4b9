// TensorBoard event files: TFRecord framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data) around Event protocol buffers, written and read back.
#include "src/tensorboard/event_file.h"

#include <unistd.h>

#include <boost/crc.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <cstring>
#include <stdexcept>

#include "src/tensorboard/event.pb.h"

namespace mpitrain::tensorboard {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void put_le(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::uint64_t get_le(const char* in, int bytes) {
  std::uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return value;
}

}  // namespace

std::uint32_t masked_crc32c(const void* data, std::size_t size) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data, size);
  const std::uint32_t value = crc.checksum();
  return ((value >> 15) | (value << 17)) + 0xa282ead8u;
}

EventFileWriter::EventFileWriter(const std::string& dir, const std::string& host) {
  path_ = dir + "/events.out.tfevents." + std::to_string(static_cast<std::int64_t>(now_seconds())) + "." + host + "." +
          std::to_string(::getpid());
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw std::runtime_error(path_ + ": cannot create the TensorBoard event file");
  Event event;
  event.set_wall_time(now_seconds());
  event.set_file_version("brain.Event:2");
  write_record(event.SerializeAsString());
}

void EventFileWriter::add_scalars(std::int64_t step, const std::map<std::string, double>& scalars) {
  Event event;
  event.set_wall_time(now_seconds());
  event.set_step(step);
  for (const auto& [tag, value] : scalars) {
    auto* v = event.mutable_summary()->add_value();
    v->set_tag(tag);
    // float32 as TensorBoard keeps it; beyond its range (a stand-in for inf) the largest float.
    const double largest = std::numeric_limits<float>::max();
    v->set_simple_value(static_cast<float>(std::isnan(value) ? value : std::clamp(value, -largest, largest)));
  }
  write_record(event.SerializeAsString());
}

void EventFileWriter::start_session(std::int64_t step) {
  Event event;
  event.set_wall_time(now_seconds());
  event.set_step(step);
  event.mutable_session_log()->set_status(SessionLog::START);
  write_record(event.SerializeAsString());
}

void EventFileWriter::write_record(const std::string& data) {
  std::string record;
  put_le(record, data.size(), 8);
  put_le(record, masked_crc32c(record.data(), 8), 4);
  record += data;
  put_le(record, masked_crc32c(data.data(), data.size()), 4);
  out_.write(record.data(), static_cast<std::streamsize>(record.size()));
  out_.flush();
  if (!out_) throw std::runtime_error(path_ + ": writing the TensorBoard event file failed");
}

EventFile read_event_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open the event file");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EventFile file;
  std::size_t at = 0, record = 0;
  for (; at < bytes.size(); ++record) {
    const auto where = path + ": record " + std::to_string(record);
    if (bytes.size() - at < 12) break;
    const auto length = get_le(bytes.data() + at, 8);
    if (masked_crc32c(bytes.data() + at, 8) != get_le(bytes.data() + at + 8, 4))
      throw std::runtime_error(where + ": the length's checksum does not match");
    if (length > bytes.size() - at - 16) break;  // (a crafted length near 2^64 cannot wrap this)
    const char* data = bytes.data() + at + 12;
    if (masked_crc32c(data, length) != get_le(data + length, 4))
      throw std::runtime_error(where + ": the data's checksum does not match");
    Event event;
    if (!event.ParseFromArray(data, static_cast<int>(length))) throw std::runtime_error(where + ": not an Event");
    if (event.has_summary())
      for (const auto& v : event.summary().value()) file.scalars.push_back({event.step(), v.tag(), v.simple_value()});
    if (event.has_session_log() && event.session_log().status() == SessionLog::START)
      file.session_starts.push_back(event.step());
    if (!event.file_version().empty()) file.file_version = event.file_version();
    at += 12 + length + 4;
  }
  file.truncated = at < bytes.size();
  return file;
}

}  // namespace mpitrain::tensorboard
