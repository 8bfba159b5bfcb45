#include "libsmp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <iterator>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "event_loop.h"
#include "protocol/engine.h"
#include "protocol/wire.h"
#include "raw_socket.h"

namespace smp::linux_peer {

static_assert(kMessageBytesMax == wire::kMessageBytesMax, "libsmp's limit is the wire's");
static_assert(kIpProtocolSmp == wire::kIpProtocol);

namespace {

constexpr size_t kEndpointFieldOffsetBytes = 8;  // SPEC.md section 3: destination endpoint
constexpr size_t kReceiveBufferBytes = 65536;    // the largest IPv4 packet
constexpr int kReceiveRoundsMax = 8;             // recvmmsg batches handled before transmitting again
constexpr size_t kBurstHintBytes = 1024;         // a packet this large: more of its message follow
constexpr int64_t kNoBufferRetryNs = 100'000;    // ENOBUFS: the device queue is full, try soon
constexpr size_t kRequestsQueuedMax = 1024;      // arrived requests and pulses not yet received
constexpr uint16_t kPulsesQueuedMax = 512;       // of them pulses (the engine's pulse_events_max)
static_assert(smp::Config{}.requests_max + kPulsesQueuedMax <= kRequestsQueuedMax,
              "the queue holds every request and pulse the engine may hand over");
constexpr size_t kDoneQueuedMax = 4096;          // completions nobody waits for any more
constexpr uint16_t kEphemeralEndpointMin = 0x8000;
constexpr uint32_t kNamesChannel = 0xFFFF0001u;  // libsmp's own listing service
constexpr uint32_t kFirstUserChannel = 1;
constexpr uint32_t kPingSeqBase = 0x80000000u;   // apart from the engine's own probe numbers
constexpr int kLingerAckDelays = 10;             // close(): quiet this long before leaving...
constexpr TimeNs kLingerMaxNs = 500'000'000;      // ... and at most this long in all
constexpr uint32_t kLinuxPoolBytes = 4u << 20;    // eager bytes held for others, all peers
constexpr uint32_t kLinuxWindowBytes = 256u << 10; // ... for one peer
constexpr uint32_t kLinuxEagerBytes = 64u << 10;  // larger messages: the rest is pulled
// The pool's allocation unit. The engine copies eager bytes into and out of the pool block by
// block; at 256 B (its default, for small nodes) a 1500-byte packet is six copies, at 4 KiB one
// (64 KiB echo at MTU 1500, one core, interleaved: 392-421 -> 381-387 us). A small request then
// holds 4 KiB, but requests are bounded (requests_max 256: 1 MiB of the 4 MiB pool at most).
constexpr uint32_t kLinuxPoolBlockBytes = 4096;

// While the application is away from libsmp (say, computing between receive and reply), the
// keeper thread steps the engine this often, so that it still answers its peers' liveness probes
// (they declare a silent endpoint down after dead_after, 1 s) and acknowledges what arrives.
constexpr TimeNs kKeeperPeriodNs = 100'000'000;
// Random ephemeral picks before giving up: even with half of the 32768 numbers taken, all 64
// fail only with probability 2^-64.
constexpr int kEphemeralTriesMax = 64;

// An endpoint number is this process's on one address while it holds an abstract Unix socket
// named after the two. The kernel makes the bind atomic, scopes the name to the network namespace
// (where the address, and so the raw socket's traffic, is), and frees it when the process ends,
// however it ends: two processes never take the same number, and a crash leaves nothing behind.
class EndpointReservation {
 public:
  EndpointReservation() = default;
  EndpointReservation(const EndpointReservation&) = delete;
  EndpointReservation& operator=(const EndpointReservation&) = delete;
  ~EndpointReservation() { release(); }

  // 0, EADDRINUSE (another process holds it) or another errno. address: dotted quad.
  int take(const char* address, uint16_t endpoint) {
    release();
    const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    // sun_path[0] stays 0: the abstract namespace, no file.
    const int n = std::snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "simplemsg/endpoint/%s/%u",
                                address, unsigned(endpoint));
    const socklen_t len = socklen_t(offsetof(sockaddr_un, sun_path) + 1 + size_t(n));
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0) {
      const int err = errno;
      ::close(fd);
      return err;
    }
    fd_ = fd;
    return 0;
  }
  void release() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

Instant to_instant(TimeNs ns) { return ns <= 0 ? 0 : Instant(ns) / 1000; }

uint64_t random64() {
  uint64_t v = 0;
  while (v == 0) {
    if (getrandom(&v, sizeof v, 0) != sizeof v) v = uint64_t(monotonic_ns()) ^ uint64_t(getpid()) << 32;
  }
  return v;
}

// The source address the kernel will use toward `peer_be`, and the route's MTU: a connected UDP
// socket sends nothing but answers both questions.
bool route_to(uint32_t peer_be, uint32_t* local_be, int* mtu) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  to.sin_addr.s_addr = peer_be;
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0;
  if (ok) {
    sockaddr_in me{};
    socklen_t len = sizeof me;
    ok = getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len) == 0;
    *local_be = me.sin_addr.s_addr;
    socklen_t mlen = sizeof *mtu;
    if (getsockopt(fd, IPPROTO_IP, IP_MTU, mtu, &mlen) != 0) *mtu = 1500;
  }
  close(fd);
  return ok;
}

Status from_wire(ErrorCode e) {
  switch (e) {
    case ErrorCode::kOk: return Status::kOk;
    case ErrorCode::kNoSuchChannel:
    case ErrorCode::kNoSuchService: return Status::kUnknownService;
    case ErrorCode::kTooLarge: return Status::kTooLarge;
    case ErrorCode::kTimedOut: return Status::kTimeout;
    case ErrorCode::kHostDown: return Status::kHostDown;
    case ErrorCode::kPeerRebooted: return Status::kPeerRebooted;
    case ErrorCode::kNoResources:
    case ErrorCode::kBusy: return Status::kNoResources;
    case ErrorCode::kInvalid: return Status::kBadArgument;
    case ErrorCode::kServerGone: return Status::kServerGone;
    default: return Status::kRemoteError;
  }
}

}  // namespace

