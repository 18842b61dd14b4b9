// output_dir's policy: its checks, the start-over plan, which checkpoint a resume takes, rotation and the best checkpoint; the decisions are pure functions over a listing.
#include "src/train/run_directory.h"

#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include "runtime/checkpoint/checkpoint_schema.h"
#include "runtime/checkpoint/remove_tree.h"
#include "runtime/comm/agreement.h"

namespace mpitrain::train {

namespace fs = std::filesystem;

RunDirectoryListing RunDirectoryListing::of(const std::string& output_dir) {
  return {checkpoint::complete_checkpoints(output_dir), checkpoint::incomplete_checkpoints(output_dir),
          checkpoint::foreign_checkpoints(output_dir)};
}

std::string directory_named_by(const std::string& path) {
  auto dir = fs::path(path).lexically_normal();
  return (dir.has_filename() ? dir : dir.parent_path()).string();
}

ResumePathPlace ResumePathPlace::of(const std::string& output_dir, const ResumeFrom& resume,
                                    const RunDirectoryListing& listing) {
  ResumePathPlace place;
  if (resume.kind != ResumeFrom::Kind::kPath) return place;
  const fs::path path = directory_named_by(resume.path);
  std::error_code error;
  place.is_output_dir = fs::equivalent(path, output_dir, error);
  if (fs::equivalent(path.parent_path(), output_dir, error))
    for (const auto& entry : listing.complete)
      if (fs::equivalent(entry.path, path, error)) place.step_in_output_dir = entry.step;
  return place;
}

namespace {

std::string first_and_count(const std::vector<std::string>& paths) {
  return fs::path(paths.front()).filename().string() +
         (paths.size() > 1 ? " and " + std::to_string(paths.size() - 1) + " more" : "");
}

}  // namespace

StartOver plan_start_over(const TrainingArguments& args, const RunDirectoryListing& listing, const ResumePathPlace& place) {
  StartOver plan;
  const auto& dir = args.output_dir;
  // The final save would overwrite the files being resumed from (and checkpoints nest in it).
  if (place.is_output_dir)
    throw std::runtime_error("output_dir '" + dir +
                             "' is the checkpoint resumed from: the run would write over it; give the directory "
                             "that holds it, or another one");
  // A run that writes no checkpoint cannot mix its own with an earlier run's.
  if (!args.saves_checkpoints() && args.save_on_signals.empty()) return plan;
  // Someone else's checkpoint-N (another trainer's, a folder of the user's): a save of that
  // step would replace it, and before, any save deleted it as an incomplete checkpoint.
  if (!listing.foreign.empty()) {
    const auto named = first_and_count(listing.foreign);
    if (!args.overwrite_output_dir)
      throw std::runtime_error("output_dir '" + dir + "' holds " + named +
                               ", which mpitrain did not write (another trainer's checkpoint? a folder of yours?): "
                               "move it, use another output_dir, or overwrite_output_dir=true deletes it");
    plan.paths = listing.foreign;
    plan.what = "overwrite_output_dir: deleted " + named + " (not written by mpitrain) in " + dir;
  }
  const auto kind = args.resume_from_checkpoint.kind;
  if (kind == ResumeFrom::Kind::kLatest || kind == ResumeFrom::Kind::kLatestIfAny)
    return plan;  // continues the run they belong to, from its latest
  // Resuming from a given checkpoint of this output_dir abandons the later ones: they would
  // stay beside this run's checkpoints of the same steps and be picked by the next resume. A
  // checkpoint of another directory leaves every one here an earlier run's.
  const auto from_step = place.step_in_output_dir;
  std::vector<std::string> earlier;
  for (const auto& entry : listing.complete)
    if (entry.step > from_step) earlier.push_back(entry.path);
  if (earlier.empty()) return plan;
  const std::string which = std::to_string(earlier.size()) + " checkpoint(s) " +
                            (from_step < 0 ? "of an earlier run" : "after the one resumed from") + " (" +
                            fs::path(earlier.back()).filename().string() + " the latest)";
  if (!args.overwrite_output_dir)
    throw std::runtime_error("output_dir '" + dir + "' holds " + which + ": " +
                             (from_step < 0 ? "resume it (resume_from_checkpoint=true or auto), or start over"
                                            : "resume from the latest (resume_from_checkpoint=true), or go on") +
                             " with overwrite_output_dir=true, which deletes them");
  plan.paths.insert(plan.paths.end(), earlier.begin(), earlier.end());
  plan.paths.insert(plan.paths.end(), listing.incomplete.begin(), listing.incomplete.end());
  plan.what = (plan.what.empty() ? "overwrite_output_dir: deleted " : plan.what + "; and ") + which + " in " + dir;
  return plan;
}

std::string resolve_resume_path(const TrainingArguments& args, const RunDirectoryListing& listing) {
  const auto& resume = args.resume_from_checkpoint;
  switch (resume.kind) {
    case ResumeFrom::Kind::kNone: return "";
    case ResumeFrom::Kind::kLatest:
      if (listing.complete.empty())
        throw comm::AgreedError("resume_from_checkpoint=true but " + args.output_dir + " holds no complete checkpoint");
      return listing.complete.back().path;
    case ResumeFrom::Kind::kLatestIfAny:  // a (re)queued job: continue where the last run saved, or start
      return listing.complete.empty() ? "" : listing.complete.back().path;
    case ResumeFrom::Kind::kPath: break;
  }
  require_resumable_checkpoint(resume.path);
  return resume.path;
}

void require_resumable_checkpoint(const std::string& path) {
  if (!fs::is_directory(path))
    throw comm::AgreedError("resume_from_checkpoint '" + path + "' " +
                            (fs::exists(path) ? "is not a directory (a checkpoint-<step> directory)" : "does not exist"));
  if (!checkpoint::is_complete_checkpoint(path))
    throw comm::AgreedError("resume_from_checkpoint '" + path + "' is incomplete (no " +
                            std::string(checkpoint::kCompleteMarker) + "; the job that wrote it did not finish)");
}

std::string best_checkpoint_beside(const std::string& resumed_from, const std::string& best) {
  if (best.empty() || checkpoint::is_complete_checkpoint(best)) return best;
  const auto beside = (fs::path(directory_named_by(resumed_from)).parent_path() / fs::path(best).filename()).string();
  return checkpoint::is_complete_checkpoint(beside) ? beside : best;
}

std::string why_output_dir_is_shared(const RunArguments& args) {
  const auto& t = args.training;
  if (t.saves_checkpoints()) return "every rank writes checkpoints there and reads them on resume";
  if (!t.save_on_signals.empty()) return "every rank writes a checkpoint there when a stop signal comes (save_on_signals)";
  const auto kind = t.resume_from_checkpoint.kind;
  if (kind == ResumeFrom::Kind::kLatest || kind == ResumeFrom::Kind::kLatestIfAny)
    return "every rank looks for the checkpoint to resume from there";
  if (t.save_mode != checkpoint::SaveMode::kGather)
    return "save_mode " + args.config["training"]["save_mode"].get<std::string>() + " writes there from every rank";
  if (args.data.train_file.empty()) return "every rank reads the data prepared there";
  return "";
}

void check_output_dir(const std::string& dir) {
  if (fs::exists(dir) && !fs::is_directory(dir)) throw std::runtime_error("output_dir '" + dir + "' is a file");
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) throw std::runtime_error("output_dir '" + dir + "' cannot be created: " + error.message());
  if (::access(dir.c_str(), W_OK) != 0) throw std::runtime_error("output_dir '" + dir + "' is not writable");
}

void rotate_checkpoints(const std::string& output_dir, std::int64_t limit, const std::string& best,
                        const std::function<void(const std::string&)>& info,
                        const std::function<void(const std::string&)>& warn) {
  for (const auto& path : checkpoint::checkpoints_to_rotate(checkpoint::complete_checkpoints(output_dir), limit, best)) {
    info("deleting older checkpoint " + path + " (save_total_limit " + std::to_string(limit) + ")");
    // Renamed aside first: the checkpoint leaves the listing at once, and whatever a failed or
    // killed delete leaves is no checkpoint-N for a resume to pick. A delete that fails
    // (permissions, an immutable file) costs disk space, not the run.
    const auto aside = (fs::path(output_dir) / (checkpoint::kDeletingPrefix + fs::path(path).filename().string())).string();
    try {
      std::error_code not_renamed;
      fs::rename(path, aside, not_renamed);
      if (not_renamed) fs::remove(fs::path(path) / checkpoint::kCompleteMarker);  // else at least not "complete"
      checkpoint::remove_tree(not_renamed ? path : aside);
    } catch (const std::exception& e) {
      warn("could not delete " + path + " (" + std::string(e.what()).substr(0, 300) + "); training goes on");
    }
  }
}

}  // namespace mpitrain::train
