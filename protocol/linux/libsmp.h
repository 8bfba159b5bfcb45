// libsmp: the protocol engine (protocol/engine.h) driven from Linux by a raw IPv4 socket (protocol 121),
// a timerfd and epoll, behind a small blocking API:
//
//   Endpoint::open(config)            one engine, one socket, one random incarnation: an endpoint
//   connect("node/service")           a Connection; node names come from the static peer table
//   send(connection, request, reply)  blocks until the reply, an error, or the deadline
//   attach("service") + receive/read/reply   serve a channel
//
// Single-threaded: each blocking call runs the event loop until its own completion, and keeps
// whatever else happens meanwhile (requests for a served channel) in bounded queues. Between
// calls nothing runs: an application that stays away longer than the liveness bound (1 s by
// default) while it serves or waits for peers must call poll(), or watch wake_fd() and step().
#pragma once

#include <cstddef>
#include <cstdint>
#include <climits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace smp::linux_peer {

using TimeNs = int64_t;  // CLOCK_MONOTONIC, nanoseconds
TimeNs monotonic_ns();
inline constexpr TimeNs kNoDeadline = INT64_MAX;
inline constexpr size_t kMessageBytesMax = 16u << 20;  // = wire::kMessageBytesMax (static_assert)

enum class Status : uint8_t {
  kOk,
  kNoPrivilege,     // no CAP_NET_RAW
  kSystem,          // a system call failed; Endpoint::detail() says which
  kBadArgument,
  kUnknownNode,     // not in the peer table
  kUnknownService,  // the node answered: no such service
  kTooLarge,        // larger than kMessageBytesMax (or than the receiver accepts)
  kTimeout,         // the deadline passed
  kHostDown,        // the node stopped answering (liveness probes)
  kPeerRebooted,    // the node answers with a new incarnation
  kRemoteError,     // the server answered with an error code
  kNoResources,     // a named limit of this endpoint is reached
  kBusy,            // the service name is already attached on this node, or (open) the
                    // endpoint number is another process's on this address
  kCancelled,       // server side: the client gave up (cancelled, timed out, died)
  kServerGone,      // the server's endpoint closed (or its kernel channel went) before answering
};
const char* status_text(Status s);

// A node of the static peer table: a name for (address, endpoint number). Several endpoints may
// share an address (several processes on one host); a kernel node is endpoint 0.
struct Peer {
  std::string name;
  uint32_t address_be = 0;  // IPv4, network byte order
  uint16_t endpoint = 0;
};

struct Config {
  std::string node_name;         // this endpoint's node name, for people (stats, logs)
  std::vector<Peer> peers;       // the static peer table
  int endpoint = -1;             // this endpoint's number; -1: an ephemeral one (0x8000..0xFFFF).
                                 // One process per (address, number): open() reserves it
  uint32_t local_address_be = 0; // 0: the address the route to the first peer uses
  // Credit and eager sizes (SPEC.md section 6); 0 takes libsmp's Linux defaults (libsmp.cc).
  uint32_t pool_bytes = 0;
  uint32_t window_bytes = 0;
  uint32_t eager_bytes_max = 0;
  // Busy-poll: before it sleeps, a blocking call polls the socket (non-blocking receive, then
  // sched_yield) for up to spin_ns after its last progress. On two idle cores this skips the
  // idle-state exit and the wake-up IPI of a sleeping receiver (64 B echo: 49 -> ~11 us here);
  // the yield keeps it harmless when the peer shares our core. It burns a CPU for up to
  // spin_ns per wait, so it is off by default (0); README.md gives the measurements.
  int64_t spin_ns = 0;
  // A serving endpoint (one that attached a service) starts a keeper thread that steps the
  // engine while the application is away from libsmp, so that its clients do not declare it
  // down while it computes (see Endpoint). false: no thread; the application then calls into
  // the endpoint (poll, receive, step, ...) at least every 0.5 s (the liveness bound is 1 s).
  bool keeper = true;
  // The cluster key (SPEC.md 3.4), 32 bytes; empty: none. With it every packet carries a MAC
  // and only packets with a right one are believed: every node talked to needs the same key.
  std::vector<uint8_t> auth_key;
};

// Parses "NAME=A.B.C.D[:ENDPOINT]" (command line) or "NAME A.B.C.D[:ENDPOINT]" (config file).
bool parse_peer(std::string_view text, Peer* out);
// Parses a cluster key: 64 hex digits, surrounding white space ignored (a key file's line).
bool parse_auth_key(std::string_view text, std::vector<uint8_t>* out);

struct Connection {
  uint32_t peer = 0;       // the engine's PeerRef (bound to the incarnation it knew)
  uint32_t channel = 0;
  // What its sends and pulses carry, as a kernel thread's priority: 0 (lowest) .. 255. The
  // server (a kernel channel, a libsmp receive) takes higher ones first.
  uint8_t priority = 0;
};