TimeNs monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return TimeNs{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

const char* status_text(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kNoPrivilege: return "needs CAP_NET_RAW (run as root or setcap cap_net_raw+ep)";
    case Status::kSystem: return "system error";
    case Status::kBadArgument: return "bad argument";
    case Status::kUnknownNode: return "unknown node";
    case Status::kUnknownService: return "unknown service";
    case Status::kTooLarge: return "message too large";
    case Status::kTimeout: return "timed out";
    case Status::kHostDown: return "host down";
    case Status::kPeerRebooted: return "peer rebooted";
    case Status::kRemoteError: return "the server answered with an error";
    case Status::kNoResources: return "out of resources (a limit of this endpoint is reached)";
    case Status::kBusy: return "already attached";
    case Status::kCancelled: return "the client gave up (cancelled, timed out or gone)";
    case Status::kServerGone: return "server gone (it stopped before answering)";
  }
  return "?";
}

bool parse_auth_key(std::string_view text, std::vector<uint8_t>* out) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  if (text.size() != 2 * wire::kAuthKeyBytes) return false;
  std::vector<uint8_t> key;
  for (size_t i = 0; i < text.size(); i += 2) {
    unsigned v = 0;
    for (size_t k = 0; k < 2; ++k) {
      const char ch = text[i + k];
      const int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                  : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
      if (d < 0) return false;
      v = v * 16 + unsigned(d);
    }
    key.push_back(uint8_t(v));
  }
  *out = std::move(key);
  return true;
}

bool parse_peer(std::string_view text, Peer* out) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
  size_t sep = text.find_first_of("= \t");
  if (sep == std::string_view::npos || sep == 0 || sep > wire::kNameBytesMax) return false;
  std::string name(text.substr(0, sep));
  if (name.find('/') != std::string::npos) return false;
  std::string_view rest = text.substr(sep + 1);
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  std::string addr(rest);
  uint16_t endpoint = 0;
  const size_t colon = addr.find(':');
  if (colon != std::string::npos) {
    char* end = nullptr;
    const unsigned long ep = std::strtoul(addr.c_str() + colon + 1, &end, 10);
    if (*end != '\0' || colon + 1 == addr.size() || ep > 0xFFFF) return false;
    endpoint = static_cast<uint16_t>(ep);
    addr.resize(colon);
  }
  in_addr a{};
  if (inet_pton(AF_INET, addr.c_str(), &a) != 1) return false;
  out->name = name;
  out->address_be = a.s_addr;
  out->endpoint = endpoint;
  return true;
}

// ---- the engine's driver ---------------------------------------------------------------------

class Driver {
 public:
  smp::Config cfg;
  std::vector<Peer> table;
  std::vector<smp::StaticPeer> static_peers;
  void* arena = nullptr;
  std::unique_ptr<smp::Engine> engine;
  EndpointReservation reservation;  // cfg.local_endpoint on cfg.local_ipv4 is ours
  RawSocket sock;
  EventLoop loop;
  std::vector<uint8_t> tx_buf[kBatchMax];  // packet i of a batch is in tx_buf[i]
  OutPacket tx_slots[kBatchMax];
  size_t tx_count = 0, tx_sent = 0;
  std::vector<uint8_t> rx;  // kBatchMax receive buffers of kReceiveBufferBytes
  uint8_t* rx_ptrs[kBatchMax] = {};
  bool wait_writable = false;
  TimeNs retry_at_ns = 0;  // ENOBUFS back-off
  std::string detail;
  bool closed = false;
  TimeNs spin_ns = 0;  // Config::spin_ns
  bool expect_burst = true;  // receive(): batches (recvmmsg) or one at a time (recv)

  // Completions, by handle, until the call waiting for them takes them.
  std::unordered_map<uint32_t, smp::Event> sends_done, lookups_done, reads_done;
  std::deque<smp::Event> requests;
  std::unordered_set<uint32_t> cancelled;
  // A reply's bytes and its one-part array: the engine borrows both until kReplyDone. The map's
  // elements never move (unordered_map keeps references stable), so the borrow is safe.
  struct OutgoingReply {
    std::vector<uint8_t> data;
    ConstBytes part{nullptr, 0};
  };
  std::unordered_map<uint32_t, OutgoingReply> replies;
  std::unordered_set<uint32_t> unanswered;  // received by the application, not yet answered

  ErrorCode start_reply(uint32_t h, std::vector<uint8_t>&& data) {
    OutgoingReply& r = replies[h];
    r.data = std::move(data);
    r.part = ConstBytes{r.data.data(), r.data.size()};
    const ErrorCode e = engine->reply(now(), RequestHandle{h}, 0, ConstChain{&r.part, 1});
    if (e != ErrorCode::kOk) replies.erase(h);
    unanswered.erase(h);
    return e;
  }
  std::unordered_map<std::string, uint32_t> attached;          // service -> channel
  uint32_t next_channel = kFirstUserChannel;

  // `ping`: our own PROBE, answered by the peer's engine; its PROBE_ACK never reaches ours.
  uint32_t ping_seq = 0;
  bool ping_waiting = false;
  bool ping_answered = false;
  TimeNs ping_sent_ns = 0, ping_rtt_ns = 0;

  // Counters of the driver itself (the engine's are in engine->stats()).
  uint64_t socket_send_errors = 0, socket_no_buffer = 0, requests_overflow = 0;
  uint64_t pulses_received = 0, pulses_dropped = 0;

