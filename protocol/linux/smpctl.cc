// smpctl: the protocol from a Linux shell. See `smpctl --help` (kUsage below).
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "exec_runner.h"
#include "libsmp.h"
#include "stats_file.h"

namespace sl = smp::linux_peer;

namespace {

constexpr const char* kUsage =
    "usage: smpctl [OPTIONS] COMMAND [ARGS] (OPTIONS may also follow the command; -- ends them)\n"
    "  ping NODE [-c COUNT] [-s BYTES]   protocol-level probes (PROBE/PROBE_ACK), with round-trip\n"
    "                                    times; -s pads each to an IP packet of BYTES (576..65535)\n"
    "  names [NODE]                      services attached on NODE (default: every node; a node\n"
    "                                    that does not answer: a line on stderr, non-zero exit)\n"
    "  call [NODE/]SERVICE DATA|@FILE [--out=FILE]\n"
    "                                    send DATA (or FILE's bytes), print the reply; a bare\n"
    "                                    SERVICE is looked up on every node of the peer table\n"
    "  pulse [NODE/]SERVICE CODE VALUE   a pulse (code 0..127, a 32-bit value, no reply); ends\n"
    "                                    when the server's endpoint acknowledged it\n"
    "  serve SERVICE [--exec CMD] [--count N | --threads N]\n"
    "                                    serve SERVICE: echo, or run CMD per request (request on\n"
    "                                    its stdin, reply from its stdout); stop after N requests;\n"
    "                                    or serve N requests at once (a slow CMD holds up only\n"
    "                                    its own); pulses are printed (stderr, or a JSON line\n"
    "                                    with --json)\n"
    "  stats                             counters of the smpctl servers running in this network\n"
    "                                    namespace\n"
    "options:\n"
    "  --name=NAME          this node's name (default: the host name)\n"
    "  --peer=NAME=ADDRESS[:ENDPOINT]\n"
    "                       a static peer table entry (repeatable); ENDPOINT defaults to 0\n"
    "  --config=FILE        more peers, one 'NAME ADDRESS[:ENDPOINT]' a line ('#' comments)\n"
    "  --endpoint=N         this process's endpoint number (default: 0 for serve, else an\n"
    "                       ephemeral one); one process per number on an address\n"
    "  --address=A.B.C.D    this endpoint's address (default: the source address of the route\n"
    "                       to the first peer of the table; 127.0.0.1 with no peer table)\n"
    "  --timeout=MS         deadline of each call (default 5000)\n"
    "  --priority=P         of calls and pulses, 0 (lowest, the default)..255: servers take\n"
    "                       higher ones first, as a kernel channel does a thread's\n"
    "  --spin-us=US         busy-poll the socket up to US microseconds before sleeping (default\n"
    "                       0: off; lower latency between cores, at the price of CPU time)\n"
    "  --key-file=FILE      the cluster key (64 hex digits; SPEC.md 3.4): every packet carries a\n"
    "                       MAC, and only peers with the same key are believed\n"
    "  --json               machine-readable output\n"
    "exit status: 0 ok, 2 bad usage, 3 no CAP_NET_RAW, 4 unknown node, 5 unknown service,\n"
    "  6 message too large, 7 timeout, 8 host down, 9 peer rebooted, 10 server gone,\n"
    "  1 anything else\n";

constexpr int kExitUsage = 2;
constexpr int64_t kDefaultTimeoutMs = 5000;
constexpr int kPingCountMax = 100000;
constexpr int64_t kPingIntervalNs = 200'000'000;
constexpr int64_t kStatsPeriodNs = 100'000'000;
constexpr int64_t kServeThreadsMax = 64;  // serve --threads
constexpr int64_t kReadGraceNs = 1'000'000'000;  // past the client's deadline: its cancel is on the way

struct Options {
  sl::Config config;
  bool endpoint_given = false;
  int64_t timeout_ms = kDefaultTimeoutMs;
  int64_t priority = 0;  // of calls and pulses
  bool json = false;
  std::vector<std::string> args;  // the command and its arguments
};

int exit_code(sl::Status s) {
  switch (s) {
    case sl::Status::kOk: return 0;
    case sl::Status::kBadArgument: return kExitUsage;
    case sl::Status::kNoPrivilege: return 3;
    case sl::Status::kUnknownNode: return 4;
    case sl::Status::kUnknownService: return 5;
    case sl::Status::kTooLarge: return 6;
    case sl::Status::kTimeout: return 7;
    case sl::Status::kHostDown: return 8;
    case sl::Status::kPeerRebooted: return 9;
    case sl::Status::kServerGone: return 10;
    default: return 1;
  }
}

// Every failure is one line on stderr and a status that says which kind.
[[noreturn]] void fail(sl::Status s, const std::string& line) {
  std::fprintf(stderr, "smpctl: %s\n", line.c_str());
  std::exit(exit_code(s));
}

[[noreturn]] void usage_error(const std::string& line) { fail(sl::Status::kBadArgument, line + " (see smpctl --help)"); }

std::string json_escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

bool parse_int(const std::string& s, int64_t lo, int64_t hi, int64_t* out) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) return false;
  *out = v;
  return true;
}

