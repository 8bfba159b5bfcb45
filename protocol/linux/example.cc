// The smallest complete libsmp program, a server and a client in one process on loopback: the
// server serves "upper" (its reply: the request in capitals) and prints the pulses it gets; the
// client calls it, then sends a pulse. Built as `libsmp_example`; ctest runs it (linux.example).
// Needs CAP_NET_RAW (raw sockets): run it as root. Exit status 0 when every step went as shown.
#include <arpa/inet.h>

#include <cctype>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "protocol/linux/libsmp.h"

namespace sl = smp::linux_peer;

namespace {

constexpr int64_t kSecondNs = 1'000'000'000;

sl::TimeNs in_seconds(int64_t s) { return sl::monotonic_ns() + s * kSecondNs; }

// What the server got, for main() to check.
struct Served {
  int requests = 0;
  int pulse_code = -1;
  uint32_t pulse_value = 0;
  int pulse_priority = -1;
};

// The server: requests and pulses come from receive(), the highest priority first. It stops
// after one of each.
void serve(sl::Endpoint& server, Served* out) {
  while (out->requests == 0 || out->pulse_code < 0) {
    sl::Request r;
    const sl::Status s = server.receive(&r, in_seconds(5));
    if (s != sl::Status::kOk) {
      std::fprintf(stderr, "server: receive: %s\n", sl::status_text(s));
      return;
    }
    if (r.is_pulse) {  // nothing to answer
      std::printf("server: pulse code %d value %u priority %u\n", int(r.pulse_code),
                  unsigned(r.pulse_value), unsigned(r.priority));
      out->pulse_code = r.pulse_code;
      out->pulse_value = r.pulse_value;
      out->pulse_priority = r.priority;
      continue;
    }
    std::vector<uint8_t> reply(r.data);  // receive() read it all (read_max defaults to all)
    for (uint8_t& b : reply) b = uint8_t(std::toupper(b));
    server.reply(r, std::move(reply), in_seconds(1));
    ++out->requests;
  }
}

}  // namespace

int main() {
  // One endpoint per process on an address normally; two here, each with its own number.
  sl::Config config;
  config.node_name = "example";
  std::unique_ptr<sl::Endpoint> server, client;
  std::string detail;
  sl::Status s = sl::Endpoint::open(config, &server, &detail);  // an ephemeral number
  if (s != sl::Status::kOk) {
    std::fprintf(stderr, "open: %s %s\n", sl::status_text(s), detail.c_str());
    return s == sl::Status::kNoPrivilege ? 77 : 1;  // 77: ctest's "skipped"
  }
  if (server->attach("upper") != sl::Status::kOk) return 1;
  // The client's peer table names the server: node "srv" is that address and endpoint number.
  config.peers.push_back(sl::Peer{"srv", htonl(INADDR_LOOPBACK), server->local_endpoint()});
  if (sl::Endpoint::open(config, &client, &detail) != sl::Status::kOk) return 1;

  Served served;
  std::thread server_thread([&] { serve(*server, &served); });
  sl::Connection c;
  s = client->connect("srv/upper", &c, in_seconds(5));  // asks srv for the service (NAME_QUERY)
  std::vector<uint8_t> reply;
  if (s == sl::Status::kOk) {
    const std::string text = "hello";
    s = client->send(c, std::vector<uint8_t>(text.begin(), text.end()), &reply, in_seconds(5));
  }
  std::printf("client: call %s -> '%s'\n", sl::status_text(s), std::string(reply.begin(), reply.end()).c_str());
  const bool call_ok = s == sl::Status::kOk && std::string(reply.begin(), reply.end()) == "HELLO";
  // A pulse returns once the server's endpoint acknowledged it; the server takes it when it
  // next receives.
  c.priority = 10;
  s = client->pulse(c, 7, 42, in_seconds(5));
  std::printf("client: pulse %s\n", sl::status_text(s));
  server_thread.join();
  const bool pulse_ok = s == sl::Status::kOk && served.pulse_code == 7 && served.pulse_value == 42 &&
                        served.pulse_priority == 10;
  client->disconnect(c);  // done with the connection: its hold on the peer goes back
  client->close();        // lets the last acknowledgements leave
  server->close();
  return call_ok && pulse_ok ? 0 : 1;
}