  // Several threads may call at once. All state is under `m`; a call holds it except while it
  // waits. One waiting caller at a time (`pumping`) sleeps in epoll for everyone, without `m`;
  // the others sleep on `cv`, which every pass that took events or packets in wakes, so each
  // finds its own completion, and one of them takes over the socket when the pumper leaves.
  // `owner` lets a call made from inside another (names -> send) run under the lock it holds.
  std::mutex m;
  std::condition_variable cv;
  std::atomic<std::thread::id> owner{};
  bool pumping = false;
  uint64_t calls = 0;   // outer public calls begun
  void lock_api() {
    m.lock();
    owner.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }
  void unlock_api() {
    owner.store(std::thread::id{}, std::memory_order_relaxed);
    m.unlock();
  }
  // Sleeps until another caller's pass wakes us (or the deadline); `m` is released meanwhile.
  void wait_for_news(TimeNs deadline_ns) {
    owner.store(std::thread::id{}, std::memory_order_relaxed);
    std::unique_lock<std::mutex> lk(m, std::adopt_lock);
    if (deadline_ns >= kNoDeadline) {
      cv.wait(lk);
    } else {
      cv.wait_until(lk, std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline_ns)));
    }
    lk.release();
    owner.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }
  bool keeper_wanted = true;  // Config::keeper
  std::mutex keeper_m;  // guards keeper_stop
  std::condition_variable keeper_cv;
  bool keeper_stop = false;
  std::thread keeper;

  ~Driver() {
    stop_keeper();
    engine.reset();
    std::free(arena);
  }

  // The keeper (started by the first attach of a serving endpoint: a client between calls holds
  // nothing a peer waits for) steps the engine once a period when no call began during the whole
  // period; a call pumps the engine itself, so the keeper never waits for one (it only tries the
  // lock). Not started at all with Config::keeper false: a thread makes every malloc and free of
  // the process take locks (+0.4 us per 64 B round trip on one core, `./smp bench linux`).
  void start_keeper() {
    if (!keeper_wanted || keeper.joinable()) return;
    keeper = std::thread([this] {
      uint64_t seen = ~uint64_t{0};
      std::unique_lock<std::mutex> g(keeper_m);
      while (!keeper_cv.wait_for(g, std::chrono::nanoseconds(kKeeperPeriodNs), [this] { return keeper_stop; })) {
        if (!m.try_lock()) continue;  // a call is running
        owner.store(std::this_thread::get_id(), std::memory_order_relaxed);
        // Calls began in this period, or one waits on the socket: the application is here.
        if (calls == seen && !pumping) step();
        seen = calls;
        unlock_api();
      }
    });
  }
  void stop_keeper() {
    if (!keeper.joinable()) return;
    {
      std::lock_guard<std::mutex> g(keeper_m);
      keeper_stop = true;
    }
    keeper_cv.notify_all();
    keeper.join();
  }

  // One pass that never blocks: what arrived, what is due, what to send; then the timer is set
  // for what comes next (wake_fd() users wait on it).
  void step() {
    if (!pumping) {  // (a pumping caller has the loop; the socket can still be read here)
      const Wakeup w = loop.wait(wait_writable, 0);
      if (w.timer) loop.timer_fired();
      if (w.writable) wait_writable = false;
    }
    receive();
    pump([] { return true; }, kNoDeadline);  // timers, events, transmissions: one pass
    TimeNs wake = kNoDeadline;
    const Instant nt = engine->next_timeout();
    if (nt != kNever) wake = TimeNs(nt) * 1000;
    if (retry_at_ns > 0) wake = std::min(wake, retry_at_ns);
    loop.arm(wake);
    cv.notify_all();  // a ping's answer read here ends another caller's wait
  }

  Instant now() const { return to_instant(monotonic_ns()); }

  // Pulls up to kBatchMax packets from the engine and sends them with one sendmmsg. Packets
  // [tx_sent, tx_count) are ones the socket refused for now: they go out before new ones.
  void transmit(TimeNs now_ns) {
    if (wait_writable || now_ns < retry_at_ns) return;
    const Instant now_us = to_instant(now_ns);
    for (;;) {
      if (tx_sent == tx_count) {
        tx_sent = tx_count = 0;
        while (tx_count < kBatchMax) {
          auto& buf = tx_buf[tx_count];
          const Transmit t = engine->poll_transmit(now_us, buf.data(), buf.size());
          if (t.bytes == 0) break;
          tx_slots[tx_count++] = OutPacket{buf.data(), t.bytes, htonl(t.dst_ipv4)};
        }
        if (tx_count == 0) return;
      }
      int err = 0;
      tx_sent += sock.send_batch(tx_slots + tx_sent, tx_count - tx_sent, &err);
      if (tx_sent == tx_count) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        wait_writable = true;
        return;
      }
      if (err == ENOBUFS) {
        ++socket_no_buffer;
        retry_at_ns = now_ns + kNoBufferRetryNs;
        return;
      }
      // EMSGSIZE is a path-MTU probe larger than the device: lost, as the probe expects.
      ++socket_send_errors;
      ++tx_sent;
    }
  }

  bool take_ping_ack(const uint8_t* p, size_t n, const Received& r) {
    if (!ping_waiting || n < wire::kHeaderBytes || p[1] != uint8_t(wire::Type::kProbeAck)) return false;
    wire::Message m;
    if (wire::decode(p, n, ntohl(r.source_be), ntohl(r.destination_be), m) != wire::DecodeError::kOk ||
        m.probe.seq != ping_seq) {
      return false;
    }
    // With a key, only an answer with a right MAC counts (the engine drops the rest, counted).
    const ConstBytes whole{p, n};
    if (cfg.auth ? !wire::mac_ok(ConstChain{&whole, 1}, ntohl(r.source_be), ntohl(r.destination_be),
                                 wire::mac_key(cfg.auth_key))
                 : (m.header.flags & wire::kFlagAuth) != 0)
      return false;
    ping_rtt_ns = monotonic_ns() - ping_sent_ns;
    ping_waiting = false;
    ping_answered = true;
    return true;
  }

  void deliver(const Datagram& g, Instant t) {
    Received r{g.size_bytes, g.source_be, g.destination_be};
    if (take_ping_ack(g.data, r.size_bytes, r)) return;
    engine->handle_datagram(t, ntohl(r.source_be), ntohl(r.destination_be), g.data, r.size_bytes);
  }

  // Returns how many datagrams were taken (0: none waiting). Small exchanges come one packet at
  // a time, and a plain recv() takes one for less than a recvmmsg (which also tries once more
  // than it finds: together ~0.8 us per 64 B round trip here). So after a lone small packet
  // the next is taken alone; a large packet or several at once mean a message in pieces whose
  // siblings follow, and they are taken in batches. A burst that starts after a small packet
  // costs one extra wake-up: epoll is level-triggered and reports what is left at once.
  size_t receive() {
    if (!expect_burst) {
      Datagram one;
      if (!sock.receive_one(rx_ptrs[0], kReceiveBufferBytes, &one)) return 0;
      deliver(one, now());
      expect_burst = one.size_bytes >= kBurstHintBytes;
      return 1;
    }
    Datagram got[kBatchMax];
    size_t taken = 0;
    bool large = false;
    for (int round = 0; round < kReceiveRoundsMax; ++round) {
      const size_t n = sock.receive_batch(rx_ptrs, kReceiveBufferBytes, got, kBatchMax);
      taken += n;
      const Instant t = now();
      for (size_t i = 0; i < n; ++i) {
        deliver(got[i], t);
        large = got[i].size_bytes >= kBurstHintBytes;
      }
      if (n < kBatchMax) break;
    }
    if (taken > 0) expect_burst = taken > 1 || large;
    return taken;
  }

  void keep(std::unordered_map<uint32_t, smp::Event>& m, const smp::Event& e) {
    if (m.size() < kDoneQueuedMax) m[e.handle] = e;
  }

  void dispatch(const smp::Event& e) {
    switch (e.type) {
      case EventType::kRequest:
        if (e.channel == kNamesChannel) {
          answer_names(e);
        } else if (requests.size() < kRequestsQueuedMax) {
          enqueue(e);
        } else {
          ++requests_overflow;  // cannot happen while requests_max <= kRequestsQueuedMax
          engine->error(now(), RequestHandle{e.handle}, ErrorCode::kServerGone);
        }
        break;
      case EventType::kRequestCancelled:
        unanswered.erase(e.handle);
        if (cancelled.size() < kDoneQueuedMax) cancelled.insert(e.handle);
        replies.erase(e.handle);
        reads_done[e.handle] = e;  // a read waiting on it ends too
        break;
      case EventType::kReadDone: keep(reads_done, e); break;
      case EventType::kReplyDone: replies.erase(e.handle); break;
      case EventType::kSendDone: keep(sends_done, e); break;
      case EventType::kNameResolved: keep(lookups_done, e); break;
      case EventType::kPulse:
        // Requests take at most requests_max (256) of the queue and pulses pulse_events_max
        // (the engine counts a pulse until receive() takes it: pulses_released_by_app), so
        // there is always room; beyond it, the engine does not acknowledge, and the sender
        // repeats the pulse until there is (SPEC.md 5.7). Never dropped after its ACK.
        if (requests.size() < kRequestsQueuedMax) {
          enqueue(e);
          ++pulses_received;
        } else {
          ++pulses_dropped;
        }
        break;
      case EventType::kPeerDown: break;  // sends to that peer end with their own kSendDone
    }
  }

  // Requests and pulses wait by priority, as at a kernel channel: after every one of the same
  // or a higher priority, before the lower ones.
  void enqueue(const smp::Event& e) {
    auto at = requests.end();
    while (at != requests.begin() && std::prev(at)->priority < e.priority) --at;
    requests.insert(at, e);
  }

  // The listing service every libsmp endpoint answers (the wire has no "list names" query).
  void answer_names(const smp::Event& e) {
    std::string list;
    for (const auto& [name, channel] : attached) list += name + "\n";
    start_reply(e.handle, std::vector<uint8_t>(list.begin(), list.end()));
  }

  // Runs the loop until done() or the deadline; true when done() held.
  bool pump(const std::function<bool()>& done, TimeNs deadline_ns) {
    TimeNs spin_until = 0;  // busy-poll budget of this wait; 0: not started
    for (;;) {
      TimeNs t = monotonic_ns();
      if (engine->next_timeout() <= to_instant(t)) engine->handle_timeout(to_instant(t));
      transmit(t);
      smp::Event e;
      bool news = false;
      while (engine->poll_event(e)) {
        dispatch(e);
        news = true;
      }
      transmit(t);  // answers queued while dispatching (names)
      if (news) cv.notify_all();  // completions of other callers' calls, maybe
      if (done()) return true;
      t = monotonic_ns();
      if (t >= deadline_ns) return false;
      TimeNs wake = deadline_ns;
      const Instant nt = engine->next_timeout();
      if (nt != kNever) wake = std::min<TimeNs>(wake, TimeNs(nt) * 1000);
      if (retry_at_ns > t) wake = std::min(wake, retry_at_ns);
      if (pumping) {
        // Another caller sleeps in epoll for everyone: its timer must not ring later than what
        // this call just started needs (at once if the socket refused a packet: that caller
        // then watches for room); then sleep until a pass brings news.
        loop.arm(wait_writable ? t : wake);
        wait_for_news(deadline_ns);
        continue;
      }
      if (spin_ns > 0 && !wait_writable) {  // writability is only seen by epoll
        // Busy-poll until the budget is spent or something is due; every arrival restarts the
        // budget. sched_yield lets a peer on our own core run (one core: no slower than
        // sleeping); with a core to itself it returns at once. The socket is non-blocking, and
        // the inner loop does nothing else, so an arrival is seen within one receive call
        // (9.7 -> 9.4 us two cores since lone packets are taken with recv(); with recvmmsg,
        // a heavier call holding the queue's lock longer, the tight loop had been slower).
        if (spin_until == 0) spin_until = t + spin_ns;
        const TimeNs stop = std::min(spin_until, wake);
        bool got = false;
        pumping = true;  // other callers wait for our news meanwhile
        while (!got && t < stop) {
          got = receive() > 0;
          if (!got) {
            unlock_api();  // lets another caller start its call
            sched_yield();
            lock_api();
            t = monotonic_ns();
          }
        }
        pumping = false;
        cv.notify_all();  // news, or the socket is nobody's now: a waiting caller may take it
        if (got) spin_until = 0;
        if (got || t >= wake) continue;
      }
      loop.arm(wake);
      pumping = true;
      unlock_api();
      const Wakeup w = loop.wait(wait_writable);
      lock_api();
      pumping = false;
      if (w.timer) loop.timer_fired();
      if (w.writable) wait_writable = false;
      if (w.readable) receive();
      spin_until = 0;
      cv.notify_all();  // what arrived may be another caller's; one of them takes the loop next
    }
  }
};