constexpr const char* kPeerSyntax =
    "expected 'NAME A.B.C.D[:ENDPOINT]' (NAME 1 to 32 bytes, no '/'; ENDPOINT 0..65535)";

// One entry per name: a second would never be reached by name.
void add_peer(sl::Config* config, const sl::Peer& p, const std::string& where) {
  for (const sl::Peer& q : config->peers) {
    if (q.name == p.name) usage_error(where + ": peer name '" + p.name + "' given twice");
  }
  config->peers.push_back(p);
}

void load_config_file(const std::string& path, sl::Config* config) {
  std::ifstream in(path);
  if (!in) fail(sl::Status::kBadArgument, "cannot read config file " + path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    sl::Peer p;
    const std::string where = path + ":" + std::to_string(n);
    if (!sl::parse_peer(line, &p)) usage_error(where + ": " + kPeerSyntax);
    add_peer(config, p, where);
  }
}

Options parse_options(int argc, char** argv) {
  Options o;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  o.config.node_name = host;
  // Options go before or after the command (`smpctl call --priority=9 n/s x` as well as
  // `smpctl --priority=9 call n/s x`); after the command, an option this loop does not know is
  // the command's own (--out=, --exec, ...) and so is the word after --exec, --count, --threads,
  // -c and -s; `--` ends the options (for DATA that starts with --).
  static const char* const kGlobal[] = {"--help", "--json", "--name", "--peer", "--endpoint",
                                        "--config", "--spin-us", "--priority", "--timeout",
                                        "--address", "--key-file"};
  static const char* const kTakesValue[] = {"--exec", "--count", "--threads", "-c", "-s"};
  auto is_one_of = [](const std::string& k, const auto& list) {
    for (const char* x : list)
      if (k == x) return true;
    return false;
  };
  bool options_end = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const size_t eq = a.find('=');
    const std::string key = a.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : a.substr(eq + 1);
    const bool command_seen = !o.args.empty();
    if (a == "--" && !options_end) {
      options_end = true;
      continue;
    }
    if (options_end || a.rfind("--", 0) != 0 || (command_seen && !is_one_of(key, kGlobal))) {
      o.args.push_back(a);
      if (command_seen && is_one_of(a, kTakesValue) && i + 1 < argc) o.args.emplace_back(argv[++i]);
      continue;
    }
    if (a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--json") {
      o.json = true;
    } else if (key == "--name") {
      if (value.empty()) usage_error("bad --name '': give this node a name");
      o.config.node_name = value;
    } else if (key == "--address") {
      in_addr ia{};
      if (inet_pton(AF_INET, value.c_str(), &ia) != 1) usage_error("bad --address '" + value + "': expected A.B.C.D");
      o.config.local_address_be = ia.s_addr;
    } else if (key == "--peer") {
      sl::Peer p;
      if (!sl::parse_peer(value, &p)) usage_error("bad --peer '" + value + "': " + kPeerSyntax);
      add_peer(&o.config, p, "--peer=" + value);
    } else if (key == "--endpoint") {
      int64_t ep = 0;
      if (!parse_int(value, 0, 0xFFFF, &ep)) usage_error("bad --endpoint '" + value + "': 0..65535");
      o.config.endpoint = static_cast<int>(ep);
      o.endpoint_given = true;
    } else if (key == "--config" && !value.empty()) {
      load_config_file(value, &o.config);
    } else if (key == "--key-file") {
      std::FILE* f = value.empty() ? nullptr : std::fopen(value.c_str(), "r");
      if (!f) usage_error("cannot read --key-file '" + value + "': " + std::strerror(errno));
      char line[256] = {};
      const size_t got = std::fread(line, 1, sizeof line - 1, f);
      std::fclose(f);
      if (!sl::parse_auth_key(std::string_view(line, got), &o.config.auth_key))
        usage_error("bad --key-file '" + value + "': expected 64 hex digits (a 32-byte key)");
      struct stat kst {};
      if (stat(value.c_str(), &kst) == 0 && (kst.st_mode & 077))
        std::fprintf(stderr, "smpctl: warning: the key file %s can be read by others (chmod 600 it)\n", value.c_str());
    } else if (key == "--spin-us") {
      int64_t us = 0;
      if (!parse_int(value, 0, 1'000'000, &us)) usage_error("bad --spin-us '" + value + "': 0..1000000");
      o.config.spin_ns = us * 1000;
    } else if (key == "--priority") {
      if (!parse_int(value, 0, 255, &o.priority)) usage_error("bad --priority '" + value + "': 0..255");
    } else if (key == "--timeout") {
      if (!parse_int(value, 1, 3'600'000, &o.timeout_ms)) usage_error("bad --timeout '" + value + "': 1..3600000 ms");
    } else {
      usage_error("unknown option " + a);
    }
  }
  if (o.args.empty()) usage_error("no command");
  return o;
}

