// What a prepared data file was made from, kept beside it, so that a run preparing into output_dir prepares again when the source or the settings changed.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace mpitrain::data {

// The settings given and every regular file under `source` (a directory, or one file) with its
// size and modification time: what a preparation read.
nlohmann::json preparation_record(const std::string& source, const nlohmann::json& settings);

// <prepared file>.json: written once a preparation has finished, so a file without one (an
// interrupted preparation, an older mpitrain's) is never trusted.
std::string preparation_record_path(const std::string& prepared_file);

// Whether `prepared_file` exists with a record equal to `record`.
bool prepared_from(const std::string& prepared_file, const nlohmann::json& record);

void write_preparation_record(const std::string& prepared_file, const nlohmann::json& record);

}  // namespace mpitrain::data