// Every public call of Endpoint holds the driver's lock (see Driver::m); one made from inside
// another on the same thread runs under the outer one's.
class ApiCall {
 public:
  explicit ApiCall(Driver& d) : d_(d) {
    if (d.owner.load(std::memory_order_relaxed) == std::this_thread::get_id()) return;
    d.lock_api();
    outer_ = true;
    ++d.calls;
  }
  ~ApiCall() {
    if (outer_) d_.unlock_api();
  }
  ApiCall(const ApiCall&) = delete;
  ApiCall& operator=(const ApiCall&) = delete;

 private:
  Driver& d_;
  bool outer_ = false;
};

// ---- Endpoint --------------------------------------------------------------------------------

// The last reply received is acknowledged by a delayed ACK (SPEC: ack_delay_us); leaving at once
// would make its server resend the reply until it declares us down. So an endpoint lingers for a
// few ACK delays, answering what comes, unless it was closed already.
Endpoint::~Endpoint() {
  if (impl_ && impl_->engine) close();
}

void Endpoint::close() {
  Driver& d = *impl_;
  const ApiCall call(d);
  if (d.closed) return;
  d.closed = true;
  d.stop_keeper();
  // Requests this endpoint will never answer (queued, or received and left): their clients are
  // told `server gone` now, rather than finding the silence "host down" a second later.
  for (const smp::Event& e : d.requests) {
    if (e.type == EventType::kRequest) d.unanswered.insert(e.handle);
  }
  d.requests.clear();
  for (uint32_t h : d.unanswered) d.engine->error(d.now(), RequestHandle{h}, ErrorCode::kServerGone);
  d.unanswered.clear();
  // The last reply's acknowledgement goes after ack_delay. If it is lost, the server repeats
  // the reply on its timer and must find us here to acknowledge it again: a client gone at
  // once left the server repeating it to the liveness bound, declaring it down and holding a
  // large reply's server in reply() for a second (1 call in 6 at 20% loss). A server that
  // never sampled our round trip (a client of one call) repeats after its initial RTO. So a
  // client leaves only once nothing has come for that long (each packet that comes starts the
  // wait again), within 500 ms in all; an endpoint that made no call, after 10 ACK delays.
  const bool client = d.engine->stats().sends_completed > 0;
  const TimeNs quiet_ns = client ? TimeNs(d.cfg.rto_initial_us + 2 * d.cfg.ack_delay_us) * 1000
                                 : TimeNs(d.cfg.ack_delay_us) * 1000 * kLingerAckDelays;
  const TimeNs give_up = monotonic_ns() + kLingerMaxNs;
  for (;;) {
    const uint64_t heard = d.engine->stats().packets_in;
    const TimeNs until = std::min(monotonic_ns() + quiet_ns, give_up);
    d.pump([&] { return d.engine->stats().packets_in != heard; }, until);
    if (d.engine->stats().packets_in == heard || monotonic_ns() >= give_up) break;
  }
  d.reservation.release();  // the number is free for the next process
}
std::string Endpoint::detail() const {
  const ApiCall call(*impl_);
  return impl_->detail;
}