std::unique_ptr<sl::Endpoint> open_endpoint(const Options& o) {
  std::unique_ptr<sl::Endpoint> ep;
  std::string detail;
  const sl::Status s = sl::Endpoint::open(o.config, &ep, &detail);
  if (s == sl::Status::kNoPrivilege) {
    fail(s, "needs CAP_NET_RAW (run as root or setcap cap_net_raw+ep)");
  }
  if (s == sl::Status::kBusy) fail(s, detail + " (give --endpoint=N)");
  if (s != sl::Status::kOk) fail(s, "cannot open the protocol-121 socket: " + detail);
  return ep;
}

sl::TimeNs deadline_of(const Options& o) { return sl::monotonic_ns() + o.timeout_ms * 1'000'000; }

[[noreturn]] void fail_call(sl::Status s, const std::string& what, const sl::Endpoint& ep) {
  std::string line = what + ": " + sl::status_text(s);
  if ((s == sl::Status::kSystem || s == sl::Status::kRemoteError) && !ep.detail().empty()) line += " (" + ep.detail() + ")";
  fail(s, line);
}

std::string node_of(const std::string& target) { return target.substr(0, target.find('/')); }

int cmd_ping(const Options& o) {
  std::string node;
  int64_t count = 4, probe_bytes = 576;
  for (size_t i = 1; i < o.args.size(); ++i) {
    if (o.args[i] == "-c" && i + 1 < o.args.size()) {
      if (!parse_int(o.args[++i], 1, kPingCountMax, &count)) usage_error("bad count '" + o.args[i] + "'");
    } else if (o.args[i] == "-s" && i + 1 < o.args.size()) {
      if (!parse_int(o.args[++i], 576, 65535, &probe_bytes)) usage_error("bad probe size '" + o.args[i] + "': 576..65535");
    } else if (node.empty()) {
      node = o.args[i];
    } else {
      usage_error("ping takes one NODE");
    }
  }
  if (node.empty()) usage_error("ping needs a NODE");
  auto ep = open_endpoint(o);
  uint32_t addr = 0;
  if (!ep->resolve(node, &addr)) fail(sl::Status::kUnknownNode, "unknown node '" + node + "' (not in the peer table)");
  std::vector<int64_t> rtts;
  sl::Status last = sl::Status::kOk;
  for (int64_t k = 0; k < count; ++k) {
    if (k > 0) {
      ep->poll(sl::monotonic_ns() + kPingIntervalNs);  // the endpoint keeps running meanwhile
    }
    sl::PingResult r;
    // Each probe waits at most a second (or --timeout): a lost one is reported, not retried.
    last = ep->ping(node, size_t(probe_bytes), &r, sl::monotonic_ns() + std::min<int64_t>(o.timeout_ms, 1000) * 1'000'000);
    if (last == sl::Status::kOk) {
      rtts.push_back(r.rtt_ns);
      if (!o.json) std::printf("probe %" PRId64 " to %s: rtt %.1f us\n", k + 1, node.c_str(), r.rtt_ns / 1e3);
    } else if (!o.json) {
      std::printf("probe %" PRId64 " to %s: %s\n", k + 1, node.c_str(), sl::status_text(last));
    }
    if (last != sl::Status::kOk && last != sl::Status::kTimeout) break;
    std::fflush(stdout);
  }
  if (o.json) {
    std::printf("{\"node\":\"%s\",\"sent\":%" PRId64 ",\"received\":%zu,\"rtt_us\":[", json_escape(node).c_str(), count, rtts.size());
    for (size_t i = 0; i < rtts.size(); ++i) std::printf("%s%.1f", i ? "," : "", rtts[i] / 1e3);
    std::printf("]}\n");
  } else if (!rtts.empty()) {
    int64_t lo = rtts[0], hi = rtts[0], sum = 0;
    for (int64_t v : rtts) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      sum += v;
    }
    std::printf("%zu of %" PRId64 " probes answered; rtt min/avg/max = %.1f/%.1f/%.1f us\n", rtts.size(), count,
                lo / 1e3, sum / 1e3 / static_cast<double>(rtts.size()), hi / 1e3);
  }
  if (rtts.empty()) fail_call(last == sl::Status::kTimeout ? sl::Status::kHostDown : last, "ping " + node + ": no probe answered", *ep);
  return 0;
}