struct Request {
  uint64_t receive_id = 0;    // the engine's handle for reply/read; 0 for a pulse
  size_t size_bytes = 0;      // the full message size
  uint32_t source_be = 0;     // the sender's address
  TimeNs client_deadline_ns = kNoDeadline;  // when the client gives up (from the wire's
                                            // time remaining; the engine cancels then)
  std::vector<uint8_t> data;  // what receive() read (all of it unless read_max said less)
  uint8_t priority = 0;       // the sender's (Connection::priority, a kernel thread's)
  // A pulse (Endpoint::pulse, a kernel node's `pulse`): a code and a value, nothing to answer.
  bool is_pulse = false;
  int8_t pulse_code = 0;
  uint32_t pulse_value = 0;
};

struct PingResult {
  int64_t rtt_ns = 0;
};

class Driver;  // the engine, its socket and its loop, in libsmp.cc

// Threads may share an endpoint: their calls run at once (sends in flight together, several
// threads in receive() each taking the next request; one waiting caller sleeps on the socket
// for all). One ping at a time: a second waits for the first. detail() is the last failure's.
// Between calls a serving endpoint's keeper thread (Config::keeper) steps the engine every
// 100 ms once no call has begun for that long, so a server that computes for seconds between
// receive and reply still answers its clients' liveness probes and is not declared down.
class Endpoint {
 public:
  ~Endpoint();  // close()s if not done yet
  // Lets the last acknowledgements leave (a few ACK delays, some milliseconds); the endpoint is
  // not to be used after it.
  void close();
  // One line in `detail` on failure (for kSystem: the call and errno).
  static Status open(const Config& config, std::unique_ptr<Endpoint>* out, std::string* detail);

  // "node/service" asks that node; a bare "service" asks every node of the peer table.
  Status connect(std::string_view target, Connection* out, TimeNs deadline);
  // The connection is done with: its hold on the peer goes back (Engine::release_peer), so that
  // once idle the peer may be retired when the table (64 peers) is full, and `c` is cleared. A
  // program that never disconnects keeps each peer it connected to for its linger time (10 s).
  // Once for every connect; a copy of `c` must not be used after.
  void disconnect(Connection& c);
  Status send(const Connection& c, std::span<const uint8_t> request, std::vector<uint8_t>* reply,
              TimeNs deadline);
  // Without copies: the reply lands in `reply` (capacity bytes), its size in *reply_size.
  Status send(const Connection& c, std::span<const uint8_t> request, uint8_t* reply,
              size_t reply_capacity, size_t* reply_size, TimeNs deadline);
  // One PROBE padded to probe_bytes (an IP packet size, 576..65535), answered by PROBE_ACK.
  Status ping(std::string_view node, size_t probe_bytes, PingResult* out, TimeNs deadline);
  // A pulse to the connection's service (SPEC.md 5.7): a code and a value, no reply. Returns
  // kOk once the server's endpoint acknowledged it (it is queued there for receive()), kHostDown
  // or kPeerRebooted if the peer went away first, kTimeout at the deadline (the engine goes on
  // trying while the endpoint runs).
  Status pulse(const Connection& c, int8_t code, uint32_t value, TimeNs deadline);
  Status names(std::string_view node, std::vector<std::string>* out, TimeNs deadline);

  Status attach(std::string_view service);
  // The next request or pulse, the highest priority first and in arrival order within one (a
  // pulse: out->is_pulse, nothing to answer); a request's first min(size, read_max) bytes are
  // in out->data, the rest is read().
  // kTimeout: nothing received, also when the deadline passed while those bytes were still
  // being pulled from the client (that request stays first in line for the next receive).
  Status receive(Request* out, TimeNs deadline, size_t read_max = kMessageBytesMax);
  // Bytes [offset, offset + bytes) of a received request (pulled from the client as needed).
  // kTimeout when the deadline passes first: nothing more is written into dst, and the request
  // stays readable (read again, or reply/error).
  Status read(Request& request, size_t offset, uint8_t* dst, size_t bytes, TimeNs deadline);
  Status reply(Request& request, std::span<const uint8_t> data, TimeNs deadline);
  // The same without a copy: the bytes are kept until the client has acknowledged them.
  Status reply(Request& request, std::vector<uint8_t>&& data, TimeNs deadline);
  Status error(Request& request, Status why, TimeNs deadline);
  // The client gave up on a received request (cancelled, past its deadline, or gone), as far
  // as the endpoint has heard: there is nothing to answer (reply/error would say kCancelled).
  bool given_up(const Request& request);
  // Runs the loop until every reply given is acknowledged by its client (or the deadline).
  Status flush(TimeNs deadline);
  // Runs the loop until the deadline (answers `names` and keeps peers alive meanwhile).
  Status poll(TimeNs deadline);
  // For a caller with its own poll() loop (smpctl serve --exec while its command runs): step()
  // whenever wake_fd() is readable handles what arrives at once rather than at the keeper's
  // next pass (up to 100 ms later). step() never blocks.
  int wake_fd() const;
  void step();

  // Counters as name/value pairs, for `smpctl stats` and --json.
  std::vector<std::pair<std::string, uint64_t>> stats() const;
  std::string detail() const;  // a copy: another thread's call may set it meanwhile
  bool resolve(std::string_view node, uint32_t* address_be) const;
  uint16_t local_endpoint() const;
  uint32_t local_address_be() const;

 private:
  Endpoint() = default;
  Status probe(const Peer& target, size_t probe_bytes, PingResult* out, TimeNs deadline);
  std::unique_ptr<Driver> impl_;
};

}  // namespace smp::linux_peer
