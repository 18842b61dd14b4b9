// TensorBoard event files: TFRecord framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data) around Event protocol buffers, written and read back.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace mpitrain::tensorboard {

// Appends events to `dir`/events.out.tfevents.<seconds>.<host>.<pid> (created with its
// file_version event, as TensorBoard's writer starts a file); every call is flushed, so a job
// killed mid-run keeps what it logged. Throws std::runtime_error naming the file.
class EventFileWriter {
 public:
  EventFileWriter(const std::string& dir, const std::string& host);
  const std::string& path() const { return path_; }
  // One Summary event of scalars (TensorBoard stores them as float32).
  void add_scalars(std::int64_t step, const std::map<std::string, double>& scalars);
  // SessionLog START at `step`: TensorBoard then drops the events of earlier files whose step
  // is after it (a resumed run's steps are shown once).
  void start_session(std::int64_t step);

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::ofstream out_;
};

struct ScalarEvent {
  std::int64_t step;
  std::string tag;
  double value;
};
struct EventFile {
  std::vector<ScalarEvent> scalars;
  std::vector<std::int64_t> session_starts;  // steps of SessionLog START events
  std::string file_version;
  bool truncated = false;  // the last record was cut short (a writer killed mid-record)
};

// Reads every whole record; a short last record is reported, not an error. A bad checksum or
// an unparsable event is a std::runtime_error naming the file and the record.
EventFile read_event_file(const std::string& path);

// The masked CRC-32C TFRecord stores (Castagnoli polynomial, through Boost.CRC).
std::uint32_t masked_crc32c(const void* data, std::size_t size);

}  // namespace mpitrain::tensorboard