Status Endpoint::open(const Config& config, std::unique_ptr<Endpoint>* out, std::string* detail) {
  std::unique_ptr<Endpoint> ep(new Endpoint());
  ep->impl_ = std::make_unique<Driver>();
  Driver& d = *ep->impl_;
  d.table = config.peers;
  for (const Peer& p : d.table) {
    d.static_peers.push_back(smp::StaticPeer{p.name.c_str(), ntohl(p.address_be), p.endpoint});
  }
  smp::Config& c = d.cfg;
  c.incarnation = random64();
  // The source address and MTU of the route toward the first peer that is another host (a
  // peer at one of our own addresses is reached over lo, whose 64 KiB MTU says nothing about
  // the wire); with only local peers, the first one's.
  uint32_t local_be = config.local_address_be;
  int mtu = 1500;
  bool found = false;
  for (const Peer& p : d.table) {
    uint32_t src_be = 0;
    int route_mtu = 1500;
    if (!route_to(p.address_be, &src_be, &route_mtu)) continue;
    const bool remote = src_be != p.address_be;
    if (!found || remote) {
      if (config.local_address_be == 0) local_be = src_be;
      mtu = route_mtu;
      found = true;
    }
    if (remote) break;
  }
  if (local_be == 0) local_be = htonl(INADDR_LOOPBACK);
  c.local_ipv4 = ntohl(local_be);
  char local_text[INET_ADDRSTRLEN] = {};
  in_addr local_ia{};
  local_ia.s_addr = local_be;
  inet_ntop(AF_INET, &local_ia, local_text, sizeof local_text);
  if (config.endpoint >= 0) {
    c.local_endpoint = uint16_t(config.endpoint);
    const int err = d.reservation.take(local_text, c.local_endpoint);
    if (err == EADDRINUSE) {
      *detail = "endpoint " + std::to_string(c.local_endpoint) + " is already in use by another process on " +
                local_text;
      return Status::kBusy;
    }
    if (err != 0) {
      *detail = std::string("endpoint reservation: ") + std::strerror(err);
      return Status::kSystem;
    }
  } else {
    int err = EADDRINUSE;
    for (int i = 0; i < kEphemeralTriesMax && err == EADDRINUSE; ++i) {
      c.local_endpoint = uint16_t(kEphemeralEndpointMin | (random64() & 0x7FFF));
      err = d.reservation.take(local_text, c.local_endpoint);
    }
    if (err == EADDRINUSE) {
      *detail = std::string("no free ephemeral endpoint number on ") + local_text;
      return Status::kNoResources;
    }
    if (err != 0) {
      *detail = std::string("endpoint reservation: ") + std::strerror(err);
      return Status::kSystem;
    }
  }
  c.mtu_max = uint16_t(std::clamp(mtu, int(wire::kMtuMin), 65535));
  if (!config.auth_key.empty()) {
    if (config.auth_key.size() != wire::kAuthKeyBytes) {
      *detail = "the cluster key must be 32 bytes";
      return Status::kBadArgument;
    }
    c.auth = true;
    std::copy(config.auth_key.begin(), config.auth_key.end(), c.auth_key.bytes);
  }
  // A Linux host has memory to spare, unlike a small kernel node: hold more eager bytes for
  // others (pool, per-peer window) and send more eagerly, so that messages up to
  // kLinuxEagerBytes travel without the extra round trip of a pull. What a peer may send us is
  // still bounded by the pool (SPEC.md section 6); what we send a node is bounded by its grant.
  c.pool_bytes = config.pool_bytes ? config.pool_bytes : kLinuxPoolBytes;
  c.window_bytes = config.window_bytes ? config.window_bytes : kLinuxWindowBytes;
  c.eager_bytes_max = config.eager_bytes_max ? config.eager_bytes_max : kLinuxEagerBytes;
  if (c.pool_bytes >= kLinuxPoolBlockBytes) c.pool_block_bytes = kLinuxPoolBlockBytes;
  if (config.spin_ns < 0) {
    *detail = "spin_ns must be 0 (no busy-poll) or positive";
    return Status::kBadArgument;
  }
  d.spin_ns = config.spin_ns;
  c.pulses_released_by_app = true;  // the queue below never drops an acknowledged pulse
  c.pulse_events_max = kPulsesQueuedMax;
  c.static_peers = d.static_peers.data();
  c.static_peers_count = uint16_t(d.static_peers.size());
  if (smp::Engine::check_config(c) != ErrorCode::kOk) {
    *detail = "the engine rejected its configuration";
    return Status::kBadArgument;
  }
  const SocketError se = d.sock.open({kEndpointFieldOffsetBytes, c.local_endpoint});
  if (se == SocketError::kNoPrivilege) return Status::kNoPrivilege;
  if (se != SocketError::kNone) {
    *detail = std::string("raw socket: ") + std::strerror(d.sock.errno_value());
    return Status::kSystem;
  }
  // Bind the source address so that the checksum's pseudo-header (which names it) is right.
  sockaddr_in me{};
  me.sin_family = AF_INET;
  me.sin_addr.s_addr = local_be;
  if (bind(d.sock.fd(), reinterpret_cast<sockaddr*>(&me), sizeof me) != 0) {
    *detail = std::string("bind: ") + std::strerror(errno);
    return Status::kSystem;
  }
  d.sock.set_source(local_be);
  if (const int err = d.loop.open(d.sock.fd())) {
    *detail = std::string("epoll/timerfd: ") + std::strerror(err);
    return Status::kSystem;
  }
  const size_t bytes = smp::Engine::memory_bytes(c);
  d.arena = std::aligned_alloc(smp::Engine::kMemoryAlign, (bytes + 15) / 16 * 16);
  if (!d.arena) {
    *detail = "out of memory for the engine's arena";
    return Status::kNoResources;
  }
  d.engine = std::make_unique<smp::Engine>(c, d.arena, bytes);
  if (!d.engine->ok()) {
    *detail = "the engine did not start";
    return Status::kSystem;
  }
  for (auto& b : d.tx_buf) b.resize(c.mtu_max);
  d.rx.resize(kReceiveBufferBytes * kBatchMax);
  for (size_t i = 0; i < kBatchMax; ++i) d.rx_ptrs[i] = d.rx.data() + i * kReceiveBufferBytes;
  d.attached.reserve(16);
  if (d.engine->name_attach("_names", kNamesChannel) != ErrorCode::kOk) {
    *detail = "cannot attach the _names service";
    return Status::kSystem;
  }
  d.keeper_wanted = config.keeper;
  *out = std::move(ep);
  return Status::kOk;
}