int cmd_names(const Options& o) {
  if (o.args.size() > 2) usage_error("names takes at most one NODE");
  auto ep = open_endpoint(o);
  std::vector<std::string> nodes;
  if (o.args.size() == 2) {
    uint32_t addr = 0;
    if (!ep->resolve(o.args[1], &addr)) fail(sl::Status::kUnknownNode, "unknown node '" + o.args[1] + "' (not in the peer table)");
    nodes.push_back(o.args[1]);
  } else {
    for (const auto& p : o.config.peers) nodes.push_back(p.name);
    if (nodes.empty()) usage_error("names: the peer table is empty (give --peer or --config)");
  }
  std::string json = "{\"nodes\":[";
  std::string services_json;
  sl::Status last = sl::Status::kOk;
  size_t answered = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    std::vector<std::string> names;
    // Asking every node: one that does not answer must not hold up the others for long.
    const sl::TimeNs deadline = nodes.size() == 1 ? deadline_of(o) : sl::monotonic_ns() + std::min<int64_t>(o.timeout_ms, 1000) * 1'000'000;
    const sl::Status s = ep->names(nodes[i], &names, deadline);
    json += std::string(i ? "," : "") + "{\"node\":\"" + json_escape(nodes[i]) + "\",\"status\":\"" + sl::status_text(s) + "\"}";
    if (s != sl::Status::kOk) {
      last = s;
      // As `ls` with a missing file: the others' lists on stdout, this one's failure on stderr,
      // and the exit status says that not every node answered.
      if (!o.json && nodes.size() > 1) std::fprintf(stderr, "smpctl: names %s: %s\n", nodes[i].c_str(), sl::status_text(s));
      continue;
    }
    ++answered;
    for (const auto& n : names) {
      if (!o.json) std::printf("%s/%s\n", nodes[i].c_str(), n.c_str());
      services_json += std::string(services_json.empty() ? "" : ",") + "{\"node\":\"" + json_escape(nodes[i]) + "\",\"name\":\"" + json_escape(n) + "\"}";
    }
    if (names.empty() && !o.json) std::printf("(no services on %s)\n", nodes[i].c_str());
  }
  if (o.json) std::printf("%s],\"services\":[%s]}\n", json.c_str(), services_json.c_str());
  if (answered == 0) fail_call(last, "names " + (nodes.size() == 1 ? nodes[0] : std::string("(every node)")), *ep);
  return exit_code(last);
}

