// libsmp's API with the real engine, on loopback: a server endpoint in one thread, a client
// endpoint in another (each Endpoint is independent), exercising what smpctl does not: partial
// receive then read() at offsets, error(), a client deadline that passes while the server holds
// the request. Needs CAP_NET_RAW (skipped otherwise).
#include "protocol/linux/libsmp.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <thread>

namespace sl = smp::linux_peer;

namespace {

// An endpoint number of its own per process (ctest runs the cases as parallel processes, and
// they share the host's loopback); the cases also hold a ctest resource lock.
const uint16_t kServerEndpoint = uint16_t(0x4000 | (getpid() & 0x3FFF));
constexpr int64_t kSecondNs = 1'000'000'000;

sl::Config config(int endpoint, int64_t spin_ns = 0) {
  sl::Config c;
  c.spin_ns = spin_ns;
  c.node_name = endpoint == kServerEndpoint ? "srv" : "cli";
  c.endpoint = endpoint;
  c.peers.push_back(sl::Peer{"srv", htonl(INADDR_LOOPBACK), kServerEndpoint});
  return c;
}

std::unique_ptr<sl::Endpoint> open_or_die(int endpoint, int64_t spin_ns = 0) {
  std::unique_ptr<sl::Endpoint> ep;
  std::string detail;
  EXPECT_EQ(sl::Endpoint::open(config(endpoint, spin_ns), &ep, &detail), sl::Status::kOk) << detail;
  return ep;
}

sl::TimeNs in(int64_t ns) { return sl::monotonic_ns() + ns; }

// The "sum" service's answer: the byte sum of a message, 8 bytes little-endian.
std::vector<uint8_t> sum_bytes(const std::vector<uint8_t>& message) {
  const uint64_t sum = std::accumulate(message.begin(), message.end(), uint64_t{0});
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(sum >> (8 * i));
  return out;
}

// Sends `size` patterned bytes to srv/sum and expects their sum back.
void expect_sum_reply(sl::Endpoint& client, size_t size, unsigned pattern) {
  std::vector<uint8_t> msg(size);
  for (size_t i = 0; i < size; ++i) msg[i] = uint8_t(i * pattern + i / 97);
  sl::Connection c;
  ASSERT_EQ(client.connect("srv/sum", &c, in(5 * kSecondNs)), sl::Status::kOk);
  std::vector<uint8_t> reply;
  ASSERT_EQ(client.send(c, msg, &reply, in(10 * kSecondNs)), sl::Status::kOk);
  EXPECT_EQ(reply, sum_bytes(msg));
}

class LibsmpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_RAW) for raw sockets";
    server_ = open_or_die(kServerEndpoint, spin_ns());
    client_ = open_or_die(-1, spin_ns());
    ASSERT_TRUE(server_ && client_);
  }
  virtual int64_t spin_ns() const { return 0; }
  // The server thread's lifetime, held by the test body. Its end (the end of the body's scope,
  // also when an ASSERT returns early) tells the server that the client is done and joins it,
  // so a serve body may use the test body's locals: they are destroyed only after it. TearDown
  // alone comes too late: it runs once the body's locals are gone (see BusyPollTest).
  class [[nodiscard]] Serving {
   public:
    explicit Serving(LibsmpTest* t) : t_(t) {}
    Serving(const Serving&) = delete;
    Serving& operator=(const Serving&) = delete;
    ~Serving() { t_->end_serving(); }

   private:
    LibsmpTest* t_;
  };
  // Runs `serve` on the server endpoint in a thread while the test body is the client; keep the
  // result in a variable declared after every local that `body` uses.
  Serving serve(std::function<void(sl::Endpoint&)> body) {
    thread_ = std::thread([this, body] {
      body(*server_);
      server_->flush(in(2 * kSecondNs));
    });
    return Serving(this);
  }
  // Idempotent: the client is done, its endpoint lets the last reply's ACK leave (so the
  // server's flush ends), the server thread is joined.
  void end_serving() {
    client_done = true;
    if (client_) client_->close();
    if (thread_.joinable()) thread_.join();
  }
  void TearDown() override { end_serving(); }
  void overlapping_calls();  // the body of CallsFromSeveralThreadsOverlap, with and without spin
  std::unique_ptr<sl::Endpoint> server_, client_;
  std::thread thread_;
  std::atomic<bool> client_done{false};
};