bool Endpoint::resolve(std::string_view node, uint32_t* address_be) const {
  for (const Peer& p : impl_->table) {
    if (p.name == node) {
      *address_be = p.address_be;
      return true;
    }
  }
  return false;
}

uint16_t Endpoint::local_endpoint() const { return impl_->cfg.local_endpoint; }
uint32_t Endpoint::local_address_be() const { return htonl(impl_->cfg.local_ipv4); }

Status Endpoint::connect(std::string_view target, Connection* out, TimeNs deadline) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  const size_t slash = target.find('/');
  std::string service(slash == std::string_view::npos ? target : target.substr(slash + 1));
  if (service.empty() || service.size() > wire::kNameBytesMax) return Status::kBadArgument;
  PeerRef where{};
  if (slash != std::string_view::npos) {
    const std::string node(target.substr(0, slash));
    const Result<PeerRef> p = d.engine->peer_by_name(node.c_str());
    if (!p.ok()) return Status::kUnknownNode;
    where = p.value;
  }
  const Result<LookupHandle> l = d.engine->name_lookup(d.now(), service.c_str(), where);
  if (!l.ok()) return from_wire(l.error);
  const uint32_t h = l.value.value;
  if (!d.pump([&] { return d.lookups_done.count(h) != 0; }, deadline)) {
    // Given up: the engine frees the lookup's slot now (not after its K probe intervals). When
    // it had ended meanwhile, its answer is queued: take it in and drop it, so nothing is kept.
    if (d.engine->cancel_lookup(LookupHandle{h}) != ErrorCode::kOk) {
      smp::Event ev;
      while (d.engine->poll_event(ev)) d.dispatch(ev);
      auto done = d.lookups_done.find(h);
      if (done != d.lookups_done.end() && done->second.peer.valid()) d.engine->release_peer(done->second.peer);
      d.lookups_done.erase(h);
    }
    return Status::kTimeout;
  }
  const smp::Event e = d.lookups_done[h];
  d.lookups_done.erase(h);
  if (e.error != ErrorCode::kOk) return from_wire(e.error);
  out->peer = e.peer.value;
  out->channel = e.channel;
  return Status::kOk;
}

void Endpoint::disconnect(Connection& c) {
  const ApiCall call(*impl_);
  if (c.peer) impl_->engine->release_peer(PeerRef{c.peer});
  c = Connection{};
}

Status Endpoint::send(const Connection& c, std::span<const uint8_t> request, uint8_t* reply,
                      size_t reply_capacity, size_t* reply_size, TimeNs deadline) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  if (request.size() > kMessageBytesMax) return Status::kTooLarge;
  ConstBytes req{request.data(), request.size()};
  MutableBytes rep{reply, reply_capacity};
  const Instant dl = deadline == kNoDeadline ? kNever : to_instant(deadline);
  const Result<SendHandle> s = d.engine->start_send(d.now(), PeerRef{c.peer}, c.channel,
                                                    ConstChain{&req, 1}, MutableChain{&rep, 1}, dl,
                                                    c.priority);
  if (!s.ok()) return from_wire(s.error);
  const uint32_t h = s.value.value;
  // The engine ends every send itself (reply, error, host down or its deadline); our own guard
  // is a little later, and cancels, so the borrowed buffers are never left with the engine.
  const TimeNs guard = deadline == kNoDeadline ? kNoDeadline : deadline + 200'000'000;
  if (!d.pump([&] { return d.sends_done.count(h) != 0; }, guard)) {
    d.engine->cancel(d.now(), SendHandle{h});
    d.pump([&] { return d.sends_done.count(h) != 0; }, monotonic_ns() + 100'000'000);
    d.sends_done.erase(h);
    return Status::kTimeout;
  }
  const smp::Event e = d.sends_done[h];
  d.sends_done.erase(h);
  if (e.error == ErrorCode::kAppError) {
    d.detail = "server error code " + std::to_string(e.status);
    return Status::kRemoteError;
  }
  if (e.error != ErrorCode::kOk) {
    d.detail = std::string("protocol error ") + wire::error_code_name(e.error);
    return from_wire(e.error);
  }
  *reply_size = e.bytes;
  return e.size > reply_capacity ? Status::kTooLarge : Status::kOk;
}