std::vector<uint8_t> read_input(const std::string& arg) {
  if (arg.empty() || arg[0] != '@') return {arg.begin(), arg.end()};
  const std::string path = arg.substr(1);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(sl::Status::kBadArgument, "cannot read " + path + ": " + std::strerror(errno));
  struct stat st {};
  fstat(fd, &st);
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > sl::kMessageBytesMax) {
    close(fd);
    fail(sl::Status::kTooLarge, "message too large: " + path + " has " + std::to_string(st.st_size) +
                                    " bytes, the limit is " + std::to_string(sl::kMessageBytesMax));
  }
  std::vector<uint8_t> data;
  uint8_t buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.insert(data.end(), buf, buf + n);
    if (data.size() > sl::kMessageBytesMax) {
      close(fd);
      fail(sl::Status::kTooLarge, "message too large: " + path + " is over the limit of " + std::to_string(sl::kMessageBytesMax) + " bytes");
    }
  }
  close(fd);
  return data;
}

bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// [NODE/]SERVICE: a service on that node, or (bare) on whichever node of the peer table has it.
bool valid_target(const std::string& target) {
  const size_t slash = target.find('/');
  return !target.empty() && slash != 0 && (slash == std::string::npos || slash + 1 < target.size());
}
std::string service_of(const std::string& target) {
  const size_t slash = target.find('/');
  return slash == std::string::npos ? target : target.substr(slash + 1);
}
std::string where_of(const std::string& target) {
  return target.find('/') == std::string::npos ? std::string("any node") : node_of(target);
}
// Exits with the message a person can act on when a call or pulse to target fails with s.
[[noreturn]] void fail_target(sl::Status s, const std::string& what, const std::string& target,
                              const sl::Endpoint& ep) {
  if (s == sl::Status::kUnknownNode) fail(s, "unknown node '" + node_of(target) + "' (not in the peer table)");
  if (s == sl::Status::kUnknownService) fail(s, "unknown service '" + service_of(target) + "' on " + where_of(target));
  if (s == sl::Status::kBadArgument)
    usage_error("bad target '" + target + "': [NODE/]SERVICE, SERVICE 1 to 32 bytes");
  fail_call(s, what + " " + target, ep);
}

// A connection to target carrying --priority, or the process exits with fail_target's line.
sl::Connection connect_or_fail(sl::Endpoint& ep, const Options& o, const std::string& target, sl::TimeNs deadline) {
  sl::Connection c;
  const sl::Status s = ep.connect(target, &c, deadline);
  if (s != sl::Status::kOk) fail_target(s, "connect", target, ep);
  c.priority = uint8_t(o.priority);
  return c;
}

