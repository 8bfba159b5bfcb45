#include "stats_file.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace smp::linux_peer {
namespace {

constexpr size_t kRecordsMax = 256;  // a `stats` listing shows at most this many servers

// The network namespace a process lives in (its inode; 0 when it cannot be read). Endpoint
// numbers are per namespace, so a listing shows only the servers of the caller's.
ino_t net_namespace(const std::string& pid) {
  struct stat st {};
  return stat(("/proc/" + pid + "/ns/net").c_str(), &st) == 0 ? st.st_ino : 0;
}

std::string run_dir() {
  const char* d = std::getenv("SMPCTL_RUN_DIR");
  return d && *d ? d : "/run/smpctl";
}

}  // namespace

StatsFile::StatsFile(std::string node, std::string service)
    : node_(std::move(node)), service_(std::move(service)) {
  mkdir(run_dir().c_str(), 0755);
  path_ = run_dir() + "/" + std::to_string(getpid()) + ".stats";
}

// Line 1: JSON; then the human-readable lines. Written to a temporary name and renamed, so a
// reader never sees half a record.
void StatsFile::write(const Endpoint& ep, int64_t requests_served) {
  std::ostringstream json, text;
  json << "{\"pid\":" << getpid() << ",\"node\":\"" << node_ << "\",\"service\":\"" << service_
       << "\",\"requests_served\":" << requests_served;
  text << node_ << "/" << service_ << " (pid " << getpid() << "): " << requests_served
       << " requests served\n";
  for (const auto& [name, value] : ep.stats()) {
    json << ",\"" << name << "\":" << value;
    text << "  " << name << " " << value << "\n";
  }
  json << "}";
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return;  // stats are best effort: a server keeps serving without them
    out << json.str() << "\n" << text.str();
  }
  std::rename(tmp.c_str(), path_.c_str());
}

void StatsFile::remove() { unlink(path_.c_str()); }

std::vector<StatsRecord> StatsFile::read_all() {
  std::vector<StatsRecord> out;
  DIR* d = opendir(run_dir().c_str());
  if (!d) return out;
  const ino_t ours = net_namespace("self");
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    const size_t dot = name.find(".stats");
    if (dot == std::string::npos || dot + 6 != name.size()) continue;
    const long pid = std::strtol(name.c_str(), nullptr, 10);
    const std::string path = run_dir() + "/" + name;
    if (pid <= 0 || (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)) {
      unlink(path.c_str());  // its server is gone (killed without cleaning up)
      continue;
    }
    const ino_t theirs = net_namespace(std::to_string(pid));
    if (ours && theirs && theirs != ours) continue;  // another namespace's server
    std::ifstream in(path);
    StatsRecord r;
    if (!std::getline(in, r.json)) continue;
    std::ostringstream rest;
    rest << in.rdbuf();
    r.text = rest.str();
    if (!r.text.empty() && r.text.back() == '\n') r.text.pop_back();
    out.push_back(std::move(r));
    if (out.size() == kRecordsMax) break;
  }
  closedir(d);
  return out;
}

}  // namespace smp::linux_peer