Status Endpoint::send(const Connection& c, std::span<const uint8_t> request,
                      std::vector<uint8_t>* reply, TimeNs deadline) {
  const ApiCall call(*impl_);
  // A reply can be as large as the largest message; the buffer's untouched pages cost nothing.
  std::unique_ptr<uint8_t[]> buf(new (std::nothrow) uint8_t[kMessageBytesMax]);
  if (!buf) return Status::kNoResources;
  size_t n = 0;
  const Status s = send(c, request, buf.get(), kMessageBytesMax, &n, deadline);
  if (s == Status::kOk) reply->assign(buf.get(), buf.get() + n);
  return s;
}

Status Endpoint::ping(std::string_view node, size_t probe_bytes, PingResult* out, TimeNs deadline) {
  const ApiCall call(*impl_);
  const Peer* peer = nullptr;
  for (const Peer& p : impl_->table) {
    if (p.name == node) peer = &p;
  }
  if (!peer) return Status::kUnknownNode;
  return probe(*peer, probe_bytes, out, deadline);
}

Status Endpoint::pulse(const Connection& c, int8_t code, uint32_t value, TimeNs deadline) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  const PeerRef peer{c.peer};
  const ErrorCode e = d.engine->pulse(d.now(), peer, c.channel, code, value, c.priority);
  if (e != ErrorCode::kOk) return from_wire(e);
  if (!d.pump([&] { return !d.engine->pulse_pending(peer, c.channel, code); }, deadline)) return Status::kTimeout;
  // Not pending any more: acknowledged, or ended with its peer (down, or rebooted: the ref no
  // longer names a live peer).
  const smp::PeerInfo info = d.engine->peer_info(peer);
  if (info.state == smp::PeerState::kFree) return Status::kPeerRebooted;
  if (info.state == smp::PeerState::kDown) return Status::kHostDown;
  return Status::kOk;
}

Status Endpoint::probe(const Peer& target, size_t probe_bytes, PingResult* out, TimeNs deadline) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  // One probe in flight per endpoint: a second caller's waits for the first to end.
  if (!d.pump([&] { return !d.ping_waiting; }, deadline)) return Status::kTimeout;
  const Peer* peer = &target;
  wire::Message m;
  m.header.type = wire::Type::kProbe;
  m.header.dst_endpoint = peer->endpoint;
  m.header.src_endpoint = d.cfg.local_endpoint;
  m.header.dst_incarnation = 0;
  m.header.src_incarnation = d.cfg.incarnation;
  m.probe.seq = kPingSeqBase | ++d.ping_seq;
  // A PROBE is padded to the IP packet size it tests; the smallest allowed is the IPv4 minimum.
  if (probe_bytes < wire::kMtuMin || probe_bytes > wire::kPacketBytesMax) return Status::kBadArgument;
  m.probe.probe_bytes = uint16_t(probe_bytes);
  m.pad_to_bytes = uint16_t(probe_bytes);
  d.ping_seq = m.probe.seq;
  std::vector<uint8_t> buf(probe_bytes);
  const wire::MacKey mac = wire::mac_key(d.cfg.auth_key);
  const size_t n = wire::encode(m, d.cfg.local_ipv4, ntohl(peer->address_be), buf.data(), buf.size(),
                                d.cfg.auth ? &mac : nullptr);
  if (n == 0) return Status::kSystem;
  d.ping_waiting = true;
  d.ping_answered = false;
  d.ping_sent_ns = monotonic_ns();
  if (const int err = d.sock.send(peer->address_be, buf.data(), n)) {
    d.ping_waiting = false;
    if (err == EMSGSIZE) return Status::kTooLarge;  // larger than the local device's MTU
    d.detail = std::string("sendto: ") + std::strerror(err);
    return Status::kSystem;
  }
  const bool ok = d.pump([&] { return d.ping_answered; }, deadline);
  d.ping_waiting = false;
  if (!ok) return Status::kTimeout;
  out->rtt_ns = d.ping_rtt_ns;
  return Status::kOk;
}

Status Endpoint::names(std::string_view node, std::vector<std::string>* out, TimeNs deadline) {
  const ApiCall call(*impl_);
  Connection c;
  const Result<PeerRef> p = impl_->engine->peer_by_name(std::string(node).c_str());
  if (!p.ok()) return Status::kUnknownNode;
  c.peer = p.value.value;
  c.channel = kNamesChannel;
  std::vector<uint8_t> reply;
  const Status s = send(c, {}, &reply, deadline);
  disconnect(c);
  if (s != Status::kOk) return s;
  std::string list(reply.begin(), reply.end()), line;
  for (char ch : list) {
    if (ch == '\n') {
      if (!line.empty()) out->push_back(line);
      line.clear();
    } else {
      line += ch;
    }
  }
  return Status::kOk;
}

Status Endpoint::attach(std::string_view service) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  const std::string name(service);
  if (name.empty() || name.size() > wire::kNameBytesMax || name[0] == '_') return Status::kBadArgument;
  if (d.attached.count(name)) return Status::kBusy;
  const uint32_t channel = d.next_channel++;
  const ErrorCode e = d.engine->name_attach(name.c_str(), channel);
  if (e != ErrorCode::kOk) return from_wire(e);
  d.attached[name] = channel;
  d.start_keeper();
  return Status::kOk;
}

Status Endpoint::read(Request& request, size_t offset, uint8_t* dst, size_t bytes, TimeNs deadline) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  const uint32_t h = uint32_t(request.receive_id);
  if (offset > request.size_bytes || bytes > request.size_bytes - offset) return Status::kBadArgument;
  if (d.cancelled.count(h)) return Status::kCancelled;
  if (bytes == 0) return Status::kOk;
  MutableBytes part{dst, bytes};
  d.reads_done.erase(h);
  const ErrorCode r = d.engine->read(d.now(), RequestHandle{h}, uint32_t(offset), MutableChain{&part, 1});
  if (r != ErrorCode::kOk) return r == ErrorCode::kInvalid ? Status::kCancelled : from_wire(r);
  if (!d.pump([&] { return d.reads_done.count(h) != 0; }, deadline)) {
    // Given up: the engine writes nothing more into `dst` and sends no kReadDone; the request
    // stays readable (a later read() pulls again) and the client keeps waiting for its reply.
    d.engine->abandon_read(d.now(), RequestHandle{h});
    d.reads_done.erase(h);
    return Status::kTimeout;
  }
  const smp::Event done = d.reads_done[h];
  d.reads_done.erase(h);
  if (done.type == EventType::kRequestCancelled) return Status::kCancelled;
  return done.error == ErrorCode::kOk ? Status::kOk : from_wire(done.error);
}