int cmd_call(const Options& o) {
  std::string target, data_arg, out_path;
  bool have_data = false;
  for (size_t i = 1; i < o.args.size(); ++i) {
    const std::string& a = o.args[i];
    if (a.rfind("--out=", 0) == 0) {
      out_path = a.substr(6);
    } else if (target.empty()) {
      target = a;
    } else if (!have_data) {
      data_arg = a;
      have_data = true;
    } else {
      usage_error("call takes NODE/SERVICE and one DATA or @FILE");
    }
  }
  if (!valid_target(target) || !have_data) usage_error("call needs [NODE/]SERVICE and DATA or @FILE");
  const std::vector<uint8_t> request = read_input(data_arg);
  auto ep = open_endpoint(o);
  const sl::TimeNs deadline = deadline_of(o);
  const sl::Connection c = connect_or_fail(*ep, o, target, deadline);
  std::vector<uint8_t> reply;
  const sl::TimeNs t0 = sl::monotonic_ns();
  const sl::Status s = ep->send(c, request, &reply, deadline);
  const sl::TimeNs rtt = sl::monotonic_ns() - t0;
  if (s != sl::Status::kOk) fail_target(s, "call", target, *ep);
  if (!out_path.empty()) {
    const int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !write_all(fd, reply.data(), reply.size())) fail(sl::Status::kSystem, "cannot write " + out_path + ": " + std::strerror(errno));
    close(fd);
  }
  if (o.json) {
    std::printf("{\"target\":\"%s\",\"request_size\":%zu,\"reply_size\":%zu,\"rtt_us\":%.1f", json_escape(target).c_str(),
                request.size(), reply.size(), rtt / 1e3);
    if (out_path.empty()) std::printf(",\"reply\":\"%s\"", json_escape(std::string(reply.begin(), reply.end())).c_str());
    std::printf("}\n");
  } else if (out_path.empty()) {
    write_all(1, reply.data(), reply.size());
  }
  return 0;
}