TEST_F(LibsmpTest, PartialReceiveThenReadAtOffsets) {
  ASSERT_EQ(server_->attach("sum"), sl::Status::kOk);
  constexpr size_t kSize = 300'000;  // past the eager size: the rest is pulled by read()
  const Serving serving = serve([&](sl::Endpoint& s) {
    sl::Request r;
    ASSERT_EQ(s.receive(&r, in(10 * kSecondNs), 100), sl::Status::kOk);
    ASSERT_EQ(r.size_bytes, kSize);
    ASSERT_EQ(r.data.size(), 100u);
    std::vector<uint8_t> all(r.data);
    all.resize(kSize);
    // The rest in three uneven pieces, the last one first.
    ASSERT_EQ(s.read(r, 200'000, all.data() + 200'000, kSize - 200'000, in(10 * kSecondNs)), sl::Status::kOk);
    ASSERT_EQ(s.read(r, 100, all.data() + 100, 99'900, in(10 * kSecondNs)), sl::Status::kOk);
    ASSERT_EQ(s.read(r, 100'000, all.data() + 100'000, 100'000, in(10 * kSecondNs)), sl::Status::kOk);
    EXPECT_EQ(s.read(r, kSize - 1, all.data(), 2, in(kSecondNs)), sl::Status::kBadArgument);
    EXPECT_EQ(s.reply(r, sum_bytes(all), in(kSecondNs)), sl::Status::kOk);
  });
  expect_sum_reply(*client_, kSize, 7);
}

TEST_F(LibsmpTest, ReadPastItsDeadlineLeavesTheRequestReadable) {
  ASSERT_EQ(server_->attach("sum"), sl::Status::kOk);
  constexpr size_t kSize = 300'000;
  std::vector<uint8_t> abandoned(100'000, 0xEE);
  const Serving serving = serve([&](sl::Endpoint& s) {
    sl::Request r;
    ASSERT_EQ(s.receive(&r, in(10 * kSecondNs), 100), sl::Status::kOk);
    // A deadline already past: the pull cannot have come back, so the read gives up...
    EXPECT_EQ(s.read(r, 200'000, abandoned.data(), abandoned.size(), sl::monotonic_ns()), sl::Status::kTimeout);
    // ...and the request is still there, whole.
    std::vector<uint8_t> all(r.data);
    all.resize(kSize);
    ASSERT_EQ(s.read(r, 100, all.data() + 100, kSize - 100, in(10 * kSecondNs)), sl::Status::kOk);
    EXPECT_EQ(s.reply(r, sum_bytes(all), in(kSecondNs)), sl::Status::kOk);
  });
  expect_sum_reply(*client_, kSize, 5);
  end_serving();  // the server is done with `abandoned`
  EXPECT_EQ(abandoned, std::vector<uint8_t>(abandoned.size(), 0xEE));  // nothing landed late
}

// receive() whose deadline passes while it pulls the request's bytes returns kTimeout and
// keeps the request: the next receive() gets it whole (the old code popped it and lost it).
TEST_F(LibsmpTest, ReceiveThatTimesOutMidPullKeepsTheRequest) {
  ASSERT_EQ(server_->attach("sum"), sl::Status::kOk);
  constexpr size_t kSize = 300'000;  // past the eager part: receive() must pull the rest
  const Serving serving = serve([&](sl::Endpoint& s) {
    auto delivered = [&] {
      for (const auto& [name, value] : s.stats())
        if (name == "requests_delivered") return value;
      return uint64_t{0};
    };
    const sl::TimeNs give_up = in(10 * kSecondNs);
    while (delivered() == 0 && sl::monotonic_ns() < give_up) s.poll(in(1'000'000));
    ASSERT_EQ(delivered(), 1u);  // queued here, its rest still at the client
    sl::Request r;
    // A deadline already past: the pull cannot have come back.
    EXPECT_EQ(s.receive(&r, sl::monotonic_ns()), sl::Status::kTimeout);
    EXPECT_EQ(r.receive_id, 0u);
    ASSERT_EQ(s.receive(&r, in(10 * kSecondNs)), sl::Status::kOk);
    ASSERT_EQ(r.size_bytes, kSize);
    ASSERT_EQ(r.data.size(), kSize);
    EXPECT_EQ(s.reply(r, sum_bytes(r.data), in(kSecondNs)), sl::Status::kOk);
  });
  expect_sum_reply(*client_, kSize, 11);
}

TEST_F(LibsmpTest, ServerErrorReachesTheClient) {
  ASSERT_EQ(server_->attach("refuse"), sl::Status::kOk);
  const Serving serving = serve([&](sl::Endpoint& s) {
    sl::Request r;
    ASSERT_EQ(s.receive(&r, in(10 * kSecondNs)), sl::Status::kOk);
    EXPECT_EQ(s.error(r, sl::Status::kRemoteError, in(kSecondNs)), sl::Status::kOk);
  });
  sl::Connection c;
  ASSERT_EQ(client_->connect("srv/refuse", &c, in(5 * kSecondNs)), sl::Status::kOk);
  std::vector<uint8_t> reply;
  const uint8_t one = 1;
  EXPECT_EQ(client_->send(c, {&one, 1}, &reply, in(5 * kSecondNs)), sl::Status::kRemoteError);
}

// disconnect gives the connection's hold on its peer back and clears it: using it again is a
// bad argument, not a call to whatever took the peer's place; connecting again works.
TEST_F(LibsmpTest, ADisconnectedConnectionIsClearedAndAnotherCanBeMade) {
  ASSERT_EQ(server_->attach("twice"), sl::Status::kOk);
  const Serving serving = serve([&](sl::Endpoint& s) {
    for (int i = 0; i < 2; i++) {
      sl::Request r;
      ASSERT_EQ(s.receive(&r, in(10 * kSecondNs)), sl::Status::kOk);
      EXPECT_EQ(s.reply(r, std::move(r.data), in(kSecondNs)), sl::Status::kOk);
    }
  });
  const uint8_t one = 1;
  std::vector<uint8_t> reply;
  for (int i = 0; i < 2; i++) {
    sl::Connection c;
    ASSERT_EQ(client_->connect("srv/twice", &c, in(5 * kSecondNs)), sl::Status::kOk);
    ASSERT_NE(c.peer, 0u);
    EXPECT_EQ(client_->send(c, {&one, 1}, &reply, in(5 * kSecondNs)), sl::Status::kOk);
    client_->disconnect(c);
    EXPECT_EQ(c.peer, 0u);
    EXPECT_EQ(client_->send(c, {&one, 1}, &reply, in(5 * kSecondNs)), sl::Status::kBadArgument);
  }
}

TEST_F(LibsmpTest, ClientDeadlinePassesWhileTheServerHoldsTheRequest) {
  ASSERT_EQ(server_->attach("slow"), sl::Status::kOk);
  const Serving serving = serve([&](sl::Endpoint& s) {
    sl::Request r;
    ASSERT_EQ(s.receive(&r, in(10 * kSecondNs)), sl::Status::kOk);
    while (!client_done) s.poll(in(10'000'000));  // hold it, keep the endpoint running
    s.poll(in(200'000'000));                      // the cancellation arrives
    const uint8_t late = 2;
    EXPECT_EQ(s.reply(r, std::span<const uint8_t>(&late, 1), in(kSecondNs)), sl::Status::kCancelled);
  });
  sl::Connection c;
  ASSERT_EQ(client_->connect("srv/slow", &c, in(5 * kSecondNs)), sl::Status::kOk);
  std::vector<uint8_t> reply;
  const uint8_t one = 1;
  EXPECT_EQ(client_->send(c, {&one, 1}, &reply, in(300'000'000)), sl::Status::kTimeout);
  client_done = true;
}

// A server that closes its endpoint with requests it will not answer (one received and left,
// one still queued: `smpctl serve --count 1` with two callers) tells their clients `server
// gone` at once. They waited for the liveness bound and got "host down".
TEST_F(LibsmpTest, AServerThatClosesTellsTheRequestsItLeavesServerGone) {
  ASSERT_EQ(server_->attach("leaving"), sl::Status::kOk);
  std::atomic<int> taken{0};
  std::thread server([&] {
    sl::Request r;
    ASSERT_EQ(server_->receive(&r, in(10 * kSecondNs)), sl::Status::kOk);
    taken = 1;
    while (!client_done) server_->poll(in(10'000'000));  // until the second request is queued
    server_->close();
  });
  sl::Connection c;
  ASSERT_EQ(client_->connect("srv/leaving", &c, in(5 * kSecondNs)), sl::Status::kOk);
  std::vector<uint8_t> r1, r2;
  const uint8_t one = 1;
  sl::Status s1 = sl::Status::kOk, s2 = sl::Status::kOk;
  std::thread first([&] { s1 = client_->send(c, {&one, 1}, &r1, in(5 * kSecondNs)); });
  while (!taken) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread second([&] { s2 = client_->send(c, {&one, 1}, &r2, in(5 * kSecondNs)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the second reaches the server
  client_done = true;
  first.join();
  second.join();
  server.join();
  EXPECT_EQ(s1, sl::Status::kServerGone);
  EXPECT_EQ(s2, sl::Status::kServerGone);
  EXPECT_STREQ(sl::status_text(s1), "server gone (it stopped before answering)");
}

TEST_F(LibsmpTest, UnknownNodeAndUnknownService) {
  EXPECT_EQ(server_->attach("_reserved"), sl::Status::kBadArgument);
  EXPECT_EQ(server_->attach(std::string(33, 'n')), sl::Status::kBadArgument);
  ASSERT_EQ(server_->attach("twice"), sl::Status::kOk);
  EXPECT_EQ(server_->attach("twice"), sl::Status::kBusy);
  const Serving serving = serve([&](sl::Endpoint& s) {
    while (!client_done) s.poll(in(10'000'000));  // answers the name queries
  });
  sl::Connection c;
  EXPECT_EQ(client_->connect("nowhere/x", &c, in(kSecondNs)), sl::Status::kUnknownNode);
  EXPECT_EQ(client_->connect("srv/none", &c, in(5 * kSecondNs)), sl::Status::kUnknownService);
  EXPECT_EQ(client_->connect("srv/twice", &c, in(5 * kSecondNs)), sl::Status::kOk);
  client_done = true;
}

// Busy-poll (Config::spin_ns) changes only how the endpoints wait: echoes of every kind of size
// (one packet, several, past the eager size so that the rest is pulled) come back intact, and
// each call reaches the server exactly once, in order (0 and 64 B come twice with the same
// bytes: a reply handed to a later call, or a request served twice, would pass the client's
// own checks).
class BusyPollTest : public LibsmpTest {
 protected:
  int64_t spin_ns() const override { return 200'000; }
};

// Threads share an endpoint: a call does not wait for another thread's call to end. The
// server answers the second request before the first, so the first completes only if the second
// could leave while the first was waiting (with calls run one at a time, it would time out).
void LibsmpTest::overlapping_calls() {
  ASSERT_EQ(server_->attach("echo"), sl::Status::kOk);
  const Serving serving = serve([&](sl::Endpoint& s) {
    sl::Request first, second;
    ASSERT_EQ(s.receive(&first, in(10 * kSecondNs)), sl::Status::kOk);
    ASSERT_EQ(s.receive(&second, in(10 * kSecondNs)), sl::Status::kOk);
    EXPECT_EQ(s.reply(second, std::vector<uint8_t>(second.data), in(kSecondNs)), sl::Status::kOk);
    EXPECT_EQ(s.reply(first, std::vector<uint8_t>(first.data), in(kSecondNs)), sl::Status::kOk);
    // Then many calls from many threads at once, each answered with its own bytes.
    while (!client_done) {
      sl::Request r;
      if (s.receive(&r, in(10'000'000)) == sl::Status::kOk) {
        EXPECT_EQ(s.reply(r, std::vector<uint8_t>(r.data), in(kSecondNs)), sl::Status::kOk);
      }
    }
  });
  sl::Connection c;
  ASSERT_EQ(client_->connect("srv/echo", &c, in(5 * kSecondNs)), sl::Status::kOk);
  std::vector<std::thread> pair;
  std::atomic<int> pair_ok{0};
  for (uint8_t byte : {uint8_t('A'), uint8_t('B')}) {
    pair.emplace_back([&, byte] {
      std::vector<uint8_t> reply;
      if (client_->send(c, std::vector<uint8_t>{byte}, &reply, in(3 * kSecondNs)) == sl::Status::kOk &&
          reply == std::vector<uint8_t>{byte})
        ++pair_ok;
    });
  }
  for (auto& th : pair) th.join();
  EXPECT_EQ(pair_ok, 2);
  constexpr int kThreads = 8, kCalls = 100;
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        const std::vector<uint8_t> msg{uint8_t(t), uint8_t(i), uint8_t(t * 31 + i)};
        std::vector<uint8_t> got;
        if (client_->send(c, msg, &got, in(10 * kSecondNs)) != sl::Status::kOk || got != msg) ++wrong;
      }
    });
  }
  for (auto& th : callers) th.join();
  EXPECT_EQ(wrong, 0) << "of " << kThreads * kCalls << " calls from " << kThreads << " threads";
  client_done = true;
}

TEST_F(LibsmpTest, CallsFromSeveralThreadsOverlap) { overlapping_calls(); }
TEST_F(BusyPollTest, CallsFromSeveralThreadsOverlap) { overlapping_calls(); }


TEST_F(BusyPollTest, EchoesOfEverySizeComeBackIntact) {
  ASSERT_EQ(server_->attach("echo"), sl::Status::kOk);
  const std::vector<size_t> sizes = {0, 1, 64, 1500, 65536, 300'000, 64, 0};
  std::vector<size_t> served;  // the sizes the server received, in order
  const Serving serving = serve([&](sl::Endpoint& s) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      sl::Request r;
      ASSERT_EQ(s.receive(&r, in(10 * kSecondNs)), sl::Status::kOk) << "request " << i;
      served.push_back(r.size_bytes);
      ASSERT_EQ(s.reply(r, std::move(r.data), in(kSecondNs)), sl::Status::kOk);
    }
    // This case once flaked (about 1 run in 700 with both cores busy) as a 10 s timeout of a
    // ninth receive, every send of the client fine: the server thread, preempted after its last
    // reply, evaluated the loop's condition after the test body had returned, read the
    // destroyed `sizes` (a garbage size) and waited for a request that never comes. Here that
    // order is forced: the server stays up until the client's body is done (no ninth request
    // comes meanwhile) and only then looks at `sizes` again, so the case fails every time if
    // `sizes` can be gone by then. The Serving guard ends the server before the body's locals.
    while (!client_done) s.poll(in(1'000'000));
    EXPECT_EQ(served.size(), sizes.size());
  });
  sl::Connection c;
  ASSERT_EQ(client_->connect("srv/echo", &c, in(5 * kSecondNs)), sl::Status::kOk);
  for (size_t size : sizes) {
    std::vector<uint8_t> msg(size), reply;
    for (size_t i = 0; i < size; ++i) msg[i] = uint8_t(i * 13 + i / 509 + size);
    ASSERT_EQ(client_->send(c, msg, &reply, in(10 * kSecondNs)), sl::Status::kOk) << size;
    EXPECT_EQ(reply, msg) << size;
  }
  end_serving();
  EXPECT_EQ(served, sizes);  // each call was served once, in order
}

// Pulses reach the server in order with the requests, carry their code, value and source, and
// ask for no answer; the client's pulse() returns once they were acknowledged.
TEST_F(LibsmpTest, PulsesArriveInOrderWithRequests) {
  ASSERT_EQ(server_->attach("echo"), sl::Status::kOk);
  std::vector<sl::Request> got;
  const Serving serving = serve([&](sl::Endpoint& s) {
    while (got.size() < 3) {
      sl::Request r;
      ASSERT_EQ(s.receive(&r, in(10 * kSecondNs)), sl::Status::kOk) << "item " << got.size();
      if (!r.is_pulse) EXPECT_EQ(s.reply(r, std::vector<uint8_t>(r.data), in(kSecondNs)), sl::Status::kOk);
      got.push_back(std::move(r));
    }
    while (!client_done) s.poll(in(10'000'000));
  });
  sl::Connection c;
  ASSERT_EQ(client_->connect("srv/echo", &c, in(5 * kSecondNs)), sl::Status::kOk);
  EXPECT_EQ(client_->pulse(c, 3, 0xDEADBEEF, in(5 * kSecondNs)), sl::Status::kOk);
  EXPECT_EQ(client_->pulse(c, 127, 7, in(5 * kSecondNs)), sl::Status::kOk);
  const std::vector<uint8_t> msg{9, 8, 7};
  std::vector<uint8_t> reply;
  ASSERT_EQ(client_->send(c, msg, &reply, in(5 * kSecondNs)), sl::Status::kOk);
  EXPECT_EQ(reply, msg);
  end_serving();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(got[0].is_pulse);
  EXPECT_EQ(got[0].pulse_code, 3);
  EXPECT_EQ(got[0].pulse_value, 0xDEADBEEFu);
  EXPECT_EQ(got[0].receive_id, 0u);
  EXPECT_EQ(got[0].source_be, htonl(INADDR_LOOPBACK));
  EXPECT_TRUE(got[1].is_pulse);
  EXPECT_EQ(got[1].pulse_code, 127);
  EXPECT_EQ(got[1].pulse_value, 7u);
  EXPECT_FALSE(got[2].is_pulse);
  EXPECT_EQ(got[2].data, msg);
  const auto stats = server_->stats();
  EXPECT_NE(std::find(stats.begin(), stats.end(), std::make_pair(std::string("pulses_received"), uint64_t{2})),
            stats.end());
}

// A server takes the highest priority first, in arrival order within one priority (as a kernel
// channel does), and sees each request's priority.
TEST_F(LibsmpTest, ReceiveTakesHigherPrioritiesFirst) {
  ASSERT_EQ(server_->attach("echo"), sl::Status::kOk);
  std::atomic<bool> pulses_sent{false};
  std::vector<std::pair<int, int>> order;  // (priority, code) as received
  int request_priority = -1;
  const Serving serving = serve([&](sl::Endpoint& s) {
    while (!pulses_sent) s.poll(in(5'000'000));  // acknowledges them, receives none yet
    for (int i = 0; i < 5; ++i) {
      sl::Request r;
      ASSERT_EQ(s.receive(&r, in(10 * kSecondNs)), sl::Status::kOk) << "item " << i;
      if (r.is_pulse) {
        order.emplace_back(r.priority, r.pulse_code);
      } else {
        request_priority = r.priority;
        EXPECT_EQ(s.reply(r, std::vector<uint8_t>(r.data), in(kSecondNs)), sl::Status::kOk);
      }
    }
    while (!client_done) s.poll(in(10'000'000));
  });
  sl::Connection c;
  ASSERT_EQ(client_->connect("srv/echo", &c, in(5 * kSecondNs)), sl::Status::kOk);
  const std::pair<int, int> pulses[] = {{1, 1}, {9, 2}, {5, 3}, {9, 4}};
  for (const auto& [priority, code] : pulses) {
    c.priority = uint8_t(priority);
    ASSERT_EQ(client_->pulse(c, int8_t(code), 0, in(5 * kSecondNs)), sl::Status::kOk) << code;
  }
  pulses_sent = true;
  c.priority = 200;
  std::vector<uint8_t> reply;
  ASSERT_EQ(client_->send(c, std::vector<uint8_t>{1}, &reply, in(5 * kSecondNs)), sl::Status::kOk);
  end_serving();
  EXPECT_EQ(order, (std::vector<std::pair<int, int>>{{9, 2}, {9, 4}, {5, 3}, {1, 1}}));
  EXPECT_EQ(request_priority, 200);
}

// A server that computes longer than the liveness bound (dead_after, 1 s) between receive and
// reply, without calling libsmp meanwhile, is still alive to its client: the endpoint's keeper
// answers the client's probes (without it the client's call ended in kHostDown).
TEST_F(LibsmpTest, AServerThatTakesLongerThanTheLivenessBoundToReply) {
  ASSERT_EQ(server_->attach("echo"), sl::Status::kOk);
  const Serving serving = serve([&](sl::Endpoint& s) {
    sl::Request r;
    ASSERT_EQ(s.receive(&r, in(5 * kSecondNs)), sl::Status::kOk);
    usleep(1'600'000);  // computing, not calling libsmp
    EXPECT_EQ(s.reply(r, std::move(r.data), in(kSecondNs)), sl::Status::kOk);
    while (!client_done) s.poll(in(10'000'000));
  });
  sl::Connection c;
  ASSERT_EQ(client_->connect("srv/echo", &c, in(5 * kSecondNs)), sl::Status::kOk);
  std::vector<uint8_t> msg{1, 2, 3}, reply;
  EXPECT_EQ(client_->send(c, msg, &reply, in(10 * kSecondNs)), sl::Status::kOk);
  EXPECT_EQ(reply, msg);
  client_done = true;
}

// One endpoint per (address, number): opening a number that is in use, fixed or ephemeral, is
// refused with kBusy and a detail that names it, and close() gives the number back.
TEST_F(LibsmpTest, AnEndpointNumberInUseIsRefusedUntilClosed) {
  std::unique_ptr<sl::Endpoint> twin;
  std::string detail;
  EXPECT_EQ(sl::Endpoint::open(config(kServerEndpoint), &twin, &detail), sl::Status::kBusy);
  EXPECT_NE(detail.find("endpoint " + std::to_string(kServerEndpoint) + " "), std::string::npos) << detail;
  const uint16_t ephemeral = client_->local_endpoint();
  ASSERT_GE(ephemeral, 0x8000);
  EXPECT_EQ(sl::Endpoint::open(config(ephemeral), &twin, &detail), sl::Status::kBusy) << ephemeral;
  client_->close();
  EXPECT_EQ(sl::Endpoint::open(config(ephemeral), &twin, &detail), sl::Status::kOk) << detail;
}

// A process that dies without closing (SIGKILL) leaves its number free for the next one.
TEST(LibsmpReservation, ANumberIsFreeOnceItsProcessIsKilled) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_RAW) for raw sockets";
  int to_parent[2], to_child[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(to_child), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::unique_ptr<sl::Endpoint> ep;
    std::string detail;
    uint16_t number = 0;
    if (sl::Endpoint::open(config(-1), &ep, &detail) == sl::Status::kOk) number = ep->local_endpoint();
    ssize_t w = write(to_parent[1], &number, sizeof number);
    char c;
    ssize_t r = read(to_child[0], &c, 1);  // held until the parent kills us
    _exit(w == sizeof number && r >= 0 ? 0 : 1);
  }
  uint16_t number = 0;
  ASSERT_EQ(read(to_parent[0], &number, sizeof number), ssize_t(sizeof number));
  ASSERT_NE(number, 0) << "the child could not open an endpoint";
  std::unique_ptr<sl::Endpoint> ep;
  std::string detail;
  EXPECT_EQ(sl::Endpoint::open(config(number), &ep, &detail), sl::Status::kBusy) << number;
  kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(sl::Endpoint::open(config(number), &ep, &detail), sl::Status::kOk) << detail;
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) close(fd);
}

TEST(LibsmpConfig, NegativeSpinIsRefused) {
  std::unique_ptr<sl::Endpoint> ep;
  std::string detail;
  EXPECT_EQ(sl::Endpoint::open(config(-1, -1), &ep, &detail), sl::Status::kBadArgument);
  EXPECT_FALSE(detail.empty());
}

}  // namespace