Status Endpoint::receive(Request* out, TimeNs deadline, size_t read_max) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  for (;;) {
    if (!d.pump([&] { return !d.requests.empty(); }, deadline)) return Status::kTimeout;
    const smp::Event e = d.requests.front();
    d.requests.pop_front();
    if (e.type == EventType::kPulse) {
      d.engine->release_pulse();
      *out = Request{};
      out->source_be = htonl(d.engine->peer_info(e.peer).ipv4);
      out->is_pulse = true;
      out->priority = e.priority;
      out->pulse_code = e.code;
      out->pulse_value = e.value;
      return Status::kOk;
    }
    out->is_pulse = false;
    out->priority = e.priority;
    if (d.cancelled.erase(e.handle)) continue;  // the client gave up before we got to it
    out->receive_id = e.handle;
    out->size_bytes = e.size;
    out->source_be = htonl(d.engine->peer_info(e.peer).ipv4);
    out->client_deadline_ns = e.deadline_us == wire::kNoDeadline
                                  ? kNoDeadline
                                  : monotonic_ns() + TimeNs(e.deadline_us) * 1000;
    out->data.resize(std::min<size_t>(e.size, read_max));
    const Status s = read(*out, 0, out->data.data(), out->data.size(), deadline);
    if (s == Status::kCancelled) {
      d.cancelled.erase(e.handle);
      continue;  // nothing to answer: look for the next request
    }
    if (s == Status::kOk) d.unanswered.insert(e.handle);
    if (s == Status::kTimeout) {
      // The deadline passed while the rest was being pulled: nothing is received, and the
      // request goes back to the head of the queue, whole (read() gave the pull up; no byte
      // lands later), for the next receive(). Returned here, it would be lost: the caller sees
      // a timeout, not a request to answer, and its client would wait for a reply that never
      // comes.
      d.requests.push_front(e);
      *out = Request{};
      return Status::kTimeout;
    }
    return s;
  }
}

Status Endpoint::reply(Request& request, std::span<const uint8_t> data, TimeNs deadline) {
  const ApiCall call(*impl_);
  return reply(request, std::vector<uint8_t>(data.begin(), data.end()), deadline);
}

Status Endpoint::reply(Request& request, std::vector<uint8_t>&& data, TimeNs deadline) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  (void)deadline;  // the engine keeps the reply until the client has it or is gone
  const uint32_t h = uint32_t(request.receive_id);
  if (d.cancelled.erase(h)) return Status::kCancelled;
  const ErrorCode e = d.start_reply(h, std::move(data));
  if (e != ErrorCode::kOk) return e == ErrorCode::kInvalid ? Status::kCancelled : from_wire(e);
  d.pump([] { return true; }, monotonic_ns());  // let the first packets leave now
  return Status::kOk;
}

Status Endpoint::error(Request& request, Status why, TimeNs deadline) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  (void)deadline;
  const uint32_t h = uint32_t(request.receive_id);
  if (d.cancelled.erase(h)) return Status::kCancelled;
  const ErrorCode code = why == Status::kTooLarge ? ErrorCode::kTooLarge : ErrorCode::kAppError;
  d.unanswered.erase(h);
  d.replies[h];  // an error also ends with kReplyDone
  const ErrorCode e = d.engine->error(d.now(), RequestHandle{h}, code, uint32_t(why));
  if (e != ErrorCode::kOk) d.replies.erase(h);
  d.pump([] { return true; }, monotonic_ns());
  return from_wire(e);
}

bool Endpoint::given_up(const Request& request) {
  const ApiCall call(*impl_);
  return impl_->cancelled.count(uint32_t(request.receive_id)) != 0;
}

Status Endpoint::flush(TimeNs deadline) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  return d.pump([&] { return d.replies.empty(); }, deadline) ? Status::kOk : Status::kTimeout;
}

Status Endpoint::poll(TimeNs deadline) {
  const ApiCall call(*impl_);
  Driver& d = *impl_;
  d.pump([] { return false; }, deadline);
  return Status::kOk;
}

int Endpoint::wake_fd() const { return impl_->loop.fd(); }

void Endpoint::step() {
  const ApiCall call(*impl_);
  impl_->step();
}

std::vector<std::pair<std::string, uint64_t>> Endpoint::stats() const {
  const ApiCall call(*impl_);
  const Driver& d = *impl_;
  const smp::Stats& s = d.engine->stats();
  uint64_t decode_errors = 0;
  for (uint64_t v : s.decode_errors) decode_errors += v;
  return {
      {"packets_in", s.packets_in},
      {"packets_out", s.packets_out},
      {"bytes_in", s.bytes_in},
      {"bytes_out", s.bytes_out},
      {"retransmissions", s.retransmissions},
      {"duplicates", s.duplicates},
      {"decode_errors", decode_errors},
      {"dropped_not_mine", s.dropped_not_mine},
      {"dropped_auth", s.dropped_auth},
      {"dropped_unexpected", s.dropped_unexpected},
      {"resets_sent", s.resets_sent},
      {"resets_limited", s.resets_limited},
      {"requests_delivered", s.requests_delivered},
      {"sends_completed", s.sends_completed},
      {"peers_down", s.peers_down},
      {"peers_rebooted", s.peers_rebooted},
      {"pool_bytes_high", s.pool_bytes_high},
      {"requests_high", s.requests_high},
      {"sends_high", s.sends_high},
      {"peers_high", s.peers_high},
      {"peers_retired", s.peers_retired},
      {"peers_restored", s.peers_restored},
      {"dropped_no_peer_slot", s.dropped_no_peer_slot},
      {"refusals_received", s.refusals_received},
      {"lives_checked", s.lives_checked},
      {"challenges_sent", s.challenges_sent},
      {"pulses_received", d.pulses_received},
      {"pulses_dropped", d.pulses_dropped},
      {"socket_send_errors", d.socket_send_errors},
      {"socket_no_buffer", d.socket_no_buffer},
      {"ip_runts", d.sock.runts},
  };
}

}  // namespace smp::linux_peer