int cmd_pulse(const Options& o) {
  if (o.args.size() != 4 || !valid_target(o.args[1])) usage_error("pulse takes [NODE/]SERVICE CODE VALUE");
  const std::string& target = o.args[1];
  int64_t code = 0, value = 0;
  if (!parse_int(o.args[2], 0, 127, &code)) usage_error("bad pulse code '" + o.args[2] + "': 0..127");
  if (!parse_int(o.args[3], 0, UINT32_MAX, &value)) usage_error("bad pulse value '" + o.args[3] + "': 0..4294967295");
  auto ep = open_endpoint(o);
  const sl::TimeNs deadline = deadline_of(o);
  const sl::Connection c = connect_or_fail(*ep, o, target, deadline);
  const sl::Status s = ep->pulse(c, int8_t(code), uint32_t(value), deadline);
  if (s != sl::Status::kOk) fail_target(s, "pulse", target, *ep);
  if (o.json) {
    std::printf("{\"target\":\"%s\",\"pulse_code\":%lld,\"pulse_value\":%lld,\"status\":\"ok\"}\n",
                json_escape(target).c_str(), static_cast<long long>(code), static_cast<long long>(value));
  }
  return 0;
}

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int cmd_serve(const Options& o) {
  std::string service, command;
  int64_t count = 0;  // 0: until a signal
  int64_t threads = 1;
  for (size_t i = 1; i < o.args.size(); ++i) {
    const std::string& a = o.args[i];
    if (a == "--exec" && i + 1 < o.args.size()) {
      command = o.args[++i];
    } else if (a == "--count" && i + 1 < o.args.size()) {
      if (!parse_int(o.args[++i], 1, INT64_MAX, &count)) usage_error("bad --count '" + o.args[i] + "'");
    } else if (a == "--threads" && i + 1 < o.args.size()) {
      if (!parse_int(o.args[++i], 1, kServeThreadsMax, &threads)) {
        usage_error("bad --threads '" + o.args[i] + "': 1.." + std::to_string(kServeThreadsMax));
      }
    } else if (service.empty() && a[0] != '-') {
      service = a;
    } else {
      usage_error("serve takes SERVICE [--exec CMD] [--count N] [--threads N]");
    }
  }
  if (service.empty()) usage_error("serve needs a SERVICE name");
  if (count > 0 && threads > 1) usage_error("--count and --threads do not go together");
  Options so = o;
  if (!so.endpoint_given) so.config.endpoint = 0;  // a node's main endpoint, as a kernel node's
  // The loop below never leaves the endpoint alone for long: receive waits at most 200 ms, and a
  // --exec command's wait steps it (run_command). So no keeper thread.
  so.config.keeper = false;
  auto ep = open_endpoint(so);  // fails if another process holds the number on this address
  sl::Status s = ep->attach(service);
  if (s == sl::Status::kBadArgument) usage_error("bad service name '" + service + "': 1 to 32 bytes, not starting with '_'");
  if (s != sl::Status::kOk) fail_call(s, "serve " + service, *ep);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sl::StatsFile stats_file(o.config.node_name, service);
  stats_file.write(*ep, 0);
  if (!o.json) {
    char addr[INET_ADDRSTRLEN] = {};
    const uint32_t a = ep->local_address_be();
    inet_ntop(AF_INET, &a, addr, sizeof addr);
    std::fprintf(stderr, "smpctl: serving %s/%s at %s endpoint %u (%s)\n", o.config.node_name.c_str(), service.c_str(), addr,
                 unsigned(ep->local_endpoint()), command.empty() ? "echo" : command.c_str());
    if (a == htonl(INADDR_LOOPBACK) && o.config.local_address_be == 0)
      std::fprintf(stderr, "smpctl: note: reachable on this host only (no peer table to pick an address by: "
                           "give --config, --peer or --address=A.B.C.D)\n");
  }
  // --threads N: N of these loops share the endpoint, so that a slow --exec command holds up
  // only its own request.
  std::atomic<int64_t> served{0};
  std::mutex stats_m;  // stats_file, stats_due
  sl::TimeNs stats_due = 0;
  auto write_stats = [&](bool quiet) {
    std::lock_guard<std::mutex> g(stats_m);
    if (quiet) {  // nothing came for a while: bring the record up to date once
      if (stats_due != 0) stats_file.write(*ep, served);
      stats_due = 0;
    } else if (sl::monotonic_ns() >= stats_due) {
      // At most every kStatsPeriodNs: a file write per request would cost more than the request.
      stats_file.write(*ep, served);
      stats_due = sl::monotonic_ns() + kStatsPeriodNs;
    }
  };
  auto serve_loop = [&] {
    sl::Status s = sl::Status::kOk;
    while (!g_stop && (count == 0 || served < count)) {
      sl::Request req;
      // A short deadline keeps the loop responsive to SIGTERM without busy-waiting.
      // Wait briefly for the next request (so SIGTERM is seen), taking none of its bytes yet...
      s = ep->receive(&req, sl::monotonic_ns() + 200'000'000, 0);
      if (s == sl::Status::kOk && req.is_pulse) {
        char from[INET_ADDRSTRLEN] = {};
        in_addr ia{};
        ia.s_addr = req.source_be;
        inet_ntop(AF_INET, &ia, from, sizeof from);
        if (o.json) {
          std::printf("{\"pulse_code\":%d,\"pulse_value\":%u,\"priority\":%u,\"from\":\"%s\"}\n",
                      int(req.pulse_code), unsigned(req.pulse_value), unsigned(req.priority), from);
          std::fflush(stdout);
        } else {
          std::fprintf(stderr, "smpctl: pulse on %s from %s: code %d value %u priority %u\n", service.c_str(),
                       from, int(req.pulse_code), unsigned(req.pulse_value), unsigned(req.priority));
        }
        write_stats(false);  // as after a request: else a server sent only pulses never says so
        continue;
      }
      if (s == sl::Status::kOk) {
        // ...then read all of it for as long as the client waits (the engine ends the read with a
        // cancellation when the client gives up or dies); a 16 MiB message takes a while.
        req.data.resize(req.size_bytes);
        const sl::TimeNs read_deadline = req.client_deadline_ns == sl::kNoDeadline
                                             ? sl::kNoDeadline
                                             : req.client_deadline_ns + kReadGraceNs;
        s = ep->read(req, 0, req.data.data(), req.size_bytes, read_deadline);
        if (s == sl::Status::kTimeout) s = sl::Status::kCancelled;  // not "no request": report it
      }
      if (s == sl::Status::kTimeout) {
        write_stats(true);
        continue;
      }
      if (s == sl::Status::kSystem) fail_call(s, "receive on " + service, *ep);
      if (s != sl::Status::kOk) {
        // One request went wrong (its client vanished mid-read, ...): the server goes on.
        std::fprintf(stderr, "smpctl: a request on %s: %s\n", service.c_str(), sl::status_text(s));
        continue;
      }
      const sl::TimeNs reply_deadline = sl::monotonic_ns() + o.timeout_ms * 1'000'000;
      bool stopped = false;  // the command, killed: its client gave up
      if (command.empty()) {
        s = ep->reply(req, std::move(req.data), reply_deadline);
      } else {
        // The endpoint keeps answering probes and other packets while the command runs.
        sl::ExecResult r = sl::run_command(command, req.data.data(), req.data.size(), sl::kMessageBytesMax,
                                           ep->wake_fd(), [&] { ep->step(); },
                                           [&] { return g_stop || ep->given_up(req); });
        if (r.abandoned && g_stop && !ep->given_up(req)) {
          // Stopping (SIGTERM, SIGINT): the command is stopped, and its client is told "server
          // gone" when the endpoint closes, rather than waiting for the command to end.
          std::fprintf(stderr, "smpctl: stopping: the command for a request of %zu bytes was stopped\n",
                       req.size_bytes);
          break;
        }
        if (r.abandoned) {
          stopped = true;
          s = sl::Status::kCancelled;  // said below
        } else if (r.ok) {
          s = ep->reply(req, std::move(r.output), reply_deadline);
        } else {
          std::fprintf(stderr, "smpctl: %s: %s\n", command.c_str(), r.error.c_str());
          s = ep->error(req, sl::Status::kRemoteError, reply_deadline);
        }
      }
      ++served;
      if (s != sl::Status::kOk && s != sl::Status::kCancelled)
        std::fprintf(stderr, "smpctl: reply to a request of %zu bytes: %s\n", req.size_bytes, sl::status_text(s));
      else if (s == sl::Status::kCancelled)
        std::fprintf(stderr, "smpctl: a request of %zu bytes: its client gave up before the reply%s\n",
                     req.size_bytes, stopped ? " (its command was stopped)" : "");
      if (o.json) std::printf("{\"request_size\":%zu,\"priority\":%u,\"status\":\"%s\"}\n", req.size_bytes,
                              unsigned(req.priority), sl::status_text(s));
      std::fflush(stdout);
      write_stats(false);
    }
  };
  std::vector<std::thread> more;
  for (int64_t i = 1; i < threads; ++i) more.emplace_back(serve_loop);
  serve_loop();
  for (auto& t : more) t.join();
  // The last replies are still borrowed by the engine until their clients acknowledge them.
  ep->flush(sl::monotonic_ns() + 2'000'000'000);
  stats_file.remove();
  return 0;
}

int cmd_stats(const Options& o) {
  if (o.args.size() != 1) usage_error("stats takes no arguments");
  const std::vector<sl::StatsRecord> records = sl::StatsFile::read_all();
  if (o.json) {
    std::printf("{\"endpoints\":[");
    for (size_t i = 0; i < records.size(); ++i) std::printf("%s%s", i ? "," : "", records[i].json.c_str());
    std::printf("]}\n");
  } else if (records.empty()) {
    std::printf("no smpctl server is running in this network namespace\n");
  } else {
    for (const auto& r : records) std::printf("%s\n", r.text.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A --exec command that stops reading its stdin must not kill the server.
  signal(SIGPIPE, SIG_IGN);
  const Options o = parse_options(argc, argv);
  const std::string& cmd = o.args[0];
  if (cmd == "ping") return cmd_ping(o);
  if (cmd == "names") return cmd_names(o);
  if (cmd == "call") return cmd_call(o);
  if (cmd == "serve") return cmd_serve(o);
  if (cmd == "pulse") return cmd_pulse(o);
  if (cmd == "stats") return cmd_stats(o);
  usage_error("unknown command '" + cmd + "'");
}
